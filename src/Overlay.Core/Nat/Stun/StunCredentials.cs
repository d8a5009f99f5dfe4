using System.Security.Cryptography;
using System.Text;

namespace Overlay.Nat.Stun;

/// <summary>Key derivation for MESSAGE-INTEGRITY (RFC 8489 §9.1.1 short-term, §9.2.2 long-term).</summary>
internal static class StunCredentials
{
    /// <summary>Size of a long-term (MD5) key.</summary>
    public const int LongTermKeySize = 16;

    /// <summary>
    /// Long-term key: MD5(username ":" realm ":" password), written into <paramref name="destination"/> (16 bytes).
    /// The strings are used as given (OpaqueString preparation is the caller's: ASCII credentials need none).
    /// </summary>
    public static void LongTermKey(string username, string realm, string password, Span<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(username);
        ArgumentNullException.ThrowIfNull(realm);
        ArgumentNullException.ThrowIfNull(password);
        var length = Encoding.UTF8.GetByteCount(username) + Encoding.UTF8.GetByteCount(realm) + Encoding.UTF8.GetByteCount(password) + 2;
        var buffer = length <= 1024 ? stackalloc byte[length] : new byte[length];
        var n = Encoding.UTF8.GetBytes(username, buffer);
        buffer[n++] = (byte)':';
        n += Encoding.UTF8.GetBytes(realm, buffer[n..]);
        buffer[n++] = (byte)':';
        n += Encoding.UTF8.GetBytes(password, buffer[n..]);
        MD5.HashData(buffer[..n], destination);
    }

    /// <summary>Long-term key as a new array.</summary>
    public static byte[] LongTermKey(string username, string realm, string password)
    {
        var key = new byte[LongTermKeySize];
        LongTermKey(username, realm, password, key);
        return key;
    }

    /// <summary>Short-term key: the password's UTF-8 bytes (ICE uses the peer's ice-pwd).</summary>
    public static byte[] ShortTermKey(string password)
    {
        ArgumentNullException.ThrowIfNull(password);
        return Encoding.UTF8.GetBytes(password);
    }
}
