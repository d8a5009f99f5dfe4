using System.Net;
using System.Security.Cryptography;
using Overlay.Signaling.InProcess;

namespace Overlay.Core.Tests.Stack;

/// <summary>Nodes of one process that join an overlay through the userspace stack (no TAP, no root), meeting in an in-process hub.</summary>
internal static class UserspaceNodes
{
    public const string OverlayId = "stk";

    /// <summary>Starts a node whose overlay NIC is the userspace stack with <paramref name="addresses"/>.</summary>
    public static async Task<OverlayNode> StartAsync(InProcessSignalingHub hub, params string[] addresses)
    {
        var node = OverlayNode.Create()
            .UseInProcessSignaling(hub)
            .JoinOverlay(OverlayId, o =>
            {
                o.WithUserspaceStack();
                foreach (var address in addresses) o.WithAddress(address);
            })
            .Build();
        await node.StartAsync();
        return node;
    }

    /// <summary>Completes when <paramref name="node"/> has a link up (or fails after <paramref name="timeout"/>).</summary>
    public static async Task WaitForLinkAsync(OverlayNode node, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var watch = node.WatchLinksAsync(cts.Token).GetAsyncEnumerator(cts.Token);
        try
        {
            if ((await node.GetStatusAsync()).Overlays[0].Links.Any(l => l.State == LinkChange.Up)) return;
            while (await watch.MoveNextAsync())
                if (watch.Current.Change == LinkChange.Up) return;
        }
        finally
        {
            await watch.DisposeAsync();
        }
    }

    /// <summary>SHA-256 of <paramref name="size"/> seeded random bytes written to <paramref name="stream"/>.</summary>
    public static async Task<byte[]> WriteRandomAsync(Stream stream, long size, int seed, CancellationToken cancellationToken)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var random = new Random(seed);
        var buffer = new byte[64 * 1024];
        for (long sent = 0; sent < size;)
        {
            var chunk = (int)Math.Min(buffer.Length, size - sent);
            random.NextBytes(buffer.AsSpan(0, chunk));
            hash.AppendData(buffer, 0, chunk);
            await stream.WriteAsync(buffer.AsMemory(0, chunk), cancellationToken);
            sent += chunk;
        }
        return hash.GetHashAndReset();
    }

    /// <summary>SHA-256 and length of what <paramref name="stream"/> yields up to its end.</summary>
    public static async Task<(byte[] Hash, long Length)> ReadAllAsync(Stream stream, CancellationToken cancellationToken)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[64 * 1024];
        long length = 0;
        int n;
        while ((n = await stream.ReadAsync(buffer, cancellationToken)) > 0)
        {
            hash.AppendData(buffer, 0, n);
            length += n;
        }
        return (hash.GetHashAndReset(), length);
    }

    public static IPAddress Address(string cidr) => IPAddress.Parse(cidr[..cidr.IndexOf('/', StringComparison.Ordinal)]);
}
