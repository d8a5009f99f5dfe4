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
    /// <summary>libcrypto's AES-GCM with a context keyed once (<see cref="LibCryptoGcm"/>); throws where it does not load.</summary>
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
/// AES-GCM through OpenSSL's libcrypto (OpenSSL 3) with one cipher context per key, keyed once: each frame only sets
/// the nonce, runs the cipher and takes or checks the tag. .NET's <see cref="AesGcm"/> reaches the same code through a
/// shim that, per call, clears OpenSSL's error queue, looks the cipher up and sets the key again; on a 1,400-byte frame
/// that fixed cost was several times the cost of the AES itself (measured with <c>perf</c>: <c>ERR_clear_error</c> alone
/// took 10% of a link benchmark's time). Nothing here allocates per call.
/// <para>
/// The context is the provider's own (provider-cipher(7)): the cipher is fetched once through EVP, as
/// <c>EVP_CipherInit_ex</c> would, and the functions of the implementation it fetched are called directly, as EVP calls
/// them. EVP's wrappers were a fifth of a seal: OpenSSL 3.0's <c>EVP_EncryptInit_ex</c>, given only a nonce, asks the
/// provider for the nonce length through a parameter lookup every time (<c>strcmp</c> after <c>strcmp</c>), 54 ns of a
/// 490 ns seal of 1,424 bytes measured in C; the direct calls took 413 ns for the same bytes, and
/// <c>SealBenchmarks</c> went from 576 to 467 ns per 1,400-byte seal and from 1,106 to 918 ns per seal and open.
/// </para>
/// </summary>
internal sealed unsafe partial class LibCryptoGcm : GcmCipher
{
    private const string Library = "libcrypto.so.3";
    private const int OperationCipher = 2; // OSSL_OP_CIPHER (openssl/core_dispatch.h)

    private static readonly Lazy<bool> Loads = new(() =>
        OperatingSystem.IsLinux() && NativeLibrary.TryLoad(Library, out _) && ProbeWorks());

    private readonly ContextHandle _context;
    private readonly bool _encrypt;
    private readonly ProviderCipher _cipher;

    /// <summary>True where libcrypto 3 loads and seals and opens a test vector as <see cref="AesGcm"/> does.</summary>
    public static bool IsAvailable => Loads.Value;

    public LibCryptoGcm(ReadOnlySpan<byte> key, bool encrypt)
    {
        if (!IsAvailable) throw new PlatformNotSupportedException($"{Library} (OpenSSL 3) could not be loaded.");
        _encrypt = encrypt;
        _context = Open(key, encrypt, out _cipher) ?? throw new CryptographicException("The provider's AES-GCM context could not be keyed.");
    }

    public override void Encrypt(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext, Span<byte> tag)
    {
        var ctx = Check(encrypting: true, nonce, plaintext, ciphertext, tag);
        fixed (byte* n = nonce, p = plaintext, c = ciphertext, t = tag)
        {
            if (!Seal(_cipher, ctx, n, p, c, plaintext.Length, t))
            {
                ERR_clear_error();
                throw new CryptographicException("AES-GCM encryption failed.");
            }
        }
    }

    public override bool TryDecrypt(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext)
    {
        var ctx = Check(encrypting: false, nonce, ciphertext, plaintext, tag);
        fixed (byte* n = nonce, c = ciphertext, t = tag, p = plaintext)
        {
            switch (Unseal(_cipher, ctx, n, c, p, ciphertext.Length, t))
            {
                case null:
                    ERR_clear_error();
                    throw new CryptographicException("AES-GCM decryption failed.");
                case true:
                    return true;
            }
        }
        // A forged or damaged packet: no plaintext of it may be seen, and OpenSSL's error queue is left empty.
        ERR_clear_error();
        plaintext.Clear();
        return false;
    }

    public override void Dispose() => _context.Dispose();

