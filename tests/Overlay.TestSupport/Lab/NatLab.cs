using System.Net;

namespace Overlay.TestSupport.Lab;

/// <summary>
/// A small internet of test hosts in network namespaces:
/// <list type="bullet">
/// <item>an "internet" namespace holding a bridge for 198.51.100.0/24 (TEST-NET-2, RFC 5737);</item>
/// <item>a server namespace at 198.51.100.10 running coturn (STUN/TURN on 3478) and, on request, prosody (XMPP on 5222);</item>
/// <item>per host i (0-based): behind a NAT router with LAN 10.(i+1).0.0/24 (host .2, router .1) and public
/// address 198.51.100.(21+i), MASQUERADE for a cone NAT and MASQUERADE --random-fully for a symmetric one,
/// inbound only for existing mappings; or, for <see cref="NatKind.Public"/>, directly on the bridge at 198.51.100.(41+i).</item>
/// </list>
/// Every name carries a random prefix, so labs of parallel test runs never meet.
/// <para>
/// With <c>ipv6: true</c> the same lab has no IPv4 at all but loopback: the bridge holds 2001:db8:100::/64 (the
/// documentation prefix, RFC 3849, standing for global addresses), the server is 2001:db8:100::10, NAT routers
/// 2001:db8:100::(21+i) and public hosts 2001:db8:100::(41+i); a LAN behind a router is fd00:(i+1)::/64 (unique-local,
/// host ::2, router ::1), translated by ip6tables MASQUERADE (NAT66, as some CPE and mobile networks do) with the same
/// filtering as the IPv4 routers. Addresses are added without duplicate address detection, so they are usable at once.
/// </para>
/// </summary>
public sealed class NatLab : IAsyncDisposable
{
    private readonly string _prefix;
    private readonly List<NetNamespace> _namespaces = [];
    private readonly List<LabHost> _hosts = [];
    private CoturnServer? _coturn;
    private NetNamespace? _inet;
    private ProsodyServer? _prosody;

    private NatLab(string prefix, bool ipv6)
    {
        _prefix = prefix;
        IsIPv6 = ipv6;
        ServerAddress = IPAddress.Parse(ipv6 ? "2001:db8:100::10" : "198.51.100.10");
    }

    /// <summary>True for the IPv6-only lab.</summary>
    public bool IsIPv6 { get; }

    /// <summary>The server's address on the internet bridge.</summary>
    public IPAddress ServerAddress { get; }

    /// <summary>iptables or ip6tables: the one for the lab's family.</summary>
    internal string Tables => IsIPv6 ? "ip6tables" : "iptables";

    /// <summary>An address on the internet bridge: <paramref name="host"/> is the last byte (IPv4) or group (IPv6, written the same).</summary>
    private IPAddress Public(int host) => IPAddress.Parse(IsIPv6 ? $"2001:db8:100::{host}" : $"198.51.100.{host}");

    /// <summary>Host part <paramref name="host"/> of LAN <paramref name="n"/>, with the prefix length.</summary>
    private string Lan(int n, int host) => IsIPv6 ? $"fd00:{n}::{host}" : $"10.{n}.0.{host}";

    private int PrefixLength => IsIPv6 ? 64 : 24;

    /// <summary><c>ip addr add</c> arguments: without duplicate address detection for IPv6 (no other host claims them).</summary>
    private string AddressArguments(string address, string device) => $"addr add {address}/{PrefixLength} dev {device}{(IsIPv6 ? " nodad" : "")}";

    /// <summary>coturn's STUN/TURN endpoint (long-term credentials node/secret, realm overlay.test).</summary>
    public IPEndPoint StunTurn => new(ServerAddress, 3478);

    /// <summary>prosody's client endpoint (when started with xmpp: true).</summary>
    public IPEndPoint Xmpp => new(ServerAddress, 5222);

    /// <summary>The XMPP domain.</summary>
    public string XmppDomain => "overlay.test";

    /// <summary>PEM of prosody's self-signed certificate, to trust as a CA.</summary>
    public string CaCertificatePath => _prosody?.CaCertificatePath ?? throw new InvalidOperationException("the lab was started without xmpp");

