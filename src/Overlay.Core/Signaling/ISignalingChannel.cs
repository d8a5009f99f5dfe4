namespace Overlay.Signaling;

/// <summary>
/// The control-plane channel a node uses to find the other members of its overlays and to negotiate
/// links with them (DESIGN.md §4). Implemented over XMPP (<see cref="Xmpp.XmppSignalingChannel"/>) and
/// by an in-process hub (<see cref="InProcess.InProcessSignalingHub"/>) for several nodes in one process.
/// </summary>
/// <remarks>
/// Only members of this node's roster may act on it, only for overlays this node serves, and only after
/// announcing themselves for that overlay under the node ID they claim; every other inbound message is
/// dropped and counted in <see cref="Counters"/>, never executed.
/// </remarks>
internal interface ISignalingChannel : IAsyncDisposable
{
    /// <summary>This node's ID (32 lower-case hex characters).</summary>
    string NodeId { get; }

    /// <summary>The overlays this node serves and announces.</summary>
    IReadOnlyCollection<string> Overlays { get; }

    /// <summary>The current connection state.</summary>
    SignalingState State { get; }

    /// <summary>Raised when <see cref="State"/> changes (with the error that caused a loss, if any).</summary>
    event EventHandler<SignalingStateChangedEventArgs>? StateChanged;

    /// <summary>Raised when a peer joins or leaves one of this node's overlays.</summary>
    event EventHandler<PeerEvent>? PeerChanged;

    /// <summary>
    /// Connects, authenticates and announces this node and its overlays. After a later loss of the
    /// connection the channel reconnects by itself and announces again.
    /// </summary>
    Task ConnectAsync(CancellationToken cancellationToken = default);

    /// <summary>A snapshot of the peer table of one overlay: node ID → signaling address (full JID for XMPP).</summary>
    IReadOnlyDictionary<string, string> GetPeers(string overlayId);

    /// <summary>
    /// Streams peer changes from now on (each call gets its own stream). Use it instead of
    /// <see cref="PeerChanged"/> when awaiting is more natural than an event handler.
    /// </summary>
    IAsyncEnumerable<PeerEvent> WatchPeersAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Inbound requests and notifications that passed the membership checks, in arrival order.
    /// There is one consumer (the engine); when it falls behind, excess messages are dropped and counted.
    /// </summary>
    IAsyncEnumerable<IncomingSignal> ReadIncomingAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Sends a request (<see cref="EdgeRequest"/> or <see cref="LinkOffer"/>) to a peer of an overlay and
    /// awaits its response, matched by correlation ID.
    /// </summary>
    /// <exception cref="SignalingTimeoutException">No response within <paramref name="timeout"/>.</exception>
    /// <exception cref="SignalingException">The peer is unknown or unreachable, or the channel is not connected.</exception>
    Task<SignalMessage> RequestAsync(string peerNodeId, SignalMessage request, TimeSpan? timeout = null, CancellationToken cancellationToken = default);

    /// <summary>Sends a one-way notification (<see cref="LinkCandidate"/> or <see cref="LinkTeardown"/>) to a peer.</summary>
    Task SendAsync(string peerNodeId, SignalMessage notification, CancellationToken cancellationToken = default);

    /// <summary>A snapshot of the channel's counters (accepted and dropped messages by reason).</summary>
    SignalingCounters Counters { get; }

    /// <summary>
    /// Other addresses that announce this node's own ID (a copied key and configuration, or an impostor with the key):
    /// each peer keeps whichever it listed first and refuses the other, so this node may be refused. Bounded by the roster.
    /// </summary>
    IReadOnlyCollection<string> NodeIdConflicts { get; }
}
