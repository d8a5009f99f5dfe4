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
/// The header in front of a bounded-flood frame on a link. Wire layout (38 bytes, big-endian):
/// <code>
///  0      16     32   36   37
///  | root | bound | seq | hop | type |
/// </code>
/// root: the originating switch's node ID; bound: the exclusive end of the clockwise arc (receiver, bound)
/// the receiver is responsible for; seq: the root's flood sequence number (duplicate cache key with the
/// root); hop: switches passed so far; type: <see cref="FloodType"/>. EdgeVPN carried root, bound, hop
/// and type in an EtherType 0xC0C0 frame; here the header travels as its own link payload kind.
/// </summary>
/// <param name="Root">The originating switch.</param>
/// <param name="Bound">End (exclusive) of the receiver's arc.</param>
/// <param name="Sequence">The root's flood number.</param>
/// <param name="Hop">Hops so far (the originator sends 1).</param>
/// <param name="Type">What the frame is.</param>
internal readonly record struct FloodHeader(NodeId Root, NodeId Bound, uint Sequence, byte Hop, FloodType Type)
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
        destination[37] = (byte)Type;
    }

    /// <summary>Reads a header; false when too short or the type is unknown.</summary>
    public static bool TryRead(ReadOnlySpan<byte> source, out FloodHeader header)
    {
        header = default;
        if (source.Length < Length || source[37] > (byte)FloodType.Multicast) return false;
        header = new FloodHeader(NodeId.Read(source), NodeId.Read(source[16..]), BinaryPrimitives.ReadUInt32BigEndian(source[32..]), source[36], (FloodType)source[37]);
        return true;
    }
}
