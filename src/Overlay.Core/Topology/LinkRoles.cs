namespace Overlay.Topology;

/// <summary>Why a node wants a link to a peer; a link may serve several roles at once.</summary>
[Flags]
public enum LinkRoles
{
    /// <summary>No reason of this node's own (the peer asked for it).</summary>
    None = 0,

    /// <summary>One of the MinSuccessors nearest peers clockwise: what keeps the ring a ring.</summary>
    Successor = 1,

    /// <summary>A Symphony long-distance shortcut drawn from the harmonic distribution.</summary>
    LongDistance = 2,

    /// <summary>Asked for by traffic: the two nodes exchange much data.</summary>
    OnDemand = 4,

    /// <summary>Configured by the operator (StaticEdges).</summary>
    Static = 8,
}

/// <summary>What the topology asks of the link manager. Calls come from the topology's own thread.</summary>
internal interface ILinkController
{
    /// <summary>Set up a link to <paramref name="peer"/> (this node initiates); report back through OnLinkUp / OnLinkDown.</summary>
    void Connect(UInt128 peer, LinkRoles roles);

    /// <summary>Tear down the link to <paramref name="peer"/>; report back through OnLinkDown.</summary>
    void Disconnect(UInt128 peer);
}

/// <summary>The topology's answer to a peer that asks for a link.</summary>
/// <param name="Accepted">True to set the link up.</param>
/// <param name="Reason">Why it was refused (sent back to the peer), or empty.</param>
internal readonly record struct LinkDecision(bool Accepted, string Reason)
{
    /// <summary>Accept.</summary>
    public static LinkDecision Accept { get; } = new(true, "");

    /// <summary>Refuse with a reason.</summary>
    public static LinkDecision Reject(string reason) => new(false, reason);
}