    /// <summary>Sets the nonce, encrypts <paramref name="length"/> bytes and takes the tag; false when a call fails.</summary>
    private static bool Seal(ProviderCipher cipher, nint ctx, byte* nonce, byte* plaintext, byte* ciphertext, int length, byte* tag)
    {
        nuint written = 0, final = 0;
        return cipher.EncryptInit(ctx, null, 0, nonce, NonceLength, null) == 1
            && cipher.Update(ctx, ciphertext, &written, (nuint)length, plaintext, (nuint)length) == 1
            && cipher.Final(ctx, ciphertext + written, &final, (nuint)length - written) == 1
            && TagParameter(cipher, ctx, tag, set: false);
    }

    /// <summary>
    /// Sets the nonce, decrypts <paramref name="length"/> bytes and checks the tag: true when it matches, false when it does
    /// not (a forged or damaged packet), null when a call before the check fails.
    /// </summary>
    private static bool? Unseal(ProviderCipher cipher, nint ctx, byte* nonce, byte* ciphertext, byte* plaintext, int length, byte* tag)
    {
        nuint written = 0, final = 0;
        if (cipher.DecryptInit(ctx, null, 0, nonce, NonceLength, null) != 1
            || cipher.Update(ctx, plaintext, &written, (nuint)length, ciphertext, (nuint)length) != 1
            || !TagParameter(cipher, ctx, tag, set: true))
            return null;
        return cipher.Final(ctx, plaintext + written, &final, (nuint)length - written) == 1;
    }

    /// <summary>
    /// Takes (encrypting) or gives (decrypting) the tag as the cipher's "tag" parameter, through a parameter array built
    /// here, on the stack (<c>EVP_CIPHER_CTX_ctrl</c> builds one per call and looks up every name it knows first).
    /// </summary>
    private static bool TagParameter(ProviderCipher cipher, nint ctx, byte* tag, bool set)
    {
        fixed (byte* name = "tag\0"u8) // OSSL_CIPHER_PARAM_AEAD_TAG
        {
            var parameters = stackalloc OsslParam[2];
            parameters[0] = new OsslParam { Key = name, DataType = OsslParamOctetString, Data = tag, DataSize = TagLength, ReturnSize = OsslParamUnmodified };
            parameters[1] = default; // OSSL_PARAM_END
            return (set ? cipher.SetParameters(ctx, parameters) : cipher.GetParameters(ctx, parameters)) == 1;
        }
    }

