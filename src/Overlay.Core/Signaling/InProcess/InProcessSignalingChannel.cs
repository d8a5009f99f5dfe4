using Microsoft.Extensions.Logging;

namespace Overlay.Signaling.InProcess;

/// <summary>A signaling channel attached to an <see cref="InProcessSignalingHub"/>.</summary>
internal sealed class InProcessSignalingChannel : SignalingChannelBase
{
    private readonly InProcessSignalingHub _hub;
    private readonly string _address;
    private int _online;

    internal InProcessSignalingChannel(InProcessSignalingHub hub, InProcessChannelOptions options, string address)
        : base(options.NodeId, options.Overlays, options.RequestTimeout, options.TimeProvider,
               options.LoggerFactory?.CreateLogger<InProcessSignalingChannel>(), options.OverlayGroups)
    {
        _hub = hub;
        _address = address;
        Account = options.Account;
    }

    internal string Account { get; }

    internal string Announcement => AnnouncementPayload;

    /// <inheritdoc />
    public override string? LocalAddress => _address;

    /// <inheritdoc />
    public override Task ConnectAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (Interlocked.Exchange(ref _online, 1) != 0) return Task.CompletedTask;
        SetState(SignalingState.Connecting, null);
        _hub.GoOnline(this);
        SetState(SignalingState.Connected, null);
        return Task.CompletedTask;
    }

    internal void DeliverPresence(string fromAddress, string? announcement)
    {
        if (announcement is null) OnPresenceUnavailable(fromAddress);
        else OnPresenceAvailable(fromAddress, announcement);
    }

    internal void DeliverPayload(string fromAddress, string payload) => OnPayload(fromAddress, payload);

    internal void RosterChanged()
    {
        ForgetPeers(a => !IsRosterMember(a), PeerChange.Revoked);
        OnRosterChanged();
    }

    /// <summary>Sends a raw payload as this channel (tests use it to inject hostile or unknown messages).</summary>
    internal bool SendRaw(string toAddress, string payload) => _hub.Route(_address, toAddress, payload);

    private protected override Task SendPayloadAsync(string address, string correlationId, string payload, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (Volatile.Read(ref _online) != 1) throw new SignalingException("the channel is not connected");
        if (!_hub.Route(_address, address, payload))
            throw new SignalingException($"{address} is not online");
        return Task.CompletedTask;
    }

    private protected override bool IsRosterMember(string address)
        => _hub.AreRosterMembers(Account, InProcessSignalingHub.AccountOf(address));

    private protected override string AccountOf(string address) => InProcessSignalingHub.AccountOf(address);

    private protected override IReadOnlyCollection<string> RosterGroupsOf(string address)
        => _hub.SharedGroups(Account, InProcessSignalingHub.AccountOf(address));

    private protected override ValueTask DisposeTransportAsync()
    {
        if (Interlocked.Exchange(ref _online, 2) == 1) _hub.GoOffline(this);
        Logger.LogDebug("in-process signaling channel {Address} closed", _address);
        return ValueTask.CompletedTask;
    }
}
