using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Overlay.Links;

/// <summary>Which AES-GCM implementation seals and opens a link's frames.</summary>
internal enum GcmImplementation
{
    /// <summary>OpenSSL's libcrypto called directly where it loads (Linux), else .NET's <see cref="AesGcm"/>.</summary>
    Auto,
    /// <summary>.NET's <see cref="AesGcm"/>: portable; on Linux the same OpenSSL underneath, with a fixed cost per call.</summary>
    Managed,
    /// <summary>libcrypto's EVP interface with a context keyed once (<see cref="LibCryptoGcm"/>); throws where it does not load.</summary>
    LibCrypto,
}

/// <summary>
/// One AES-GCM key for one direction, 12-byte nonces, 16-byte tags, no associated data (the frame header is bound
/// through the nonce, see <see cref="FrameSealer"/>). Not thread-safe: its sealer or opener serializes calls.
/// </summary>
internal abstract class GcmCipher : IDisposable
{
    public const int NonceLength = 12;
    public const int TagLength = 16;

    /// <summary>A cipher for <paramref name="key"/> (16 or 32 bytes) from the implementation asked for.</summary>
    public static GcmCipher Create(ReadOnlySpan<byte> key, bool encrypt, GcmImplementation implementation = GcmImplementation.Auto) =>
        implementation switch
        {
            GcmImplementation.Managed => new ManagedGcm(key),
            GcmImplementation.LibCrypto => new LibCryptoGcm(key, encrypt),
            _ => LibCryptoGcm.IsAvailable ? new LibCryptoGcm(key, encrypt) : new ManagedGcm(key),
        };

    /// <summary>Encrypts <paramref name="plaintext"/> into <paramref name="ciphertext"/> (the same span, or one that does not overlap it) and writes the tag.</summary>
    public abstract void Encrypt(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext, Span<byte> tag);

    /// <summary>
    /// Checks the tag and decrypts <paramref name="ciphertext"/> into <paramref name="plaintext"/> (the same span, or one that
    /// does not overlap it); false, with <paramref name="plaintext"/> cleared, when the tag does not match.
    /// </summary>
    public abstract bool TryDecrypt(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext);

    public abstract void Dispose();

    /// <summary>Input and output must be the same bytes or apart: a partial overlap would read what was just written.</summary>
    protected static void CheckOverlap(ReadOnlySpan<byte> input, ReadOnlySpan<byte> output)
    {
        if (input.Overlaps(output, out var offset) && offset != 0)
            throw new ArgumentException("Input and output overlap other than exactly.", nameof(output));
    }
}

/// <summary>.NET's <see cref="AesGcm"/>: the fallback where libcrypto is absent.</summary>
internal sealed class ManagedGcm(ReadOnlySpan<byte> key) : GcmCipher
{
    private readonly AesGcm _aes = new(key, TagLength);

    public override void Encrypt(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext, Span<byte> tag) =>
        _aes.Encrypt(nonce, plaintext, ciphertext, tag);

    public override bool TryDecrypt(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext)
    {
        try
        {
            _aes.Decrypt(nonce, ciphertext, tag, plaintext);
            return true;
        }
        catch (AuthenticationTagMismatchException)
        {
            return false;
        }
    }

    public override void Dispose() => _aes.Dispose();
}

/// <summary>
/// AES-GCM through OpenSSL's libcrypto (EVP, OpenSSL 3) with one cipher context per key, keyed once: each frame
/// only sets the nonce, runs the cipher and takes or checks the tag. .NET's <see cref="AesGcm"/> reaches the same
/// code through a shim that, per call, clears OpenSSL's error queue, looks the cipher up and sets the key again; on
/// a 1,400-byte frame that fixed cost was several times the cost of the AES itself (measured with <c>perf</c>:
/// <c>ERR_clear_error</c> alone took 10% of a link benchmark's time). Nothing here allocates per call.
/// </summary>
internal sealed unsafe partial class LibCryptoGcm : GcmCipher
{
    private const string Library = "libcrypto.so.3";

    private static readonly Lazy<bool> Loads = new(() =>
        OperatingSystem.IsLinux() && NativeLibrary.TryLoad(Library, out _) && ProbeWorks());

    private readonly ContextHandle _context;
    private readonly bool _encrypt;

    /// <summary>True where libcrypto 3 loads and seals a test vector as <see cref="AesGcm"/> does.</summary>
    public static bool IsAvailable => Loads.Value;

