using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Overlay.Stack.Ip;

/// <summary>
/// Addresses as the stack keeps them: one 128-bit value for both families, IPv4 as an IPv4-mapped IPv6 address
/// (RFC 4291 §2.5.5.2), so a connection's key is the same shape for either; MAC addresses as the low 48 bits of a ulong.
/// </summary>
internal static class Addresses
{
    private static readonly UInt128 MappedPrefix = (UInt128)0xffff << 32;

    public static bool IsV4(UInt128 address) => address >> 32 == 0xffff;

    public static UInt128 FromV4(uint address) => MappedPrefix | address;

    public static uint ToV4(UInt128 address) => (uint)address;

    public static UInt128 ReadV4(ReadOnlySpan<byte> bytes) => FromV4(BinaryPrimitives.ReadUInt32BigEndian(bytes));

    public static UInt128 ReadV6(ReadOnlySpan<byte> bytes) => BinaryPrimitives.ReadUInt128BigEndian(bytes);

    public static void WriteV4(Span<byte> bytes, UInt128 address) => BinaryPrimitives.WriteUInt32BigEndian(bytes, ToV4(address));

    public static void WriteV6(Span<byte> bytes, UInt128 address) => BinaryPrimitives.WriteUInt128BigEndian(bytes, address);

    public static UInt128 From(IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            address.TryWriteBytes(bytes, out _);
            return ReadV4(bytes);
        }
        if (address.IsIPv4MappedToIPv6) return From(address.MapToIPv4());
        address.TryWriteBytes(bytes, out _);
        return ReadV6(bytes);
    }

    public static IPAddress ToIPAddress(UInt128 address)
    {
        Span<byte> bytes = stackalloc byte[16];
        if (IsV4(address))
        {
            WriteV4(bytes, address);
            return new IPAddress(bytes[..4]);
        }
        WriteV6(bytes, address);
        return new IPAddress(bytes);
    }

    public static ulong ReadMac(ReadOnlySpan<byte> bytes) =>
        (ulong)BinaryPrimitives.ReadUInt16BigEndian(bytes) << 32 | BinaryPrimitives.ReadUInt32BigEndian(bytes[2..]);

    public static void WriteMac(Span<byte> bytes, ulong mac)
    {
        BinaryPrimitives.WriteUInt16BigEndian(bytes, (ushort)(mac >> 32));
        BinaryPrimitives.WriteUInt32BigEndian(bytes[2..], (uint)mac);
    }

    /// <summary>The solicited-node multicast address of <paramref name="address"/> (RFC 4291 §2.7.1): ff02::1:ffXX:XXXX.</summary>
    public static UInt128 SolicitedNode(UInt128 address) =>
        ((UInt128)0xff02_0000_0000_0000UL << 64) | ((UInt128)0x0000_0001_ff00_0000UL) | (address & 0xff_ffff);

    /// <summary>The Ethernet multicast address of an IPv6 multicast address (RFC 2464 §7): 33:33 and its low 32 bits.</summary>
    public static ulong MulticastMac(UInt128 address) => 0x3333_0000_0000UL | (uint)address;
}
