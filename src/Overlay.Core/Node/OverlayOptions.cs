using System.Net;
using System.Net.Sockets;

namespace Overlay;

/// <summary>One overlay the node joins: its virtual NIC and its topology limits (EdgeVPN: one entry of <c>Overlays</c>).</summary>
public sealed record OverlayOptions
{
    /// <summary>The overlay's ID, shared by all its members.</summary>
    public required string Id { get; init; }

    /// <summary>The node's virtual NIC on this overlay (EdgeVPN key <c>NetDevice</c>).</summary>
    public NetDeviceOptions NetDevice { get; init; } = new();

    /// <summary>Successor links kept on the ring (EdgeVPN key <c>MinSuccessors</c>).</summary>
    public int MinSuccessors { get; init; } = 2;

    /// <summary>Long-distance links; null means ⌊log2 N⌋ for N known members (EdgeVPN key <c>MaxLongDistEdges</c>).</summary>
    public int? MaxLongDistEdges { get; init; }

    /// <summary>On-demand links between nodes that exchange much traffic (EdgeVPN key <c>MaxOnDemandEdges</c>).</summary>
    public int MaxOnDemandEdges { get; init; } = 2;

    /// <summary>
    /// Incoming links accepted beyond the node's own choices; further requests are refused. Null means twice the
    /// long-distance links, at least 16 (EdgeVPN key <c>MaxIncomingEdges</c>).
    /// </summary>
    public int? MaxIncomingEdges { get; init; }

    /// <summary>
    /// Addresses the overlay's switch learns from other members at most (and twice as many unicast paths). Any member can
    /// send frames from made-up addresses; past the bound nothing new is learned and frames to unlearned addresses are
    /// flooded, so they still arrive. Raise it for overlays with more than this many MACs.
    /// </summary>
    public int MaxLearnedAddresses { get; init; } = 65_536;

    /// <summary>Addresses of this node's own host (its MAC, and those of guests bridged behind the TAP) at most.</summary>
    public int MaxLocalAddresses { get; init; } = 1_024;

    /// <summary>Node IDs this node always links to (EdgeVPN key <c>StaticEdges</c>).</summary>
    public IReadOnlyList<string> StaticEdges { get; init; } = [];

    /// <summary>
    /// The roster groups whose contacts are this overlay's members (key <c>Groups</c>). Empty: every roster contact is,
    /// which suits a node with one overlay per account; a node whose one XMPP account serves several overlays must name
    /// each overlay's groups, so that a member of one never links into another.
    /// </summary>
    public IReadOnlyList<string> Groups { get; init; } = [];

    /// <summary>
    /// This overlay's own trust, which does not rest on the signaling server (key <c>TrustedCertificates</c>): PEM files of CA
    /// certificates (a peer's certificate must chain to one) or of peers' certificates (their keys are trusted), and key
    /// pins <c>sha256:</c> + 64 hex characters of the SHA-256 of a SubjectPublicKeyInfo. Checked in every link's handshake;
    /// a peer outside it is refused with a reason naming its key. Empty: the fingerprints signaling carries are trusted.
    /// </summary>
    public IReadOnlyList<string> TrustedCertificates { get; init; } = [];

    /// <summary>
    /// The application's own virtual NIC for this overlay (a batching device, a bridge to a VM or container) instead
    /// of the TAP or in-memory device <see cref="NetDevice"/> describes; the node owns it from its start and disposes
    /// of it when it stops. Not read from configuration (set it with <see cref="OverlayBuilder.WithDevice"/>).
    /// </summary>
    public Tap.IEthernetDevice? Device { get; init; }

    internal void Validate(string key)
    {
        if (string.IsNullOrWhiteSpace(Id) || Id.Length > 64 || Id.Any(c => !char.IsAsciiLetterOrDigit(c) && c is not '-' and not '_'))
            throw new OverlayConfigurationException(key, "the overlay ID must be 1-64 letters, digits, '-' or '_'");
        NetDevice.Validate($"{key}.NetDevice");
        if (Device is not null && NetDevice.Name is not null)
            throw new OverlayConfigurationException($"{key}.NetDevice.Name", "a TAP is named, but the application supplies the overlay's device: choose one");
        if (MinSuccessors is < 1 or > 16) throw new OverlayConfigurationException($"{key}.MinSuccessors", $"{MinSuccessors} is outside 1..16");
        if (MaxLongDistEdges is < 0 or > 64) throw new OverlayConfigurationException($"{key}.MaxLongDistEdges", $"{MaxLongDistEdges} is outside 0..64");
        if (MaxOnDemandEdges is < 0 or > 64) throw new OverlayConfigurationException($"{key}.MaxOnDemandEdges", $"{MaxOnDemandEdges} is outside 0..64");
        if (MaxIncomingEdges is < 1 or > 1024) throw new OverlayConfigurationException($"{key}.MaxIncomingEdges", $"{MaxIncomingEdges} is outside 1..1024");
        if (MaxLearnedAddresses is < 16 or > 16_777_216)
            throw new OverlayConfigurationException($"{key}.MaxLearnedAddresses", $"{MaxLearnedAddresses} is outside 16..16777216");
        if (MaxLocalAddresses is < 1 or > 65_536)
            throw new OverlayConfigurationException($"{key}.MaxLocalAddresses", $"{MaxLocalAddresses} is outside 1..65536");
        for (var i = 0; i < Groups.Count; i++)
            if (string.IsNullOrWhiteSpace(Groups[i]))
                throw new OverlayConfigurationException($"{key}.Groups[{i}]", "must name a roster group");
        for (var i = 0; i < TrustedCertificates.Count; i++)
            if (string.IsNullOrWhiteSpace(TrustedCertificates[i]))
                throw new OverlayConfigurationException($"{key}.TrustedCertificates[{i}]", "must name a PEM file or a key pin (sha256:...)");
        for (var i = 0; i < StaticEdges.Count; i++)
            if (!Switching.NodeId.IsValid(StaticEdges[i]))
                throw new OverlayConfigurationException($"{key}.StaticEdges[{i}]", $"'{StaticEdges[i]}' is not a node ID (32 lower-case hex characters)");
    }
}