    /// <summary>The lab's TURN server.</summary>
    public CoturnServer Coturn => _coturn!;

    /// <summary>The lab's XMPP server, when started with xmpp: true.</summary>
    public ProsodyServer Prosody => _prosody ?? throw new InvalidOperationException("the lab was started without xmpp");

    /// <summary>The hosts, in the order they were asked for.</summary>
    public IReadOnlyList<LabHost> Hosts => _hosts;

    /// <summary>The server's namespace.</summary>
    public NetNamespace Server { get; private set; } = null!;

    /// <summary>Builds the lab and starts its services. Needs root, iproute2 and iptables.</summary>
    public static async Task<NatLab> StartAsync(IReadOnlyList<NatKind> hosts, bool xmpp = false, CancellationToken ct = default, bool turnTls = false,
        bool ipv6 = false)
    {
        ArgumentNullException.ThrowIfNull(hosts);
        Prerequisites.RequireNetworkNamespaces();
        if (ipv6) Prerequisites.RequireCommand("ip6tables", "iptables");
        var lab = new NatLab($"o{Random.Shared.Next(0x100000):x5}", ipv6);
        try
        {
            lab.Build(hosts);
            lab._coturn = await CoturnServer.StartAsync(lab.Server, lab.ServerAddress, ct, tlsPort: turnTls ? 443 : null).ConfigureAwait(false);
            if (xmpp) lab._prosody = await ProsodyServer.StartAsync(lab.Server, lab.ServerAddress, ct).ConfigureAwait(false);
        }
        catch
        {
            await lab.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        return lab;
    }

    /// <summary>Stops prosody and starts it again (clients see their streams close).</summary>
    public async Task RestartXmppAsync(CancellationToken ct = default)
    {
        await Prosody.StopAsync().ConfigureAwait(false);
        await Prosody.StartAgainAsync(ct).ConfigureAwait(false);
    }

    private NetNamespace NewNamespace(string suffix)
    {
        var ns = NetNamespace.Create($"{_prefix}-{suffix}");
        _namespaces.Add(ns);
        return ns;
    }

    private void Build(IReadOnlyList<NatKind> kinds)
    {
        var inet = _inet = NewNamespace("inet");
        // No MLD snooping: with no querier on the bridge, neighbour discovery's multicast is simply flooded.
        inet.Exec("ip", IsIPv6 ? "link add br0 type bridge mcast_snooping 0" : "link add br0 type bridge");
        inet.Exec("ip", "link set br0 up");
        Server = NewNamespace("srv");
        Attach(inet, Server, "s", ServerAddress);

        for (var i = 0; i < kinds.Count; i++)
        {
            var n = i + 1;
            var host = NewNamespace($"h{n}");
            if (kinds[i] == NatKind.Public)
            {
                var address = Public(41 + i);
                Attach(inet, host, $"p{n}", address);
                _hosts.Add(new LabHost(host, kinds[i], address, address, null, "") { Tables = Tables });
                continue;
            }

            var router = NewNamespace($"nat{n}");
            var publicAddress = Public(21 + i);
            var wan = Attach(inet, router, $"n{n}", publicAddress);
            var lan = $"{_prefix}-l{n}";
            Prerequisites.Run("ip", $"link add {lan} type veth peer name {lan}h");
            Prerequisites.Run("ip", $"link set {lan} netns {router.Name}");
            Prerequisites.Run("ip", $"link set {lan}h netns {host.Name}");
            router.Exec("ip", AddressArguments(Lan(n, 1), lan));
            router.Exec("ip", $"link set {lan} up");
            var hostAddress = IPAddress.Parse(Lan(n, 2));
            host.Exec("ip", AddressArguments(hostAddress.ToString(), $"{lan}h"));
            host.Exec("ip", $"link set {lan}h up");
            host.Exec("ip", $"{(IsIPv6 ? "-6 " : "")}route add default via {Lan(n, 1)}");
            router.Exec("sysctl", IsIPv6 ? "-qw net.ipv6.conf.all.forwarding=1" : "-qw net.ipv4.ip_forward=1");
            var random = kinds[i] == NatKind.Symmetric ? " --random-fully" : "";
            router.Exec(Tables, $"-t nat -A POSTROUTING -o {wan} -j MASQUERADE{random}");
            // Like a home router: nothing comes in unless a mapping made from inside exists.
            router.Exec(Tables, $"-A FORWARD -i {wan} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT");
            router.Exec(Tables, $"-A FORWARD -i {wan} -j DROP");
            // A home router's firewall also drops unsolicited UDP to itself. Without it, Linux conntrack confirms an
            // entry for a peer's first (unsolicited) ICE check, the host's own outgoing check then clashes with it and
            // MASQUERADE gives it a new source port: "cone" turns symmetric under simultaneous open. Dropped packets
            // are never confirmed, so the mapping keeps its port as an endpoint-independent NAT's would.
            router.Exec(Tables, $"-A INPUT -i {wan} -p udp -j DROP");
            _hosts.Add(new LabHost(host, kinds[i], hostAddress, publicAddress, router, wan) { Tables = Tables });
        }
    }

    /// <summary>
    /// Lowers the MTU of public host <paramref name="index"/>'s way to the internet to <paramref name="mtu"/>: on its own
    /// interface (its kernel refuses or fragments larger packets), or with <paramref name="silently"/> only on the bridge's
    /// side, where larger packets in either direction vanish without an ICMP message (a black hole, as a tunnel with a
    /// smaller MTU that filters ICMP makes; from the host up to 4 bytes more pass) for all but the host's TCP to the server.
    /// </summary>
    public void SetPathMtu(int index, int mtu, bool silently = false)
    {
        if (_hosts[index].Kind != NatKind.Public) throw new InvalidOperationException("only a public host's link is lowered");
        var inside = $"{_prefix}-p{index + 1}";
        if (silently)
        {
            // Toward the host the limit is exact; from it a veth lets frames 4 bytes over its MTU in (room for a VLAN tag,
            // is_skb_forwardable()), so that way takes up to mtu + 4.
            _inet!.Exec("ip", $"link set {inside}b mtu {mtu}");
            // The lab's services are not under test: the host's TCP to the server (XMPP) keeps to the size by a route MTU,
            // which the overlay's UDP sockets ignore (they probe for themselves).
            _hosts[index].Namespace.Exec("ip", $"route add {ServerAddress}/{(IsIPv6 ? 128 : 32)} dev {inside} mtu lock {mtu}");
        }
        else
        {
            _hosts[index].Namespace.Exec("ip", $"link set {inside} mtu {mtu}");
        }
    }

    /// <summary>Joins <paramref name="ns"/> to the internet bridge with a public address; returns its interface name.</summary>
    private string Attach(NetNamespace inet, NetNamespace ns, string tag, IPAddress address)
    {
        var inside = $"{_prefix}-{tag}";
        var bridgeSide = $"{inside}b";
        Prerequisites.Run("ip", $"link add {inside} type veth peer name {bridgeSide}");
        Prerequisites.Run("ip", $"link set {inside} netns {ns.Name}");
        Prerequisites.Run("ip", $"link set {bridgeSide} netns {inet.Name}");
        inet.Exec("ip", $"link set {bridgeSide} master br0");
        inet.Exec("ip", $"link set {bridgeSide} up");
        ns.Exec("ip", AddressArguments(address.ToString(), inside));
        ns.Exec("ip", $"link set {inside} up");
        return inside;
    }

    /// <summary>Stops the services and removes every namespace (and with them every veth).</summary>
    public async ValueTask DisposeAsync()
    {
        if (_prosody is not null) await _prosody.DisposeAsync().ConfigureAwait(false);
        if (_coturn is not null) await _coturn.DisposeAsync().ConfigureAwait(false);
        for (var i = _namespaces.Count - 1; i >= 0; i--) _namespaces[i].Dispose();
        _namespaces.Clear();
    }
}
