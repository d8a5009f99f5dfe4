using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using NUnit.Framework;
using Overlay.Engine;
using Overlay.Tap;
using Overlay.Transport;

namespace Overlay.Core.Tests.Transport;

/// <summary>A node's NIC on its event loop: a device that failed is no longer watched (it would poll ready for ever).</summary>
public class DeviceReadinessTests
{
    /// <summary>A device whose readiness is a UDP socket that the test makes readable and nobody drains.</summary>
    private sealed class FailedDevice : IPolledEthernetDevice
    {
        public readonly Socket Socket = new(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        public int Polls;
        public readonly ManualResetEventSlim Polled = new();

        public FailedDevice() => Socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));

        public string Name => "failed0";
        public PhysicalAddress MacAddress => PhysicalAddress.None;
        public int Mtu => 1500;
        public EthernetDeviceCounters Counters { get; } = new();
        public IReadOnlyList<int> ReadinessDescriptors => [(int)Socket.Handle];
        public string? Fault => "gone";
        public void Start(IFrameSink sink) => throw new NotSupportedException();
        public void StartPolled(IFrameSink sink) { }
        public bool TryWrite(ReadOnlySpan<byte> frame) => false;

        public int PollReady(int queue, DeviceBatch batch)
        {
            Interlocked.Increment(ref Polls);
            Polled.Set();
            return -1;
        }

        public ValueTask DisposeAsync()
        {
            Socket.Dispose();
            return ValueTask.CompletedTask;
        }
    }

    private sealed class Counter : IReadableSource
    {
        public readonly ManualResetEventSlim Called = new();
        public void OnReadable(DataPathBatch batch) => Called.Set();
    }

    [Test]
    public async Task A_failed_device_is_polled_once_and_then_left_alone()
    {
        Assume.That(EventLoop.IsSupported, "the event loop is Linux epoll's");
        using var loop = EventLoop.Start("test io");
        await using var device = new FailedDevice();
        var readiness = new DeviceReadiness(device, 0, loop);
        readiness.Register();
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        client.SendTo([1], device.Socket.LocalEndPoint!); // readable, and stays so: nobody reads it
        Assert.That(device.Polled.Wait(TimeSpan.FromSeconds(5)), Is.True);
        // Another source's turn proves the loop went round again since; a still-watched device would be polled anew.
        using var other = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        other.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        for (var round = 0; round < 3; round++)
        {
            var counter = new Counter();
            var registration = loop.Register((int)other.Handle, counter);
            client.SendTo([2], other.LocalEndPoint!);
            Assert.That(counter.Called.Wait(TimeSpan.FromSeconds(5)), Is.True);
            loop.Unregister(registration);
            other.Receive(new byte[16]);
        }
        Assert.That(device.Polls, Is.EqualTo(1));
    }
}