/// <summary>The virtual NIC of one overlay.</summary>
public sealed record NetDeviceOptions
{
    /// <summary>Name of the Linux TAP device (at most 15 printable ASCII characters); null means an in-memory device (no root needed).</summary>
    public string? Name { get; init; }

    /// <summary>IPv4 address of the node on the overlay (EdgeVPN key <c>IP4</c>); optional.</summary>
    public string? IPv4Address { get; init; }

    /// <summary>Prefix length of <see cref="IPv4Address"/> (EdgeVPN key <c>PrefixLen</c>).</summary>
    public int PrefixLength { get; init; } = 24;

    /// <summary>IPv6 address with prefix, e.g. <c>fd00:10::1/64</c> (key <c>IP6</c>); optional.</summary>
    public string? IPv6Address { get; init; }

    /// <summary>The overlay MTU (EdgeVPN key <c>MTU</c>); 1410 fits the link's headers in a 1500-byte path.</summary>
    public int Mtu { get; init; } = Switching.Frames.EthernetFrame.OverlayMtu;

    /// <summary>MAC address as xx:xx:xx:xx:xx:xx (key <c>MAC</c>); null derives a stable locally administered one from the node ID.</summary>
    public string? MacAddress { get; init; }

    /// <summary>
    /// Checksum and TCP segmentation offload on the TAP (key <c>Offload</c>): far less CPU per byte for TCP; frames on
    /// links are the same either way. Turn off only to rule it out when diagnosing.
    /// </summary>
    public bool Offload { get; init; } = true;

    /// <summary>
    /// A TCP/IP stack in the process instead of a TAP (key <c>Userspace</c>): no root, and the program reaches the overlay
    /// through <see cref="OverlayNode.Network"/>. Needs an address; excludes <see cref="Name"/>.
    /// </summary>
    public bool UserspaceStack { get; init; }

    internal void Validate(string key)
    {
        if (UserspaceStack && Name is not null)
            throw new OverlayConfigurationException($"{key}.Userspace", "a NIC is a TAP (Name) or a userspace stack, not both");
        if (UserspaceStack && IPv4Address is null && IPv6Address is null)
            throw new OverlayConfigurationException($"{key}.Userspace", "a userspace stack needs an address (IP4 or IP6)");
        if (Name is not null && !Tap.Linux.InterfaceName.IsValid(Name))
            throw new OverlayConfigurationException($"{key}.Name", $"'{Name}' is not a valid interface name ({Tap.Linux.InterfaceName.Rule})");
        if (IPv4Address is not null && !(IPAddress.TryParse(IPv4Address, out var v4) && v4.AddressFamily == AddressFamily.InterNetwork))
            throw new OverlayConfigurationException($"{key}.IP4", $"'{IPv4Address}' is not an IPv4 address");
        if (PrefixLength is < 1 or > 32) throw new OverlayConfigurationException($"{key}.PrefixLen", $"{PrefixLength} is outside 1..32");
        if (IPv6Address is not null && !(IPNetwork.TryParse(IPv6Address, out var net6) && net6.BaseAddress.AddressFamily == AddressFamily.InterNetworkV6)
            && !IsIp6WithPrefix(IPv6Address))
            throw new OverlayConfigurationException($"{key}.IP6", $"'{IPv6Address}' is not an IPv6 address with prefix (e.g. fd00::1/64)");
        if (Mtu is < 576 or > 9000) throw new OverlayConfigurationException($"{key}.MTU", $"{Mtu} is outside 576..9000");
        if (MacAddress is not null && !IsUnicastMac(MacAddress))
            throw new OverlayConfigurationException($"{key}.MAC", $"'{MacAddress}' is not a unicast MAC address (xx:xx:xx:xx:xx:xx)");
    }

    private static bool IsIp6WithPrefix(string value)
    {
        var slash = value.IndexOf('/', StringComparison.Ordinal);
        return slash > 0
            && IPAddress.TryParse(value.AsSpan(0, slash), out var a) && a.AddressFamily == AddressFamily.InterNetworkV6
            && int.TryParse(value.AsSpan(slash + 1), out var p) && p is >= 1 and <= 128;
    }

    private static bool IsUnicastMac(string value)
    {
        var parts = value.Split(':');
        if (parts.Length != 6) return false;
        foreach (var part in parts)
            if (part.Length != 2 || !byte.TryParse(part, System.Globalization.NumberStyles.HexNumber, null, out _)) return false;
        return (Convert.ToByte(parts[0], 16) & 1) == 0;
    }
}
