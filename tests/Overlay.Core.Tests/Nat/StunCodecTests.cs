using System.Net;
using System.Text;
using NUnit.Framework;
using Overlay.Nat.Stun;

namespace Overlay.Core.Tests.Nat;

public class StunCodecTests
{
    private static readonly byte[] ShortTermKey = Encoding.UTF8.GetBytes(StunVectors.ShortTermPassword);

    [Test]
    public void Rfc5769_sample_request_parses_with_valid_integrity_and_fingerprint()
    {
        Assert.That(StunReader.TryParse(StunVectors.Request, out var r), Is.True);
        Assert.That(r.Method, Is.EqualTo(StunMethod.Binding));
        Assert.That(r.Class, Is.EqualTo(StunClass.Request));
        Assert.That(r.TransactionId.ToString(), Is.EqualTo("b7e7a701bc34d686fa87dfae"));
        Assert.That(r.TryGetString(StunAttributeType.Software, out var software) && software == "STUN test client");
        Assert.That(r.TryGetString(StunAttributeType.Username, out var user) && user == StunVectors.ShortTermUsername);
        Assert.That(r.TryGetUInt32(StunAttributeType.Priority, out var priority) && priority == 0x6e0001ff);
        Assert.That(r.TryGetUInt64(StunAttributeType.IceControlled, out var tie) && tie == 0x932ff9b151263b36);
        Assert.That(r.VerifyMessageIntegrity(ShortTermKey), Is.True);
        Assert.That(r.VerifyFingerprint(), Is.True);
        Assert.That(r.UnknownComprehensionRequiredCount, Is.Zero);
    }

