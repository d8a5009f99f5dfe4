namespace Overlay.Signaling;

/// <summary>
/// An inbound request or notification that passed the membership checks: the sender is in this node's
/// roster and the overlay is one this node serves.
/// </summary>
internal sealed class IncomingSignal
{
    private readonly Func<SignalMessage, CancellationToken, Task>? _respond;
    private int _responded;

    internal IncomingSignal(string senderNodeId, string senderAddress, SignalMessage message, Func<SignalMessage, CancellationToken, Task>? respond)
    {
        SenderNodeId = senderNodeId;
        SenderAddress = senderAddress;
        Message = message;
        _respond = respond;
    }

    /// <summary>The sender's node ID.</summary>
    public string SenderNodeId { get; }

    /// <summary>The sender's signaling address (full JID for XMPP).</summary>
    public string SenderAddress { get; }

    /// <summary>The payload.</summary>
    public SignalMessage Message { get; }

    /// <summary>True for requests (<see cref="EdgeRequest"/>, <see cref="LinkOffer"/>), which expect one response.</summary>
    public bool ExpectsResponse => _respond is not null;

    /// <summary>
    /// Sends the response (<see cref="EdgeResponse"/> to an edge request; <see cref="LinkAnswer"/> or
    /// <see cref="LinkReject"/> to an offer), carrying the request's correlation ID. Only the first call sends.
    /// </summary>
    public Task RespondAsync(SignalMessage response, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(response);
        if (_respond is null) throw new InvalidOperationException("this message is a notification and takes no response");
        if (!SignalCodec.IsResponse(response)) throw new ArgumentException($"{response.GetType().Name} is not a response type", nameof(response));
        if (Interlocked.Exchange(ref _responded, 1) != 0) return Task.CompletedTask;
        return _respond(response, cancellationToken);
    }
}
