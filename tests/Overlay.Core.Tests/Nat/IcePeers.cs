using System.Threading.Channels;
using NUnit.Framework;
using Overlay.Nat.Ice;
using Overlay.Transport;

namespace Overlay.Core.Tests.Nat;

/// <summary>Connects two agents in-process (no signaling server) and moves datagrams over their channels.</summary>
internal static class IcePeers
{
    public sealed class Inbox : IDatagramReceiver
    {
        public Channel<byte[]> Received { get; } = Channel.CreateUnbounded<byte[]>();

        public void OnDatagram(ReadOnlySpan<byte> datagram, DataPathBatch? batch) => Received.Writer.TryWrite(datagram.ToArray());
    }

    /// <summary>Gathers, swaps credentials and candidates, starts both and waits for both selected pairs.</summary>
    public static async Task<(IceSelectedPair A, IceSelectedPair B)> ConnectAsync(IceAgent a, IceAgent b, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await Task.WhenAll(a.GatherAsync(cts.Token), b.GatherAsync(cts.Token));
        Exchange(a, b);
        a.Start();
        b.Start();
        try
        {
            var pairs = await Task.WhenAll(a.WaitForSelectedPairAsync(cts.Token), b.WaitForSelectedPairAsync(cts.Token));
            return (pairs[0], pairs[1]);
        }
        catch (Exception)
        {
            foreach (var (name, agent) in new[] { ("A", a), ("B", b) })
            {
                TestContext.Out.WriteLine($"{name} {agent.State} {agent.Role} {agent.Counters} {agent.Diagnostics}");
                foreach (var c in agent.LocalCandidates) TestContext.Out.WriteLine($"  local  {c}");
                foreach (var c in agent.RemoteCandidates) TestContext.Out.WriteLine($"  remote {c}");
                foreach (var p in agent.Pairs) TestContext.Out.WriteLine($"  pair   {p}");
            }
            throw;
        }
    }

    public static void Exchange(IceAgent a, IceAgent b)
    {
        a.SetRemoteCredentials(b.LocalCredentials);
        b.SetRemoteCredentials(a.LocalCredentials);
        foreach (var c in b.LocalCandidates) a.AddRemoteCandidate(Reparse(c));
        foreach (var c in a.LocalCandidates) b.AddRemoteCandidate(Reparse(c));
    }

    /// <summary>Candidates travel as their RFC 8839 strings, as they would through signaling.</summary>
    private static IceCandidate Reparse(IceCandidate c)
    {
        Assert.That(IceCandidate.TryParse(c.ToString(), out var parsed), Is.True, c.ToString());
        return parsed!;
    }

    /// <summary>Sends datagrams both ways over the channels and checks they arrive intact.</summary>
    public static async Task ExchangeDatagramsAsync(IceAgent a, IceAgent b, int count = 20)
    {
        var inboxA = new Inbox();
        var inboxB = new Inbox();
        a.Channel.SetReceiver(inboxA);
        b.Channel.SetReceiver(inboxB);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await Send(a, inboxB, 0xC0, count, cts.Token);
        await Send(b, inboxA, 0xC1, count, cts.Token);
    }

    private static async Task Send(IceAgent from, Inbox to, byte kind, int count, CancellationToken ct)
    {
        var headroom = from.Channel.Headroom;
        // Until the far side has selected too, a few datagrams may be refused; resend until one arrives.
        for (var i = 0; i < count; i++)
        {
            var buffer = new byte[headroom + 100];
            buffer[headroom] = kind;
            buffer[headroom + 1] = (byte)i;
            Array.Fill(buffer, (byte)i, headroom + 2, 98);
            byte[] got;
            while (true)
            {
                Assert.That(from.Channel.TrySend(buffer, 100), Is.True);
                using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
                wait.CancelAfter(TimeSpan.FromMilliseconds(500));
                try
                {
                    got = await to.Received.Reader.ReadAsync(wait.Token);
                    break;
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                }
            }
            Assert.That(got, Is.EqualTo(buffer.AsSpan(headroom).ToArray()));
        }
    }
}
