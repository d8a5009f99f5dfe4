namespace Overlay.Nat.Ice;

/// <summary>The agent's role (RFC 8445 §6.1.1): the controlling agent nominates.</summary>
internal enum IceRole
{
    /// <summary>Nominates the pair.</summary>
    Controlling,
    /// <summary>Follows the controlling agent's nomination.</summary>
    Controlled,
}

/// <summary>Agent state, observable through <see cref="IceAgent.StateChanges"/>.</summary>
internal enum IceState
{
    /// <summary>Created; candidates may be gathered.</summary>
    New,
    /// <summary>Connectivity checks running, no pair selected yet.</summary>
    Checking,
    /// <summary>A pair is nominated and consent is fresh.</summary>
    Connected,
    /// <summary>No pair worked in time, or consent was lost (RFC 7675).</summary>
    Failed,
    /// <summary>Disposed.</summary>
    Closed,
}
