using System.Net;
using System.Net.Sockets;
using NUnit.Framework;
using Overlay.Nat.Ice;
using Overlay.Nat.Stun;

namespace Overlay.Core.Tests.Nat;

/// <summary>Two agents in the test's own network namespace, over the machine's host addresses.</summary>
public class IceAgentTests
{
    private static IceOptions Fast => new()
    {
        CheckRetransmission = new StunRetransmissionOptions(TimeSpan.FromMilliseconds(100), MaxRequests: 4, FinalWaitMultiplier: 2),
        NominationDelay = TimeSpan.FromMilliseconds(100),
    };

    private static void RequireHostCandidates(IceAgent agent)
    {
        if (!agent.LocalCandidates.Any(c => c.Address.AddressFamily == AddressFamily.InterNetwork))
            Assert.Ignore("skipped: this machine has no non-loopback IPv4 interface");
    }

    [Test]
    public async Task Two_agents_connect_over_host_candidates_and_exchange_datagrams()
    {
        await using var a = IceAgent.Create(Fast, IceRole.Controlling);
        await using var b = IceAgent.Create(Fast, IceRole.Controlled);
        RequireHostCandidates(a);
        var (pa, pb) = await IcePeers.ConnectAsync(a, b, TimeSpan.FromSeconds(15));
        Assert.That(pa.Local.Type, Is.EqualTo(IceCandidateType.Host));
        Assert.That(pa.Remote.Type, Is.EqualTo(IceCandidateType.Host));
        Assert.That(pb.Remote.Type, Is.EqualTo(IceCandidateType.Host));
        Assert.That(a.State, Is.EqualTo(IceState.Connected));
        await IcePeers.ExchangeDatagramsAsync(a, b);
    }

    [Test]
    public async Task Both_controlling_resolve_the_role_conflict_and_connect()
    {
        await using var a = IceAgent.Create(Fast, IceRole.Controlling);
        await using var b = IceAgent.Create(Fast, IceRole.Controlling);
        RequireHostCandidates(a);
        await IcePeers.ConnectAsync(a, b, TimeSpan.FromSeconds(15));
        Assert.That(a.Role, Is.Not.EqualTo(b.Role));
        Assert.That(a.Counters.RoleConflicts + b.Counters.RoleConflicts, Is.GreaterThan(0));
        await IcePeers.ExchangeDatagramsAsync(a, b, 3);
    }

