using System.Security.Cryptography;
using NUnit.Framework;
using Overlay.Links;
using Overlay.TestSupport;

namespace Overlay.Core.Tests.Links;

/// <summary>
/// The two AES-GCM implementations behind link sealing, libcrypto's provider called directly and .NET's AesGcm: the same
/// bytes for the same key and nonce, each opens what the other sealed, both refuse every tampering.
/// </summary>
public class GcmCipherTests
{
    private static readonly int[] Lengths = [0, 1, 15, 16, 17, 64, 1400, 1410 + 38, 9000];

    [SetUp]
    public void RequireLibCrypto()
    {
        if (LibCryptoGcm.IsAvailable) return;
        // Linux always has OpenSSL 3 where .NET runs (its own crypto needs it); elsewhere the fallback is all there is.
        if (OperatingSystem.IsLinux() && Prerequisites.IsCi) Assert.Fail("libcrypto.so.3 did not load under CI");
        Assert.Ignore("skipped: libcrypto.so.3 (OpenSSL 3) is not available here; the AesGcm fallback is used");
    }

    [Test]
    public void Auto_chooses_libcrypto_where_it_loads()
    {
        using var cipher = GcmCipher.Create(new byte[16], encrypt: true);
        Assert.That(cipher, Is.TypeOf<LibCryptoGcm>());
    }

