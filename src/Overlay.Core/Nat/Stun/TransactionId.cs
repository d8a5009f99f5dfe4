using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Overlay.Nat.Stun;

/// <summary>The 96-bit STUN transaction ID (RFC 8489 §5), a value type so matching responses allocates nothing.</summary>
internal readonly record struct TransactionId(ulong High, uint Low)
{
    /// <summary>Its size on the wire.</summary>
    public const int Size = 12;

    /// <summary>A cryptographically random ID (RFC 8489 §5: uniformly and randomly chosen).</summary>
    public static TransactionId NewRandom()
    {
        Span<byte> bytes = stackalloc byte[Size];
        RandomNumberGenerator.Fill(bytes);
        return Read(bytes);
    }

    /// <summary>Reads 12 bytes.</summary>
    public static TransactionId Read(ReadOnlySpan<byte> source) =>
        new(BinaryPrimitives.ReadUInt64BigEndian(source), BinaryPrimitives.ReadUInt32BigEndian(source[8..]));

    /// <summary>Writes 12 bytes.</summary>
    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, High);
        BinaryPrimitives.WriteUInt32BigEndian(destination[8..], Low);
    }

    /// <inheritdoc />
    public override string ToString() => $"{High:x16}{Low:x8}";
}
