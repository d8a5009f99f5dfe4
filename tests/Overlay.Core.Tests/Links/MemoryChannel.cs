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

    /// <summary>
    /// The path's MTU: a datagram whose outer packet (the datagram and <see cref="PathOverhead"/>) is larger vanishes, as
    /// on a path that drops fragments and sends no ICMP.
    /// </summary>
    public volatile int PathMtu = int.MaxValue;

    /// <summary>While true, path MTU probes vanish (a peer from before probing never answers them).</summary>
    public volatile bool DropProbes;

    /// <summary>The largest frame or flood-frame datagram sent, as an outer packet size.</summary>
    public int LargestFrameSent;

    public int PathOverhead => 28;

    public bool TrySend(Span<byte> buffer, int payloadLength, DataPathBatch? batch = null)
    {
        Interlocked.Increment(ref Sent);
        var datagram = buffer.Slice(Headroom, payloadLength);
        if (Capture && datagram.Length > 0 && datagram[0] >= 192) Last = datagram.ToArray();
        if (datagram.Length > 0 && datagram[0] is 0xC0 or 0xC1) LargestFrameSent = Math.Max(LargestFrameSent, datagram.Length + PathOverhead);
        if (DropProbes && datagram.Length > 0 && datagram[0] == 0xC4) return true;
        if (!Blocked && datagram.Length + PathOverhead <= PathMtu) _peer._receiver?.OnDatagram(datagram, batch);
        return true;
    }

    public void SetReceiver(IDatagramReceiver? receiver) => _receiver = receiver;
}
