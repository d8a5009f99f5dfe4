namespace Overlay.Nat.Stun;

/// <summary>STUN attribute types (RFC 8489 §18.3, RFC 8656 §18, RFC 8445 §16.1).</summary>
internal static class StunAttributeType
{
    /// <summary>MAPPED-ADDRESS.</summary>
    public const ushort MappedAddress = 0x0001;
    /// <summary>USERNAME.</summary>
    public const ushort Username = 0x0006;
    /// <summary>MESSAGE-INTEGRITY (HMAC-SHA1).</summary>
    public const ushort MessageIntegrity = 0x0008;
    /// <summary>ERROR-CODE.</summary>
    public const ushort ErrorCode = 0x0009;
    /// <summary>UNKNOWN-ATTRIBUTES.</summary>
    public const ushort UnknownAttributes = 0x000A;
    /// <summary>CHANNEL-NUMBER (TURN).</summary>
    public const ushort ChannelNumber = 0x000C;
    /// <summary>LIFETIME (TURN).</summary>
    public const ushort Lifetime = 0x000D;
    /// <summary>XOR-PEER-ADDRESS (TURN).</summary>
    public const ushort XorPeerAddress = 0x0012;
    /// <summary>DATA (TURN).</summary>
    public const ushort Data = 0x0013;
    /// <summary>REALM.</summary>
    public const ushort Realm = 0x0014;
    /// <summary>NONCE.</summary>
    public const ushort Nonce = 0x0015;
    /// <summary>XOR-RELAYED-ADDRESS (TURN).</summary>
    public const ushort XorRelayedAddress = 0x0016;
    /// <summary>REQUESTED-ADDRESS-FAMILY (TURN).</summary>
    public const ushort RequestedAddressFamily = 0x0017;
    /// <summary>EVEN-PORT (TURN).</summary>
    public const ushort EvenPort = 0x0018;
    /// <summary>REQUESTED-TRANSPORT (TURN).</summary>
    public const ushort RequestedTransport = 0x0019;
    /// <summary>DONT-FRAGMENT (TURN).</summary>
    public const ushort DontFragment = 0x001A;
    /// <summary>MESSAGE-INTEGRITY-SHA256.</summary>
    public const ushort MessageIntegritySha256 = 0x001C;
    /// <summary>PASSWORD-ALGORITHM.</summary>
    public const ushort PasswordAlgorithm = 0x001D;
    /// <summary>USERHASH.</summary>
    public const ushort UserHash = 0x001E;
    /// <summary>XOR-MAPPED-ADDRESS.</summary>
    public const ushort XorMappedAddress = 0x0020;
    /// <summary>RESERVATION-TOKEN (TURN).</summary>
    public const ushort ReservationToken = 0x0022;
    /// <summary>PRIORITY (ICE).</summary>
    public const ushort Priority = 0x0024;
    /// <summary>USE-CANDIDATE (ICE).</summary>
    public const ushort UseCandidate = 0x0025;
    /// <summary>PASSWORD-ALGORITHMS.</summary>
    public const ushort PasswordAlgorithms = 0x8002;
    /// <summary>ALTERNATE-DOMAIN.</summary>
    public const ushort AlternateDomain = 0x8003;
    /// <summary>SOFTWARE.</summary>
    public const ushort Software = 0x8022;
    /// <summary>ALTERNATE-SERVER.</summary>
    public const ushort AlternateServer = 0x8023;
    /// <summary>FINGERPRINT.</summary>
    public const ushort Fingerprint = 0x8028;
    /// <summary>ICE-CONTROLLED.</summary>
    public const ushort IceControlled = 0x8029;
    /// <summary>ICE-CONTROLLING.</summary>
    public const ushort IceControlling = 0x802A;

    /// <summary>Comprehension-required attributes occupy 0x0000–0x7FFF (RFC 8489 §14).</summary>
    public static bool IsComprehensionRequired(ushort type) => type < 0x8000;

    /// <summary>True for the comprehension-required attributes this codec understands.</summary>
    public static bool IsKnownComprehensionRequired(ushort type) => type switch
    {
        MappedAddress or Username or MessageIntegrity or ErrorCode or UnknownAttributes or ChannelNumber or Lifetime
            or XorPeerAddress or Data or Realm or Nonce or XorRelayedAddress or RequestedAddressFamily or EvenPort
            or RequestedTransport or DontFragment or MessageIntegritySha256 or PasswordAlgorithm or UserHash
            or XorMappedAddress or ReservationToken or Priority or UseCandidate => true,
        _ => false,
    };
}