    // McGrew and Viega, "The Galois/Counter Mode of Operation", test cases 3 (AES-128) and 15 (AES-256): 96-bit IV, no
    // AAD, the same plaintext. The two key sizes are two implementations of the provider, each found on its own.
    [TestCase("feffe9928665731c6d6a8f9467308308",
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
        "4d5c2af327cd64a62cf35abd2ba6fab4")]
    [TestCase("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
        "b094dac5d93471bdec1a502270e3cc6c")]
    public void LibCrypto_gives_the_gcm_specification_test_vectors_and_opens_them(string keyHex, string ciphertextHex, string tagHex)
    {
        var key = Convert.FromHexString(keyHex);
        var nonce = Convert.FromHexString("cafebabefacedbaddecaf888");
        var plain = Convert.FromHexString(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255");
        using var seal = new LibCryptoGcm(key, encrypt: true);
        using var open = new LibCryptoGcm(key, encrypt: false);
        var output = new byte[plain.Length];
        var tag = new byte[16];
        seal.Encrypt(nonce, plain, output, tag);
        Assert.That((Convert.ToHexString(output), Convert.ToHexString(tag)), Is.EqualTo((ciphertextHex.ToUpperInvariant(), tagHex.ToUpperInvariant())));
        var opened = new byte[plain.Length];
        Assert.That(open.TryDecrypt(nonce, output, tag, opened), Is.True);
        Assert.That(opened, Is.EqualTo(plain));
    }

    [Test]
    public void A_disposed_context_refuses_work_instead_of_touching_the_freed_one()
    {
        var seal = new LibCryptoGcm(new byte[16], encrypt: true);
        var open = new LibCryptoGcm(new byte[16], encrypt: false);
        seal.Dispose();
        open.Dispose();
        seal.Dispose(); // twice is harmless
        var buffer = new byte[32];
        Assert.Throws<ObjectDisposedException>(() => seal.Encrypt(new byte[12], buffer, buffer, new byte[16]));
        Assert.Throws<ObjectDisposedException>(() => open.TryDecrypt(new byte[12], buffer, new byte[16], buffer));
    }

    [Test]
    public void A_context_works_only_in_the_direction_it_was_keyed_for()
    {
        using var seal = new LibCryptoGcm(new byte[16], encrypt: true);
        using var open = new LibCryptoGcm(new byte[16], encrypt: false);
        var buffer = new byte[32];
        Assert.Throws<InvalidOperationException>(() => seal.TryDecrypt(new byte[12], buffer, new byte[16], buffer));
        Assert.Throws<InvalidOperationException>(() => open.Encrypt(new byte[12], buffer, buffer, new byte[16]));
    }

    [TestCase(16)]
    [TestCase(32)]
    public void Both_implementations_seal_the_same_bytes_and_open_each_others(int keyLength)
    {
        var seed = Environment.TickCount;
        var random = new Random(seed);
        var key = new byte[keyLength];
        random.NextBytes(key);
        using var libSeal = GcmCipher.Create(key, encrypt: true, GcmImplementation.LibCrypto);
        using var libOpen = GcmCipher.Create(key, encrypt: false, GcmImplementation.LibCrypto);
        using var netSeal = GcmCipher.Create(key, encrypt: true, GcmImplementation.Managed);
        using var netOpen = GcmCipher.Create(key, encrypt: false, GcmImplementation.Managed);
        Assert.That((libSeal.GetType(), netSeal.GetType()), Is.EqualTo((typeof(LibCryptoGcm), typeof(ManagedGcm))));
        foreach (var length in Lengths)
        {
            for (var round = 0; round < 20; round++) // the same context, nonce after nonce, as a link uses it
            {
                var nonce = new byte[12];
                var plain = new byte[length];
                random.NextBytes(nonce);
                random.NextBytes(plain);
                byte[] libOut = new byte[length], netOut = new byte[length], libTag = new byte[16], netTag = new byte[16];
                libSeal.Encrypt(nonce, plain, libOut, libTag);
                netSeal.Encrypt(nonce, plain, netOut, netTag);
                Assert.That(libOut.Concat(libTag).ToArray(), Is.EqualTo(netOut.Concat(netTag).ToArray()), $"length {length}, seed {seed}");

                var opened = new byte[length];
                Assert.That(netOpen.TryDecrypt(nonce, libOut, libTag, opened), Is.True, $"AesGcm opens libcrypto's, length {length}");
                Assert.That(opened, Is.EqualTo(plain));
                Array.Clear(opened);
                Assert.That(libOpen.TryDecrypt(nonce, netOut, netTag, opened), Is.True, $"libcrypto opens AesGcm's, length {length}");
                Assert.That(opened, Is.EqualTo(plain));
            }
        }
    }

    [TestCase(true)]
    [TestCase(false)]
    public void Every_flipped_bit_of_ciphertext_tag_or_nonce_is_refused_and_no_plaintext_is_left(bool libCrypto)
    {
        var implementation = libCrypto ? GcmImplementation.LibCrypto : GcmImplementation.Managed;
        var key = RandomNumberGenerator.GetBytes(16);
        var nonce = RandomNumberGenerator.GetBytes(12);
        var plain = RandomNumberGenerator.GetBytes(48);
        var sealed_ = new byte[48];
        var tag = new byte[16];
        using (var seal = GcmCipher.Create(key, encrypt: true, GcmImplementation.Managed)) seal.Encrypt(nonce, plain, sealed_, tag);
        using var open = GcmCipher.Create(key, encrypt: false, implementation);
        var output = new byte[48];
        foreach (var part in new[] { sealed_, tag, nonce })
        {
            for (var bit = 0; bit < part.Length * 8; bit++)
            {
                part[bit / 8] ^= (byte)(1 << (bit % 8));
                output.AsSpan().Fill(0xAA);
                Assert.That(open.TryDecrypt(nonce, sealed_, tag, output), Is.False, $"bit {bit} of a {part.Length}-byte part");
                Assert.That(output.All(b => b == 0), Is.True, "a refused packet leaves no plaintext behind");
                part[bit / 8] ^= (byte)(1 << (bit % 8));
            }
        }
        Assert.That(open.TryDecrypt(nonce, sealed_, tag, output), Is.True, "after every refusal the same context still opens the genuine packet");
        Assert.That(output, Is.EqualTo(plain));
    }

    [Test]
    public void Link_packets_from_either_implementation_are_the_same_bytes_and_open_with_the_other()
    {
        var key = RandomNumberGenerator.GetBytes(16);
        byte[] salt = [9, 8, 7, 6];
        using var libSealer = new FrameSealer(key, salt, epoch: 2, GcmImplementation.LibCrypto);
        using var netSealer = new FrameSealer(key, salt, epoch: 2, GcmImplementation.Managed);
        using var libOpener = new FrameOpener(key, salt, epoch: 2, GcmImplementation.LibCrypto);
        using var netOpener = new FrameOpener(key, salt, epoch: 2, GcmImplementation.Managed);
        var frame = RandomNumberGenerator.GetBytes(1400);
        for (var i = 0; i < 50; i++)
        {
            var kind = i % 2 == 0 ? PacketKind.Frame : PacketKind.FloodFrame;
            var a = SealCopy(libSealer, frame, kind);
            var b = SealCopy(netSealer, frame, kind);
            Assert.That(a, Is.EqualTo(b), $"packet {i}: same header, ciphertext and tag");
            Assert.That(netOpener.TryOpen(a, out var k1, out var p1), Is.EqualTo(OpenResult.Opened));
            Assert.That((k1, p1.ToArray()), Is.EqualTo((kind, frame)));
            Assert.That(libOpener.TryOpen(b, out var k2, out var p2), Is.EqualTo(OpenResult.Opened));
            Assert.That((k2, p2.ToArray()), Is.EqualTo((kind, frame)));
        }
        var forged = SealCopy(netSealer, frame, PacketKind.Frame);
        forged[^1] ^= 1;
        Assert.That(libOpener.TryOpen(forged, out _, out _), Is.EqualTo(OpenResult.Forged));
    }

    [Test]
    public void Output_that_partly_overlaps_the_input_is_refused()
    {
        using var cipher = new LibCryptoGcm(new byte[16], encrypt: true);
        var buffer = new byte[100];
        Assert.Throws<ArgumentException>(() => cipher.Encrypt(new byte[12], buffer.AsSpan(0, 64), buffer.AsSpan(8, 64), new byte[16]));
    }

    [Test]
    public void LibCrypto_seals_and_opens_without_allocating()
    {
        using var seal = new LibCryptoGcm(new byte[16], encrypt: true);
        using var open = new LibCryptoGcm(new byte[16], encrypt: false);
        var buffer = new byte[1400];
        var nonce = new byte[12];
        var tag = new byte[16];
        for (var i = 0; i < 100; i++) Roundtrip();
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 10_000; i++) Roundtrip();
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);

        void Roundtrip()
        {
            seal.Encrypt(nonce, buffer, buffer, tag);
            if (!open.TryDecrypt(nonce, buffer, tag, buffer)) throw new InvalidOperationException();
        }
    }

    private static byte[] SealCopy(FrameSealer sealer, byte[] payload, PacketKind kind)
    {
        var packet = new byte[payload.Length + FrameSealer.Overhead];
        payload.CopyTo(packet, FrameSealer.HeaderLength);
        return packet[..sealer.Seal(packet, payload.Length, kind)];
    }
}
