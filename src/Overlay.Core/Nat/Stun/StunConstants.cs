namespace Overlay.Nat.Stun;

/// <summary>Fixed numbers of the STUN wire format.</summary>
internal static class StunConstants
{
    /// <summary>RFC 8489 §5: the magic cookie.</summary>
    public const uint MagicCookie = 0x2112A442;

    /// <summary>RFC 8489 §5: header size.</summary>
    public const int HeaderSize = 20;

    /// <summary>RFC 8489 §14.5: HMAC-SHA1 output size.</summary>
    public const int IntegritySize = 20;

    /// <summary>RFC 8489 §14.6: HMAC-SHA256 output size (untruncated).</summary>
    public const int IntegritySha256Size = 32;

    /// <summary>RFC 8489 §14.7: FINGERPRINT is CRC-32 xor this value.</summary>
    public const uint FingerprintXor = 0x5354554E;

    /// <summary>Largest message this codec handles (one UDP datagram without fragmentation on any sane path).</summary>
    public const int MaxMessageSize = 4096;

    /// <summary>RFC 8489 §14.3/14.8/14.9: USERNAME, REALM, NONCE limits (in bytes, generous).</summary>
    public const int MaxTextAttribute = 763;
}
