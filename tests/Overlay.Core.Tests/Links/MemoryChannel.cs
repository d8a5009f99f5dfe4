using Overlay.Transport;

namespace Overlay.Core.Tests.Links;

/// <summary>Two in-memory datagram channels joined back to back.</summary>
internal sealed class MemoryChannel : IDatagramChannel
{
    private IDatagramReceiver? _receiver;
    private MemoryChannel _peer = null!;

    public static (MemoryChannel A, MemoryChannel B) Pair()
    {
        var a = new MemoryChannel();
        var b = new MemoryChannel();
        a._peer = b;
        b._peer = a;
        return (a, b);
    }

    public int Headroom => 4;
    public long Sent;

    public bool TrySend(Span<byte> buffer, int payloadLength)
    {
        Interlocked.Increment(ref Sent);
        _peer._receiver?.OnDatagram(buffer.Slice(Headroom, payloadLength));
        return true;
    }

    public void SetReceiver(IDatagramReceiver? receiver) => _receiver = receiver;
}
