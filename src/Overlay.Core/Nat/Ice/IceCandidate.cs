using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Overlay.Nat.Ice;

/// <summary>
/// One ICE candidate of component 1 over UDP, with its serialization as the RFC 8839 §5.1 candidate-attribute
/// value: <c>candidate:&lt;foundation&gt; 1 udp &lt;priority&gt; &lt;address&gt; &lt;port&gt; typ host|srflx|prflx|relay [raddr &lt;a&gt; rport &lt;p&gt;]</c>.
/// Addresses are written bare (IPv6 without brackets) and fields are separated by spaces, so IPv6 is unambiguous.
/// </summary>
/// <param name="Foundation">1–32 ice-chars; equal for candidates of one type, base and server (RFC 8445 §5.1.1.3).</param>
/// <param name="Priority">RFC 8445 §5.1.2.1.</param>
/// <param name="Address">The candidate's transport address.</param>
/// <param name="Type">Its type.</param>
/// <param name="RelatedAddress">Base (srflx, prflx) or mapped address (relay); null for host.</param>
internal sealed record IceCandidate(string Foundation, uint Priority, IPEndPoint Address, IceCandidateType Type, IPEndPoint? RelatedAddress = null)
{
    /// <summary>RFC 8445 §5.1.2.2 recommended type preferences.</summary>
    public static int TypePreference(IceCandidateType type) => type switch
    {
        IceCandidateType.Host => 126,
        IceCandidateType.PeerReflexive => 110,
        IceCandidateType.ServerReflexive => 100,
        _ => 0,
    };

    /// <summary>RFC 8445 §5.1.2.1: 2^24·type preference + 2^8·local preference + (256 − component ID).</summary>
    public static uint ComputePriority(IceCandidateType type, int localPreference, int component = 1) =>
        (uint)((TypePreference(type) << 24) + ((localPreference & 0xFFFF) << 8) + (256 - component));

    /// <summary>The component ID (always 1: one component carries everything).</summary>
    public int Component => 1;

    private static string TypeName(IceCandidateType type) => type switch
    {
        IceCandidateType.Host => "host",
        IceCandidateType.ServerReflexive => "srflx",
        IceCandidateType.PeerReflexive => "prflx",
        _ => "relay",
    };

    /// <summary>The candidate-attribute string (RFC 8839 §5.1), including the "candidate:" prefix.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder(96);
        sb.Append(CultureInfo.InvariantCulture, $"candidate:{Foundation} {Component} udp {Priority} {Address.Address} {Address.Port} typ {TypeName(Type)}");
        if (RelatedAddress is not null)
            sb.Append(CultureInfo.InvariantCulture, $" raddr {RelatedAddress.Address} rport {RelatedAddress.Port}");
        return sb.ToString();
    }

    /// <summary>Parses a candidate-attribute (with or without "a=" and "candidate:"); false for anything malformed
    /// or for candidates this agent cannot use (not UDP, not component 1, FQDN addresses).</summary>
    public static bool TryParse(string? text, out IceCandidate? candidate)
    {
        candidate = null;
        if (string.IsNullOrWhiteSpace(text) || text.Length > 512) return false;
        var s = text.Trim();
        if (s.StartsWith("a=", StringComparison.Ordinal)) s = s[2..];
        if (s.StartsWith("candidate:", StringComparison.Ordinal)) s = s["candidate:".Length..];
        var f = s.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (f.Length < 8 || !IsFoundation(f[0]) || f[1] != "1" || !f[2].Equals("udp", StringComparison.OrdinalIgnoreCase)) return false;
        if (!uint.TryParse(f[3], NumberStyles.None, CultureInfo.InvariantCulture, out var priority) || priority == 0) return false;
        if (!TryEndPoint(f[4], f[5], out var address) || f[6] != "typ") return false;
        IceCandidateType type;
        switch (f[7])
        {
            case "host": type = IceCandidateType.Host; break;
            case "srflx": type = IceCandidateType.ServerReflexive; break;
            case "prflx": type = IceCandidateType.PeerReflexive; break;
            case "relay": type = IceCandidateType.Relayed; break;
            default: return false;
        }
        IPEndPoint? related = null;
        string? raddr = null, rport = null;
        // RFC 8839 §5.1: unknown extension attributes (name value pairs) are ignored.
        for (var i = 8; i + 1 < f.Length; i += 2)
        {
            if (f[i] == "raddr") raddr = f[i + 1];
            else if (f[i] == "rport") rport = f[i + 1];
        }
        if (raddr is not null && rport is not null && TryEndPoint(raddr, rport, out var r)) related = r;
        candidate = new IceCandidate(f[0], priority, address!, type, related);
        return true;
    }

    private static bool TryEndPoint(string address, string port, out IPEndPoint? endPoint)
    {
        endPoint = null;
        if (!IPAddress.TryParse(address, out var ip) || ip.AddressFamily is not (AddressFamily.InterNetwork or AddressFamily.InterNetworkV6)) return false;
        if (!ushort.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out var p)) return false;
        endPoint = new IPEndPoint(ip, p);
        return true;
    }

    private static bool IsFoundation(string s)
    {
        if (s.Length is 0 or > 32) return false;
        foreach (var c in s)
            if (!IceCredentials.IsIceChar(c)) return false;
        return true;
    }
}
