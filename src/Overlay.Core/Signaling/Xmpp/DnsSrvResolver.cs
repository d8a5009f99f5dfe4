using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace Overlay.Signaling.Xmpp;

/// <summary>One SRV record (RFC 2782).</summary>
internal readonly record struct SrvRecord(ushort Priority, ushort Weight, ushort Port, string Target);

/// <summary>
/// A minimal DNS client for the one lookup XMPP needs: <c>_xmpp-client._tcp.domain</c> SRV (RFC 6120 §3.2.1).
/// One UDP query to the system's first resolver (or a given server); malformed answers yield no records.
/// </summary>
internal static class DnsSrvResolver
{
    private const ushort TypeSrv = 33;   // RFC 2782
    private const ushort ClassIn = 1;    // RFC 1035 §3.2.4

    /// <summary>The first <c>nameserver</c> of /etc/resolv.conf, or null.</summary>
    public static IPEndPoint? SystemResolver()
    {
        try
        {
            foreach (var line in File.ReadLines("/etc/resolv.conf"))
            {
                var parts = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length >= 2 && parts[0] == "nameserver" && IPAddress.TryParse(parts[1], out var address))
                    return new IPEndPoint(address, 53);
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }

    /// <summary>Queries SRV records of <paramref name="name"/>; returns them in the order to try them (RFC 2782).</summary>
    public static async Task<IReadOnlyList<SrvRecord>> QueryAsync(string name, IPEndPoint server, TimeSpan timeout, CancellationToken ct)
    {
        var id = (ushort)RandomNumberGenerator.GetInt32(ushort.MaxValue + 1);
        var query = BuildQuery(id, name);
        using var socket = new Socket(server.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        await socket.SendToAsync(query, SocketFlags.None, server, cts.Token).ConfigureAwait(false);
        var buffer = new byte[4096];
        while (true)
        {
            var received = await socket.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(server.AddressFamily == AddressFamily.InterNetwork ? IPAddress.Any : IPAddress.IPv6Any, 0), cts.Token).ConfigureAwait(false);
            if (!received.RemoteEndPoint.Equals(server)) continue; // only the resolver we asked may answer
            if (TryParseResponse(buffer.AsSpan(0, received.ReceivedBytes), id, out var records)) return Order(records);
        }
    }

    internal static byte[] BuildQuery(ushort id, string name)
    {
        var q = new List<byte>(64);
        q.AddRange([(byte)(id >> 8), (byte)id, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD, QDCOUNT=1 (RFC 1035 §4.1.1)
        foreach (var label in name.TrimEnd('.').Split('.'))
        {
            var bytes = Encoding.ASCII.GetBytes(label);
            if (bytes.Length is 0 or > 63) throw new ArgumentException($"invalid DNS name '{name}'", nameof(name));
            q.Add((byte)bytes.Length);
            q.AddRange(bytes);
        }
        q.AddRange([0, (byte)(TypeSrv >> 8), (byte)TypeSrv, 0, (byte)ClassIn]);
        return [.. q];
    }

    /// <summary>Parses a response; false when it is not the answer to query <paramref name="id"/> or malformed.</summary>
    internal static bool TryParseResponse(ReadOnlySpan<byte> message, ushort id, out List<SrvRecord> records)
    {
        records = [];
        if (message.Length < 12 || BinaryPrimitives.ReadUInt16BigEndian(message) != id) return false;
        if ((message[2] & 0x80) == 0) return false; // not a response
        var rcode = message[3] & 0x0f;
        var questions = BinaryPrimitives.ReadUInt16BigEndian(message[4..]);
        var answers = BinaryPrimitives.ReadUInt16BigEndian(message[6..]);
        if (rcode != 0) return true; // NXDOMAIN and friends: no records
        var pos = 12;
        for (var i = 0; i < questions; i++)
        {
            if (!TryReadName(message, ref pos, out _) || pos + 4 > message.Length) return false;
            pos += 4;
        }
        for (var i = 0; i < answers; i++)
        {
            if (!TryReadName(message, ref pos, out _) || pos + 10 > message.Length) return false;
            var type = BinaryPrimitives.ReadUInt16BigEndian(message[pos..]);
            var length = BinaryPrimitives.ReadUInt16BigEndian(message[(pos + 8)..]);
            pos += 10;
            if (pos + length > message.Length) return false;
            if (type == TypeSrv && length >= 7)
            {
                var rdata = pos + 6;
                if (!TryReadName(message, ref rdata, out var target)) return false;
                records.Add(new SrvRecord(BinaryPrimitives.ReadUInt16BigEndian(message[pos..]), BinaryPrimitives.ReadUInt16BigEndian(message[(pos + 2)..]),
                    BinaryPrimitives.ReadUInt16BigEndian(message[(pos + 4)..]), target));
            }
            pos += length;
        }
        return true;
    }

    /// <summary>Reads a possibly compressed name (RFC 1035 §4.1.4), bounding pointer hops against loops.</summary>
    private static bool TryReadName(ReadOnlySpan<byte> message, ref int pos, out string name)
    {
        name = "";
        var sb = new StringBuilder();
        var p = pos;
        var jumped = false;
        for (var hops = 0; hops < 64; hops++)
        {
            if (p >= message.Length) return false;
            var len = message[p];
            if (len == 0)
            {
                if (!jumped) pos = p + 1;
                name = sb.Length == 0 ? "." : sb.ToString();
                return true;
            }
            if ((len & 0xc0) == 0xc0)
            {
                if (p + 1 >= message.Length) return false;
                if (!jumped) pos = p + 2;
                jumped = true;
                p = ((len & 0x3f) << 8) | message[p + 1];
                continue;
            }
            if (len > 63 || p + 1 + len > message.Length) return false;
            if (sb.Length > 0) sb.Append('.');
            sb.Append(Encoding.ASCII.GetString(message.Slice(p + 1, len)));
            p += 1 + len;
        }
        return false;
    }

    /// <summary>RFC 2782 order: ascending priority; within a priority, weighted random selection.</summary>
    private static List<SrvRecord> Order(List<SrvRecord> records)
    {
        var ordered = new List<SrvRecord>(records.Count);
        foreach (var group in records.GroupBy(r => r.Priority).OrderBy(g => g.Key))
        {
            var pool = group.ToList();
            while (pool.Count > 0)
            {
                var total = pool.Sum(r => r.Weight);
                var pick = total == 0 ? 0 : RandomNumberGenerator.GetInt32(total + 1);
                var index = 0;
                for (var running = 0; index < pool.Count - 1; index++)
                {
                    running += pool[index].Weight;
                    if (running >= pick) break;
                }
                ordered.Add(pool[index]);
                pool.RemoveAt(index);
            }
        }
        return ordered;
    }
}
