using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;

namespace Overlay.Nat.Ice;

/// <summary>
/// Host addresses (RFC 8445 §5.1.1.1): every up, non-loopback interface of the calling thread's network namespace,
/// IPv4 and IPv6 (no link-local), minus excluded interface names, so an overlay never gathers its own TAP.
/// </summary>
internal static class HostCandidateGatherer
{
    public static List<(IPAddress Address, string Interface)> Gather(IReadOnlyList<string> excluded, bool useIPv6)
    {
        var result = new List<(IPAddress, string)>();
        foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
        {
            if (nic.OperationalStatus is not (OperationalStatus.Up or OperationalStatus.Unknown)) continue;
            if (nic.NetworkInterfaceType == NetworkInterfaceType.Loopback || IsExcluded(nic.Name, excluded)) continue;
            foreach (var unicast in nic.GetIPProperties().UnicastAddresses)
            {
                var ip = unicast.Address;
                if (IPAddress.IsLoopback(ip)) continue;
                if (ip.AddressFamily == AddressFamily.InterNetworkV6)
                {
                    if (!useIPv6 || ip.IsIPv6LinkLocal || ip.IsIPv6SiteLocal || ip.IsIPv4MappedToIPv6) continue;
                }
                else if (ip.AddressFamily != AddressFamily.InterNetwork)
                {
                    continue;
                }
                result.Add((ip, nic.Name));
            }
        }
        return result;
    }

    internal static bool IsExcluded(string name, IReadOnlyList<string> excluded)
    {
        foreach (var pattern in excluded)
        {
            if (pattern.EndsWith('*') ? name.StartsWith(pattern[..^1], StringComparison.Ordinal) : name == pattern) return true;
        }
        return false;
    }
}
