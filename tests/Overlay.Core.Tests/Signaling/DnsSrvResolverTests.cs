using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using NUnit.Framework;
using Overlay.Signaling.Xmpp;

namespace Overlay.Core.Tests.Signaling;

/// <summary>The SRV lookup (RFC 2782, RFC 6120 §3.2.1) against a fake DNS server on loopback.</summary>
public sealed class DnsSrvResolverTests
{
    /// <summary>A UDP DNS server on loopback answering every query with the given SRV records.</summary>
    internal sealed class FakeDnsServer : IAsyncDisposable
    {
        private readonly UdpClient _udp = new(new IPEndPoint(IPAddress.Loopback, 0));
        private readonly Task _loop;
        private readonly CancellationTokenSource _stop = new();

        public FakeDnsServer(params (ushort Priority, ushort Weight, ushort Port, string Target)[] records)
        {
            _loop = Task.Run(async () =>
            {
                while (!_stop.IsCancellationRequested)
                {
                    UdpReceiveResult query;
                    try { query = await _udp.ReceiveAsync(_stop.Token); }
                    catch (OperationCanceledException) { return; }
                    Queries++;
                    await _udp.SendAsync(Answer(query.Buffer, records), query.RemoteEndPoint);
                }
            });
        }

        public IPEndPoint EndPoint => (IPEndPoint)_udp.Client.LocalEndPoint!;

        public int Queries { get; private set; }

        private static byte[] Answer(byte[] query, (ushort Priority, ushort Weight, ushort Port, string Target)[] records)
        {
            var response = new List<byte>(query);
            response[2] = 0x81;
            response[3] = 0x80;
            response[6] = 0;
            response[7] = (byte)records.Length;
            foreach (var r in records)
            {
                var target = new List<byte>();
                foreach (var label in r.Target.Split('.', StringSplitOptions.RemoveEmptyEntries))
                {
                    target.Add((byte)label.Length);
                    target.AddRange(Encoding.ASCII.GetBytes(label));
                }
                target.Add(0);
                response.AddRange([0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 60]);
                var rdlength = (ushort)(6 + target.Count);
                response.AddRange([(byte)(rdlength >> 8), (byte)rdlength, (byte)(r.Priority >> 8), (byte)r.Priority, (byte)(r.Weight >> 8), (byte)r.Weight, (byte)(r.Port >> 8), (byte)r.Port]);
                response.AddRange(target);
            }
            return [.. response];
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _udp.Dispose();
            await _loop;
            _stop.Dispose();
        }
    }

    [Test]
    public async Task Records_come_back_in_priority_order()
    {
        await using var dns = new FakeDnsServer((20, 0, 5223, "b.example"), (10, 5, 5222, "a.example"));

        var records = await DnsSrvResolver.QueryAsync("_xmpp-client._tcp.example", dns.EndPoint, TimeSpan.FromSeconds(5), CancellationToken.None);

        Assert.That(records, Is.EqualTo(new[] { new SrvRecord(10, 5, 5222, "a.example"), new SrvRecord(20, 0, 5223, "b.example") }));
    }

    [Test]
    public void A_compression_pointer_loop_is_malformed_not_a_hang()
    {
        var query = DnsSrvResolver.BuildQuery(0x1234, "x.example");
        byte[] loop = [.. query[..12], 0xc0, 12, 0, 33, 0, 1];
        loop[2] = 0x81;
        Assert.That(DnsSrvResolver.TryParseResponse(loop, 0x1234, out _), Is.False);
    }

    [Test]
    public void A_response_with_another_id_is_ignored()
    {
        var query = DnsSrvResolver.BuildQuery(0x1234, "x.example");
        query[2] = 0x81;
        BinaryPrimitives.WriteUInt16BigEndian(query, 0x9999);
        Assert.That(DnsSrvResolver.TryParseResponse(query, 0x1234, out _), Is.False);
    }
}
