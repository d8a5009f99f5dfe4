using System.Security.Cryptography;

namespace Overlay.Nat.Ice;

/// <summary>ICE username fragment and password (RFC 8445 §5.3, RFC 8839 §5.4), random per session.</summary>
/// <param name="Ufrag">At least 4 ice-chars.</param>
/// <param name="Password">At least 22 ice-chars.</param>
internal sealed record IceCredentials(string Ufrag, string Password)
{
    private const string IceChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    /// <summary>True for ALPHA / DIGIT / "+" / "/" (RFC 8839 §5.4 ice-char).</summary>
    public static bool IsIceChar(char c) => c is (>= 'A' and <= 'Z') or (>= 'a' and <= 'z') or (>= '0' and <= '9') or '+' or '/';

    /// <summary>New random credentials: 8-char ufrag (48 bits), 24-char password (144 bits).</summary>
    public static IceCredentials NewRandom() => new(RandomString(8), RandomString(24));

    private static string RandomString(int length) => RandomNumberGenerator.GetString(IceChars, length);

    /// <summary>True when both values have legal lengths and characters (RFC 8839 §5.4: ufrag 4–256, pwd 22–256).</summary>
    public bool IsValid() => Valid(Ufrag, 4) && Valid(Password, 22);

    private static bool Valid(string? s, int min)
    {
        if (s is null || s.Length < min || s.Length > 256) return false;
        foreach (var c in s)
            if (!IsIceChar(c)) return false;
        return true;
    }
}
