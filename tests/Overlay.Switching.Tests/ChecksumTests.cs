using NUnit.Framework;
using Overlay.Switching.Frames;

namespace Overlay.Switching.Tests;

/// <summary>The Internet checksum, the vectorised way included, against RFC 1071's definition word by word.</summary>
[TestFixture]
public sealed class ChecksumTests
{
    [Test]
    public void Every_length_and_offset_sums_as_RFC_1071_defines_it()
    {
        var random = new Random(1071);
        var buffer = new byte[70_000];
        random.NextBytes(buffer);
        foreach (var length in Enumerable.Range(0, 300).Concat([1399, 1400, 1460, 8999, 9000, 65535, 65536, 69_000]))
            foreach (var offset in new[] { 0, 1, 2, 3, 7, 31 })
            {
                if (offset + length > buffer.Length) continue;
                var data = buffer.AsSpan(offset, length);
                Assert.That(InternetChecksum.Fold(InternetChecksum.Add(data)) % 0xFFFF, Is.EqualTo(Reference(data) % 0xFFFF), $"length {length}, offset {offset}");
                Assert.That(InternetChecksum.Fold(InternetChecksum.Add(data, 0x1234_5678_9abc)) % 0xFFFF,
                    Is.EqualTo((Reference(data) + 0x1234 + 0x5678 + 0x9abc) % 0xFFFF), $"length {length}, offset {offset}, with a sum carried in");
            }
        var ones = new byte[65536];
        Array.Fill(ones, (byte)0xFF);
        Assert.That(InternetChecksum.Fold(InternetChecksum.Add(ones)), Is.EqualTo(0xFFFF), "all ones: no carry lost in the wide lanes");
    }

    /// <summary>16-bit words in the machine's order (as the implementation keeps them), an odd last byte padded with zero.</summary>
    private static ulong Reference(ReadOnlySpan<byte> data)
    {
        ulong sum = 0;
        for (var i = 0; i < data.Length; i += 2) sum += i + 1 < data.Length ? (ulong)(data[i] | data[i + 1] << 8) : data[i];
        return sum;
    }
}
