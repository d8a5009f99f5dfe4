using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Overlay.Links;

/// <summary>
/// Seals link packets with AES-GCM in place (<see cref="GcmCipher"/>: libcrypto's provider called directly where it loads, else
/// .NET's <see cref="AesGcm"/>; the two produce the same bytes). Packet layout:
/// <code>
///  0          1       2            10                    10+n        10+n+16
///  | 0xC0|kind | epoch | sequence   | ciphertext (n bytes) | GCM tag    |
/// </code>
/// The 96-bit nonce is the 4-byte salt of the direction, its first two bytes XORed with the header's
/// first two (kind and epoch), followed by the 64-bit sequence: a key never sees a nonce twice (the
/// sequence alone is unique per key; the sender stops, and the link rekeys, long before it could wrap),
/// and every header byte is authenticated through the nonce, a changed one failing the tag. That costs
/// no associated data, which costs an extra pass through the cipher per packet.
/// </summary>
internal sealed class FrameSealer : IDisposable
{
    /// <summary>First-byte base of data packets (RFC 7983 assigns 192–255 to nothing).</summary>
    public const byte KindBase = 0xC0;
    public const int HeaderLength = 10;
    public const int TagLength = 16;
    public const int Overhead = HeaderLength + TagLength;

    private readonly GcmCipher _aes;
    private readonly uint _salt;
    private readonly Lock _lock = new();
    private ulong _sequence;
    private bool _disposed;

    public FrameSealer(ReadOnlySpan<byte> key, ReadOnlySpan<byte> salt, uint epoch, GcmImplementation implementation = GcmImplementation.Auto)
    {
        _aes = GcmCipher.Create(key, encrypt: true, implementation);
        _salt = BinaryPrimitives.ReadUInt32BigEndian(salt);
        Epoch = epoch;
    }

    /// <summary>
    /// The key epoch: 32 bits, of which the header carries the low byte. Keys are derived from the whole number, so
    /// epoch 256 does not reuse epoch 0's key and salt (the sequence restarts with each epoch).
    /// </summary>
    public uint Epoch { get; }

    /// <summary>Packets sealed so far (the next sequence number).</summary>
    public ulong Sequence => Volatile.Read(ref _sequence);

    /// <summary>
    /// Seals the <paramref name="payloadLength"/> bytes at <paramref name="packet"/>[<see cref="HeaderLength"/>..]
    /// in place, writing the header in front and the tag behind; returns the packet length, or 0 once disposed (the
    /// link closed while this thread was about to seal: nothing is sealed, no nonce is spent).
    /// </summary>
    public int Seal(Span<byte> packet, int payloadLength, PacketKind kind)
    {
        if ((uint)payloadLength > (uint)(packet.Length - Overhead)) throw new ArgumentOutOfRangeException(nameof(payloadLength));
        return Seal(packet, packet.Slice(HeaderLength, payloadLength), kind);
    }

    /// <summary>
    /// Seals <paramref name="payload"/> into <paramref name="packet"/>: the header, the ciphertext at
    /// [<see cref="HeaderLength"/>..] and the tag behind it, the same bytes as sealing a copy in place, without the copy
    /// (the cipher reads the payload where it is). The payload is either exactly at [<see cref="HeaderLength"/>..] or
    /// apart from the packet. Returns the packet length, or 0 once disposed.
    /// </summary>
    public int Seal(Span<byte> packet, ReadOnlySpan<byte> payload, PacketKind kind)
    {
        var length = HeaderLength + payload.Length + TagLength;
        if (length > packet.Length) throw new ArgumentOutOfRangeException(nameof(payload));
        if (((ReadOnlySpan<byte>)packet).Overlaps(payload, out var offset) && offset != HeaderLength)
            throw new ArgumentException("The payload overlaps the packet other than at its place in it.", nameof(payload));
        Span<byte> nonce = stackalloc byte[12];
        lock (_lock)
        {
            if (_disposed) return 0;
            var sequence = _sequence++;
            var ciphertext = packet.Slice(HeaderLength, payload.Length);
            packet[0] = (byte)(KindBase | (byte)kind);
            packet[1] = (byte)Epoch; // the low byte of the epoch: receivers follow one epoch at a time
            BinaryPrimitives.WriteUInt64BigEndian(packet[2..], sequence);
            WriteNonce(nonce, _salt, packet);
            _aes.Encrypt(nonce, payload, ciphertext, packet.Slice(HeaderLength + payload.Length, TagLength));
        }
        return length;
    }