    public LibCryptoGcm(ReadOnlySpan<byte> key, bool encrypt)
    {
        if (!IsAvailable) throw new PlatformNotSupportedException($"{Library} (OpenSSL 3) could not be loaded.");
        var cipher = key.Length switch
        {
            16 => EVP_aes_128_gcm(),
            32 => EVP_aes_256_gcm(),
            _ => throw new ArgumentException("An AES-GCM key is 16 or 32 bytes.", nameof(key)),
        };
        _encrypt = encrypt;
        _context = new ContextHandle(EVP_CIPHER_CTX_new());
        if (_context.IsInvalid) throw new CryptographicException("EVP_CIPHER_CTX_new failed.");
        fixed (byte* k = key)
        {
            // The default nonce length of GCM in EVP is 12 bytes, the length used here.
            var ok = EVP_CipherInit_ex(_context.Pointer, cipher, 0, k, null, encrypt ? 1 : 0);
            if (ok != 1)
            {
                ERR_clear_error();
                _context.Dispose();
                throw new CryptographicException("EVP cipher init failed.");
            }
        }
    }

    public override void Encrypt(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext, Span<byte> tag)
    {
        var ctx = Check(encrypting: true, nonce, plaintext, ciphertext, tag);
        fixed (byte* n = nonce, p = plaintext, c = ciphertext, t = tag)
        {
            int written = 0, final = 0;
            if (EVP_EncryptInit_ex(ctx, 0, 0, null, n) != 1
                || EVP_EncryptUpdate(ctx, c, &written, p, plaintext.Length) != 1
                || EVP_EncryptFinal_ex(ctx, c + written, &final) != 1
                || !TagParameter(ctx, t, set: false))
            {
                ERR_clear_error();
                throw new CryptographicException("EVP AES-GCM encryption failed.");
            }
        }
    }

    public override bool TryDecrypt(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext)
    {
        var ctx = Check(encrypting: false, nonce, ciphertext, plaintext, tag);
        fixed (byte* n = nonce, c = ciphertext, t = tag, p = plaintext)
        {
            int written = 0, final = 0;
            if (EVP_DecryptInit_ex(ctx, 0, 0, null, n) != 1
                || EVP_DecryptUpdate(ctx, p, &written, c, ciphertext.Length) != 1
                || !TagParameter(ctx, t, set: true))
            {
                ERR_clear_error();
                throw new CryptographicException("EVP AES-GCM decryption failed.");
            }
            if (EVP_DecryptFinal_ex(ctx, p + written, &final) == 1) return true;
        }
        // A forged or damaged packet: no plaintext of it may be seen, and OpenSSL's error queue is left empty.
        ERR_clear_error();
        plaintext.Clear();
        return false;
    }

    public override void Dispose() => _context.Dispose();

    /// <summary>
    /// Takes (encrypting) or gives (decrypting) the tag as the cipher's "tag" parameter. <c>EVP_CIPHER_CTX_ctrl</c> does the
    /// same through a parameter array it builds per call before looking up every name it knows; this array is built
    /// here, on the stack, which measured 25-50 ns less per packet of the ~0.7 us a 1,400-byte one takes.
    /// </summary>
    private static bool TagParameter(nint ctx, byte* tag, bool set)
    {
        fixed (byte* name = "tag\0"u8) // OSSL_CIPHER_PARAM_AEAD_TAG
        {
            var parameters = stackalloc OsslParam[2];
            parameters[0] = new OsslParam { Key = name, DataType = OsslParamOctetString, Data = tag, DataSize = TagLength, ReturnSize = OsslParamUnmodified };
            parameters[1] = default; // OSSL_PARAM_END
            return (set ? EVP_CIPHER_CTX_set_params(ctx, parameters) : EVP_CIPHER_CTX_get_params(ctx, parameters)) == 1;
        }
    }

    private const uint OsslParamOctetString = 5;
    private static readonly nuint OsslParamUnmodified = nuint.MaxValue;

    /// <summary><c>OSSL_PARAM</c> (openssl/core.h).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct OsslParam
    {
        public byte* Key;
        public uint DataType;
        public void* Data;
        public nuint DataSize;
        public nuint ReturnSize;
    }

    /// <summary>The context, once the call fits it: its direction, the lengths, no partial overlap, not disposed.</summary>
    private nint Check(bool encrypting, ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> input, ReadOnlySpan<byte> output, ReadOnlySpan<byte> tag)
    {
        if (encrypting != _encrypt) throw new InvalidOperationException(_encrypt ? "This context encrypts." : "This context decrypts.");
        if (nonce.Length != NonceLength || tag.Length != TagLength || input.Length != output.Length)
            throw new ArgumentException("Nonce, tag or output of the wrong length.");
        CheckOverlap(input, output);
        ObjectDisposedException.ThrowIf(_context.IsClosed, this);
        return _context.Pointer;
    }

