using NUnit.Framework;
using Overlay.Signaling;

namespace Overlay.Core.Tests.Signaling;

/// <summary>The versioned JSON payload: every message type round-trips; bad input is classified, never thrown.</summary>
internal sealed class SignalCodecTests
{
    private static readonly string Node = new('a', 32);

    private static IEnumerable<SignalMessage> Messages()
    {
        yield return new EdgeRequest("ovl", "successor");
        yield return new EdgeResponse("ovl", false, "degree limit");
        yield return new LinkOffer("ovl", "l1", "uf", "pw", ["candidate:1 1 udp 2130706431 fe80::1 5000 typ host"], "sha-256 AA:BB", "02:00:00:00:00:01");
        yield return new LinkOffer("ovl", "l2", "uf", "pw", [], "sha-256 AA:BB", "02:00:00:00:00:01") { EdgeType = "successor,longdistance" };
        yield return new LinkAnswer("ovl", "l1", "uf2", "pw2", [], "sha-256 CC", "02:00:00:00:00:02");
        yield return new LinkReject("ovl", "l1", "busy");
        yield return new LinkCandidate("ovl", "l1", "candidate:2 1 udp 1 198.51.100.10 3478 typ relay raddr 0.0.0.0 rport 0");
        yield return new LinkTeardown("ovl", "l1", "bye");
    }

    [TestCaseSource(nameof(Messages))]
    public void Every_message_type_round_trips(SignalMessage message)
    {
        var json = SignalCodec.Encode(Node, "cid1", message);
        Assert.That(json, Does.Contain("\"v\":1"));

        Assert.That(SignalCodec.TryDecode(json, out var env), Is.EqualTo(SignalDecodeError.None));

        Assert.That(env.NodeId, Is.EqualTo(Node));
        Assert.That(env.CorrelationId, Is.EqualTo("cid1"));
        if (message is LinkDescription d)
        {
            var got = (LinkDescription)env.Message!;
            Assert.That(got.Candidates, Is.EqualTo(d.Candidates));
            Assert.That(got.GetType(), Is.EqualTo(d.GetType()));
            Assert.That((got.LinkId, got.IceUfrag, got.IcePassword, got.Fingerprint, got.Mac), Is.EqualTo((d.LinkId, d.IceUfrag, d.IcePassword, d.Fingerprint, d.Mac)));
            Assert.That((got as LinkOffer)?.EdgeType, Is.EqualTo((d as LinkOffer)?.EdgeType), "an offer's edge kind, where it asks for the edge itself");
        }
        else
        {
            Assert.That(env.Message, Is.EqualTo(message));
        }
    }

    [Test]
    public void The_announcement_round_trips()
    {
        Assert.That(SignalCodec.TryDecode(SignalCodec.EncodeAnnounce(Node, ["a", "b"]), out var env), Is.EqualTo(SignalDecodeError.None));
        Assert.That(env.AnnouncedOverlays, Is.EqualTo(new[] { "a", "b" }));
    }

    [TestCase("", SignalDecodeError.Malformed)]
    [TestCase("[]", SignalDecodeError.Malformed)]
    [TestCase("{\"v\":0,\"type\":\"link-teardown\"}", SignalDecodeError.Malformed)]
    [TestCase("{\"v\":\"1\",\"type\":\"link-teardown\"}", SignalDecodeError.Malformed)]
    [TestCase("{\"v\":1,\"type\":\"link-teardown\",\"node\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",\"cid\":\"c\",\"overlay\":\"o\",\"link\":\"l\"}", SignalDecodeError.Malformed)]
    [TestCase("{\"v\":1,\"type\":\"teleport\",\"node\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}", SignalDecodeError.UnknownType)]
    [TestCase("{\"v\":1,\"type\":\"link-offer\",\"node\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"cid\":\"c\",\"overlay\":\"o\",\"link\":\"l\",\"ufrag\":\"u\",\"pwd\":\"p\",\"candidates\":[1],\"fingerprint\":\"f\",\"mac\":\"m\"}", SignalDecodeError.Malformed)]
    [TestCase("{\"v\":1,\"type\":\"link-teardown\",\"node\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"cid\":\"c\",\"overlay\":\"o\",\"link\":\"l\",\"x\":{\"y\":{\"z\":{\"w\":{}}}}}", SignalDecodeError.Malformed)]
    public void Bad_payloads_are_classified(string json, SignalDecodeError expected)
        => Assert.That(SignalCodec.TryDecode(json, out _), Is.EqualTo(expected));

    [Test]
    public void Too_many_candidates_are_refused()
    {
        var offer = new LinkOffer("o", "l", "u", "p", Enumerable.Repeat("candidate:1 1 udp 1 10.0.0.1 1 typ host", 65).ToArray(), "f", "m");
        Assert.That(SignalCodec.TryDecode(SignalCodec.Encode(Node, "c", offer), out _), Is.EqualTo(SignalDecodeError.Malformed));
    }
}
