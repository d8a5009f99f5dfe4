using System.Net;
using System.Net.Sockets;

namespace Overlay.Tap;

/// <summary>An address of an interface with its prefix length, e.g. 10.10.0.1/24 or fd00::1/64.</summary>
/// <param name="Address">The interface's own address.</param>
/// <param name="PrefixLength">Network prefix length in bits.</param>
public readonly record struct InterfaceAddress(IPAddress Address, int PrefixLength)
{
    /// <summary>Parses "address/prefix".</summary>
    public static InterfaceAddress Parse(string cidr)
    {
        ArgumentNullException.ThrowIfNull(cidr);
        var slash = cidr.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0 || !IPAddress.TryParse(cidr.AsSpan(0, slash), out var address)
            || !int.TryParse(cidr.AsSpan(slash + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var prefix))
            throw new FormatException($"'{cidr}' is not address/prefix");
        var result = new InterfaceAddress(address, prefix);
        if (!result.IsValid) throw new FormatException($"'{cidr}': prefix length out of range");
        return result;
    }

    /// <summary>True when the prefix length fits the address family.</summary>
    public bool IsValid => Address is not null && PrefixLength >= 0
        && PrefixLength <= (Address.AddressFamily == AddressFamily.InterNetworkV6 ? 128 : 32);

    /// <inheritdoc />
    public override string ToString() => $"{Address}/{PrefixLength}";
}