    [Test]
    public void Rfc5769_ipv4_response_yields_the_mapped_address()
    {
        Assert.That(StunReader.TryParse(StunVectors.ResponseIPv4, out var r), Is.True);
        Assert.That(r.Class, Is.EqualTo(StunClass.SuccessResponse));
        Assert.That(r.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var a), Is.True);
        Assert.That(a.ToEndPoint(), Is.EqualTo(IPEndPoint.Parse("192.0.2.1:32853")));
        Assert.That(r.VerifyMessageIntegrity(ShortTermKey), Is.True);
        Assert.That(r.VerifyFingerprint(), Is.True);
    }

    [Test]
    public void Rfc5769_ipv6_response_yields_the_mapped_address()
    {
        Assert.That(StunReader.TryParse(StunVectors.ResponseIPv6, out var r), Is.True);
        Assert.That(r.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var a), Is.True);
        Assert.That(a.ToEndPoint(), Is.EqualTo(IPEndPoint.Parse("[2001:db8:1234:5678:11:2233:4455:6677]:32853")));
        Assert.That(r.VerifyMessageIntegrity(ShortTermKey), Is.True);
        Assert.That(r.VerifyFingerprint(), Is.True);
    }

    [Test]
    public void Rfc5769_long_term_request_verifies_with_the_md5_key()
    {
        Assert.That(StunReader.TryParse(StunVectors.LongTermRequest, out var r), Is.True);
        Assert.That(r.TryGetString(StunAttributeType.Username, out var user) && user == StunVectors.LongTermUsername);
        Assert.That(r.TryGetString(StunAttributeType.Nonce, out var nonce) && nonce == StunVectors.LongTermNonce);
        Assert.That(r.TryGetString(StunAttributeType.Realm, out var realm) && realm == StunVectors.LongTermRealm);
        var key = StunCredentials.LongTermKey(StunVectors.LongTermUsername, StunVectors.LongTermRealm, StunVectors.LongTermPassword);
        Assert.That(r.VerifyMessageIntegrity(key), Is.True);
        Assert.That(r.HasFingerprint, Is.False);
    }

    [Test]
    public void Writer_reproduces_the_rfc5769_ipv6_response_attributes()
    {
        Span<byte> buffer = stackalloc byte[256];
        var w = new StunWriter(buffer, StunMethod.Binding, StunClass.SuccessResponse, TransactionId.Read(StunVectors.ResponseIPv6.AsSpan(8)));
        w.AddString(StunAttributeType.Software, "test vector");
        w.AddXorAddress(StunAttributeType.XorMappedAddress, new StunAddress(IPEndPoint.Parse("[2001:db8:1234:5678:11:2233:4455:6677]:32853")));
        w.AddMessageIntegrity(ShortTermKey);
        w.AddFingerprint();
        // The RFC pads SOFTWARE with a space where RFC 8489 writes zero, so only the XOR address bytes are compared.
        Assert.That(w.Written.Slice(36, 24).ToArray(), Is.EqualTo(StunVectors.ResponseIPv6.AsSpan(36, 24).ToArray()));
        Assert.That(StunReader.TryParse(w.Written, out var r) && r.VerifyMessageIntegrity(ShortTermKey) && r.VerifyFingerprint());
    }

    [TestCase("198.51.100.7:3478")]
    [TestCase("[2001:db8::42]:65535")]
    public void Every_attribute_round_trips(string endPoint)
    {
        var address = new StunAddress(IPEndPoint.Parse(endPoint));
        var tid = TransactionId.NewRandom();
        Span<byte> buffer = stackalloc byte[512];
        var w = new StunWriter(buffer, StunMethod.Allocate, StunClass.ErrorResponse, tid);
        w.AddString(StunAttributeType.Username, "alice:bob");
        w.AddString(StunAttributeType.Realm, "overlay.test");
        w.AddString(StunAttributeType.Nonce, "abc");
        w.AddString(StunAttributeType.Software, "overlay");
        w.AddErrorCode(438, "Stale Nonce");
        w.AddUInt32(StunAttributeType.Priority, 0x7effffff);
        w.AddFlag(StunAttributeType.UseCandidate);
        w.AddUInt64(StunAttributeType.IceControlling, 0x0123456789abcdef);
        w.AddUInt64(StunAttributeType.IceControlled, 0xfedcba9876543210);
        w.AddUInt32(StunAttributeType.Lifetime, 600);
        w.AddXorAddress(StunAttributeType.XorMappedAddress, address);
        w.AddXorAddress(StunAttributeType.XorRelayedAddress, address);
        w.AddXorAddress(StunAttributeType.XorPeerAddress, address);
        w.AddAddress(StunAttributeType.MappedAddress, address);
        w.AddChannelNumber(0x4001);
        w.AddBytes(StunAttributeType.Data, [1, 2, 3, 4, 5]);
        w.AddRequestedTransport();
        w.AddUnknownAttributes([0x7777, 0x0042]);
        var key = StunCredentials.LongTermKey("alice", "overlay.test", "pw");
        w.AddMessageIntegrity(key);
        w.AddMessageIntegritySha256(key);
        w.AddFingerprint();
        Assert.That(w.Overflowed, Is.False);

        Assert.That(StunReader.TryParse(w.Written, out var r), Is.True);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(r.Method, Is.EqualTo(StunMethod.Allocate));
            Assert.That(r.Class, Is.EqualTo(StunClass.ErrorResponse));
            Assert.That(r.TransactionId, Is.EqualTo(tid));
            Assert.That(r.TryGetString(StunAttributeType.Username, out var u) ? u : null, Is.EqualTo("alice:bob"));
            Assert.That(r.TryGetString(StunAttributeType.Realm, out var realm) ? realm : null, Is.EqualTo("overlay.test"));
            Assert.That(r.TryGetString(StunAttributeType.Nonce, out var n) ? n : null, Is.EqualTo("abc"));
            Assert.That(r.TryGetErrorCode(out var code, out var reason) ? code : 0, Is.EqualTo(438));
            Assert.That(Encoding.UTF8.GetString(reason), Is.EqualTo("Stale Nonce"));
            Assert.That(r.TryGetUInt32(StunAttributeType.Priority, out var p) ? p : 0, Is.EqualTo(0x7effffffu));
            Assert.That(r.HasAttribute(StunAttributeType.UseCandidate), Is.True);
            Assert.That(r.TryGetUInt64(StunAttributeType.IceControlling, out var t1) ? t1 : 0, Is.EqualTo(0x0123456789abcdefUL));
            Assert.That(r.TryGetUInt64(StunAttributeType.IceControlled, out var t2) ? t2 : 0, Is.EqualTo(0xfedcba9876543210UL));
            Assert.That(r.TryGetUInt32(StunAttributeType.Lifetime, out var life) ? life : 0, Is.EqualTo(600u));
            Assert.That(r.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var a1) ? a1 : default, Is.EqualTo(address));
            Assert.That(r.TryGetXorAddress(StunAttributeType.XorRelayedAddress, out var a2) ? a2 : default, Is.EqualTo(address));
            Assert.That(r.TryGetXorAddress(StunAttributeType.XorPeerAddress, out var a3) ? a3 : default, Is.EqualTo(address));
            Assert.That(r.TryGetAddress(StunAttributeType.MappedAddress, out var a4) ? a4 : default, Is.EqualTo(address));
            Assert.That(r.TryGetChannelNumber(out var ch) ? ch : 0, Is.EqualTo(0x4001));
            Assert.That(r.TryGetAttribute(StunAttributeType.Data, out var data) ? data.ToArray() : null, Is.EqualTo(new byte[] { 1, 2, 3, 4, 5 }));
            Assert.That(r.TryGetAttribute(StunAttributeType.RequestedTransport, out var rt) ? rt[0] : 0, Is.EqualTo(17));
            Assert.That(r.VerifyMessageIntegrity(key), Is.True);
            Assert.That(r.VerifyMessageIntegritySha256(key), Is.True);
            Assert.That(r.VerifyFingerprint(), Is.True);
        }
    }

    [Test]
    public void Wrong_key_fails_integrity()
    {
        Assert.That(StunReader.TryParse(StunVectors.Request, out var r), Is.True);
        Assert.That(r.VerifyMessageIntegrity("wrong-password"u8), Is.False);
    }

    [Test]
    public void Tampered_attribute_fails_integrity_and_fingerprint()
    {
        var m = StunVectors.Request;
        m[26] ^= 0x01; // inside SOFTWARE
        Assert.That(StunReader.TryParse(m, out var r), Is.True);
        Assert.That(r.VerifyMessageIntegrity(ShortTermKey), Is.False);
        Assert.That(r.VerifyFingerprint(), Is.False);
    }

    [Test]
    public void Tampered_fingerprint_fails_only_the_fingerprint()
    {
        var m = StunVectors.Request;
        m[^1] ^= 0x80;
        Assert.That(StunReader.TryParse(m, out var r), Is.True);
        Assert.That(r.VerifyMessageIntegrity(ShortTermKey), Is.True);
        Assert.That(r.VerifyFingerprint(), Is.False);
    }

    [Test]
    public void Missing_integrity_does_not_verify()
    {
        Span<byte> buffer = stackalloc byte[64];
        var w = new StunWriter(buffer, StunMethod.Binding, StunClass.Request, TransactionId.NewRandom());
        w.AddFingerprint();
        Assert.That(StunReader.TryParse(w.Written, out var r), Is.True);
        Assert.That(r.VerifyMessageIntegrity(ShortTermKey), Is.False);
        Assert.That(r.VerifyFingerprint(), Is.True);
    }

    [Test]
    public void Unknown_comprehension_required_attributes_are_reported_but_optional_ones_are_not()
    {
        Span<byte> buffer = stackalloc byte[128];
        var w = new StunWriter(buffer, StunMethod.Binding, StunClass.Request, TransactionId.NewRandom());
        w.AddBytes(0x7f01, [1]);
        w.AddBytes(0xc001, [2]);
        w.AddBytes(0x0002, [3]);
        Assert.That(StunReader.TryParse(w.Written, out var r), Is.True);
        Span<ushort> unknown = stackalloc ushort[4];
        var n = r.CopyUnknownComprehensionRequired(unknown);
        Assert.That(unknown[..n].ToArray(), Is.EqualTo(new ushort[] { 0x7f01, 0x0002 }));
    }

    [Test]
    public void Attributes_after_fingerprint_make_the_message_malformed()
    {
        var m = StunVectors.Request.Concat(new byte[] { 0x80, 0x22, 0, 0 }).ToArray();
        m[3] += 4;
        Assert.That(StunReader.TryParse(m, out _), Is.False);
    }

    [Test]
    public void Attributes_after_integrity_other_than_fingerprint_are_ignored()
    {
        Span<byte> buffer = stackalloc byte[128];
        var w = new StunWriter(buffer, StunMethod.Binding, StunClass.Request, TransactionId.NewRandom());
        w.AddMessageIntegrity(ShortTermKey);
        w.AddUInt32(StunAttributeType.Priority, 5);
        Assert.That(StunReader.TryParse(w.Written, out var r), Is.True);
        Assert.That(r.TryGetUInt32(StunAttributeType.Priority, out _), Is.False);
    }

    [TestCase(0, TestName = "Empty datagram is rejected")]
    [TestCase(19, TestName = "Short header is rejected")]
    public void Truncated_headers_are_rejected(int length) =>
        Assert.That(StunReader.TryParse(StunVectors.Request.AsSpan(0, length), out _), Is.False);

    [Test]
    public void Length_field_that_lies_is_rejected()
    {
        var m = StunVectors.Request;
        m[3] = 0x5c;
        Assert.That(StunReader.TryParse(m, out _), Is.False);
    }

    [Test]
    public void Writer_reports_overflow_instead_of_throwing()
    {
        Span<byte> buffer = stackalloc byte[30];
        var w = new StunWriter(buffer, StunMethod.Binding, StunClass.Request, TransactionId.NewRandom());
        w.AddString(StunAttributeType.Username, "a-long-user-name-that-does-not-fit");
        Assert.That(w.Overflowed, Is.True);
    }

    [Test]
    public void Message_type_packing_matches_rfc8489_examples()
    {
        Assert.That(StunMessageType.Encode(StunMethod.Binding, StunClass.Request), Is.EqualTo(0x0001));
        Assert.That(StunMessageType.Encode(StunMethod.Binding, StunClass.SuccessResponse), Is.EqualTo(0x0101));
        Assert.That(StunMessageType.Encode(StunMethod.Binding, StunClass.ErrorResponse), Is.EqualTo(0x0111));
        Assert.That(StunMessageType.Encode(StunMethod.Send, StunClass.Indication), Is.EqualTo(0x0016));
        Assert.That(StunMessageType.Encode(StunMethod.Data, StunClass.Indication), Is.EqualTo(0x0017));
        Assert.That(StunMessageType.Encode(StunMethod.ChannelBind, StunClass.Request), Is.EqualTo(0x0009));
    }

    [Test]
    public void Crc32_matches_the_check_value() =>
        Assert.That(Crc32.Compute("123456789"u8), Is.EqualTo(0xCBF43926u));
}