    /// <summary>Seals one vector with both implementations, so a libcrypto that loads but differs is never used.</summary>
    private static bool ProbeWorks()
    {
        nint ctx = 0;
        try
        {
            Span<byte> key = stackalloc byte[16], nonce = stackalloc byte[NonceLength], plain = stackalloc byte[40];
            Span<byte> ours = stackalloc byte[40], theirs = stackalloc byte[40], ourTag = stackalloc byte[TagLength], theirTag = stackalloc byte[TagLength];
            for (var i = 0; i < plain.Length; i++) plain[i] = (byte)i;
            key.Fill(7);
            nonce.Fill(9);
            ctx = EVP_CIPHER_CTX_new();
            if (ctx == 0) return false;
            fixed (byte* k = key, n = nonce, p = plain, c = ours, t = ourTag)
            {
                int written = 0, final = 0;
                if (EVP_CipherInit_ex(ctx, EVP_aes_128_gcm(), 0, k, null, 1) != 1
                    || EVP_EncryptInit_ex(ctx, 0, 0, null, n) != 1
                    || EVP_EncryptUpdate(ctx, c, &written, p, plain.Length) != 1
                    || EVP_EncryptFinal_ex(ctx, c + written, &final) != 1
                    || !TagParameter(ctx, t, set: false))
                {
                    ERR_clear_error();
                    return false;
                }
            }
            using var managed = new AesGcm(key, TagLength);
            managed.Encrypt(nonce, plain, theirs, theirTag);
            return ours.SequenceEqual(theirs) && ourTag.SequenceEqual(theirTag);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or CryptographicException)
        {
            return false;
        }
        finally
        {
            if (ctx != 0) EVP_CIPHER_CTX_free(ctx);
        }
    }

    /// <summary>Owns an <c>EVP_CIPHER_CTX</c>; freeing it also wipes the key schedule.</summary>
    private sealed class ContextHandle : SafeHandle
    {
        public ContextHandle(nint context) : base(0, ownsHandle: true) => SetHandle(context);
        public nint Pointer => handle;
        public override bool IsInvalid => handle == 0;
        protected override bool ReleaseHandle()
        {
            EVP_CIPHER_CTX_free(handle);
            return true;
        }
    }

    [LibraryImport(Library)] private static partial nint EVP_aes_128_gcm();
    [LibraryImport(Library)] private static partial nint EVP_aes_256_gcm();
    [LibraryImport(Library)] private static partial nint EVP_CIPHER_CTX_new();
    [LibraryImport(Library)] private static partial void EVP_CIPHER_CTX_free(nint ctx);
    // Setting a key may load OpenSSL's configuration and fetch the cipher from its provider (file reads, locks): not
    // one of those.
    [LibraryImport(Library)] private static partial int EVP_CipherInit_ex(nint ctx, nint cipher, nint engine, byte* key, byte* iv, int encrypt);
    // The calls made per packet return within microseconds and never block or call back into .NET: they skip the switch
    // to preemptive mode and back that a P/Invoke makes (a GC waits for them as it waits for managed code).
    [LibraryImport(Library), SuppressGCTransition] private static partial int EVP_EncryptInit_ex(nint ctx, nint cipher, nint engine, byte* key, byte* iv);
    [LibraryImport(Library), SuppressGCTransition] private static partial int EVP_EncryptUpdate(nint ctx, byte* output, int* outputLength, byte* input, int inputLength);
    [LibraryImport(Library), SuppressGCTransition] private static partial int EVP_EncryptFinal_ex(nint ctx, byte* output, int* outputLength);
    [LibraryImport(Library), SuppressGCTransition] private static partial int EVP_DecryptInit_ex(nint ctx, nint cipher, nint engine, byte* key, byte* iv);
    [LibraryImport(Library), SuppressGCTransition] private static partial int EVP_DecryptUpdate(nint ctx, byte* output, int* outputLength, byte* input, int inputLength);
    [LibraryImport(Library), SuppressGCTransition] private static partial int EVP_DecryptFinal_ex(nint ctx, byte* output, int* outputLength);
    [LibraryImport(Library), SuppressGCTransition] private static partial int EVP_CIPHER_CTX_get_params(nint ctx, OsslParam* parameters);
    [LibraryImport(Library), SuppressGCTransition] private static partial int EVP_CIPHER_CTX_set_params(nint ctx, OsslParam* parameters);
    [LibraryImport(Library)] private static partial void ERR_clear_error();
}
