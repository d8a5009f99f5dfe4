using System.Net.NetworkInformation;
using NUnit.Framework;
using Overlay.Tap.Linux;
using Overlay.TestSupport;
using Overlay.TestSupport.Lab;

namespace Overlay.Tap.Tests.Linux;

/// <summary>
/// Two namespaces, a TAP in each, and this process copying frames between them like a cable: the
/// kernel's own ping and ping -6 (so ARP and IPv6 neighbour discovery) work through the devices.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class TapWireTests
{
    private NetNamespace _a = null!, _b = null!;
    private TapDevice _tapA = null!, _tapB = null!;

    [OneTimeSetUp]
    public void SetUp()
    {
        Prerequisites.RequireNetworkNamespaces();
        Prerequisites.RequireCommand("ping", "iputils-ping");
        var tag = Random.Shared.Next(0x100000).ToString("x5", System.Globalization.CultureInfo.InvariantCulture);
        _a = NetNamespace.Create($"owa{tag}");
        _b = NetNamespace.Create($"owb{tag}");
        _tapA = _a.Run(() => TapDevice.Create(new TapDeviceOptions
        {
            Name = "wire0", MacAddress = PhysicalAddress.Parse("02-77-00-00-00-01"),
            Addresses = [InterfaceAddress.Parse("10.77.0.1/24"), InterfaceAddress.Parse("fd77::1/64")],
        }));
        _tapB = _b.Run(() => TapDevice.Create(new TapDeviceOptions
        {
            Name = "wire0", MacAddress = PhysicalAddress.Parse("02-77-00-00-00-02"),
            Addresses = [InterfaceAddress.Parse("10.77.0.2/24"), InterfaceAddress.Parse("fd77::2/64")],
        }));
        _tapA.Start(new Cable(_tapB));
        _tapB.Start(new Cable(_tapA));
    }

    [OneTimeTearDown]
    public async Task TearDown()
    {
        if (_tapA is not null) await _tapA.DisposeAsync();
        if (_tapB is not null) await _tapB.DisposeAsync();
        _a?.Dispose();
        _b?.Dispose();
    }

    [TestCase("a", "10.77.0.2", "")]
    [TestCase("b", "10.77.0.1", "")]
    [TestCase("a", "fd77::2", "-6")]
    [TestCase("b", "fd77::1", "-6")]
    public void Kernel_ping_crosses_the_taps(string from, string to, string family)
    {
        var ns = from == "a" ? _a : _b;
        var output = ns.Exec("ping", $"{family} -c 3 -i 0.2 -W 2 {to}", TimeSpan.FromSeconds(20));
        Assert.That(output, Does.Contain("3 received"), output);
        Assert.That(_tapA.Counters.FramesRead, Is.GreaterThan(0));
        Assert.That(_tapB.Counters.FramesWritten, Is.GreaterThan(0));
    }

    private sealed class Cable(TapDevice other) : IFrameSink
    {
        public void OnFrame(ReadOnlySpan<byte> frame) => other.TryWrite(frame);
    }
}
