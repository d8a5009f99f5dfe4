using System.Net;
using System.Text;
using NUnit.Framework;
using Overlay.Nat.Ice;
using Overlay.Nat.Stun;

namespace Overlay.Core.Tests.Nat;

/// <summary>Hostile datagrams against the agent's receive path: each is dropped and counted once, and nothing changes.</summary>
public class IceHostileInputTests
{
    private static byte[] Check(IceCredentials target, string password, bool useCandidate = true, ushort extra = 0)
    {
        var buffer = new byte[512];
        var w = new StunWriter(buffer, StunMethod.Binding, StunClass.Request, TransactionId.NewRandom());
        w.AddString(StunAttributeType.Software, "hostile");
        w.AddString(StunAttributeType.Username, $"{target.Ufrag}:peer");
        w.AddUInt32(StunAttributeType.Priority, 1845501695);
        w.AddUInt64(StunAttributeType.IceControlling, 42);
        if (useCandidate) w.AddFlag(StunAttributeType.UseCandidate);
        if (extra != 0) w.AddUInt32(extra, 7);
        w.AddMessageIntegrity(Encoding.UTF8.GetBytes(password));
        w.AddFingerprint();
        return buffer.AsSpan(0, w.Length).ToArray();
    }

    private static IceAgent NewAgent(out ManualTimeProvider time)
    {
        time = new ManualTimeProvider(); // frozen clock: nothing changes by itself
        var agent = IceAgent.Create(new IceOptions { TimeProvider = time }, IceRole.Controlled);
        agent.SetRemoteCredentials(IceCredentials.NewRandom());
        agent.Start();
        return agent;
    }

    [Test]
    public async Task A_peer_that_signals_thousands_of_candidates_gets_a_bounded_check_list()
    {
        await using var agent = NewAgent(out _);
        for (var i = 0; i < 1000; i++)
            agent.AddRemoteCandidate(new IceCandidate($"f{i}", 2130706431, new IPEndPoint(new IPAddress([203, 0, (byte)(i >> 8), (byte)i]), 4000 + i), IceCandidateType.Host));
        Assert.That(agent.RemoteCandidates, Has.Count.EqualTo(IceAgent.MaxRemoteCandidates));
        Assert.That(agent.PairCount, Is.LessThanOrEqualTo(100), "RFC 8445 §6.1.2.5: at most 100 checks");
        Assert.That(agent.Counters.CandidatesRefused, Is.EqualTo(1000 - IceAgent.MaxRemoteCandidates));

        // Nor can checks from ever new source addresses grow it: each is answered (the peer knows the password) but learns nothing.
        var check = Check(agent.LocalCredentials, agent.LocalCredentials.Password);
        for (var port = 1; port <= 100; port++) agent.Receive(check, new IPEndPoint(IPAddress.Loopback, port));
        Assert.That(agent.RemoteCandidates, Has.Count.EqualTo(IceAgent.MaxRemoteCandidates));
        Assert.That(agent.Counters.CandidatesRefused, Is.EqualTo(1100 - IceAgent.MaxRemoteCandidates));
    }

    [TestCase("127.0.0.1", 4000, TestName = "A loopback candidate is refused")]
    [TestCase("::1", 4000, TestName = "An IPv6 loopback candidate is refused")]
    [TestCase("::ffff:127.0.0.1", 4000, TestName = "An IPv4-mapped loopback candidate is refused")]
    [TestCase("0.0.0.0", 4000, TestName = "An unspecified candidate is refused")]
    [TestCase("::", 4000, TestName = "An unspecified IPv6 candidate is refused")]
    [TestCase("224.0.0.251", 5353, TestName = "A multicast candidate is refused")]
    [TestCase("ff02::1", 4000, TestName = "An IPv6 multicast candidate is refused")]
    [TestCase("255.255.255.255", 4000, TestName = "A broadcast candidate is refused")]
    [TestCase("fe80::1", 4000, TestName = "An IPv6 link-local candidate is refused")]
    [TestCase("203.0.113.7", 0, TestName = "A candidate on port 0 is refused")]
    public async Task A_candidate_no_check_may_go_to_is_refused_and_counted(string address, int port)
    {
        await using var agent = NewAgent(out _);
        agent.AddRemoteCandidate(new IceCandidate("f", 2130706431, new IPEndPoint(IPAddress.Parse(address), port), IceCandidateType.Host));
        agent.AddRemoteCandidate(new IceCandidate("g", 2130706431, new IPEndPoint(IPAddress.Parse("203.0.113.7"), 4000), IceCandidateType.Host));
        Assert.That(agent.RemoteCandidates.Select(c => c.Address.ToString()), Is.EqualTo(new[] { "203.0.113.7:4000" }));
        Assert.That(agent.Counters.CandidatesUnusable, Is.EqualTo(1));
    }

