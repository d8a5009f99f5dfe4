using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Overlay.Nat.Stun;

/// <summary>
/// Writes one STUN message into the caller's span (RFC 8489 §5, §14) without allocating. Attributes are appended
/// in call order; MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT must come last, in that order. When the span is too
/// small the writer stops and <see cref="Overflowed"/> turns true; <see cref="Length"/> is the message size.
/// </summary>
internal ref struct StunWriter
{
    private readonly Span<byte> _buffer;
    private int _length;

    /// <summary>Starts a message of <paramref name="method"/>/<paramref name="class"/> with <paramref name="transactionId"/>.</summary>
    public StunWriter(Span<byte> buffer, StunMethod method, StunClass @class, TransactionId transactionId)
    {
        _buffer = buffer;
        if (buffer.Length < StunConstants.HeaderSize)
        {
            Overflowed = true;
            return;
        }
        BinaryPrimitives.WriteUInt16BigEndian(buffer, StunMessageType.Encode(method, @class));
        BinaryPrimitives.WriteUInt16BigEndian(buffer[2..], 0);
        BinaryPrimitives.WriteUInt32BigEndian(buffer[4..], StunConstants.MagicCookie);
        transactionId.Write(buffer[8..]);
        _length = StunConstants.HeaderSize;
    }

    /// <summary>Bytes written so far (the whole message once finished).</summary>
    public readonly int Length => _length;

    /// <summary>True when an attribute did not fit; the message is then unusable.</summary>
    public bool Overflowed { get; private set; }

    /// <summary>The written message.</summary>
    public readonly ReadOnlySpan<byte> Written => _buffer[.._length];

    /// <summary>Reserves an attribute of <paramref name="valueLength"/> bytes (zero padding written) and returns its value span.</summary>
    public Span<byte> AddAttribute(ushort type, int valueLength)
    {
        var padded = (valueLength + 3) & ~3;
        if (Overflowed || valueLength > ushort.MaxValue || _buffer.Length - _length < 4 + padded)
        {
            Overflowed = true;
            return default;
        }
        BinaryPrimitives.WriteUInt16BigEndian(_buffer[_length..], type);
        BinaryPrimitives.WriteUInt16BigEndian(_buffer[(_length + 2)..], (ushort)valueLength);
        var value = _buffer.Slice(_length + 4, valueLength);
        _buffer.Slice(_length + 4 + valueLength, padded - valueLength).Clear();
        _length += 4 + padded;
        BinaryPrimitives.WriteUInt16BigEndian(_buffer[2..], (ushort)(_length - StunConstants.HeaderSize));
        return value;
    }

    /// <summary>Adds an attribute with the given value bytes.</summary>
    public void AddBytes(ushort type, ReadOnlySpan<byte> value)
    {
        var span = AddAttribute(type, value.Length);
        if (!Overflowed) value.CopyTo(span);
    }

    /// <summary>Adds a UTF-8 text attribute (USERNAME, REALM, NONCE, SOFTWARE).</summary>
    public void AddString(ushort type, string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        var span = AddAttribute(type, Encoding.UTF8.GetByteCount(value));
        if (!Overflowed) Encoding.UTF8.GetBytes(value, span);
    }

    /// <summary>Adds a flag attribute with no value (USE-CANDIDATE, DONT-FRAGMENT).</summary>
    public void AddFlag(ushort type) => AddAttribute(type, 0);

    /// <summary>Adds a 32-bit attribute (PRIORITY, LIFETIME).</summary>
    public void AddUInt32(ushort type, uint value)
    {
        var span = AddAttribute(type, 4);
        if (!Overflowed) BinaryPrimitives.WriteUInt32BigEndian(span, value);
    }

    /// <summary>Adds a 64-bit attribute (ICE-CONTROLLING/-CONTROLLED).</summary>
    public void AddUInt64(ushort type, ulong value)
    {
        var span = AddAttribute(type, 8);
        if (!Overflowed) BinaryPrimitives.WriteUInt64BigEndian(span, value);
    }

    /// <summary>Adds REQUESTED-TRANSPORT (RFC 8656 §18.7); 17 is UDP.</summary>
    public void AddRequestedTransport(byte protocol = 17)
    {
        var span = AddAttribute(StunAttributeType.RequestedTransport, 4);
        if (Overflowed) return;
        span.Clear();
        span[0] = protocol;
    }

    /// <summary>Adds REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.8): the family of the relayed address asked for, then 3 bytes RFFU.</summary>
    public void AddRequestedAddressFamily(System.Net.Sockets.AddressFamily family)
    {
        var span = AddAttribute(StunAttributeType.RequestedAddressFamily, 4);
        if (Overflowed) return;
        span.Clear();
        span[0] = StunReader.FamilyCode(family);
    }

    /// <summary>Adds CHANNEL-NUMBER (RFC 8656 §18.1).</summary>
    public void AddChannelNumber(ushort channel)
    {
        var span = AddAttribute(StunAttributeType.ChannelNumber, 4);
        if (Overflowed) return;
        BinaryPrimitives.WriteUInt16BigEndian(span, channel);
        span[2] = 0;
        span[3] = 0;
    }

    /// <summary>Adds ERROR-CODE (RFC 8489 §14.8).</summary>
    public void AddErrorCode(int code, string reason)
    {
        ArgumentNullException.ThrowIfNull(reason);
        var span = AddAttribute(StunAttributeType.ErrorCode, 4 + Encoding.UTF8.GetByteCount(reason));
        if (Overflowed) return;
        span[0] = 0;
        span[1] = 0;
        span[2] = (byte)(code / 100);
        span[3] = (byte)(code % 100);
        Encoding.UTF8.GetBytes(reason, span[4..]);
    }

    /// <summary>Adds UNKNOWN-ATTRIBUTES (RFC 8489 §14.9).</summary>
    public void AddUnknownAttributes(ReadOnlySpan<ushort> types)
    {
        var span = AddAttribute(StunAttributeType.UnknownAttributes, types.Length * 2);
        if (Overflowed) return;
        for (var i = 0; i < types.Length; i++) BinaryPrimitives.WriteUInt16BigEndian(span[(i * 2)..], types[i]);
    }

    /// <summary>Adds an XOR-…-ADDRESS attribute (RFC 8489 §14.2).</summary>
    public void AddXorAddress(ushort type, StunAddress address) => AddAddress(type, address, xor: true);

    /// <summary>Adds a plain MAPPED-ADDRESS-style attribute (RFC 8489 §14.1).</summary>
    public void AddAddress(ushort type, StunAddress address) => AddAddress(type, address, xor: false);

    private void AddAddress(ushort type, StunAddress address, bool xor)
    {
        var span = AddAttribute(type, 4 + address.AddressLength);
        if (Overflowed) return;
        span[0] = 0;
        span[1] = StunReader.FamilyCode(address.Family);
        var port = address.Port;
        var n = address.WriteAddress(span[4..]);
        if (xor)
        {
            port ^= (ushort)(StunConstants.MagicCookie >> 16);
            var key = _buffer.Slice(4, 16);
            for (var i = 0; i < n; i++) span[4 + i] ^= key[i];
        }
        BinaryPrimitives.WriteUInt16BigEndian(span[2..], port);
    }

    /// <summary>Appends MESSAGE-INTEGRITY: HMAC-SHA1 with <paramref name="key"/> (RFC 8489 §14.5).</summary>
    public void AddMessageIntegrity(ReadOnlySpan<byte> key) => AddHmac(StunAttributeType.MessageIntegrity, key, sha256: false);

    /// <summary>Appends MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6).</summary>
    public void AddMessageIntegritySha256(ReadOnlySpan<byte> key) => AddHmac(StunAttributeType.MessageIntegritySha256, key, sha256: true);

    private void AddHmac(ushort type, ReadOnlySpan<byte> key, bool sha256)
    {
        var size = sha256 ? StunConstants.IntegritySha256Size : StunConstants.IntegritySize;
        var start = _length;
        var value = AddAttribute(type, size);
        if (Overflowed) return;
        // The length field already covers this attribute (AddAttribute updated it), as §14.5 requires.
        if (sha256) HMACSHA256.HashData(key, _buffer[..start], value);
        else HMACSHA1.HashData(key, _buffer[..start], value);
    }

    /// <summary>Appends FINGERPRINT (RFC 8489 §14.7); must be the last attribute.</summary>
    public void AddFingerprint()
    {
        var start = _length;
        var value = AddAttribute(StunAttributeType.Fingerprint, 4);
        if (Overflowed) return;
        BinaryPrimitives.WriteUInt32BigEndian(value, Crc32.Compute(_buffer[..start]) ^ StunConstants.FingerprintXor);
    }
}