    /// <summary>The nonce of <paramref name="header"/>: salt ⊕ (kind, epoch, 0, 0) followed by the sequence as sent.</summary>
    internal static void WriteNonce(Span<byte> nonce, uint salt, ReadOnlySpan<byte> header)
    {
        BinaryPrimitives.WriteUInt32BigEndian(nonce, salt ^ ((uint)header[0] << 24) ^ ((uint)header[1] << 16));
        header.Slice(2, 8).CopyTo(nonce[4..]);
    }

    /// <summary>Frees the key; taken under the seal lock, so it waits for a seal in progress and no seal follows it.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            _aes.Dispose();
        }
    }
}

/// <summary>Why a received link packet was dropped.</summary>
internal enum OpenResult
{
    Opened,
    Malformed,
    UnknownEpoch,
    Forged,
    Replayed,
    TooOld,
}

/// <summary>Opens packets sealed by the peer's <see cref="FrameSealer"/> for one key epoch, in place, with replay protection.</summary>
internal sealed class FrameOpener : IDisposable
{
    private readonly GcmCipher _aes;
    private readonly uint _salt;
    private readonly ReplayWindow _window = new();
    private readonly Lock _lock = new();
    private bool _disposed;

    public FrameOpener(ReadOnlySpan<byte> key, ReadOnlySpan<byte> salt, uint epoch, GcmImplementation implementation = GcmImplementation.Auto)
    {
        _aes = GcmCipher.Create(key, encrypt: false, implementation);
        _salt = BinaryPrimitives.ReadUInt32BigEndian(salt);
        Epoch = epoch;
    }

    /// <summary>
    /// The key epoch: 32 bits, of which the header carries the low byte. Keys are derived from the whole number, so
    /// epoch 256 does not reuse epoch 0's key and salt (the sequence restarts with each epoch).
    /// </summary>
    public uint Epoch { get; }

    /// <summary>The epoch byte of a packet, or -1 when it is not a data packet.</summary>
    public static int EpochOf(ReadOnlySpan<byte> packet) =>
        packet.Length >= FrameSealer.Overhead && (packet[0] & 0xC0) == FrameSealer.KindBase ? packet[1] : -1;

    /// <summary>Authenticates and decrypts <paramref name="packet"/> in place; on success <paramref name="payload"/> is the plaintext.</summary>
    public OpenResult TryOpen(Span<byte> packet, out PacketKind kind, out Span<byte> payload)
    {
        if (packet.Length < FrameSealer.Overhead)
        {
            kind = default;
            payload = default;
            return OpenResult.Malformed;
        }
        return TryOpen(packet, packet[FrameSealer.HeaderLength..], out kind, out payload);
    }

    /// <summary>
    /// Authenticates <paramref name="packet"/> and decrypts it into <paramref name="output"/> (which may be the packet's own
    /// body); on success <paramref name="payload"/> is the plaintext within <paramref name="output"/>.
    /// </summary>
    public OpenResult TryOpen(ReadOnlySpan<byte> packet, Span<byte> output, out PacketKind kind, out Span<byte> payload)
    {
        kind = default;
        payload = default;
        if (packet.Length < FrameSealer.Overhead || (packet[0] & 0xC0) != FrameSealer.KindBase) return OpenResult.Malformed;
        if (packet[1] != (byte)Epoch) return OpenResult.UnknownEpoch;
        var sequence = BinaryPrimitives.ReadUInt64BigEndian(packet[2..]);
        Span<byte> nonce = stackalloc byte[12];
        FrameSealer.WriteNonce(nonce, _salt, packet);
        var body = packet[FrameSealer.HeaderLength..^FrameSealer.TagLength];
        if (output.Length < body.Length) return OpenResult.Malformed;
        var plain = output[..body.Length];
        lock (_lock)
        {
            if (_disposed) return OpenResult.UnknownEpoch; // the link closed: its keys are gone
            switch (_window.Check(sequence))
            {
                case ReplayWindow.Verdict.Replayed: return OpenResult.Replayed;
                case ReplayWindow.Verdict.TooOld: return OpenResult.TooOld;
            }
            if (!_aes.TryDecrypt(nonce, body, packet[^FrameSealer.TagLength..], plain)) return OpenResult.Forged;
            if (!_window.Accept(sequence)) return OpenResult.Replayed;
        }
        kind = (PacketKind)(packet[0] & 0x3F);
        payload = plain;
        return OpenResult.Opened;
    }

    /// <summary>Frees the key; taken under the open lock, so it waits for an open in progress and no open follows it.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            _aes.Dispose();
        }
    }
}
