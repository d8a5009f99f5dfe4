using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Overlay.Switching.Frames;

/// <summary>
/// The Internet checksum (RFC 1071) as TCP, UDP and IPv4 use it. Sums are kept in the machine's byte order, 64 bits at
/// a time: the one's complement sum does not care about byte order as long as it is read and written back the same way
/// (RFC 1071 §2(B)), so a folded sum is stored with <see cref="Store"/> and needs no swapping. The switch writes its
/// membership queries with it and the TAP its offloaded segments (Overlay.Tap references this assembly for it).
/// </summary>
internal static class InternetChecksum
{
    /// <summary>Adds <paramref name="data"/> (starting at an even offset of what is being summed) to <paramref name="sum"/>.</summary>
    public static ulong Add(ReadOnlySpan<byte> data, ulong sum = 0)
    {
        if (Vector256.IsHardwareAccelerated && data.Length >= 128)
        {
            // 32 bytes a step, as eight 32-bit words widened into 64-bit lanes: no carry is lost (a lane stays below
            // 2^59 for any span), and a sum of 32-bit words is the same modulo 0xFFFF as the 16-bit one's
            // complement sum (2^16 ≡ 1), so the lanes' total joins the scalar sum with one end-around carry.
            var low = Vector256<ulong>.Zero;
            var high = Vector256<ulong>.Zero;
            while (data.Length >= 32)
            {
                var (l, h) = Vector256.Widen(MemoryMarshal.Read<Vector256<uint>>(data));
                low += l;
                high += h;
                data = data[32..];
            }
            sum = AddCarry(sum, Vector256.Sum(low + high));
        }
        while (data.Length >= 32)
        {
            sum = AddCarry(sum, MemoryMarshal.Read<ulong>(data));
            sum = AddCarry(sum, MemoryMarshal.Read<ulong>(data[8..]));
            sum = AddCarry(sum, MemoryMarshal.Read<ulong>(data[16..]));
            sum = AddCarry(sum, MemoryMarshal.Read<ulong>(data[24..]));
            data = data[32..];
        }
        while (data.Length >= 8)
        {
            sum = AddCarry(sum, MemoryMarshal.Read<ulong>(data));
            data = data[8..];
        }
        if (data.Length >= 4)
        {
            sum = AddCarry(sum, MemoryMarshal.Read<uint>(data));
            data = data[4..];
        }
        if (data.Length >= 2)
        {
            sum = AddCarry(sum, MemoryMarshal.Read<ushort>(data));
            data = data[2..];
        }
        if (data.Length == 1)
        {
            // An odd last byte is the high-order byte of a big-endian word padded with zero: the first byte in memory.
            Span<byte> pad = [data[0], 0];
            sum = AddCarry(sum, MemoryMarshal.Read<ushort>(pad));
        }
        return sum;
    }

    /// <summary>The sum of the TCP/UDP pseudo-header (RFC 793, RFC 8200 §8.1) for an IP header at <paramref name="ip"/>.</summary>
    public static ulong PseudoHeader(ReadOnlySpan<byte> ip, bool v6, byte protocol, int l4Length)
    {
        var sum = v6 ? Add(ip.Slice(8, 32)) : Add(ip.Slice(12, 8));
        Span<byte> tail = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(tail, (uint)l4Length);
        BinaryPrimitives.WriteUInt32BigEndian(tail[4..], protocol);
        return Add(tail, sum);
    }

    /// <summary>Folds a sum to 16 bits (not complemented), in the byte order it was summed in.</summary>
    public static ushort Fold(ulong sum)
    {
        sum = (sum & 0xFFFFFFFF) + (sum >> 32);
        sum = (sum & 0xFFFFFFFF) + (sum >> 32);
        sum = (sum & 0xFFFF) + (sum >> 16);
        sum = (sum & 0xFFFF) + (sum >> 16);
        return (ushort)sum;
    }

    /// <summary>Writes a folded value where a checksum field is.</summary>
    public static void Store(Span<byte> field, ushort value) => MemoryMarshal.Write(field, in value);

    /// <summary>Fills in an IPv4 header's checksum.</summary>
    public static void SetIPv4HeaderChecksum(Span<byte> header)
    {
        header[10] = 0;
        header[11] = 0;
        Store(header[10..], (ushort)~Fold(Add(header)));
    }

    private static ulong AddCarry(ulong sum, ulong value)
    {
        var result = sum + value;
        return result + (result < value ? 1UL : 0UL);
    }
}
