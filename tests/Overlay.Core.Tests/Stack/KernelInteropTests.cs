using System.Diagnostics;
using System.Net;
using System.Net.NetworkInformation;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using NUnit.Framework;
using Overlay.AspNetCore;
using Overlay.Signaling.InProcess;
using Overlay.Tap;
using Overlay.Tap.Linux;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;

namespace Overlay.Core.Tests.Stack;

/// <summary>
/// The userspace stack against the Linux kernel's own TCP/IP: one node's overlay NIC is a real TAP in a network namespace
/// of the test, the other's is the userspace stack; both nodes run in this process and meet in an in-process hub, with a
/// real link between them. The kernel's curl fetches from Kestrel served on the stack, and the stack's HttpClient
/// fetches from a kernel-side HTTP server (python3 -m http.server), each with SHA-256 compared, on a clean link, with
/// 2% of frames lost, and with frames reordered (a lossy device in front of the TAP), and over IPv6.
/// </summary>
[TestFixture]
[NonParallelizable]
[CancelAfter(600_000)]
public sealed class KernelInteropTests
{

    /// <summary>MiB each way; <c>OVERLAY_STACK_INTEROP_MIB=1024</c> runs the 1 GiB by hand.</summary>
    private static long SizeMiB(long ciDefault) =>
        long.TryParse(Environment.GetEnvironmentVariable("OVERLAY_STACK_INTEROP_MIB"), out var mib) ? mib : ciDefault;

