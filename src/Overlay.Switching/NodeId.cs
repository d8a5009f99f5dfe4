using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace Overlay.Switching;

/// <summary>
/// A node's 128-bit identifier: its position on the overlay's ring, ordered as an unsigned 128-bit
/// integer and written as 32 lower-case hex characters.
/// </summary>
internal readonly record struct NodeId(UInt128 Value) : IComparable<NodeId>, ISpanFormattable
{
    /// <summary>Length of a node ID's text: 128 bits as 32 lower-case hex characters (DESIGN.md §4).</summary>
    public const int TextLength = 32;

    /// <summary>True when <paramref name="text"/> is a node ID as it travels: exactly 32 lower-case hex characters.</summary>
    public static bool IsValid([NotNullWhen(true)] string? text)
    {
        if (text is null || text.Length != TextLength) return false;
        foreach (var c in text)
        {
            if (!(c is >= '0' and <= '9' or >= 'a' and <= 'f')) return false;
        }
        return true;
    }

    /// <summary>Parses 32 lower-case hex characters.</summary>
    public static NodeId Parse(string text) =>
        TryParse(text, out var id) ? id : throw new FormatException($"'{text}' is not a node ID (32 lower-case hex characters)");

    /// <summary>Parses 32 lower-case hex characters; false on anything else.</summary>
    public static bool TryParse([NotNullWhen(true)] string? text, out NodeId id)
    {
        id = default;
        if (!IsValid(text)) return false;
        id = new NodeId(UInt128.Parse(text, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture));
        return true;
    }

    /// <summary>A random node ID.</summary>
    public static NodeId NewRandom()
    {
        Span<byte> bytes = stackalloc byte[16];
        System.Security.Cryptography.RandomNumberGenerator.Fill(bytes);
        return Read(bytes);
    }

    /// <summary>Clockwise ring distance from this node to <paramref name="other"/>.</summary>
    public UInt128 DistanceTo(NodeId other) => unchecked(other.Value - Value);

    /// <summary>True when <paramref name="x"/> lies strictly inside the clockwise arc (this, <paramref name="to"/>); (a, a) is the whole ring but a.</summary>
    public bool ArcContains(NodeId x, NodeId to)
    {
        var dx = DistanceTo(x);
        return dx != 0 && (to == this || dx < DistanceTo(to));
    }

    /// <summary>Reads 16 big-endian bytes.</summary>
    public static NodeId Read(ReadOnlySpan<byte> source) =>
        new(new UInt128(System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(source), System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(source[8..])));

    /// <summary>Writes 16 big-endian bytes.</summary>
    public void Write(Span<byte> destination)
    {
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(destination, (ulong)(Value >> 64));
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(destination[8..], (ulong)Value);
    }

    /// <inheritdoc />
    public int CompareTo(NodeId other) => Value.CompareTo(other.Value);

    /// <inheritdoc />
    public override string ToString() => Value.ToString("x32", CultureInfo.InvariantCulture);

    /// <inheritdoc />
    public string ToString(string? format, IFormatProvider? formatProvider) => ToString();

    /// <inheritdoc />
    public bool TryFormat(Span<char> destination, out int charsWritten, ReadOnlySpan<char> format, IFormatProvider? provider) =>
        Value.TryFormat(destination, out charsWritten, "x32", CultureInfo.InvariantCulture);

    /// <summary>Ring order.</summary>
    public static bool operator <(NodeId a, NodeId b) => a.Value < b.Value;

    /// <summary>Ring order.</summary>
    public static bool operator >(NodeId a, NodeId b) => a.Value > b.Value;

    /// <summary>Ring order.</summary>
    public static bool operator <=(NodeId a, NodeId b) => a.Value <= b.Value;

    /// <summary>Ring order.</summary>
    public static bool operator >=(NodeId a, NodeId b) => a.Value >= b.Value;
}
