namespace Overlay.Topology.Simulation;

/// <summary>
/// Runs the real <see cref="SymphonyTopology"/> of many nodes in one process on a virtual clock, with an
/// in-memory link fabric that sets links up after a delay and reports failures after a detection delay.
/// Deterministic for a given seed: events at the same instant run in the order they were scheduled.
/// </summary>
internal sealed class TopologySimulation
{
    private readonly PriorityQueue<Action, (DateTimeOffset, long)> _events = new();
    private readonly Dictionary<UInt128, SymphonyTopology> _nodes = [];
    private readonly Dictionary<UInt128, HashSet<UInt128>> _edges = [];
    private readonly Dictionary<UInt128, SimulatedSwitch> _switches = [];
    private readonly Random _random;
    private long _sequence;

    /// <summary>Creates an empty simulation.</summary>
    public TopologySimulation(int seed, TopologyOptions? options = null)
    {
        _random = new Random(seed);
        Options = options ?? new TopologyOptions();
    }

    /// <summary>The options every node runs with.</summary>
    public TopologyOptions Options { get; }

    /// <summary>The simulation's clock.</summary>
    public VirtualClock Clock { get; } = new();

    /// <summary>The members, as every node sees them (presence reaches all).</summary>
    public PeerRing Ring { get; } = new();

    /// <summary>Time from a link request to the link being up (signaling + ICE + DTLS).</summary>
    public TimeSpan LinkSetupDelay { get; init; } = TimeSpan.FromMilliseconds(300);