    [Test]
    public async Task Loopback_candidates_are_taken_where_the_options_allow_them()
    {
        await using var agent = IceAgent.Create(new IceOptions { AllowLoopbackCandidates = true, TimeProvider = new ManualTimeProvider() }, IceRole.Controlled);
        agent.AddRemoteCandidate(new IceCandidate("f", 2130706431, new IPEndPoint(IPAddress.Loopback, 4000), IceCandidateType.Host));
        Assert.That(agent.RemoteCandidates, Has.Count.EqualTo(1));
        Assert.That(agent.Counters.CandidatesUnusable, Is.Zero);
    }

    [Test]
    public async Task Over_100000_mutated_datagrams_are_dropped_counted_and_change_nothing()
    {
        await using var agent = NewAgent(out _);
        var seeds = StunFuzzTests.Seeds();
        seeds.Add(Check(agent.LocalCredentials, agent.LocalCredentials.Password)); // a valid check: every mutation must break it
        seeds.Add(Check(agent.LocalCredentials, "not-the-password-at-all"));
        var from = new IPEndPoint(IPAddress.Loopback, 9);
        var seed = Environment.TickCount;
        TestContext.Out.WriteLine($"fuzz seed {seed}");
        var random = new Random(seed);
        var before = agent.Counters;
        var state = (agent.State, agent.Role, agent.RemoteCandidates.Count, agent.LocalCandidates.Count, agent.PairCount);
        for (var i = 0; i < StunFuzzTests.Mutations; i++)
        {
            var datagram = StunFuzzTests.Mutate(random, seeds[random.Next(seeds.Count)], out _);
            agent.Receive(datagram, from);
        }
        var after = agent.Counters;
        TestContext.Out.WriteLine($"{StunFuzzTests.Mutations} datagrams: {after}");
        Assert.That(after.StunRefused + after.DatagramsDropped - before.StunRefused - before.DatagramsDropped, Is.EqualTo(StunFuzzTests.Mutations),
            "every hostile datagram is counted exactly once");
        Assert.That((agent.State, agent.Role, agent.RemoteCandidates.Count, agent.LocalCandidates.Count, agent.PairCount), Is.EqualTo(state));
        Assert.That(agent.SelectedPair, Is.Null);
    }

    [Test]
    public async Task A_check_with_the_wrong_password_is_refused_without_learning_anything()
    {
        await using var agent = NewAgent(out _);
        agent.Receive(Check(agent.LocalCredentials, "guessed-password-guessed"), new IPEndPoint(IPAddress.Loopback, 9));
        Assert.That(agent.Counters.Unauthorized, Is.EqualTo(1));
        Assert.That(agent.RemoteCandidates, Is.Empty);
        Assert.That(agent.PairCount, Is.Zero);
    }

    [Test]
    public async Task A_check_for_another_ufrag_is_refused()
    {
        await using var agent = NewAgent(out _);
        agent.Receive(Check(IceCredentials.NewRandom(), agent.LocalCredentials.Password), new IPEndPoint(IPAddress.Loopback, 9));
        Assert.That(agent.Counters.Unauthorized, Is.EqualTo(1));
        Assert.That(agent.RemoteCandidates, Is.Empty);
    }

    [Test]
    public async Task A_check_with_an_unknown_comprehension_required_attribute_gets_420_and_changes_nothing()
    {
        await using var agent = NewAgent(out _);
        agent.Receive(Check(agent.LocalCredentials, agent.LocalCredentials.Password, extra: 0x7abc), new IPEndPoint(IPAddress.Loopback, 9));
        Assert.That(agent.Counters.UnknownAttributes, Is.EqualTo(1));
        Assert.That(agent.RemoteCandidates, Is.Empty);
    }

    [Test]
    public async Task A_valid_check_is_answered_and_teaches_a_peer_reflexive_candidate()
    {
        await using var agent = NewAgent(out _);
        agent.Receive(Check(agent.LocalCredentials, agent.LocalCredentials.Password), new IPEndPoint(IPAddress.Parse("192.0.2.7"), 4444));
        Assert.That(agent.RemoteCandidates.Single().Type, Is.EqualTo(IceCandidateType.PeerReflexive));
        Assert.That(agent.RemoteCandidates.Single().Priority, Is.EqualTo(1845501695u));
    }
}
