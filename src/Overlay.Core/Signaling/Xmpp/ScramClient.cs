using System.Security.Cryptography;
using System.Text;

namespace Overlay.Signaling.Xmpp;

/// <summary>
/// The client side of SASL SCRAM (RFC 5802) with SHA-1 or SHA-256 (RFC 7677), without channel binding
/// (gs2 header <c>n,,</c>). It verifies the server's signature, so a server that does not know the
/// password cannot complete authentication.
/// </summary>
internal sealed class ScramClient
{
    // RFC 7677 §4 recommends at least 4096 iterations; an upper bound keeps a hostile server from making us spin.
    private const int MaxIterations = 1_000_000;

    private readonly HashAlgorithmName _hash;
    private readonly string _password;
    private readonly string _clientNonce;
    private readonly string _clientFirstBare;
    private byte[]? _serverSignature;

    public ScramClient(string mechanism, string username, string password, string? clientNonce = null)
    {
        _hash = mechanism switch
        {
            "SCRAM-SHA-1" => HashAlgorithmName.SHA1,
            "SCRAM-SHA-256" => HashAlgorithmName.SHA256,
            _ => throw new ArgumentException($"unsupported SCRAM mechanism {mechanism}", nameof(mechanism)),
        };
        _password = password;
        _clientNonce = clientNonce ?? Convert.ToBase64String(RandomNumberGenerator.GetBytes(24));
        // RFC 5802 §5.1: ',' and '=' in the name are escaped as =2C and =3D.
        _clientFirstBare = "n=" + username.Replace("=", "=3D", StringComparison.Ordinal).Replace(",", "=2C", StringComparison.Ordinal) + ",r=" + _clientNonce;
    }

    public string ClientFirstMessage => "n,," + _clientFirstBare;

    /// <summary>Computes client-final-message from server-first-message; false (with a reason) when it is malformed.</summary>
    public bool TryClientFinal(string serverFirst, out string clientFinal, out string? error)
    {
        clientFinal = "";
        error = null;
        string? nonce = null, salt = null, iterations = null;
        foreach (var part in serverFirst.Split(','))
        {
            if (part.Length < 2 || part[1] != '=') continue;
            switch (part[0])
            {
                case 'r': nonce = part[2..]; break;
                case 's': salt = part[2..]; break;
                case 'i': iterations = part[2..]; break;
                case 'm': error = "server requires an unsupported SCRAM extension"; return false;
            }
        }
        if (nonce is null || salt is null || iterations is null) { error = "malformed server-first-message"; return false; }
        if (!nonce.StartsWith(_clientNonce, StringComparison.Ordinal) || nonce.Length == _clientNonce.Length)
        {
            error = "server nonce does not extend the client nonce";
            return false;
        }
        if (!int.TryParse(iterations, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var count)
            || count < 1 || count > MaxIterations)
        {
            error = $"unacceptable iteration count '{iterations}'";
            return false;
        }
        var saltBytes = new byte[salt.Length];
        if (!Convert.TryFromBase64String(salt, saltBytes, out var saltLength)) { error = "salt is not base64"; return false; }

        var hashLength = _hash == HashAlgorithmName.SHA1 ? 20 : 32;
        var salted = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(_password), saltBytes.AsSpan(0, saltLength), count, _hash, hashLength);
        var clientKey = Hmac(salted, "Client Key"u8);
        var storedKey = _hash == HashAlgorithmName.SHA1 ? SHA1.HashData(clientKey) : SHA256.HashData(clientKey);
        var withoutProof = "c=biws,r=" + nonce; // biws = base64("n,,")
        var authMessage = Encoding.UTF8.GetBytes(_clientFirstBare + "," + serverFirst + "," + withoutProof);
        var clientSignature = Hmac(storedKey, authMessage);
        var proof = new byte[clientKey.Length];
        for (var i = 0; i < proof.Length; i++) proof[i] = (byte)(clientKey[i] ^ clientSignature[i]);
        _serverSignature = Hmac(Hmac(salted, "Server Key"u8), authMessage);
        clientFinal = withoutProof + ",p=" + Convert.ToBase64String(proof);
        return true;
    }

    /// <summary>Checks server-final-message (<c>v=…</c>) against the expected server signature.</summary>
    public bool VerifyServerFinal(string serverFinal, out string? error)
    {
        error = null;
        if (_serverSignature is null) { error = "server-final before server-first"; return false; }
        if (serverFinal.StartsWith("e=", StringComparison.Ordinal)) { error = "server reported " + serverFinal[2..]; return false; }
        if (!serverFinal.StartsWith("v=", StringComparison.Ordinal)) { error = "malformed server-final-message"; return false; }
        var end = serverFinal.IndexOf(',', StringComparison.Ordinal);
        var b64 = end < 0 ? serverFinal[2..] : serverFinal[2..end];
        var buffer = new byte[b64.Length];
        if (!Convert.TryFromBase64String(b64, buffer, out var n)
            || !CryptographicOperations.FixedTimeEquals(buffer.AsSpan(0, n), _serverSignature))
        {
            error = "the server's SCRAM signature is wrong: it does not know the password (possible impersonation)";
            return false;
        }
        return true;
    }

    private byte[] Hmac(byte[] key, ReadOnlySpan<byte> data)
        => _hash == HashAlgorithmName.SHA1 ? HMACSHA1.HashData(key, data) : HMACSHA256.HashData(key, data);
}
