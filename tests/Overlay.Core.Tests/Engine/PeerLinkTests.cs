using System.Net;
using NUnit.Framework;
using Overlay.Engine;
using Overlay.Nat.Ice;
using Overlay.Switching;
using Overlay.Switching.Flood;
using S = Overlay.Engine.PeerLinkState;

namespace Overlay.Core.Tests.Engine;

/// <summary>The link's state machine on its own: every move, legal or not, and what each state means for candidates and the peer.</summary>
[TestFixture]
internal sealed class PeerLinkTests
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>The moves a link may make, written out here independently of the code's table.</summary>
    private static readonly HashSet<(S From, S To)> Legal =
    [
        (S.Requesting, S.Offering), (S.Offering, S.Connecting), (S.Answering, S.Connecting), (S.Connecting, S.Up),
        (S.Up, S.Down), (S.Down, S.Up), (S.Down, S.Restarting), (S.Restarting, S.Down), (S.Restarting, S.Up),
        (S.Requesting, S.Closed), (S.Offering, S.Closed), (S.Answering, S.Closed), (S.Connecting, S.Closed),
        (S.Up, S.Closed), (S.Down, S.Closed), (S.Restarting, S.Closed),
    ];

    private static IEnumerable<TestCaseData> Moves() =>
        from before in Enum.GetValues<S>()
        from after in Enum.GetValues<S>()
        let legal = Legal.Contains((before, after))
        select new TestCaseData(before, after, legal).SetName($"{before} to {after} is {(legal ? "legal" : "refused")}");

    private sealed class NoPort : ISwitchPort
    {
        public bool TrySendFrame(ReadOnlySpan<byte> frame, IFrameBatch? batch) => true;

        public bool TrySendFlood(in FloodHeader header, ReadOnlySpan<byte> frame, IFrameBatch? batch) => false;
    }

    private static PeerLink NewLink(bool initiator) =>
        new(0x1234, "link", initiator, new OverlaySwitch(new NodeId(1), new NoPort()), T0);

    /// <summary>A link brought to <paramref name="state"/> by legal moves only.</summary>
    private static PeerLink LinkIn(S state)
    {
        S[] path = state switch
        {
            S.Requesting => [],
            S.Answering => [],
            S.Offering => [S.Offering],
            S.Connecting => [S.Offering, S.Connecting],
            S.Up => [S.Offering, S.Connecting, S.Up],
            S.Down => [S.Offering, S.Connecting, S.Up, S.Down],
            S.Restarting => [S.Offering, S.Connecting, S.Up, S.Down, S.Restarting],
            _ => [S.Closed],
        };
        var link = NewLink(initiator: state != S.Answering);
        foreach (var step in path) Assert.That(link.TryMoveTo(step, T0), Is.True, $"to {step} on the way to {state}");
        Assert.That(link.State, Is.EqualTo(state));
        return link;
    }

    [TestCaseSource(nameof(Moves))]
    public void A_move_is_made_if_legal_and_refused_otherwise(S from, S to, bool legal)
    {
        var link = LinkIn(from);

        Assert.That(link.TryMoveTo(to, T0.AddSeconds(1)), Is.EqualTo(legal));
        Assert.That(link.State, Is.EqualTo(legal ? to : from));
        Assert.That(PeerLink.IsLegal(from, to), Is.EqualTo(legal));
    }

    [Test]
    public void Links_start_requesting_when_ours_and_answering_when_the_peer_s()
    {
        Assert.That(NewLink(initiator: true).State, Is.EqualTo(S.Requesting));
        Assert.That(NewLink(initiator: false).State, Is.EqualTo(S.Answering));
    }

    [Test]
    public void Going_up_and_down_stamps_the_times_the_status_and_the_restarts_use()
    {
        var link = LinkIn(S.Connecting);
        link.TryMoveTo(S.Up, T0.AddSeconds(1));
        Assert.That((link.Since, link.Started), Is.EqualTo((T0.AddSeconds(1), T0)), "up: since then; the attempt started at creation");
        link.TryMoveTo(S.Down, T0.AddSeconds(5));
        Assert.That((link.Since, link.Started), Is.EqualTo((T0.AddSeconds(5), T0.AddSeconds(5))), "down: a new attempt to recover starts");
        link.TryMoveTo(S.Restarting, T0.AddSeconds(6));
        link.TryMoveTo(S.Down, T0.AddSeconds(7));
        Assert.That((link.Since, link.LastRestart), Is.EqualTo((T0.AddSeconds(5), T0.AddSeconds(6))), "the restart's answer does not reset the time down");
        Assert.That(link.TryMoveTo(S.Up, T0.AddSeconds(8)) && link.Since == T0.AddSeconds(8), Is.True);
    }

    [TestCase(S.Requesting, S.Offering)]
    [TestCase(S.Answering, S.Connecting)]
    [TestCase(S.Up, S.Up)]
    [TestCase(S.Restarting, S.Restarting)]
    public void Describing_the_link_marks_the_offer_or_answer_sent(S before, S after)
    {
        var link = LinkIn(before);

        var description = link.Describe(() => "offer", T0);

        Assert.That(description, Is.EqualTo("offer"));
        Assert.That(link.State, Is.EqualTo(after));
    }

    [TestCase(S.Requesting, CandidateRoute.InDescription)]
    [TestCase(S.Answering, CandidateRoute.InDescription)]
    [TestCase(S.Offering, CandidateRoute.Held)]
    [TestCase(S.Connecting, CandidateRoute.Trickle)]
    [TestCase(S.Up, CandidateRoute.Trickle)]
    [TestCase(S.Restarting, CandidateRoute.Trickle)]
    public void A_candidate_goes_in_the_description_is_held_or_is_trickled(S state, CandidateRoute route) =>
        Assert.That(LinkIn(state).RouteCandidate(Candidate(1)), Is.EqualTo(route));

    [Test]
    public void Candidates_held_while_the_offer_is_unanswered_are_released_in_order_once()
    {
        var link = LinkIn(S.Offering);
        link.RouteCandidate(Candidate(1));
        link.RouteCandidate(Candidate(2));

        Assert.That(link.TakeHeldCandidates(T0).Select(c => c.Address.Port), Is.EqualTo(new[] { 1, 2 }));
        Assert.That(link.State, Is.EqualTo(S.Connecting));
        Assert.That(link.TakeHeldCandidates(T0), Is.Empty);
        Assert.That(link.RouteCandidate(Candidate(3)), Is.EqualTo(CandidateRoute.Trickle));
    }

    [Test]
    public void The_peer_knows_a_link_once_our_request_offer_or_answer_went_out()
    {
        var answering = NewLink(initiator: false);
        Assert.That(answering.KnownToPeer, Is.False);
        answering.Describe(() => 0, T0);
        Assert.That(answering.KnownToPeer, Is.True);
        Assert.That(NewLink(initiator: true).KnownToPeer, Is.True);
    }

    [TestCase(S.Requesting, LinkPhase.Negotiating)]
    [TestCase(S.Offering, LinkPhase.Negotiating)]
    [TestCase(S.Answering, LinkPhase.Negotiating)]
    [TestCase(S.Connecting, LinkPhase.Negotiating)]
    [TestCase(S.Up, LinkPhase.Up)]
    [TestCase(S.Down, LinkPhase.Down)]
    [TestCase(S.Restarting, LinkPhase.Down)]
    [TestCase(S.Closed, LinkPhase.Closed)]
    public void Each_state_has_its_phase(S state, LinkPhase phase) => Assert.That(LinkIn(state).Phase, Is.EqualTo(phase));

    [Test]
    public void A_link_takes_one_path_only()
    {
        var link = NewLink(initiator: true);
        var path = new MemoryPathNetwork().Factory().Create(IceRole.Controlling);
        link.UsePath(path);
        Assert.That(() => link.UsePath(path), Throws.InvalidOperationException);
    }

    private static IceCandidate Candidate(int port) =>
        new("1", IceCandidate.ComputePriority(IceCandidateType.Host, 65535), new IPEndPoint(IPAddress.Loopback, port), IceCandidateType.Host);
}
