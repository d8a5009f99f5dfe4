using System.Net;

namespace Overlay.TestSupport.Lab;

/// <summary>One host of a <see cref="NatLab"/>: its namespace, addresses and NAT router.</summary>
public sealed class LabHost
{
    internal LabHost(NetNamespace ns, NatKind kind, IPAddress address, IPAddress publicAddress, NetNamespace? router, string routerPublicInterface)
    {
        Namespace = ns;
        Kind = kind;
        Address = address;
        PublicAddress = publicAddress;
        Router = router;
        RouterPublicInterface = routerPublicInterface;
    }

    /// <summary>The host's namespace: create its sockets with <c>Namespace.Run(...)</c>.</summary>
    public NetNamespace Namespace { get; }

    /// <summary>How the host reaches the internet.</summary>
    public NatKind Kind { get; }

    /// <summary>The host's own address (private behind a NAT).</summary>
    public IPAddress Address { get; }

    /// <summary>The address the internet sees: the NAT router's public address, or <see cref="Address"/>.</summary>
    public IPAddress PublicAddress { get; }

    /// <summary>The NAT router's namespace, or null for a public host.</summary>
    public NetNamespace? Router { get; }

    internal string RouterPublicInterface { get; }

    /// <summary>iptables, or ip6tables in an IPv6 lab.</summary>
    internal string Tables { get; init; } = "iptables";

    private bool IsIPv6 => Tables == "ip6tables";

    /// <summary>Drops every UDP datagram to and from the host (at its router, or in the host for a public one).</summary>
    public void BlockUdp() => Udp("-I");

    /// <summary>Lifts <see cref="BlockUdp"/>.</summary>
    public void UnblockUdp() => Udp("-D");

    /// <summary>
    /// Makes the NAT router forget the host's UDP mappings and map its UDP flows to other ports from now on (as a home
    /// router that rebooted or ran out of table space would): peers that knew the old mapping can no longer reach it.
    /// </summary>
    public void RemapUdp()
    {
        var router = Router ?? throw new InvalidOperationException("a public host has no NAT mapping");
        router.Exec(Tables, $"-t nat -I POSTROUTING 1 -s {Address} -o {RouterPublicInterface} -p udp -j MASQUERADE --to-ports 61000-61999");
        var family = IsIPv6 ? " -f ipv6" : "";
        router.Exec("sh", $"-c \"conntrack -D{family} -p udp >/dev/null 2>&1 || true\""); // exits 1 when there was nothing to delete
    }

    /// <summary>
    /// Resets the host's TCP connections to <paramref name="server"/>:<paramref name="port"/> at its NAT, as a router that lost
    /// its TCP state does, and keeps resetting new ones until <see cref="AllowTcp"/>; UDP is untouched. The router answers
    /// every packet of such a flow, either way, with a reset, and the connection that is open now is reset at once.
    /// </summary>
    public void ResetTcp(IPAddress server, int port)
    {
        var router = Router ?? throw new InvalidOperationException("a public host has no NAT");
        // The open connection may be idle for a while: the resets both ends would get at their next packet are delivered
        // now (the host's socket is aborted, and its reset reaches the server), then the router refuses the flow.
        Namespace.Exec("ss", $"-K dst {server} dport = {port}");
        router.Exec(Tables, $"-I FORWARD -s {Address} -d {server} -p tcp --dport {port} -j REJECT --reject-with tcp-reset");
        router.Exec(Tables, $"-I FORWARD -s {server} -d {Address} -p tcp --sport {port} -j REJECT --reject-with tcp-reset");
    }

    /// <summary>Lifts <see cref="ResetTcp"/>.</summary>
    public void AllowTcp(IPAddress server, int port)
    {
        var router = Router ?? throw new InvalidOperationException("a public host has no NAT");
        router.Exec(Tables, $"-D FORWARD -s {Address} -d {server} -p tcp --dport {port} -j REJECT --reject-with tcp-reset");
        router.Exec(Tables, $"-D FORWARD -s {server} -d {Address} -p tcp --sport {port} -j REJECT --reject-with tcp-reset");
    }

    /// <summary>
    /// Drops UDP between this host and <paramref name="other"/> (another host's public address), at its router or in the
    /// host: a direct path between the two fails while both still reach the lab's server, and so its relay.
    /// </summary>
    public void BlockUdpWith(IPAddress other)
    {
        ArgumentNullException.ThrowIfNull(other);
        Udp("-I", $" -d {other}", $" -s {other}");
    }

    private void Udp(string op, string toFilter = "", string fromFilter = "")
    {
        if (Router is { } router)
        {
            router.Exec(Tables, $"{op} FORWARD -s {Address}{toFilter} -p udp -j DROP");
            router.Exec(Tables, $"{op} FORWARD -d {Address}{fromFilter} -p udp -j DROP");
        }
        else
        {
            Namespace.Exec(Tables, $"{op} OUTPUT{toFilter} -p udp -j DROP");
            Namespace.Exec(Tables, $"{op} INPUT{fromFilter} -p udp -j DROP");
        }
    }
}
