using Overlay.Nat.Turn;
using Overlay.Transport;

namespace Overlay.Nat.Ice;

/// <summary>
/// The <see cref="IDatagramChannel"/> over an agent's selected pair. Headroom is always 4 bytes so the link can
/// reserve it once: a relayed pair writes the ChannelData header there (no copy), a direct pair skips it.
/// Datagrams from any validated pair's remote reach the receiver.
/// </summary>
internal sealed class IceDatagramChannel(IceAgent agent) : IDatagramChannel, IDatagramReceiver
{
    private volatile IDatagramReceiver? _receiver;
    private long _dropped, _sendFailures;

    public int Headroom => ChannelData.HeaderSize;

    public long Dropped => Interlocked.Read(ref _dropped);

    public long SendFailures => Interlocked.Read(ref _sendFailures);

    public bool TrySend(Span<byte> buffer, int payloadLength)
    {
        var pair = agent.Selected;
        if (pair is null || payloadLength < 0 || buffer.Length < ChannelData.HeaderSize + payloadLength)
        {
            Interlocked.Increment(ref _sendFailures);
            return false;
        }
        var sent = pair.ViaRelay
            ? agent.Endpoint.Turn is { } turn && turn.TrySendFramed(buffer, payloadLength, pair.RemoteAddress)
            : agent.Endpoint.Mux.Send(buffer.Slice(ChannelData.HeaderSize, payloadLength), pair.RemoteSocketAddress);
        if (!sent) Interlocked.Increment(ref _sendFailures);
        return sent;
    }

    public void SetReceiver(IDatagramReceiver? receiver) => _receiver = receiver;

    public void OnDatagram(ReadOnlySpan<byte> datagram)
    {
        if (_receiver is { } receiver) receiver.OnDatagram(datagram);
        else Interlocked.Increment(ref _dropped);
    }
}
