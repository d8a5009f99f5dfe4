using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Overlay.Nat.Stun;

/// <summary>
/// A transport address as carried in STUN address attributes, held by value (no heap object) so parsing
/// stays allocation-free; <see cref="ToEndPoint"/> makes an <see cref="IPEndPoint"/> when one is wanted.
/// </summary>
internal readonly struct StunAddress : IEquatable<StunAddress>
{
    private readonly ulong _high;
    private readonly ulong _low;

    /// <summary>Address family (<see cref="AddressFamily.InterNetwork"/> or <see cref="AddressFamily.InterNetworkV6"/>).</summary>
    public AddressFamily Family { get; }

    /// <summary>UDP port.</summary>
    public ushort Port { get; }

    /// <summary>Makes an address from raw bytes (4 or 16) and a port.</summary>
    public StunAddress(ReadOnlySpan<byte> address, ushort port)
    {
        Port = port;
        if (address.Length == 4)
        {
            Family = AddressFamily.InterNetwork;
            _low = BinaryPrimitives.ReadUInt32BigEndian(address);
        }
        else if (address.Length == 16)
        {
            Family = AddressFamily.InterNetworkV6;
            _high = BinaryPrimitives.ReadUInt64BigEndian(address);
            _low = BinaryPrimitives.ReadUInt64BigEndian(address[8..]);
        }
        else
        {
            throw new ArgumentException("an address is 4 or 16 bytes", nameof(address));
        }
    }

    /// <summary>Makes an address from an endpoint.</summary>
    public StunAddress(IPEndPoint endPoint) : this(AddressBytes(endPoint), (ushort)endPoint.Port) { }

    private static byte[] AddressBytes(IPEndPoint endPoint)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        return endPoint.Address.GetAddressBytes();
    }

    /// <summary>Length of the raw address: 4 or 16.</summary>
    public int AddressLength => Family == AddressFamily.InterNetworkV6 ? 16 : 4;

    /// <summary>Writes the raw address bytes; returns the count (4 or 16).</summary>
    public int WriteAddress(Span<byte> destination)
    {
        if (Family == AddressFamily.InterNetworkV6)
        {
            BinaryPrimitives.WriteUInt64BigEndian(destination, _high);
            BinaryPrimitives.WriteUInt64BigEndian(destination[8..], _low);
            return 16;
        }
        BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)_low);
        return 4;
    }

    /// <summary>Converts to an <see cref="IPEndPoint"/> (allocates).</summary>
    public IPEndPoint ToEndPoint()
    {
        Span<byte> bytes = stackalloc byte[16];
        var n = WriteAddress(bytes);
        return new IPEndPoint(new IPAddress(bytes[..n]), Port);
    }

    /// <inheritdoc />
    public bool Equals(StunAddress other) => Family == other.Family && Port == other.Port && _high == other._high && _low == other._low;

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is StunAddress other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Family, Port, _high, _low);

    /// <summary>Equality.</summary>
    public static bool operator ==(StunAddress left, StunAddress right) => left.Equals(right);

    /// <summary>Inequality.</summary>
    public static bool operator !=(StunAddress left, StunAddress right) => !left.Equals(right);

    /// <inheritdoc />
    public override string ToString() => ToEndPoint().ToString();
}
