using System.Buffers.Binary;

namespace Overlay.Tap.Offload;

/// <summary>
/// <c>struct virtio_net_hdr</c> (linux/virtio_net.h), which a TAP opened with IFF_VNET_HDR puts before every frame:
/// how the host's stack left the checksum and segmentation to the device. Little-endian (the host's order on the
/// machines this runs on).
/// </summary>
internal struct VirtioNetHeader
{
    public const int Size = 10;
    public const byte FlagNeedsChecksum = 1;   // VIRTIO_NET_HDR_F_NEEDS_CSUM
    public const byte FlagDataValid = 2;       // VIRTIO_NET_HDR_F_DATA_VALID
    public const byte GsoNone = 0, GsoTcpV4 = 1, GsoUdp = 3, GsoTcpV6 = 4, GsoUdpL4 = 5, GsoEcn = 0x80;

    public byte Flags;
    public byte GsoType;
    public ushort HeaderLength;
    public ushort GsoSize;
    public ushort ChecksumStart;
    public ushort ChecksumOffset;

    public static VirtioNetHeader Read(ReadOnlySpan<byte> source) => new()
    {
        Flags = source[0],
        GsoType = source[1],
        HeaderLength = BinaryPrimitives.ReadUInt16LittleEndian(source[2..]),
        GsoSize = BinaryPrimitives.ReadUInt16LittleEndian(source[4..]),
        ChecksumStart = BinaryPrimitives.ReadUInt16LittleEndian(source[6..]),
        ChecksumOffset = BinaryPrimitives.ReadUInt16LittleEndian(source[8..]),
    };

    public readonly void Write(Span<byte> destination)
    {
        destination[0] = Flags;
        destination[1] = GsoType;
        BinaryPrimitives.WriteUInt16LittleEndian(destination[2..], HeaderLength);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[4..], GsoSize);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[6..], ChecksumStart);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[8..], ChecksumOffset);
    }
}