    [TestCase(0.0, 0.0, 64, 1, "10.66.0.1", "10.66.0.2", 24)]
    [TestCase(0.02, 0.0, 16, 2, "10.66.0.1", "10.66.0.2", 24)]
    [TestCase(0.0, 0.05, 16, 3, "10.66.0.1", "10.66.0.2", 24)]
    [TestCase(0.0, 0.0, 16, 4, "fd66::1", "fd66::2", 64)]
    public async Task Kernel_curl_and_the_stacks_HttpClient_fetch_from_each_other_through_a_real_TAP(double loss, double reorder, long ciMiB, int seed,
        string kernelAddress, string stackAddress, int prefix, CancellationToken cancellationToken)
    {
        Prerequisites.RequireNetworkNamespaces();
        var curl = Prerequisites.RequireCommand("curl", "curl");
        var python = Prerequisites.RequireCommand("python3", "python3");
        var size = SizeMiB(ciMiB) << 20;
        TestContext.Out.WriteLine($"seed {seed}, loss {loss}, reorder {reorder}, {size >> 20} MiB each way");
        var tag = Random.Shared.Next(0x100000).ToString("x5", System.Globalization.CultureInfo.InvariantCulture);
        using var ns = NetNamespace.Create($"o{tag}-stk");
        var hub = new InProcessSignalingHub();
        LossyDevice? lossy = null;

        await using var kernelNode = OverlayNode.Create().UseInProcessSignaling(hub)
            .JoinOverlay("k", o => o.WithTap("stk0").WithAddress($"{kernelAddress}/{prefix}")).Build();
        kernelNode.DeviceFactory = overlay =>
        {
            var tap = ns.Run(() => TapDevice.Create(new TapDeviceOptions
            {
                Name = "stk0",
                MacAddress = PhysicalAddress.Parse("02-66-00-00-00-01"),
                Mtu = overlay.NetDevice.Mtu,
                Addresses = [InterfaceAddress.Parse($"{kernelAddress}/{prefix}")],
            }));
            if (loss == 0 && reorder == 0) return tap;
            return lossy = new LossyDevice(tap, loss, reorder, seed);
        };
        await kernelNode.StartAsync(cancellationToken);
        await using var stackNode = OverlayNode.Create().UseInProcessSignaling(hub)
            .JoinOverlay("k", o => o.WithUserspaceStack().WithAddress($"{stackAddress}/{prefix}")).Build();
        await stackNode.StartAsync(cancellationToken);
        await UserspaceNodes.WaitForLinkAsync(stackNode, TimeSpan.FromSeconds(30));
        var stack = stackNode.Network("k");

        // Kestrel on the stack: a page, and a stream of seeded random bytes of any length.
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseOverlayStack(stack).UseKestrel(k => k.Listen(IPAddress.Parse(stackAddress), 8080));
        await using var app = builder.Build();
        app.MapGet("/", () => "served by Kestrel on the overlay's userspace stack");
        app.MapGet("/bytes/{length:long}/{seed:int}", async (long length, int seed, HttpContext context) =>
        {
            context.Response.ContentLength = length;
            var random = new Random(seed);
            var buffer = new byte[64 * 1024];
            for (long sent = 0; sent < length;)
            {
                var chunk = (int)Math.Min(buffer.Length, length - sent);
                random.NextBytes(buffer.AsSpan(0, chunk));
                await context.Response.Body.WriteAsync(buffer.AsMemory(0, chunk), context.RequestAborted);
                sent += chunk;
            }
        });
        await app.StartAsync(cancellationToken);

        // The kernel's curl fetches from Kestrel: the page, then the large stream hashed on the kernel side.
        // An IPv6 address of the kernel's is tentative until duplicate address detection is done (RFC 4862 §5.4): retry.
        var stackHost = stackAddress.Contains(':', StringComparison.Ordinal) ? $"[{stackAddress}]" : stackAddress;
        var kernelHost = kernelAddress.Contains(':', StringComparison.Ordinal) ? $"[{kernelAddress}]" : kernelAddress;
        var page = ns.Exec(curl, $"-sS -g --retry 5 --retry-connrefused --retry-delay 1 --max-time 30 http://{stackHost}:8080/", TimeSpan.FromSeconds(60));
        Assert.That(page, Is.EqualTo("served by Kestrel on the overlay's userspace stack"));
        var expected = ExpectedHash(size, seed);
        var watch = Stopwatch.StartNew();
        var kernelHash = ns.Exec("sh", $"-c \"{curl} -sS -g --max-time 500 http://{stackHost}:8080/bytes/{size}/{seed} | sha256sum\"", TimeSpan.FromSeconds(520));
        var upSeconds = watch.Elapsed.TotalSeconds;
        Assert.That(kernelHash.Split(' ')[0], Is.EqualTo(Convert.ToHexStringLower(expected)));

        // The stack's HttpClient fetches a file from a kernel-side HTTP server.
        var directory = Directory.CreateTempSubdirectory("overlay-stack-");
        try
        {
            var file = Path.Combine(directory.FullName, "blob");
            var fileHash = await WriteFileAsync(file, size, seed + 1000, cancellationToken);
            using var server = ns.Start(python, $"-m http.server 8000 --bind {kernelAddress} --directory {directory.FullName}");
            try
            {
                using var http = new HttpClient(stack.CreateHttpHandler()) { Timeout = TimeSpan.FromMinutes(9) };
                await WaitForServerAsync(http, new Uri($"http://{kernelHost}:8000/"), cancellationToken);
                watch.Restart();
                await using var body = await http.GetStreamAsync(new Uri($"http://{kernelHost}:8000/blob"), cancellationToken);
                var (received, length) = await UserspaceNodes.ReadAllAsync(body, cancellationToken);
                var downSeconds = watch.Elapsed.TotalSeconds;
                Assert.That(length, Is.EqualTo(size));
                Assert.That(received, Is.EqualTo(fileHash));
                TestContext.Out.WriteLine($"kernel curl <- Kestrel on the stack: {size >> 20} MiB in {upSeconds:F1} s ({size * 8 / upSeconds / 1e6:F0} Mbit/s); " +
                    $"stack HttpClient <- kernel http.server: {downSeconds:F1} s ({size * 8 / downSeconds / 1e6:F0} Mbit/s); frames lost on purpose: {lossy?.Dropped ?? 0}, held frames released by the time limit: {lossy?.ReleasedLate ?? 0}; " +
                    $"stack retransmits {stack.Statistics.Retransmits}, timeouts {stack.Statistics.Timeouts}");
            }
            finally
            {
                server.Kill(entireProcessTree: true);
            }
        }
        finally
        {
            directory.Delete(recursive: true);
        }
        await app.StopAsync(cancellationToken);
    }

    private static byte[] ExpectedHash(long size, int seed)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var random = new Random(seed);
        var buffer = new byte[64 * 1024];
        for (long done = 0; done < size;)
        {
            var chunk = (int)Math.Min(buffer.Length, size - done);
            random.NextBytes(buffer.AsSpan(0, chunk));
            hash.AppendData(buffer, 0, chunk);
            done += chunk;
        }
        return hash.GetHashAndReset();
    }

    private static async Task<byte[]> WriteFileAsync(string path, long size, int seed, CancellationToken cancellationToken)
    {
        await using var file = File.Create(path);
        return await UserspaceNodes.WriteRandomAsync(file, size, seed, cancellationToken);
    }

    /// <summary>Until python's server listens, the stack's connection is refused (a reset); then it answers.</summary>
    private static async Task WaitForServerAsync(HttpClient http, Uri uri, CancellationToken cancellationToken)
    {
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                using var response = await http.GetAsync(uri, cancellationToken);
                return;
            }
            catch (HttpRequestException) when (attempt < 100)
            {
                await Task.Delay(100, cancellationToken);
            }
        }
    }
}
