using System.Net;
using NUnit.Framework;
using Overlay.Nat.Stun;

namespace Overlay.Core.Tests.Nat;

/// <summary>Hostile input against the codec: every mutation must end in "false" or a consistent view, never an exception.</summary>
public class StunFuzzTests
{
    internal const int Mutations = 120_000;

    internal static List<byte[]> Seeds()
    {
        var seeds = new List<byte[]> { StunVectors.Request, StunVectors.ResponseIPv4, StunVectors.ResponseIPv6, StunVectors.LongTermRequest };
        var buffer = new byte[512];
        var w = new StunWriter(buffer, StunMethod.Allocate, StunClass.SuccessResponse, TransactionId.NewRandom());
        w.AddXorAddress(StunAttributeType.XorRelayedAddress, new StunAddress(IPEndPoint.Parse("[2001:db8::1]:5000")));
        w.AddXorAddress(StunAttributeType.XorMappedAddress, new StunAddress(IPEndPoint.Parse("203.0.113.5:4000")));
        w.AddUInt32(StunAttributeType.Lifetime, 600);
        w.AddErrorCode(401, "Unauthorized");
        w.AddChannelNumber(0x4000);
        w.AddBytes(StunAttributeType.Data, new byte[37]);
        w.AddMessageIntegrity(new byte[16]);
        w.AddMessageIntegritySha256(new byte[16]);
        w.AddFingerprint();
        seeds.Add(w.Written.ToArray());
        return seeds;
    }

    /// <summary>Produces one hostile datagram from a valid one, naming the attack in <paramref name="kind"/>.</summary>
    internal static byte[] Mutate(Random random, byte[] seed, out int kind)
    {
        var mutated = MutateOnce(random, seed, out kind);
        // A mutation that happens to restore the original (two flips of one bit, a length rewritten to its own value) is no attack.
        if (mutated.AsSpan().SequenceEqual(seed)) mutated[random.Next(mutated.Length)] ^= (byte)(1 << random.Next(8));
        return mutated;
    }

    private static byte[] MutateOnce(Random random, byte[] seed, out int kind)
    {
        kind = random.Next(6);
        var m = (byte[])seed.Clone();
        switch (kind)
        {
            case 0: // bit flips anywhere
                for (var i = random.Next(1, 4); i > 0; i--) m[random.Next(m.Length)] ^= (byte)(1 << random.Next(8));
                return m;
            case 1: // truncation
                return m.AsSpan(0, random.Next(m.Length)).ToArray();
            case 2: // a length field lies: message or attribute length
            {
                var at = random.Next(2) == 0 ? 2 : 20 + 4 * random.Next((m.Length - 20) / 4) + 2;
                if (at + 1 >= m.Length) at = 2;
                m[at] = (byte)random.Next(256);
                m[at + 1] = (byte)random.Next(256);
                return m;
            }
            case 3: // random bytes behind a valid header
            {
                var r = new byte[20 + 4 * random.Next(0, 64)];
                random.NextBytes(r);
                m.AsSpan(0, 20).CopyTo(r);
                r[2] = (byte)((r.Length - 20) >> 8);
                r[3] = (byte)(r.Length - 20);
                return r;
            }
            case 4: // oversize: valid message with garbage appended, length adjusted or not
            {
                var extra = 4 * random.Next(1, 400);
                var r = new byte[m.Length + extra];
                m.CopyTo(r, 0);
                random.NextBytes(r.AsSpan(m.Length));
                if (random.Next(2) == 0)
                {
                    r[2] = (byte)((r.Length - 20) >> 8);
                    r[3] = (byte)(r.Length - 20);
                }
                return r;
            }
            default: // fully random datagram with the STUN cookie
            {
                var r = new byte[random.Next(0, 600)];
                random.NextBytes(r);
                if (r.Length >= 8)
                {
                    r[0] &= 0x3f;
                    r[4] = 0x21; r[5] = 0x12; r[6] = 0xa4; r[7] = 0x42;
                }
                return r;
            }
        }
    }

    /// <summary>Exercises every accessor of a parsed message; returns a value so nothing is optimised away.</summary>
    internal static int Touch(ReadOnlySpan<byte> datagram)
    {
        if (!StunReader.TryParse(datagram, out var r)) return -1;
        var n = 0;
        if (r.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var a)) n += a.Port;
        if (r.TryGetXorAddress(StunAttributeType.XorRelayedAddress, out a)) n += a.Port;
        if (r.TryGetAddress(StunAttributeType.MappedAddress, out a)) n += a.Port;
        if (r.TryGetErrorCode(out var code, out _)) n += code;
        if (r.TryGetUInt32(StunAttributeType.Lifetime, out var life)) n += (int)life;
        if (r.TryGetChannelNumber(out var ch)) n += ch;
        if (r.TryGetString(StunAttributeType.Username, out var u)) n += u.Length;
        if (r.VerifyMessageIntegrity(new byte[16])) n++;
        if (r.VerifyMessageIntegritySha256(new byte[16])) n++;
        if (r.VerifyFingerprint()) n++;
        Span<ushort> unknown = stackalloc ushort[4];
        n += r.CopyUnknownComprehensionRequired(unknown);
        return n;
    }

    [Test]
    public void Parser_survives_mutated_truncated_oversized_and_random_datagrams()
    {
        var seed = Environment.TickCount;
        TestContext.Out.WriteLine($"fuzz seed {seed}");
        var random = new Random(seed);
        var seeds = Seeds();
        int rejected = 0, accepted = 0;
        for (var i = 0; i < Mutations; i++)
        {
            var datagram = Mutate(random, seeds[random.Next(seeds.Count)], out _);
            try
            {
                if (Touch(datagram) < 0) rejected++;
                else accepted++;
            }
            catch (Exception e)
            {
                Assert.Fail($"seed {seed}, mutation {i}: {Convert.ToHexString(datagram)} threw {e}");
            }
        }
        TestContext.Out.WriteLine($"{Mutations} mutations: {rejected} rejected as malformed, {accepted} parsed");
        Assert.That(rejected, Is.GreaterThan(Mutations / 3));
    }
}
