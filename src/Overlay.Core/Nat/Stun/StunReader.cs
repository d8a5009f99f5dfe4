using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace Overlay.Nat.Stun;

/// <summary>
/// A validated view of one STUN message over the caller's span (RFC 8489 §5, §14). <see cref="TryParse"/> checks
/// the header, the attribute layout, MESSAGE-INTEGRITY/-SHA256/FINGERPRINT placement and sizes, and notes
/// unknown comprehension-required attributes; it returns false for malformed input and never throws or allocates.
/// </summary>
internal ref struct StunReader
{
    private const int NoOffset = -1;
    private const int MaxUnknownReported = 4;

    private readonly ReadOnlySpan<byte> _message;
    private int _integrityOffset;
    private int _integritySha256Offset;
    private int _fingerprintOffset;
    private int _attributesEnd;
    private int _unknownCount;
    private ushort _unknown0, _unknown1, _unknown2, _unknown3;

    private StunReader(ReadOnlySpan<byte> message)
    {
        _message = message;
        _integrityOffset = NoOffset;
        _integritySha256Offset = NoOffset;
        _fingerprintOffset = NoOffset;
        _attributesEnd = message.Length;
    }

    /// <summary>The whole message.</summary>
    public readonly ReadOnlySpan<byte> Message => _message;

    /// <summary>The method.</summary>
    public StunMethod Method { get; private set; }

    /// <summary>The class.</summary>
    public StunClass Class { get; private set; }

    /// <summary>The transaction ID.</summary>
    public TransactionId TransactionId { get; private set; }

    /// <summary>True when a MESSAGE-INTEGRITY attribute is present.</summary>
    public readonly bool HasMessageIntegrity => _integrityOffset != NoOffset;

    /// <summary>True when a MESSAGE-INTEGRITY-SHA256 attribute is present.</summary>
    public readonly bool HasMessageIntegritySha256 => _integritySha256Offset != NoOffset;

    /// <summary>True when a FINGERPRINT attribute is present.</summary>
    public readonly bool HasFingerprint => _fingerprintOffset != NoOffset;

    /// <summary>Number of unknown comprehension-required attributes (RFC 8489 §6.3: such a request gets a 420).</summary>
    public readonly int UnknownComprehensionRequiredCount => _unknownCount;

    /// <summary>True when the first two bits are zero and the magic cookie is present: cheap demux test (RFC 8489 §5).</summary>
    public static bool LooksLikeStun(ReadOnlySpan<byte> datagram) =>
        datagram.Length >= StunConstants.HeaderSize && (datagram[0] & 0xC0) == 0 &&
        BinaryPrimitives.ReadUInt32BigEndian(datagram[4..]) == StunConstants.MagicCookie;

    /// <summary>Parses and validates <paramref name="datagram"/>; false when it is not a well-formed STUN message.</summary>
    public static bool TryParse(ReadOnlySpan<byte> datagram, out StunReader reader)
    {
        reader = default;
        if (!LooksLikeStun(datagram)) return false;
        int length = BinaryPrimitives.ReadUInt16BigEndian(datagram[2..]);
        // RFC 8489 §5: the length excludes the header and is a multiple of 4; a datagram holds exactly one message.
        if ((length & 3) != 0 || StunConstants.HeaderSize + length != datagram.Length) return false;
        var r = new StunReader(datagram);
        StunMessageType.Decode(BinaryPrimitives.ReadUInt16BigEndian(datagram), out var method, out var cls);
        r.Method = method;
        r.Class = cls;
        r.TransactionId = TransactionId.Read(datagram[8..]);
        var offset = StunConstants.HeaderSize;
        while (offset < datagram.Length)
        {
            if (datagram.Length - offset < 4) return false;
            var type = BinaryPrimitives.ReadUInt16BigEndian(datagram[offset..]);
            int valueLength = BinaryPrimitives.ReadUInt16BigEndian(datagram[(offset + 2)..]);
            var padded = (valueLength + 3) & ~3;
            if (datagram.Length - offset - 4 < padded) return false;
            // RFC 8489 §14.7: nothing follows FINGERPRINT.
            if (r._fingerprintOffset != NoOffset) return false;
            switch (type)
            {
                case StunAttributeType.Fingerprint:
                    if (valueLength != 4) return false;
                    r._fingerprintOffset = offset;
                    if (r._attributesEnd == datagram.Length) r._attributesEnd = offset;
                    break;
                case StunAttributeType.MessageIntegrity:
                    if (valueLength != StunConstants.IntegritySize) return false;
                    // RFC 8489 §14.5: only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT may follow; others are ignored.
                    if (r._integrityOffset == NoOffset && r._integritySha256Offset == NoOffset)
                    {
                        r._integrityOffset = offset;
                        r._attributesEnd = offset;
                    }
                    break;
                case StunAttributeType.MessageIntegritySha256:
                    // RFC 8489 §14.6: at least 16 bytes, a multiple of 4, at most 32.
                    if (valueLength < 16 || valueLength > 32 || (valueLength & 3) != 0) return false;
                    if (r._integritySha256Offset == NoOffset)
                    {
                        r._integritySha256Offset = offset;
                        if (r._integrityOffset == NoOffset) r._attributesEnd = offset;
                    }
                    break;
                default:
                    if (offset < r._attributesEnd && StunAttributeType.IsComprehensionRequired(type) &&
                        !StunAttributeType.IsKnownComprehensionRequired(type))
                    {
                        r.NoteUnknown(type);
                    }
                    break;
            }
            offset += 4 + padded;
        }
        reader = r;
        return true;
    }

    private void NoteUnknown(ushort type)
    {
        switch (_unknownCount)
        {
            case 0: _unknown0 = type; break;
            case 1: _unknown1 = type; break;
            case 2: _unknown2 = type; break;
            case 3: _unknown3 = type; break;
        }
        _unknownCount++;
    }

    /// <summary>Copies up to four unknown comprehension-required attribute types (for an UNKNOWN-ATTRIBUTES reply); returns the count copied.</summary>
    public readonly int CopyUnknownComprehensionRequired(Span<ushort> destination)
    {
        var n = Math.Min(Math.Min(_unknownCount, MaxUnknownReported), destination.Length);
        for (var i = 0; i < n; i++) destination[i] = i switch { 0 => _unknown0, 1 => _unknown1, 2 => _unknown2, _ => _unknown3 };
        return n;
    }

    /// <summary>Finds the first attribute of <paramref name="type"/> among those covered by integrity (RFC 8489 §14.5).</summary>
    public readonly bool TryGetAttribute(ushort type, out ReadOnlySpan<byte> value)
    {
        var offset = StunConstants.HeaderSize;
        while (offset + 4 <= _attributesEnd)
        {
            var t = BinaryPrimitives.ReadUInt16BigEndian(_message[offset..]);
            int len = BinaryPrimitives.ReadUInt16BigEndian(_message[(offset + 2)..]);
            if (t == type)
            {
                value = _message.Slice(offset + 4, len);
                return true;
            }
            offset += 4 + ((len + 3) & ~3);
        }
        value = default;
        return false;
    }

    /// <summary>True when the attribute is present (flags such as USE-CANDIDATE).</summary>
    public readonly bool HasAttribute(ushort type) => TryGetAttribute(type, out _);

    /// <summary>Reads a 32-bit attribute (PRIORITY, LIFETIME, …).</summary>
    public readonly bool TryGetUInt32(ushort type, out uint value)
    {
        value = 0;
        if (!TryGetAttribute(type, out var v) || v.Length != 4) return false;
        value = BinaryPrimitives.ReadUInt32BigEndian(v);
        return true;
    }

    /// <summary>Reads a 64-bit attribute (ICE-CONTROLLING/-CONTROLLED tie-breaker).</summary>
    public readonly bool TryGetUInt64(ushort type, out ulong value)
    {
        value = 0;
        if (!TryGetAttribute(type, out var v) || v.Length != 8) return false;
        value = BinaryPrimitives.ReadUInt64BigEndian(v);
        return true;
    }

    /// <summary>Reads CHANNEL-NUMBER (RFC 8656 §18.1).</summary>
    public readonly bool TryGetChannelNumber(out ushort channel)
    {
        channel = 0;
        if (!TryGetAttribute(StunAttributeType.ChannelNumber, out var v) || v.Length != 4) return false;
        channel = BinaryPrimitives.ReadUInt16BigEndian(v);
        return true;
    }

    /// <summary>Reads ERROR-CODE (RFC 8489 §14.8): code = class * 100 + number; the reason phrase span is UTF-8.</summary>
    public readonly bool TryGetErrorCode(out int code, out ReadOnlySpan<byte> reason)
    {
        code = 0;
        reason = default;
        if (!TryGetAttribute(StunAttributeType.ErrorCode, out var v) || v.Length < 4) return false;
        var cls = v[2] & 0x07;
        var number = v[3];
        if (cls < 3 || cls > 6 || number > 99) return false;
        code = cls * 100 + number;
        reason = v[4..];
        return true;
    }

    /// <summary>Reads a UTF-8 text attribute as a string (allocates; control path only).</summary>
    public readonly bool TryGetString(ushort type, out string value)
    {
        value = "";
        if (!TryGetAttribute(type, out var v) || v.Length > StunConstants.MaxTextAttribute) return false;
        try
        {
            value = Encoding.UTF8.GetString(v);
            return true;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    /// <summary>Reads an XOR-…-ADDRESS attribute (RFC 8489 §14.2).</summary>
    public readonly bool TryGetXorAddress(ushort type, out StunAddress address)
    {
        address = default;
        if (!TryGetAttribute(type, out var v)) return false;
        return TryDecodeAddress(v, xor: true, out address);
    }

    /// <summary>Reads a plain address attribute such as MAPPED-ADDRESS (RFC 8489 §14.1).</summary>
    public readonly bool TryGetAddress(ushort type, out StunAddress address)
    {
        address = default;
        if (!TryGetAttribute(type, out var v)) return false;
        return TryDecodeAddress(v, xor: false, out address);
    }

    private readonly bool TryDecodeAddress(ReadOnlySpan<byte> v, bool xor, out StunAddress address)
    {
        address = default;
        if (v.Length < 4) return false;
        var family = v[1];
        var port = BinaryPrimitives.ReadUInt16BigEndian(v[2..]);
        var length = family switch { 0x01 => 4, 0x02 => 16, _ => 0 };
        if (length == 0 || v.Length != 4 + length) return false;
        Span<byte> raw = stackalloc byte[16];
        v.Slice(4, length).CopyTo(raw);
        if (xor)
        {
            port ^= (ushort)(StunConstants.MagicCookie >> 16);
            // The XOR key is the magic cookie followed by the transaction ID: header bytes 4..20.
            var key = _message.Slice(4, 16);
            for (var i = 0; i < length; i++) raw[i] ^= key[i];
        }
        address = new StunAddress(raw[..length], port);
        return true;
    }

    /// <summary>Checks FINGERPRINT (RFC 8489 §14.7); false when absent or wrong.</summary>
    public readonly bool VerifyFingerprint()
    {
        if (_fingerprintOffset == NoOffset) return false;
        // FINGERPRINT is last, so the header's length already covers it as §14.7 requires.
        var expected = Crc32.Compute(_message[.._fingerprintOffset]) ^ StunConstants.FingerprintXor;
        return BinaryPrimitives.ReadUInt32BigEndian(_message[(_fingerprintOffset + 4)..]) == expected;
    }

    /// <summary>Checks MESSAGE-INTEGRITY (HMAC-SHA1) with <paramref name="key"/>; false when absent or wrong.</summary>
    public readonly bool VerifyMessageIntegrity(ReadOnlySpan<byte> key) =>
        _integrityOffset != NoOffset && VerifyHmac(_integrityOffset, key, sha256: false);

    /// <summary>Checks MESSAGE-INTEGRITY-SHA256 with <paramref name="key"/>; false when absent or wrong.</summary>
    public readonly bool VerifyMessageIntegritySha256(ReadOnlySpan<byte> key) =>
        _integritySha256Offset != NoOffset && VerifyHmac(_integritySha256Offset, key, sha256: true);

    private readonly bool VerifyHmac(int attributeOffset, ReadOnlySpan<byte> key, bool sha256)
    {
        int valueLength = BinaryPrimitives.ReadUInt16BigEndian(_message[(attributeOffset + 2)..]);
        byte[]? rented = null;
        var covered = attributeOffset <= 1024 ? stackalloc byte[attributeOffset] : (rented = ArrayPool<byte>.Shared.Rent(attributeOffset)).AsSpan(0, attributeOffset);
        try
        {
            _message[..attributeOffset].CopyTo(covered);
            // RFC 8489 §14.5: the length field is set as if the integrity attribute ended the message.
            BinaryPrimitives.WriteUInt16BigEndian(covered[2..], (ushort)(attributeOffset - StunConstants.HeaderSize + 4 + valueLength));
            Span<byte> mac = stackalloc byte[StunConstants.IntegritySha256Size];
            var macLength = sha256 ? HMACSHA256.HashData(key, covered, mac) : HMACSHA1.HashData(key, covered, mac);
            var received = _message.Slice(attributeOffset + 4, valueLength);
            return valueLength <= macLength && CryptographicOperations.FixedTimeEquals(mac[..valueLength], received);
        }
        finally
        {
            if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Address family code of an XOR address for a socket family.</summary>
    internal static byte FamilyCode(AddressFamily family) => family == AddressFamily.InterNetworkV6 ? (byte)0x02 : (byte)0x01;
}