    /// <summary>Time for a peer's departure to be noticed by presence.</summary>
    public TimeSpan PresenceDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Time for a link to a dead peer to be declared down by keepalives.</summary>
    public TimeSpan LinkFailureDelay { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Interval of each node's periodic <see cref="SymphonyTopology.Tick"/>.</summary>
    public TimeSpan TickInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// When true, every node also runs a real <see cref="Switching.OverlaySwitch"/> whose link ports follow the node's up
    /// links and pass frames synchronously to the neighbour's switch (see <see cref="SwitchMetrics"/>).
    /// </summary>
    public bool WithSwitches { get; init; }

    /// <summary>
    /// The share of the nodes that join behind NATs no link between two of them can cross (symmetric NATs on both sides
    /// and no TURN server): a link between two such nodes fails when its setup would have ended.
    /// </summary>
    public double Unlinkable { get; init; }

    /// <summary>Whether a link between <paramref name="a"/> and <paramref name="b"/> can form (see <see cref="Unlinkable"/>).</summary>
    public bool CanLink(UInt128 a, UInt128 b) => !(_unlinkable.Contains(a) && _unlinkable.Contains(b));

    /// <summary>Link setups that failed because the two nodes could not reach each other.</summary>
    public long FailedSetups { get; private set; }

    private readonly HashSet<UInt128> _unlinkable = [];

    /// <summary>
    /// Among the live members: those whose ring successor cannot be linked (<see cref="Unlinkable"/>), and those that can
    /// link neither ring neighbour.
    /// </summary>
    public (int Gaps, int CutOff) RingGaps()
    {
        var ring = Ring.ToArray();
        var n = ring.Length;
        bool SuccessorBlocked(int i) => !CanLink(ring[i], ring[(i + 1) % n]);
        var gaps = Enumerable.Range(0, n).Count(SuccessorBlocked);
        var cutOff = Enumerable.Range(0, n).Count(i => SuccessorBlocked((i + n - 1) % n) && SuccessorBlocked(i));
        return (gaps, cutOff);
    }

    /// <summary>The switches of the live nodes (empty unless <see cref="WithSwitches"/>).</summary>
    internal IReadOnlyDictionary<UInt128, SimulatedSwitch> Switches => _switches;

    /// <summary>The live nodes.</summary>
    public IReadOnlyDictionary<UInt128, SymphonyTopology> Nodes => _nodes;

    /// <summary>Link changes asked for by all nodes so far.</summary>
    public long LinkChanges => _nodes.Values.Sum(n => n.Changes) + _departedChanges;

    /// <summary>Link requests the peer refused (incoming bound, collision), a part of <see cref="LinkChanges"/>: each cost one signaling round trip.</summary>
    public long RefusedRequests { get; private set; }

    private long _departedChanges;

    /// <summary>The up links of <paramref name="node"/> (the neighbour set the switch would have).</summary>
    public IReadOnlyCollection<UInt128> Neighbours(UInt128 node) => _edges.TryGetValue(node, out var e) ? e : [];

    /// <summary>Adds <paramref name="count"/> nodes with random IDs, all present at once, and lets each pick its links.</summary>
    public void Join(int count)
    {
        var added = new List<UInt128>(count);
        for (var i = 0; i < count; i++)
        {
            UInt128 id;
            do id = new UInt128((ulong)_random.NextInt64() ^ ((ulong)_random.Next() << 63), (ulong)_random.NextInt64() ^ ((ulong)_random.Next() << 63));
            while (!Ring.Add(id));
            added.Add(id);
            if (Unlinkable > 0 && _random.NextDouble() < Unlinkable) _unlinkable.Add(id);
            var controller = new Controller(this, id);
            _nodes[id] = new SymphonyTopology(id, Ring, Options, controller, Clock, new Random(_random.Next()));
            _edges[id] = [];
            if (WithSwitches) _switches[id] = new SimulatedSwitch(id, Clock);
        }
        foreach (var id in added) _nodes[id].Rebalance();
        foreach (var (id, node) in _nodes)
            if (!added.Contains(id))
                foreach (var newcomer in added) node.OnPeerJoined(newcomer);
        TellSwitchesRing();
    }

    /// <summary>Each switch learns its ring neighbours, as a real node's engine tells its switch when members come and go.</summary>
    private void TellSwitchesRing()
    {
        foreach (var (id, sw) in _switches) Ring.TellSwitch(id, sw.Switch);
    }

    /// <summary>Removes a random <paramref name="fraction"/> of the nodes at once, as crashes: presence and link failures follow.</summary>
    public IReadOnlyList<UInt128> Crash(double fraction)
    {
        var victims = _nodes.Keys.OrderBy(_ => _random.Next()).Take((int)(_nodes.Count * fraction)).ToList();
        foreach (var victim in victims)
        {
            _departedChanges += _nodes[victim].Changes;
            _nodes.Remove(victim);
            Ring.Remove(victim);
            foreach (var neighbour in _edges[victim])
            {
                var n = neighbour;
                _edges[n].Remove(victim);
                Schedule(LinkFailureDelay, () =>
                {
                    if (_switches.TryGetValue(n, out var sw)) sw.Switch.RemoveLink(new Switching.NodeId(victim));
                    if (_nodes.TryGetValue(n, out var node)) node.OnLinkDown(victim, failed: true);
                });
            }
            _edges.Remove(victim);
            if (_switches.Remove(victim, out var dead)) dead.Alive = false;
        }
        Schedule(PresenceDelay, () =>
        {
            TellSwitchesRing();
            // As the engine does when a member's presence goes: its switch forgets the departed one's addresses first.
            foreach (var sw in _switches.Values)
                foreach (var victim in victims) sw.Switch.ForgetSwitch(new Switching.NodeId(victim));
            foreach (var node in _nodes.Values)
                foreach (var victim in victims) node.OnPeerLeft(victim);
        });
        return victims;
    }

    /// <summary>Runs events and ticks until <paramref name="duration"/> of virtual time has passed.</summary>
    public void Run(TimeSpan duration)
    {
        var end = Clock.GetUtcNow() + duration;
        var nextTick = Clock.GetUtcNow() + TickInterval;
        while (true)
        {
            var hasEvent = _events.TryPeek(out _, out var at);
            var eventTime = hasEvent ? at.Item1 : DateTimeOffset.MaxValue;
            if (nextTick <= eventTime && nextTick <= end)
            {
                Clock.AdvanceTo(nextTick);
                foreach (var sw in _switches.Values) sw.Switch.Tick();
                foreach (var node in _nodes.Values.ToArray()) node.Tick();
                nextTick += TickInterval;
                continue;
            }
            if (!hasEvent || eventTime > end) break;
            Clock.AdvanceTo(eventTime);
            _events.Dequeue()();
        }
        Clock.AdvanceTo(end);
    }

    /// <summary>Runs until the ring invariants hold (checked each tick) or <paramref name="limit"/> passes; returns the virtual time taken, or null.</summary>
    public TimeSpan? RunUntilRingFormed(TimeSpan limit)
    {
        var start = Clock.GetUtcNow();
        while (Clock.GetUtcNow() - start < limit)
        {
            Run(TickInterval);
            if (TopologyMetrics.Measure(this, pairs: 0, seed: 0).RingFormed) return Clock.GetUtcNow() - start;
        }
        return null;
    }

    private void Schedule(TimeSpan delay, Action action) => _events.Enqueue(action, (Clock.GetUtcNow() + delay, _sequence++));

    private void LinkUp(UInt128 a, UInt128 b)
    {
        _edges[a].Add(b);
        _edges[b].Add(a);
        if (_switches.TryGetValue(a, out var sa) && _switches.TryGetValue(b, out var sb))
        {
            SimulatedSwitch.Connect(sa, sb);
            // Each side's host address came with the link's offer or answer, and binds it to its switch (the link manager's way).
            sa.Switch.BindAddress(new Switching.NodeId(b), sb.Mac);
            sb.Switch.BindAddress(new Switching.NodeId(a), sa.Mac);
        }
        _nodes[a].OnLinkUp(b);
        _nodes[b].OnLinkUp(a);
    }

    private sealed class Controller(TopologySimulation sim, UInt128 self) : ILinkController
    {
        public void Connect(UInt128 peer, LinkRoles roles) => sim.Schedule(sim.LinkSetupDelay, () =>
        {
            if (!sim._nodes.TryGetValue(self, out var me)) return;
            // Given up before its setup ended (the node no longer wanted it): the attempt is abandoned, as the link manager
            // does. Set up anyway, it would be a link its own side had already forgotten.
            if (!me.HasLink(peer)) return;
            if (!sim._nodes.TryGetValue(peer, out var other))
            {
                me.OnLinkDown(peer, failed: true);
                return;
            }
            if (!sim.CanLink(self, peer))
            {
                sim.FailedSetups++;
                me.OnLinkDown(peer, failed: true);
                return;
            }
            if (sim._edges[self].Contains(peer))
            {
                me.OnLinkUp(peer); // the peer's own request won a collision and the link is already up
                return;
            }
            var decision = other.OnLinkRequested(self, roles);
            if (decision.Accepted) sim.LinkUp(self, peer);
            else
            {
                sim.RefusedRequests++;
                me.OnLinkDown(peer, failed: true);
            }
        });

        public void Disconnect(UInt128 peer) => sim.Schedule(TimeSpan.Zero, () =>
        {
            // The link manager takes the port off the switch at once, also when the peer is already gone.
            if (sim._switches.TryGetValue(self, out var own)) own.Switch.RemoveLink(new Switching.NodeId(peer));
            if (!sim._edges.TryGetValue(self, out var mine) || !mine.Remove(peer)) return;
            if (sim._edges.TryGetValue(peer, out var theirs)) theirs.Remove(self);
            if (sim._switches.TryGetValue(self, out var mySwitch)) mySwitch.Switch.RemoveLink(new Switching.NodeId(peer));
            if (sim._switches.TryGetValue(peer, out var theirSwitch)) theirSwitch.Switch.RemoveLink(new Switching.NodeId(self));
            if (sim._nodes.TryGetValue(peer, out var other)) other.OnLinkDown(self, failed: false);
        });
    }
}
