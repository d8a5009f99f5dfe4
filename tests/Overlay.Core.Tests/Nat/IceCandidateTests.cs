using System.Net;
using NUnit.Framework;
using Overlay.Nat.Ice;

namespace Overlay.Core.Tests.Nat;

public class IceCandidateTests
{
    [TestCase("candidate:842163049 1 udp 1677729535 198.51.100.21 40000 typ srflx raddr 10.1.0.2 rport 40000")]
    [TestCase("candidate:1 1 udp 2130706431 2001:db8::5 5000 typ host")]
    [TestCase("candidate:abc+/ 1 udp 16777215 2001:db8::10 49152 typ relay raddr 2001:db8:1::7 rport 1234")]
    [TestCase("candidate:7 1 udp 1845501695 fe80::1 1 typ prflx raddr 0.0.0.0 rport 0")]
    public void Candidate_attribute_round_trips_ipv4_and_ipv6(string text)
    {
        Assert.That(IceCandidate.TryParse(text, out var candidate), Is.True);
        Assert.That(candidate!.ToString(), Is.EqualTo(text));
        Assert.That(IceCandidate.TryParse("a=" + text, out var again) && again == candidate);
    }

    [Test]
    public void Ipv6_addresses_survive_where_colon_separated_formats_broke()
    {
        var c = new IceCandidate("1", 2130706431, IPEndPoint.Parse("[2001:db8:0:1::42]:3478"), IceCandidateType.Host);
        Assert.That(IceCandidate.TryParse(c.ToString(), out var parsed), Is.True);
        Assert.That(parsed!.Address, Is.EqualTo(c.Address));
    }

    [TestCase("")]
    [TestCase("candidate:1 1 tcp 1 1.2.3.4 5 typ host")]
    [TestCase("candidate:1 2 udp 1 1.2.3.4 5 typ host")]
    [TestCase("candidate:1 1 udp x 1.2.3.4 5 typ host")]
    [TestCase("candidate:1 1 udp 1 1.2.3.4 70000 typ host")]
    [TestCase("candidate:1 1 udp 1 example.com 5 typ host")]
    [TestCase("candidate:1 1 udp 1 1.2.3.4 5 typ weird")]
    [TestCase("candidate:bad;foundation 1 udp 1 1.2.3.4 5 typ host")]
    [TestCase("candidate:1 1 udp 1 1.2.3.4")]
    public void Malformed_candidates_are_rejected(string text) => Assert.That(IceCandidate.TryParse(text, out _), Is.False);

    [Test]
    public void Priorities_follow_rfc8445_formula()
    {
        Assert.That(IceCandidate.ComputePriority(IceCandidateType.Host, 65535), Is.EqualTo((126u << 24) + (65535u << 8) + 255));
        Assert.That(IceCandidate.ComputePriority(IceCandidateType.Relayed, 65535), Is.EqualTo((65535u << 8) + 255));
        Assert.That(IceCandidate.ComputePriority(IceCandidateType.ServerReflexive, 1), Is.LessThan(IceCandidate.ComputePriority(IceCandidateType.PeerReflexive, 1)));
    }

    [Test]
    public void Credentials_are_random_and_long_enough()
    {
        var a = IceCredentials.NewRandom();
        var b = IceCredentials.NewRandom();
        Assert.That(a.IsValid() && b.IsValid());
        Assert.That(a.Ufrag.Length, Is.GreaterThanOrEqualTo(4));
        Assert.That(a.Password.Length, Is.GreaterThanOrEqualTo(22));
        Assert.That(a, Is.Not.EqualTo(b));
        Assert.That(new IceCredentials("abc", "x").IsValid(), Is.False);
    }

    [Test]
    public void Interface_exclusion_matches_names_and_prefixes()
    {
        Assert.That(HostCandidateGatherer.IsExcluded("ovl0", ["ovl0"]), Is.True);
        Assert.That(HostCandidateGatherer.IsExcluded("ovl17", ["ovl*"]), Is.True);
        Assert.That(HostCandidateGatherer.IsExcluded("eth0", ["ovl*", "tap0"]), Is.False);
    }
}
