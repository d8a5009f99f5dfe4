using System.Net;
using System.Net.Sockets;

namespace Overlay.TestSupport.Lab;

/// <summary>Finds ports that nothing listens on, for servers a test starts.</summary>
internal static class FreePort
{
    public static int Udp(IPAddress address, NetNamespace? ns = null) => Find(address, SocketType.Dgram, ProtocolType.Udp, ns);

    public static int Tcp(IPAddress address, NetNamespace? ns = null) => Find(address, SocketType.Stream, ProtocolType.Tcp, ns);

    private static int Find(IPAddress address, SocketType type, ProtocolType protocol, NetNamespace? ns)
    {
        int Probe()
        {
            using var s = new Socket(address.AddressFamily, type, protocol);
            s.Bind(new IPEndPoint(address, 0));
            return ((IPEndPoint)s.LocalEndPoint!).Port;
        }
        return ns is null ? Probe() : ns.Run(Probe);
    }
}
