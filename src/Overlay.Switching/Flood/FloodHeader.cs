using System.Buffers.Binary;

namespace Overlay.Switching.Flood;

/// <summary>What a bounded-flood frame carries.</summary>
internal enum FloodType : byte
{
    /// <summary>A broadcast frame (ff:ff:ff:ff:ff:ff).</summary>
    Broadcast = 0,

    /// <summary>A unicast frame whose destination no switch on the way knew.</summary>
    UnknownUnicast = 1,

    /// <summary>A multicast frame, pruned to branches with subscribers when they are known.</summary>
    Multicast = 2,
}

/// <summary>
/// How a bounded-flood copy covers the gap a switch leaves when the link to its ring successor could not form (both
/// sides block UDP and no relay is configured, say): the members between it and its first linked neighbour, which no
/// arc of the plain scheme reaches. Values 0-3 in the top two bits of the header's type byte, <see cref="RelayIntoGap"/>
/// in the bit below them; EdgeVPN had no such copies.
/// </summary>
internal enum FloodGap : byte
{
    /// <summary>A plain copy: the receiver covers (receiver, bound).</summary>
    None = 0,

    /// <summary>
    /// The receiver covers (receiver, bound) and the sender's gap behind it, (sender, receiver): it passes a copy
    /// <see cref="IntoGap"/> to its first neighbour there, the member whose link to the sender could not form.
    /// </summary>
    WithGapBehind = 1,

    /// <summary>
    /// A copy going back into a gap: the arc (receiver, bound) lies behind the sender, which is the bound. Taken only by
    /// a switch that has no link to its ring predecessor.
    /// </summary>
    IntoGap = 2,

    /// <summary>
    /// Only the sender's gap, (sender, bound): the sender's arc ends at the bound, which is the receiver, or lies before it
    /// when the sender has no link to the bound either. The receiver gets the flood itself from another branch; it passes a
    /// copy <see cref="IntoGap"/> on, and neither delivers nor forwards this one.
    /// </summary>
    GapBehindOnly = 3,

    /// <summary>
    /// A gap its sender could not pass a copy into, having no link there (its own ring predecessor, in the gap, could
    /// not be linked either): (bound, sender), where bound is the switch whose successor link is missing. The receiver,
    /// next on from the sender, passes a copy <see cref="IntoGap"/> to its first neighbour in that gap, with the arc up
    /// to the sender; it neither delivers nor forwards this one (it gets the flood itself from its own branch).
    /// </summary>
    RelayIntoGap = 4,
}

/// <summary>
/// The header in front of a bounded-flood frame on a link. Wire layout (38 bytes, big-endian):
/// <code>
///  0      16     32   36   37
///  | root | bound | seq | hop | type |
/// </code>
/// root: the originating switch's node ID; bound: the exclusive end of the clockwise arc (receiver, bound)
/// the receiver is responsible for; seq: the root's flood sequence number (duplicate cache key with the
/// root); hop: switches passed so far; type: <see cref="FloodType"/> in the low five bits, <see cref="FloodGap"/> in the
/// top three (values 0-3 in the top two, <see cref="FloodGap.RelayIntoGap"/> as bit 5 alone, which a switch from before
/// it refuses as an unknown type; zero in every plain copy). EdgeVPN carried root, bound, hop
/// and type in an EtherType 0xC0C0 frame; here the header travels as its own link payload kind.
/// </summary>
/// <param name="Root">The originating switch.</param>
/// <param name="Bound">End (exclusive) of the receiver's arc.</param>
/// <param name="Sequence">The root's flood number.</param>
/// <param name="Hop">Hops so far (the originator sends 1).</param>
/// <param name="Type">What the frame is.</param>
/// <param name="Gap">Whether the copy covers a switch's gap (see <see cref="FloodGap"/>).</param>
internal readonly record struct FloodHeader(NodeId Root, NodeId Bound, uint Sequence, byte Hop, FloodType Type, FloodGap Gap = FloodGap.None)
{
    /// <summary>Bytes on the wire.</summary>
    public const int Length = 38;

    /// <summary>Writes the header; <paramref name="destination"/> must hold <see cref="Length"/> bytes.</summary>
    public void Write(Span<byte> destination)
    {
        Root.Write(destination);
        Bound.Write(destination[16..]);
        BinaryPrimitives.WriteUInt32BigEndian(destination[32..], Sequence);
        destination[36] = Hop;
        destination[37] = (byte)((byte)Type | ((byte)Gap & 3) << 6 | ((byte)Gap & 4) << 3);
    }

    /// <summary>Reads a header; false when too short, or the type or gap is unknown.</summary>
    public static bool TryRead(ReadOnlySpan<byte> source, out FloodHeader header)
    {
        header = default;
        if (source.Length < Length) return false;
        var type = source[37] & 0x1F;
        var gap = source[37] >> 6 | (source[37] >> 3 & 4);
        if (type > (byte)FloodType.Multicast || gap > (byte)FloodGap.RelayIntoGap) return false;
        header = new FloodHeader(NodeId.Read(source), NodeId.Read(source[16..]), BinaryPrimitives.ReadUInt32BigEndian(source[32..]), source[36],
            (FloodType)type, (FloodGap)gap);
        return true;
    }
}
