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

    /// <summary>While true, datagrams vanish, like a cut path.</summary>
    public volatile bool Blocked;

    /// <summary>The last data datagram sent, kept while <see cref="Capture"/> is on (replay and tampering tests).</summary>
    public byte[]? Last;

    public bool Capture;

    public bool TrySend(Span<byte> buffer, int payloadLength, DataPathBatch? batch = null)
    {
        Interlocked.Increment(ref Sent);
        var datagram = buffer.Slice(Headroom, payloadLength);
        if (Capture && datagram.Length > 0 && datagram[0] >= 192) Last = datagram.ToArray();
        if (!Blocked) _peer._receiver?.OnDatagram(datagram, batch);
        return true;
    }

    public void SetReceiver(IDatagramReceiver? receiver) => _receiver = receiver;
}
