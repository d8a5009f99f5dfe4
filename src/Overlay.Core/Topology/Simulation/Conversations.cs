namespace Overlay.Topology.Simulation;

/// <summary>
/// Hosts talking in pairs through the real switches of a simulated overlay (needs <see cref="TopologySimulation.WithSwitches"/>),
/// as hosts with ARP caches do: the first of each pair broadcasts once when the conversations start (its ARP request; the
/// answer comes back as unicast), and from then on only unicast frames go, each exchange a frame each way (a ping and
/// its reply). After a crash nothing teaches the switches again: they must find the new ways from what they kept.
/// </summary>
internal sealed class Conversations
{
    private readonly TopologySimulation _sim;
    private readonly List<(SimulatedSwitch A, SimulatedSwitch B)> _pairs = [];
    private readonly byte[] _frame = new byte[64];

    /// <summary>Starts <paramref name="pairs"/> conversations between random live nodes; each pair has exchanged once when this returns.</summary>
    public Conversations(TopologySimulation sim, int pairs, int seed)
    {
        ArgumentNullException.ThrowIfNull(sim);
        if (!sim.WithSwitches) throw new InvalidOperationException("the simulation runs without switches (WithSwitches = false)");
        _sim = sim;
        var switches = sim.Switches.Values.ToArray();
        var random = new Random(seed);
        while (_pairs.Count < pairs && switches.Length > 1)
        {
            var a = switches[random.Next(switches.Length)];
            var b = switches[random.Next(switches.Length)];
            if (a != b) _pairs.Add((a, b));
        }
        Drain();
        foreach (var caller in _pairs.Select(p => p.A).Distinct()) Send(caller, null);
        // The ARP answer goes first, on the ways the request taught, and sets the paths the first exchange then takes.
        StartedTalking = _pairs.Count(p => Send(p.B, p.A) && Exchange(p.A, p.B));
    }

    /// <summary>Pairs whose first exchange got through when they started.</summary>
    public int StartedTalking { get; }

    /// <summary>
    /// Has every pair whose two nodes are alive exchange up to <paramref name="attempts"/> times, a second of virtual time
    /// apart, until one exchange gets through. Returns the live pairs and how many exchanges each needed (0: none did).
    /// </summary>
    public (int Pairs, int[] ExchangesNeeded, int LoopedFrames) Resume(int attempts)
    {
        var live = _pairs.Where(p => p.A.Alive && p.B.Alive).ToList();
        var needed = new int[live.Count];
        var loopedBefore = _sim.Switches.Values.Sum(s => s.LoopedFrames);
        Drain();
        for (var attempt = 1; attempt <= attempts; attempt++)
        {
            for (var i = 0; i < live.Count; i++)
                if (needed[i] == 0 && Exchange(live[i].A, live[i].B)) needed[i] = attempt;
            if (needed.All(n => n != 0)) break;
            _sim.Run(TimeSpan.FromSeconds(1));
            Drain();
        }
        return (live.Count, needed, _sim.Switches.Values.Sum(s => s.LoopedFrames) - loopedBefore);
    }

    private bool Exchange(SimulatedSwitch a, SimulatedSwitch b) => Send(a, b) && Send(b, a);

    /// <summary>A frame from a's host to b's (b null: a broadcast); true when b's host got it exactly once and no other host got it.</summary>
    private bool Send(SimulatedSwitch a, SimulatedSwitch? b)
    {
        SwitchMetrics.Write(_frame, b?.Mac ?? 0xFFFF_FFFF_FFFFUL, a.Mac, 0);
        a.Switch.OnLocalFrame(_frame);
        var got = b?.UnicastsForHost ?? 0;
        var strays = 0;
        foreach (var sw in _sim.Switches.Values)
        {
            strays += sw.UnicastsForOthers;
            sw.UnicastsForHost = sw.UnicastsForOthers = 0;
        }
        return b is null || got == 1 && strays == 0;
    }

    /// <summary>Forgets what reached the hosts outside an exchange (announcements, the switches' membership queries).</summary>
    private void Drain()
    {
        foreach (var sw in _sim.Switches.Values) sw.UnicastsForHost = sw.UnicastsForOthers = 0;
    }
}
