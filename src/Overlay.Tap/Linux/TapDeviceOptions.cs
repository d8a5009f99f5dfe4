using System.Net.NetworkInformation;
using Overlay.Switching.Frames;

namespace Overlay.Tap.Linux;

/// <summary>How to create a Linux TAP device.</summary>
public sealed record TapDeviceOptions
{
    /// <summary>Interface name, at most 15 characters.</summary>
    public required string Name { get; init; }

    /// <summary>MAC address; null keeps the random one the kernel assigns.</summary>
    public PhysicalAddress? MacAddress { get; init; }

    /// <summary>MTU, 68..65535. 1410 leaves room for the overlay's headers on a 1500-byte path.</summary>
    public int Mtu { get; init; } = EthernetFrame.OverlayMtu;

    /// <summary>Addresses to add, IPv4 and IPv6.</summary>
    public IReadOnlyList<InterfaceAddress> Addresses { get; init; } = [];

    /// <summary>Number of queues (IFF_MULTI_QUEUE when above 1), each with its own receive loop.</summary>
    public int Queues { get; init; } = 1;

    /// <summary>Keep the device after dispose (TUNSETPERSIST); by default it disappears with its last descriptor.</summary>
    public bool Persist { get; init; }

    /// <summary>
    /// Checksum and TCP segmentation offload (IFF_VNET_HDR, TSO4/TSO6): the host hands over TCP segments up to 64 KiB
    /// that the device cuts into frames, and takes merged runs of received segments in one write. Far fewer system calls
    /// and trips through the host's stack per byte; frames on links are the same either way.
    /// </summary>
    public bool Offload { get; init; } = true;

    /// <summary>Bring the link up after configuring it.</summary>
    public bool Up { get; init; } = true;

    /// <summary>The TUN/TAP driver's device node.</summary>
    internal string DevicePath { get; init; } = "/dev/net/tun";
}