    [Test]
    public async Task A_nomination_of_a_worse_pair_that_arrives_late_does_not_move_the_controlled_side_back_down()
    {
        await using var a = IceAgent.Create(Fast, IceRole.Controlling);
        await using var b = IceAgent.Create(Fast, IceRole.Controlled);
        RequireHostCandidates(a);
        var (_, selected) = await IcePeers.ConnectAsync(a, b, TimeSpan.FromSeconds(15));
        var moved = 0;
        b.SelectedPairChanged += _ => Interlocked.Increment(ref moved);

        // The peer's nomination of a pair it found earlier, over a slower path, comes in after the better pair's: a check
        // with USE-CANDIDATE and a low PRIORITY from another of the peer's addresses, which also answers B's own check.
        using var late = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        late.Bind(new IPEndPoint(((IPEndPoint)selected.Remote.Address).Address, 0));
        var lateAddress = (IPEndPoint)late.LocalEndPoint!;
        var buffer = new byte[512];
        var w = new StunWriter(buffer, StunMethod.Binding, StunClass.Request, TransactionId.NewRandom());
        w.AddString(StunAttributeType.Username, $"{b.LocalCredentials.Ufrag}:{a.LocalCredentials.Ufrag}");
        w.AddUInt32(StunAttributeType.Priority, 1);
        w.AddUInt64(StunAttributeType.IceControlling, 1);
        w.AddFlag(StunAttributeType.UseCandidate);
        w.AddMessageIntegrity(System.Text.Encoding.UTF8.GetBytes(b.LocalCredentials.Password));
        w.AddFingerprint();
        await late.SendToAsync(buffer.AsMemory(0, w.Length), SocketFlags.None, selected.Local.Address);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        while (true)
        {
            var received = await late.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0), cts.Token);
            if (!StunReader.TryParse(buffer.AsSpan(0, received.ReceivedBytes), out var message) || message.Class != StunClass.Request) continue;
            var answer = new byte[256];
            var r = new StunWriter(answer, StunMethod.Binding, StunClass.SuccessResponse, message.TransactionId);
            r.AddXorAddress(StunAttributeType.XorMappedAddress, new StunAddress((IPEndPoint)received.RemoteEndPoint));
            r.AddMessageIntegrity(System.Text.Encoding.UTF8.GetBytes(a.LocalCredentials.Password));
            r.AddFingerprint();
            await late.SendToAsync(answer.AsMemory(0, r.Length), SocketFlags.None, received.RemoteEndPoint);
            break;
        }
        // The answer makes the nominated pair valid; the agent records that at once (no event tells of a pair's state).
        while (!b.Pairs.Any(p => p.Contains(lateAddress.ToString(), StringComparison.Ordinal) && p.EndsWith("Succeeded", StringComparison.Ordinal)))
            await Task.Delay(10, cts.Token);

        Assert.That(b.SelectedPair!.Remote.Address, Is.EqualTo(selected.Remote.Address), "the highest-priority nominated pair stays selected (RFC 8445 §8.1.1)");
        Assert.That(moved, Is.Zero);
        await IcePeers.ExchangeDatagramsAsync(a, b, 3);
    }

    [Test]
    public async Task Trickled_candidates_added_after_start_are_checked()
    {
        await using var a = IceAgent.Create(Fast, IceRole.Controlling);
        await using var b = IceAgent.Create(Fast, IceRole.Controlled);
        RequireHostCandidates(a);
        a.SetRemoteCredentials(b.LocalCredentials);
        b.SetRemoteCredentials(a.LocalCredentials);
        a.Start();
        b.Start();
        foreach (var c in b.LocalCandidates) a.AddRemoteCandidate(c);
        var selected = await a.WaitForSelectedPairAsync().WaitAsync(TimeSpan.FromSeconds(15));
        Assert.That(selected.Remote.Type, Is.EqualTo(IceCandidateType.Host));
        await b.WaitForSelectedPairAsync().WaitAsync(TimeSpan.FromSeconds(15));
    }

    [Test]
    public async Task A_peer_reflexive_remote_candidate_signalled_later_takes_its_signalled_type_and_the_path_is_reported_again()
    {
        // The controlling side's checks reach the controlled one before its candidates do (signaling slower than the path):
        // the controlled side learns the address as peer-reflexive and selects the pair. When the candidate then arrives,
        // the pair and the reported path take its real type, host.
        await using var a = IceAgent.Create(Fast, IceRole.Controlling);
        await using var b = IceAgent.Create(Fast, IceRole.Controlled);
        RequireHostCandidates(a);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        await Task.WhenAll(a.GatherAsync(cts.Token), b.GatherAsync(cts.Token));
        a.SetRemoteCredentials(b.LocalCredentials);
        b.SetRemoteCredentials(a.LocalCredentials);
        foreach (var c in b.LocalCandidates) a.AddRemoteCandidate(c);
        a.Start();
        b.Start();
        var learned = await b.WaitForSelectedPairAsync(cts.Token);
        Assert.That(learned.Remote.Type, Is.EqualTo(IceCandidateType.PeerReflexive), "learned from a check");

        var changed = new TaskCompletionSource<IceSelectedPair>(TaskCreationOptions.RunContinuationsAsynchronously);
        b.SelectedPairChanged += pair => changed.TrySetResult(pair);
        foreach (var c in a.LocalCandidates) b.AddRemoteCandidate(c);
        var reported = await changed.Task.WaitAsync(cts.Token);
        Assert.That((reported.Remote.Type, reported.Remote.Address), Is.EqualTo((IceCandidateType.Host, learned.Remote.Address)));
        Assert.That(b.SelectedPair?.Remote.Type, Is.EqualTo(IceCandidateType.Host));
        Assert.That(b.RemoteCandidates.Where(c => c.Address.Equals(learned.Remote.Address)).Select(c => c.Type), Is.EqualTo(new[] { IceCandidateType.Host }));
        Assert.That(b.State, Is.EqualTo(IceState.Connected));
    }

    [Test]
    public async Task No_working_pair_ends_in_Failed()
    {
        using var silent = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        silent.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        await using var a = IceAgent.Create(Fast with { AllowLoopbackCandidates = true }, IceRole.Controlling);
        a.SetRemoteCredentials(IceCredentials.NewRandom());
        a.AddRemoteCandidate(new IceCandidate("1", 2130706431, (IPEndPoint)silent.LocalEndPoint!, IceCandidateType.Host));
        a.EndOfRemoteCandidates();
        a.Start();
        await Assert.ThatAsync(() => a.WaitForSelectedPairAsync().WaitAsync(TimeSpan.FromSeconds(15)), Throws.TypeOf<IceFailedException>());
        Assert.That(a.State, Is.EqualTo(IceState.Failed));
    }

    [Test]
    public async Task Wrong_password_is_refused_and_never_connects()
    {
        await using var a = IceAgent.Create(Fast with { ConnectTimeout = TimeSpan.FromSeconds(3) }, IceRole.Controlling);
        await using var b = IceAgent.Create(Fast with { ConnectTimeout = TimeSpan.FromSeconds(3) }, IceRole.Controlled);
        RequireHostCandidates(a);
        a.SetRemoteCredentials(b.LocalCredentials with { Password = IceCredentials.NewRandom().Password });
        b.SetRemoteCredentials(a.LocalCredentials);
        foreach (var c in b.LocalCandidates) a.AddRemoteCandidate(c);
        a.Start();
        await Assert.ThatAsync(() => a.WaitForSelectedPairAsync().WaitAsync(TimeSpan.FromSeconds(15)), Throws.TypeOf<IceFailedException>());
        Assert.That(b.Counters.Unauthorized, Is.GreaterThan(0));
        Assert.That(b.RemoteCandidates, Is.Empty, "refused checks teach nothing");
    }

    [Test]
    public async Task Consent_is_lost_when_the_peer_goes_silent()
    {
        var options = Fast with { ConsentInterval = TimeSpan.FromMilliseconds(200), ConsentTimeout = TimeSpan.FromSeconds(1) };
        await using var a = IceAgent.Create(options, IceRole.Controlling);
        var b = IceAgent.Create(options, IceRole.Controlled);
        RequireHostCandidates(a);
        await IcePeers.ConnectAsync(a, b, TimeSpan.FromSeconds(15));
        await b.DisposeAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        await foreach (var state in a.StateChanges.ReadAllAsync(cts.Token))
            if (state == IceState.Failed) break;
        Assert.That(a.State, Is.EqualTo(IceState.Failed));
    }

    [Test]
    public async Task A_connected_idle_agent_wakes_only_for_consent()
    {
        var options = Fast with { ConsentInterval = TimeSpan.FromMilliseconds(500), ConsentTimeout = TimeSpan.FromSeconds(5) };
        await using var a = IceAgent.Create(options, IceRole.Controlling);
        await using var b = IceAgent.Create(options, IceRole.Controlled);
        RequireHostCandidates(a);
        await IcePeers.ConnectAsync(a, b, TimeSpan.FromSeconds(15));
        var before = a.Endpoint.Scheduler.Firings;
        var consentBefore = a.Selected!.LastConsent;
        // Two seconds idle: four consent checks are due (each ~0.4-0.6 s) and their transactions; checking at every
        // pacing interval (50 ms) as while connecting would be 40 firings.
        await Task.Delay(TimeSpan.FromSeconds(2));
        var firings = a.Endpoint.Scheduler.Firings - before;
        Assert.That(firings, Is.InRange(2, 16), "timer firings in 2 s of idle");
        Assert.That(a.State, Is.EqualTo(IceState.Connected));
        Assert.That(a.Selected!.LastConsent, Is.GreaterThan(consentBefore), "consent was refreshed meanwhile");
    }

    [Test]
    public void Consent_intervals_are_random_within_rfc7675_bounds_on_the_grid()
    {
        // RFC 7675 §5.1: each interval random within 0.8-1.2 times Tc (5 s: 4 to 6 s). On a 1 s grid, from any instant.
        const long Second = TimeSpan.TicksPerSecond;
        var random = new Random(7675);
        foreach (var now in new[] { 0L, 3 * Second, 12_345_678L, 1000 * Second + 1 })
        {
            var drawn = new Dictionary<long, int>();
            for (var i = 0; i < 3000; i++)
            {
                var due = IceAgent.NextConsentDue(now, 5 * Second, Second, random);
                Assert.That(due - now, Is.InRange(4 * Second, 6 * Second), $"from {now}");
                Assert.That(due % Second, Is.Zero, "on the grid");
                drawn[due] = drawn.GetValueOrDefault(due) + 1;
            }
            // Every grid instant in the range is drawn, about equally: from an instant on the grid 4, 5 and 6 s (a third
            // each), from one between two, the two whole seconds in the range.
            Assert.That(drawn.Count, Is.EqualTo(now % Second == 0 ? 3 : 2), $"from {now}");
            Assert.That(drawn.Values, Has.All.GreaterThan(3000 / drawn.Count * 8 / 10), $"from {now}: {string.Join(", ", drawn)}");
        }
        // A chain of checks (each from the instant the last went) does not settle into one interval.
        var at = 0L;
        var intervals = new HashSet<long>();
        for (var i = 0; i < 100; i++)
        {
            var next = IceAgent.NextConsentDue(at, 5 * Second, Second, random);
            intervals.Add(next - at);
            at = next;
        }
        Assert.That(intervals, Is.EquivalentTo(new[] { 4 * Second, 5 * Second, 6 * Second }));
    }

    [Test]
    public void Without_a_grid_instant_in_range_consent_is_anywhere_within_the_bounds()
    {
        const long Second = TimeSpan.TicksPerSecond;
        var random = new Random(5);
        foreach (var grid in new[] { 0L, 10 * Second })
        {
            var drawn = new HashSet<long>();
            for (var i = 0; i < 200; i++)
            {
                var due = IceAgent.NextConsentDue(Second / 3, 5 * Second, grid, random);
                Assert.That(due - Second / 3, Is.InRange(4 * Second, 6 * Second));
                drawn.Add(due);
            }
            Assert.That(drawn, Has.Count.GreaterThan(150), $"grid {grid}: random, not one instant");
        }
    }

    [Test]
    public async Task Agents_sharing_one_scheduler_keep_consent_and_leave_nothing_in_it_once_closed()
    {
        using var scheduler = new Overlay.Nat.NatScheduler(TimeProvider.System);
        var options = Fast with
        {
            Scheduler = scheduler, ConsentInterval = TimeSpan.FromMilliseconds(500), ConsentTimeout = TimeSpan.FromSeconds(5),
            ConsentGrid = TimeSpan.FromMilliseconds(100),
        };
        var a = IceAgent.Create(options, IceRole.Controlling);
        var b = IceAgent.Create(options, IceRole.Controlled);
        try
        {
            RequireHostCandidates(a);
            await IcePeers.ConnectAsync(a, b, TimeSpan.FromSeconds(15));
            var consentBefore = a.Selected!.LastConsent;
            // Consent checks go every 0.4-0.6 s; wait for one answered (no event says so: the pair's stamp is read).
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            while (a.Selected!.LastConsent == consentBefore && DateTime.UtcNow < deadline) await Task.Delay(50);
            Assert.That(a.Selected!.LastConsent, Is.GreaterThan(consentBefore), "consent was refreshed through the shared scheduler");
            Assert.That(a.State, Is.EqualTo(IceState.Connected));
            await IcePeers.ExchangeDatagramsAsync(a, b);
        }
        finally
        {
            await a.DisposeAsync();
            await b.DisposeAsync();
        }
        Assert.That(scheduler.Count, Is.Zero, "closed agents' ticks and transactions are taken out of the scheduler that outlives them");
    }

    [Test]
    public async Task Restart_recovers_with_new_credentials_on_the_same_agents()
    {
        // Consent far apart: once connected the agents' next tick is half a minute away, and a restart must not wait for it.
        var options = Fast with { ConsentInterval = TimeSpan.FromSeconds(30), ConsentTimeout = TimeSpan.FromSeconds(60) };
        await using var a = IceAgent.Create(options, IceRole.Controlling);
        await using var b = IceAgent.Create(options, IceRole.Controlled);
        RequireHostCandidates(a);
        await IcePeers.ConnectAsync(a, b, TimeSpan.FromSeconds(15));
        var before = a.LocalCredentials;
        var port = a.LocalPort;
        var ca = a.Restart();
        var cb = b.Restart();
        Assert.That(ca, Is.Not.EqualTo(before));
        Assert.That(a.LocalPort, Is.EqualTo(port));
        Assert.That(a.State, Is.EqualTo(IceState.New));
        await IcePeers.ConnectAsync(a, b, TimeSpan.FromSeconds(10));
        Assert.That(a.State, Is.EqualTo(IceState.Connected));
        Assert.That(cb, Is.EqualTo(b.LocalCredentials));
        await IcePeers.ExchangeDatagramsAsync(a, b, 3);
    }
}
