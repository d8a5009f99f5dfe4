namespace Overlay.Nat.Stun;

/// <summary>STUN methods used by ICE and TURN (RFC 8489 §18.2, RFC 8656 §17).</summary>
internal enum StunMethod : ushort
{
    /// <summary>Binding (RFC 8489).</summary>
    Binding = 0x001,
    /// <summary>TURN Allocate.</summary>
    Allocate = 0x003,
    /// <summary>TURN Refresh.</summary>
    Refresh = 0x004,
    /// <summary>TURN Send (indication).</summary>
    Send = 0x006,
    /// <summary>TURN Data (indication).</summary>
    Data = 0x007,
    /// <summary>TURN CreatePermission.</summary>
    CreatePermission = 0x008,
    /// <summary>TURN ChannelBind.</summary>
    ChannelBind = 0x009,
}

/// <summary>The class of a STUN message (RFC 8489 §5).</summary>
internal enum StunClass : byte
{
    /// <summary>Request.</summary>
    Request = 0,
    /// <summary>Indication.</summary>
    Indication = 1,
    /// <summary>Success response.</summary>
    SuccessResponse = 2,
    /// <summary>Error response.</summary>
    ErrorResponse = 3,
}

/// <summary>Packs and unpacks the 14-bit message type (RFC 8489 §5: method bits M0–M11 interleaved with class bits C0, C1).</summary>
internal static class StunMessageType
{
    public static ushort Encode(StunMethod method, StunClass @class)
    {
        var m = (int)method;
        var c = (int)@class;
        return (ushort)((m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7));
    }

    public static void Decode(ushort type, out StunMethod method, out StunClass @class)
    {
        method = (StunMethod)((type & 0x000F) | ((type & 0x00E0) >> 1) | ((type & 0x3E00) >> 2));
        @class = (StunClass)(((type >> 4) & 1) | ((type >> 7) & 2));
    }
}
