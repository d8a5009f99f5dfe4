namespace Overlay.Nat.Ice;

/// <summary>The nominated pair: what the local candidate looked like to the peer, and the remote candidate.</summary>
/// <param name="Local">Host, server-reflexive, peer-reflexive or relayed candidate of this agent.</param>
/// <param name="Remote">The peer's candidate.</param>
/// <param name="RoundTrip">RTT of the check that validated the pair, when measured.</param>
internal sealed record IceSelectedPair(IceCandidate Local, IceCandidate Remote, TimeSpan? RoundTrip)
{
    /// <summary>True when data passes through a TURN relay (either side's candidate is relayed).</summary>
    public bool IsRelayed => Local.Type == IceCandidateType.Relayed || Remote.Type == IceCandidateType.Relayed;

    /// <summary>This side reaches its TURN server over TCP or TLS (head-of-line blocking; left once UDP passes).</summary>
    public bool OverStream { get; init; }
}