    /// <summary>
    /// A context of the provider's AES-GCM for <paramref name="key"/> (16 or 32 bytes), keyed for one direction, and the
    /// functions that drive it; null when a step fails (OpenSSL's error queue is left empty).
    /// </summary>
    private static ContextHandle? Open(ReadOnlySpan<byte> key, bool encrypt, out ProviderCipher cipher)
    {
        cipher = default;
        var name = key.Length switch
        {
            16 => "AES-128-GCM",
            32 => "AES-256-GCM",
            _ => throw new ArgumentException("An AES-GCM key is 16 or 32 bytes.", nameof(key)),
        };
        // Fetching may load OpenSSL's configuration and consult its providers (file reads, locks): once per key, never per
        // packet. The fetched cipher holds its provider loaded; the context keeps it until the context is freed.
        var fetched = EVP_CIPHER_fetch(0, name, null);
        if (fetched == 0 || !ProviderCipher.TryFind(fetched, name, out cipher))
        {
            if (fetched != 0) EVP_CIPHER_free(fetched);
            ERR_clear_error();
            return null;
        }
        var context = cipher.NewContext(cipher.ProviderContext);
        if (context == 0)
        {
            EVP_CIPHER_free(fetched);
            ERR_clear_error();
            return null;
        }
        var handle = new ContextHandle(context, cipher, fetched);
        int keyed;
        fixed (byte* k = key)
        {
            keyed = encrypt
                ? cipher.EncryptInit(handle.Pointer, k, (nuint)key.Length, null, 0, null)
                : cipher.DecryptInit(handle.Pointer, k, (nuint)key.Length, null, 0, null);
        }
        if (keyed == 1) return handle;
        handle.Dispose();
        ERR_clear_error();
        return null;
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

    /// <summary><c>OSSL_ALGORITHM</c> (openssl/core.h): an implementation a provider offers.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct OsslAlgorithm
    {
        public byte* Names; // "AES-128-GCM:id-aes128-GCM:2.16.840.1.101.3.4.1.6"
        public byte* Properties;
        public OsslDispatch* Implementation;
        public byte* Description;
    }

    /// <summary><c>OSSL_DISPATCH</c> (openssl/core.h): one function of an implementation, by number.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct OsslDispatch
    {
        public int Function;
        public nint Pointer;
    }

    /// <summary>
    /// The functions of one provider's AES-GCM implementation (provider-cipher(7); the numbers are openssl/core_dispatch.h's
    /// <c>OSSL_FUNC_CIPHER_*</c>). Those called per packet return within microseconds and never block or call back into
    /// .NET: they skip the switch to preemptive mode and back that a call out of .NET makes (a GC waits for them as it
    /// waits for managed code).
    /// </summary>
    private readonly struct ProviderCipher
    {
        public nint ProviderContext { get; private init; }
        public delegate* unmanaged<nint, nint> NewContext { get; private init; }
        public delegate* unmanaged<nint, void> FreeContext { get; private init; }
        public delegate* unmanaged[SuppressGCTransition]<nint, byte*, nuint, byte*, nuint, OsslParam*, int> EncryptInit { get; private init; }
        public delegate* unmanaged[SuppressGCTransition]<nint, byte*, nuint, byte*, nuint, OsslParam*, int> DecryptInit { get; private init; }
        public delegate* unmanaged[SuppressGCTransition]<nint, byte*, nuint*, nuint, byte*, nuint, int> Update { get; private init; }
        public delegate* unmanaged[SuppressGCTransition]<nint, byte*, nuint*, nuint, int> Final { get; private init; }
        public delegate* unmanaged[SuppressGCTransition]<nint, OsslParam*, int> GetParameters { get; private init; }
        public delegate* unmanaged[SuppressGCTransition]<nint, OsslParam*, int> SetParameters { get; private init; }

        /// <summary>
        /// The implementation named <paramref name="name"/> among the ciphers of the provider <paramref name="fetched"/> came
        /// from, with every function used here; false when the provider offers none such.
        /// </summary>
        public static bool TryFind(nint fetched, string name, out ProviderCipher cipher)
        {
            cipher = default;
            var provider = EVP_CIPHER_get0_provider(fetched);
            if (provider == 0) return false; // an engine's cipher, not a provider's
            int noCache;
            var algorithms = OSSL_PROVIDER_query_operation(provider, OperationCipher, &noCache);
            if (algorithms == null) return false;
            try
            {
                for (var a = algorithms; a->Names != null; a++)
                {
                    if (!Names(a->Names, name)) continue;
                    var found = new ProviderCipher { ProviderContext = OSSL_PROVIDER_get0_provider_ctx(provider) };
                    for (var d = a->Implementation; d->Function != 0; d++)
                    {
                        found = d->Function switch
                        {
                            1 => found with { NewContext = (delegate* unmanaged<nint, nint>)d->Pointer },
                            2 => found with { EncryptInit = (delegate* unmanaged[SuppressGCTransition]<nint, byte*, nuint, byte*, nuint, OsslParam*, int>)d->Pointer },
                            3 => found with { DecryptInit = (delegate* unmanaged[SuppressGCTransition]<nint, byte*, nuint, byte*, nuint, OsslParam*, int>)d->Pointer },
                            4 => found with { Update = (delegate* unmanaged[SuppressGCTransition]<nint, byte*, nuint*, nuint, byte*, nuint, int>)d->Pointer },
                            5 => found with { Final = (delegate* unmanaged[SuppressGCTransition]<nint, byte*, nuint*, nuint, int>)d->Pointer },
                            7 => found with { FreeContext = (delegate* unmanaged<nint, void>)d->Pointer },
                            10 => found with { GetParameters = (delegate* unmanaged[SuppressGCTransition]<nint, OsslParam*, int>)d->Pointer },
                            11 => found with { SetParameters = (delegate* unmanaged[SuppressGCTransition]<nint, OsslParam*, int>)d->Pointer },
                            _ => found,
                        };
                    }
                    if (found.NewContext == null || found.FreeContext == null || found.EncryptInit == null || found.DecryptInit == null
                        || found.Update == null || found.Final == null || found.GetParameters == null || found.SetParameters == null)
                        return false;
                    cipher = found;
                    return true;
                }
                return false;
            }
            finally
            {
                OSSL_PROVIDER_unquery_operation(provider, OperationCipher, algorithms);
            }
        }

        /// <summary>Whether the colon-separated <paramref name="names"/> include <paramref name="name"/> (OpenSSL's names ignore case).</summary>
        private static bool Names(byte* names, string name)
        {
            var all = MemoryMarshal.CreateReadOnlySpanFromNullTerminated(names);
            foreach (var range in all.Split((byte)':'))
            {
                var one = all[range];
                if (one.Length != name.Length) continue;
                var same = true;
                for (var i = 0; i < one.Length && same; i++) same = char.ToUpperInvariant((char)one[i]) == char.ToUpperInvariant(name[i]);
                if (same) return true;
            }
            return false;
        }
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

    /// <summary>Seals and opens one vector, comparing with <see cref="AesGcm"/>, so a libcrypto that loads but differs is never used.</summary>
    private static bool ProbeWorks()
    {
        ContextHandle? seal = null, open = null;
        try
        {
            Span<byte> key = stackalloc byte[16], nonce = stackalloc byte[NonceLength], plain = stackalloc byte[40], opened = stackalloc byte[40];
            Span<byte> ours = stackalloc byte[40], theirs = stackalloc byte[40], ourTag = stackalloc byte[TagLength], theirTag = stackalloc byte[TagLength];
            for (var i = 0; i < plain.Length; i++) plain[i] = (byte)i;
            key.Fill(7);
            nonce.Fill(9);
            seal = Open(key, encrypt: true, out var sealing);
            open = Open(key, encrypt: false, out var opening);
            if (seal is null || open is null) return false;
            fixed (byte* n = nonce, p = plain, c = ours, t = ourTag, o = opened)
            {
                if (!Seal(sealing, seal.Pointer, n, p, c, plain.Length, t) || Unseal(opening, open.Pointer, n, c, o, ours.Length, t) != true)
                {
                    ERR_clear_error();
                    return false;
                }
            }
            using var managed = new AesGcm(key, TagLength);
            managed.Encrypt(nonce, plain, theirs, theirTag);
            return ours.SequenceEqual(theirs) && ourTag.SequenceEqual(theirTag) && opened.SequenceEqual(plain);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or CryptographicException)
        {
            return false;
        }
        finally
        {
            seal?.Dispose();
            open?.Dispose();
        }
    }

    /// <summary>Owns the provider's context (freeing it also wipes the key schedule) and the fetched cipher behind it.</summary>
    private sealed class ContextHandle : SafeHandle
    {
        private readonly delegate* unmanaged<nint, void> _free;
        private readonly nint _fetched;

        public ContextHandle(nint context, ProviderCipher cipher, nint fetched) : base(0, ownsHandle: true)
        {
            _free = cipher.FreeContext;
            _fetched = fetched;
            SetHandle(context);
        }

        public nint Pointer => handle;
        public override bool IsInvalid => handle == 0;

        protected override bool ReleaseHandle()
        {
            _free(handle);
            EVP_CIPHER_free(_fetched);
            return true;
        }
    }

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)] private static partial nint EVP_CIPHER_fetch(nint libraryContext, string algorithm, string? properties);
    [LibraryImport(Library)] private static partial void EVP_CIPHER_free(nint cipher);
    [LibraryImport(Library)] private static partial nint EVP_CIPHER_get0_provider(nint cipher);
    [LibraryImport(Library)] private static partial OsslAlgorithm* OSSL_PROVIDER_query_operation(nint provider, int operation, int* noCache);
    [LibraryImport(Library)] private static partial void OSSL_PROVIDER_unquery_operation(nint provider, int operation, OsslAlgorithm* algorithms);
    [LibraryImport(Library)] private static partial nint OSSL_PROVIDER_get0_provider_ctx(nint provider);
    [LibraryImport(Library)] private static partial void ERR_clear_error();
}
