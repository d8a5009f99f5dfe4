using System.Net;
using Overlay.Nat.Stun;
using Overlay.Nat.Turn;

namespace Overlay.Nat.Ice;

/// <summary>Check state of a pair (RFC 8445 §6.1.2.6).</summary>
internal enum CandidatePairState
{
    Waiting,
    InProgress,
    Succeeded,
    Failed,
}

/// <summary>
/// A local base (the socket, or the TURN relay) paired with a remote candidate. With one wildcard socket all host
/// candidates of a family share a base, so there is one direct pair and at most one relayed pair per remote.
/// </summary>
internal sealed class CandidatePair
{
    public CandidatePair(IceCandidate local, IceCandidate remote, SocketAddress remoteSocketAddress, TurnClient? relay = null)
    {
        Local = local;
        Relay = relay;
        Remote = remote;
        RemoteAddress = new StunAddress(remote.Address);
        RemoteSocketAddress = remoteSocketAddress;
    }

    /// <summary>The base the pair sends from: a host candidate (the socket) or the relayed candidate.</summary>
    public IceCandidate Local { get; }

    public IceCandidate Remote { get; set; }

    public StunAddress RemoteAddress { get; }

    public SocketAddress RemoteSocketAddress { get; }

    public bool ViaRelay => Local.Type == IceCandidateType.Relayed;

    /// <summary>The TURN client of the relayed local candidate (relayed pairs only).</summary>
    public TurnClient? Relay { get; }

    /// <summary>Relayed over TCP or TLS to the server: the path to leave once UDP works again.</summary>
    public bool OverStream => Relay?.IsStream == true;

    public CandidatePairState State { get; set; } = CandidatePairState.Waiting;

    /// <summary>The local candidate the peer saw (from XOR-MAPPED-ADDRESS): host, srflx, prflx or relay.</summary>
    public IceCandidate? ReportedLocal { get; set; }

    /// <summary>Controlled side: the peer sent USE-CANDIDATE, select once our check succeeds (RFC 8445 §7.3.1.5).</summary>
    public bool NominateOnSuccess { get; set; }

    public bool Nominated { get; set; }

    public StunTransaction? Check { get; set; }

    /// <summary>Sends this pair's checks through the relay (relayed pairs only).</summary>
    public IStunSender? RelaySender { get; set; }

    public StunTransaction? ConsentCheck { get; set; }

    public long LastConsent { get; set; }

    public TimeSpan? RoundTrip { get; set; }

    /// <summary>RFC 8445 §6.1.2.3: 2^32·MIN(G,D) + 2·MAX(G,D) + (G&gt;D ? 1 : 0).</summary>
    public ulong Priority(IceRole role)
    {
        ulong g = role == IceRole.Controlling ? Local.Priority : Remote.Priority;
        ulong d = role == IceRole.Controlling ? Remote.Priority : Local.Priority;
        return (Math.Min(g, d) << 32) + 2 * Math.Max(g, d) + (g > d ? 1UL : 0UL);
    }

    public override string ToString() => $"{Local.Type}{(Relay is { } r ? $" ({r.Options})" : "")} {Local.Address} -> {Remote.Type} {Remote.Address} {State}";
}
