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
    private const int MaxEarly = 8;
    private readonly Lock _earlyGate = new();
    private volatile IDatagramReceiver? _receiver;
    private Queue<byte[]>? _early;
    private long _dropped, _sendFailures;

    public int Headroom => ChannelData.HeaderSize;

    /// <summary>
    /// IPv4 or IPv6 and UDP headers of the pair's path; when relayed, the larger of its two legs: ChannelData and the
    /// headers of the family the pair's own TURN server is reached by, or the headers of the relayed address's family toward the peer.
    /// </summary>
    public int PathOverhead
    {
        get
        {
            if (agent.Selected is not { } pair) return IPv6Overhead;
            if (!pair.ViaRelay) return IsIPv6(pair.RemoteSocketAddress) ? IPv6Overhead : IPv4Overhead;
            if (pair.Relay is not { } turn) return ChannelData.HeaderSize + IPv6Overhead;
            var toServer = ChannelData.HeaderSize + (IsIPv6(turn.Server) ? IPv6Overhead : IPv4Overhead);
            var toPeer = turn.RelayedAddress is { Family: System.Net.Sockets.AddressFamily.InterNetworkV6 } ? IPv6Overhead : IPv4Overhead;
            return Math.Max(toServer, toPeer);
        }
    }

    private const int IPv4Overhead = 20 + 8, IPv6Overhead = 40 + 8; // RFC 791, RFC 8200, RFC 768 headers

    /// <summary>True for an IPv6 socket address that is not an IPv4-mapped one (::ffff:a.b.c.d, RFC 4291 §2.5.5.2).</summary>
    private static bool IsIPv6(System.Net.SocketAddress address)
    {
        if (address.Family != System.Net.Sockets.AddressFamily.InterNetworkV6) return false;
        var bytes = address.Buffer.Span;
        // sockaddr_in6: family (2), port (2), flow info (4), then the address.
        for (var i = 8; i < 18; i++)
            if (bytes[i] != 0) return true;
        return bytes[18] != 0xFF || bytes[19] != 0xFF;
    }

    public long Dropped => Interlocked.Read(ref _dropped);

    public long SendFailures => Interlocked.Read(ref _sendFailures);

    public bool TrySend(Span<byte> buffer, int payloadLength, DataPathBatch? batch = null)
    {
        var pair = agent.Selected;
        if (pair is null || payloadLength < 0 || buffer.Length < ChannelData.HeaderSize + payloadLength)
        {
            Interlocked.Increment(ref _sendFailures);
            return false;
        }
        var sent = pair.ViaRelay
            ? pair.Relay is { } turn && turn.TrySendFramed(buffer, payloadLength, pair.RemoteAddress, batch)
            : agent.Endpoint.Mux.Send(buffer.Slice(ChannelData.HeaderSize, payloadLength), pair.RemoteSocketAddress, batch);
        if (!sent) Interlocked.Increment(ref _sendFailures);
        return sent;
    }

    public void SetReceiver(IDatagramReceiver? receiver)
    {
        if (receiver is null)
        {
            _receiver = null;
            return;
        }
        lock (_earlyGate)
        {
            while (_early is { Count: > 0 } early) receiver.OnDatagram(early.Dequeue(), batch: null);
            _early = null;
            _receiver = receiver;
        }
    }

    public void OnDatagram(ReadOnlySpan<byte> datagram, DataPathBatch? batch)
    {
        if (_receiver is { } receiver)
        {
            receiver.OnDatagram(datagram, batch);
            return;
        }
        // The peer nominated the pair and sent its first DTLS flight before this side's handshake took the channel
        // (ICE reports the selection on another thread). Keep a few handshake datagrams instead of making the peer
        // wait a whole DTLS retransmission timeout (1 s, then 2 s) for them.
        lock (_earlyGate)
        {
            if (_receiver is { } late)
            {
                late.OnDatagram(datagram, batch);
                return;
            }
            if (datagram.Length > 0 && datagram[0] is >= 20 and <= 63 && (_early ??= new Queue<byte[]>()).Count < MaxEarly)
            {
                _early.Enqueue(datagram.ToArray());
                return;
            }
        }
        Interlocked.Increment(ref _dropped);
    }
}
