namespace Overlay.Topology.Simulation;

/// <summary>Figures of a simulated overlay at one instant.</summary>
/// <param name="Nodes">Live nodes.</param>
/// <param name="RingFormed">Every node has an up link to each of its MinSuccessors nearest successors it can link.</param>
/// <param name="MissingSuccessorLinks">Successor links that should exist and do not.</param>
/// <param name="Connected">The link graph is connected.</param>
/// <param name="MeanDegree">Mean number of links per node.</param>
/// <param name="MaxDegree">Largest number of links of a node.</param>
/// <param name="MeanHops">Mean shortest-path hop count between sampled pairs.</param>
/// <param name="MaxHops">Largest hop count seen among sampled pairs.</param>
/// <param name="SampledPairs">Pairs measured.</param>
internal sealed record TopologyMetrics(int Nodes, bool RingFormed, int MissingSuccessorLinks, bool Connected,
    double MeanDegree, int MaxDegree, double MeanHops, int MaxHops, long SampledPairs)
{
    /// <summary>Measures <paramref name="sim"/>: ring and connectivity exactly, hops by BFS from up to <paramref name="pairs"/>/N sources.</summary>
    public static TopologyMetrics Measure(TopologySimulation sim, int pairs, int seed)
    {
        ArgumentNullException.ThrowIfNull(sim);
        var ids = sim.Ring.ToArray();
        var missing = 0;
        long degreeSum = 0;
        var maxDegree = 0;
        foreach (var id in ids)
        {
            var neighbours = sim.Neighbours(id);
            degreeSum += neighbours.Count;
            maxDegree = Math.Max(maxDegree, neighbours.Count);
            var found = 0;
            for (var k = 0; found < sim.Options.MinSuccessors && sim.Ring.After(id, k) is { } successor; k++)
            {
                if (!sim.CanLink(id, successor)) continue; // the topology skips it and links the next one
                found++;
                if (!neighbours.Contains(successor)) missing++;
            }
        }

        var index = new Dictionary<UInt128, int>(ids.Length);
        for (var i = 0; i < ids.Length; i++) index[ids[i]] = i;
        var connected = ids.Length == 0 || Bfs(sim, ids, index, 0, new int[ids.Length]) == ids.Length;

        double hopSum = 0;
        var maxHops = 0;
        long measured = 0;
        if (pairs > 0 && ids.Length > 1)
        {
            var random = new Random(seed);
            var sources = Math.Clamp(pairs / (ids.Length - 1), 1, ids.Length);
            var distance = new int[ids.Length];
            for (var s = 0; s < sources; s++)
            {
                var source = random.Next(ids.Length);
                Bfs(sim, ids, index, source, distance);
                for (var t = 0; t < ids.Length; t++)
                {
                    if (t == source || distance[t] < 0) continue;
                    hopSum += distance[t];
                    maxHops = Math.Max(maxHops, distance[t]);
                    measured++;
                }
            }
        }
        return new TopologyMetrics(ids.Length, missing == 0, missing, connected,
            ids.Length == 0 ? 0 : (double)degreeSum / ids.Length, maxDegree, measured == 0 ? 0 : hopSum / measured, maxHops, measured);
    }

    private static int Bfs(TopologySimulation sim, UInt128[] ids, Dictionary<UInt128, int> index, int source, int[] distance)
    {
        Array.Fill(distance, -1);
        var queue = new Queue<int>();
        distance[source] = 0;
        queue.Enqueue(source);
        var reached = 1;
        while (queue.TryDequeue(out var u))
        {
            foreach (var v in sim.Neighbours(ids[u]))
            {
                if (!index.TryGetValue(v, out var vi) || distance[vi] >= 0) continue;
                distance[vi] = distance[u] + 1;
                reached++;
                queue.Enqueue(vi);
            }
        }
        return reached;
    }
}
