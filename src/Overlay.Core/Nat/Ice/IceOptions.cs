using System.Net;
using Microsoft.Extensions.Logging;
using Overlay.Nat.Stun;
using Overlay.Nat.Turn;

namespace Overlay.Nat.Ice;

/// <summary>Settings of an <see cref="IceAgent"/>; immutable, validated once by <see cref="Validate"/>.</summary>
internal sealed record IceOptions
{
    /// <summary>STUN servers for server-reflexive candidates.</summary>
    public IReadOnlyList<IPEndPoint> StunServers { get; init; } = [];

    /// <summary>TURN servers for relayed candidates: every one is used, gathered in parallel (one per transport and endpoint).</summary>
    public IReadOnlyList<TurnServer> TurnServers { get; init; } = [];

    /// <summary>Interface names never gathered (an overlay's own TAP must not carry its tunnel). Prefix match with a trailing '*'.</summary>
    public IReadOnlyList<string> ExcludedInterfaces { get; init; } = [];

    /// <summary>Gather IPv6 host candidates (global and unique-local; link-local never).</summary>
    public bool UseIPv6 { get; init; } = true;

    /// <summary>
    /// Accept remote candidates on loopback addresses. Off: a member could otherwise aim this agent's checks (and then a
    /// link) at services on this host. Only agents that meet on one host (tests, benchmarks) turn it on.
    /// </summary>
    internal bool AllowLoopbackCandidates { get; init; }

    /// <summary>Local UDP port (0: any).</summary>
    public int Port { get; init; }

    /// <summary>Ta, the pacing of connectivity checks (RFC 8445 §14.2: 50 ms default).</summary>
    public TimeSpan Pacing { get; init; } = TimeSpan.FromMilliseconds(50);

    /// <summary>Retransmission of connectivity checks (RFC 8445 §14.3).</summary>
    public StunRetransmissionOptions CheckRetransmission { get; init; } = new(TimeSpan.FromMilliseconds(250), MaxRequests: 6, FinalWaitMultiplier: 4);

    /// <summary>Retransmission of gathering requests to STUN/TURN servers.</summary>
    public StunRetransmissionOptions ServerRetransmission { get; init; } = new(TimeSpan.FromMilliseconds(250), MaxRequests: 5, FinalWaitMultiplier: 4);

    /// <summary>
    /// How long the controlling agent waits for a better pair after the first valid one before nominating. None by
    /// default: the first pair that works carries the link at once, checks go on, and a better pair that succeeds later
    /// is nominated then; the path moves to it (a relayed link goes direct).
    /// </summary>
    public TimeSpan NominationDelay { get; init; } = TimeSpan.Zero;

    /// <summary>
    /// While the selected pair is relayed over TCP or TLS, how often the agent asks its STUN and UDP TURN servers again
    /// to learn whether UDP passes now; when it does, the new candidates are checked and the path moves to UDP.
    /// </summary>
    public TimeSpan UpgradeInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Failed when no pair is selected this long after checks start.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Interval of consent checks on the selected pair (RFC 7675 §5.1: 5 s, randomised ±20%); also the keepalive.</summary>
    public TimeSpan ConsentInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Consent expires when no check succeeded for this long (RFC 7675 §5.1: 30 s).</summary>
    public TimeSpan ConsentTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Consent checks go at multiples of this on the monotonic clock, each interval still drawn at random within RFC 7675
    /// §5.1's 0.8-1.2 times <see cref="ConsentInterval"/> (<see cref="IceAgent.NextConsentDue"/>): the links of a node then
    /// share their wake-ups. Zero: anywhere in that range.
    /// </summary>
    public TimeSpan ConsentGrid { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// The scheduler of the agents' timed work (checks, retransmissions, consent, TURN refreshes), shared by every agent
    /// of a node so that work due at one instant costs one wake-up; null: each agent has its own. Not disposed by agents.
    /// </summary>
    internal NatScheduler? Scheduler { get; init; }

    /// <summary>Clock for all timing.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>Logging.</summary>
    public ILoggerFactory? LoggerFactory { get; init; }

    /// <summary>Throws with the setting's name when a value is out of range.</summary>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(StunServers, nameof(StunServers));
        ArgumentNullException.ThrowIfNull(TurnServers, nameof(TurnServers));
        ArgumentNullException.ThrowIfNull(ExcludedInterfaces, nameof(ExcludedInterfaces));
        ArgumentNullException.ThrowIfNull(TimeProvider, nameof(TimeProvider));
        foreach (var t in TurnServers) t.Validate();
        if (Port is < 0 or > 65535) throw new ArgumentOutOfRangeException(nameof(Port), Port, "Port must be 0–65535");
        if (Pacing <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(Pacing), Pacing, "Pacing must be positive");
        CheckRetransmission.Validate();
        ServerRetransmission.Validate();
        if (NominationDelay < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(NominationDelay), NominationDelay, "NominationDelay must not be negative");
        if (ConnectTimeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(ConnectTimeout), ConnectTimeout, "ConnectTimeout must be positive");
        if (UpgradeInterval <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(UpgradeInterval), UpgradeInterval, "UpgradeInterval must be positive");
        if (ConsentInterval <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(ConsentInterval), ConsentInterval, "ConsentInterval must be positive");
        if (ConsentGrid < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(ConsentGrid), ConsentGrid, "ConsentGrid must not be negative");
        if (ConsentTimeout <= ConsentInterval) throw new ArgumentOutOfRangeException(nameof(ConsentTimeout), ConsentTimeout, "ConsentTimeout must exceed ConsentInterval");
    }
}
