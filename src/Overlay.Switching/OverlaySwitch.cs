using Overlay.Switching.Flood;
using Overlay.Switching.Frames;
using Overlay.Switching.Learning;
using Overlay.Switching.Multicast;

namespace Overlay.Switching;

/// <summary>
/// The node's Ethernet switch on one overlay: one local port (the TAP) and one port per link to a
/// neighbour switch. Broadcast, unknown unicast and multicast travel by bounded flood over the ring
/// (each switch forwards only into the arc of node IDs it was given, so every switch gets a frame
/// exactly once and the tree is O(log N) deep on a Symphony ring); unicast follows paths learned from
/// floods; multicast is pruned to arcs holding subscribers snooped from IGMP/MLD.
/// </summary>
/// <remarks>
/// Thread-safe: frames may arrive on any thread at once. The hot path (a known unicast path) does two
/// lock-free dictionary reads and no allocation. Time is a coarse counter advanced by <see cref="Tick"/>,
/// so forwarding never reads a clock and simulations run on virtual time.
/// </remarks>
internal sealed class OverlaySwitch
{
    private readonly SwitchOptions _options;
    private readonly TimeProvider _time;
    private readonly long _started;
    private readonly PortEntry _local;
    private readonly ForwardingTables _tables;
    private readonly GroupTable _groups;
    private readonly DuplicateCache _duplicates;
    private readonly HashSet<ulong> _localMacs = [];
    private readonly Lock _portsLock = new();
    private volatile PortEntry[] _neighbours = []; // sorted by clockwise distance from Self
    private volatile RingNeighbours? _ring;
    private volatile HashSet<ulong> _localMacSnapshot = [];
    private readonly System.Collections.Concurrent.ConcurrentDictionary<ulong, long> _announced = new(); // local address → clock second
    private volatile bool _localFull; // the host has addresses this switch did not learn: unknown unicast may be for it
    private long _now;
    private long _nextQuery = long.MinValue;
    private readonly Lock _sequenceLock = new();
    private byte[]? _sequenceBytes; // random sequence numbers, drawn at the first flood
    private int _sequencePosition;
    private int _queriesSent;

    /// <summary>Creates a switch for the node <paramref name="self"/> whose local device is <paramref name="localPort"/>.</summary>
    public OverlaySwitch(NodeId self, ISwitchPort localPort, SwitchOptions? options = null, TimeProvider? time = null, IEnumerable<ulong>? localMacs = null)
    {
        ArgumentNullException.ThrowIfNull(localPort);
        Self = self;
        _options = options ?? new SwitchOptions();
        _time = time ?? TimeProvider.System;
        _started = _time.GetTimestamp();
        _local = new PortEntry(self, localPort, isLocal: true);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(_options.MaxLearnedAddresses, "options.MaxLearnedAddresses");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(_options.MaxLearnedPaths, "options.MaxLearnedPaths");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(_options.MaxLocalAddresses, "options.MaxLocalAddresses");
        _duplicates = new DuplicateCache(_options.DuplicateCacheSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(_options.MaxLearnedAddressesPerMember, "options.MaxLearnedAddressesPerMember");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(_options.MaxMulticastGroups, "options.MaxMulticastGroups");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(_options.MaxMulticastGroupsPerMember, "options.MaxMulticastGroupsPerMember");
        _tables = new ForwardingTables(_options.MaxLearnedAddresses, _options.MaxLearnedPaths, _options.MaxLearnedAddressesPerMember);
        _groups = new GroupTable(_options.MaxMulticastGroups, _options.MaxMulticastGroupsPerMember);
        if (localMacs is not null)
            foreach (var mac in localMacs) _localMacs.Add(mac);
        _localMacSnapshot = [.. _localMacs];
    }

    /// <summary>This switch's node ID.</summary>
    public NodeId Self { get; }

    /// <summary>What happened to frames.</summary>
    public SwitchCounters Counters { get; } = new();

    /// <summary>The neighbours with a port, nearest clockwise first.</summary>
    public IReadOnlyList<NodeId> Neighbours => Array.ConvertAll(_neighbours, p => p.Id);

    /// <summary>Learned addresses (for status and tests).</summary>
    public int LearnedAddresses => _tables.MacCount;

    /// <summary>Learned (source, destination) paths (for status and tests).</summary>
    public int LearnedPaths => _tables.FlowCount;

    /// <summary>
    /// Tells the switch its nearest members on the ring (from the topology's member list), linked or not; null when it
    /// knows of no other member. With them the switch covers, in its floods, a ring successor it could not link, and takes
    /// the copies passed back to it when its own predecessor could not link it (see <see cref="Flood.FloodGap"/>).
    /// Without them it floods as EdgeVPN did, and such a successor misses its broadcasts.
    /// </summary>
    public void SetRingNeighbours(NodeId? predecessor, NodeId? successor) =>
        _ring = predecessor is { } p && successor is { } s ? new RingNeighbours(p, s) : null;

    /// <summary>Adds (or replaces) the port of the link to <paramref name="neighbour"/>.</summary>
    public void AddLink(NodeId neighbour, ISwitchPort port)
    {
        ArgumentNullException.ThrowIfNull(port);
        if (neighbour == Self) throw new ArgumentException("a switch has no link to itself", nameof(neighbour));
        lock (_portsLock)
        {
            var list = _neighbours.Where(p => p.Id != neighbour).ToList();
            foreach (var old in _neighbours.Where(p => p.Id == neighbour)) Retire(old);
            var entry = new PortEntry(neighbour, port, isLocal: false);
            list.Add(entry);
            list.Sort((a, b) => Self.DistanceTo(a.Id).CompareTo(Self.DistanceTo(b.Id)));
            _neighbours = [.. list];
            // Conversations with the neighbour's host that went over relays until now take the new link: the neighbour
            // takes its host's plain frames only from it (see OnLinkFrame), so a path pinned to a relay would lose them all.
            _tables.PurgeDetours(neighbour, entry);
        }
    }

    /// <summary>Removes the link to <paramref name="neighbour"/>: everything learned through it is forgotten at once, so traffic re-floods.</summary>
    public void RemoveLink(NodeId neighbour)
    {
        lock (_portsLock)
        {
            foreach (var old in _neighbours.Where(p => p.Id == neighbour)) Retire(old);
            _neighbours = _neighbours.Where(p => p.Id != neighbour).ToArray();
        }
    }

    /// <summary>Forgets a switch that left the overlay (its multicast subscriptions and the addresses it advertised).</summary>
    public void ForgetSwitch(NodeId node)
    {
        _groups.Forget(node);
        _tables.Unbind(node);
    }

    /// <summary>
    /// <paramref name="owner"/> advertised <paramref name="mac"/> as its host's (in its link offer or answer): from now on
    /// floods from that address are accepted only with that switch as their root. An address another switch already
    /// holds stays with it (false, counted as <see cref="SwitchCounters.AddressNotOwned"/>).
    /// </summary>
    public bool BindAddress(NodeId owner, ulong mac)
    {
        if (owner == Self) return false;
        if (!_localMacSnapshot.Contains(mac) && _tables.Bind(mac, owner))
        {
            // Bound after its link came up: the address is reached by that link, and paths to it learned over relays go
            // by that link from now on.
            if (FindPort(owner) is { } direct)
            {
                _tables.Learn(mac, direct, owner, Volatile.Read(ref _now));
                _tables.PurgeDetours(owner, direct);
            }
            return true;
        }
        Interlocked.Increment(ref Counters.AddressNotOwnedValue);
        return false;
    }

    /// <summary>Multicast groups known (for status and tests).</summary>
    public int MulticastGroups => _groups.Count;

    /// <summary>Addresses learned with <paramref name="owner"/> as their switch (for status and tests).</summary>
    public int AddressesOwnedBy(NodeId owner) => _tables.CountOwnedBy(owner);

    /// <summary>Advances the switch's clock and ages out learned addresses, paths and subscriptions.</summary>
    public void Tick()
    {
        var now = (long)_time.GetElapsedTime(_started).TotalSeconds;
        Volatile.Write(ref _now, now);
        _tables.Expire(now - (long)_options.Ageing.TotalSeconds);
        _groups.Expire(now);
        if (_options.MembershipQueryInterval > TimeSpan.Zero && now >= _nextQuery)
        {
            QueryLocalHost();
            var interval = (long)Math.Max(1, _options.MembershipQueryInterval.TotalSeconds);
            _nextQuery = now + (_queriesSent++ == 0 ? Math.Max(1, interval / 4) : interval); // RFC 3376 §8.6-8.7: startup queries
        }
    }

    /// <summary>
    /// The MAC this switch's queries come from: locally administered and derived from the node ID, so it is stable and
    /// differs between switches (the host's own MAC is another).
    /// </summary>
    public ulong QuerierMac => 0x0200_0000_0000UL | (ulong)(Self.Value & 0xFF_FFFF_FFFF);

    /// <summary>Sends the local host an IGMP and an MLD general query (not into the overlay: each switch asks its own host).</summary>
    private void QueryLocalHost()
    {
        Span<byte> frame = stackalloc byte[Math.Max(MembershipQuery.IgmpFrameLength, MembershipQuery.MldFrameLength)];
        var length = MembershipQuery.WriteIgmp(frame, QuerierMac, _options.MembershipQueryResponse);
        if (_local.Port.TrySendFrame(frame[..length], batch: null)) Interlocked.Increment(ref Counters.MembershipQueriesValue);
        length = MembershipQuery.WriteMld(frame, QuerierMac, _options.MembershipQueryResponse);
        if (_local.Port.TrySendFrame(frame[..length], batch: null)) Interlocked.Increment(ref Counters.MembershipQueriesValue);
    }

    /// <summary>Bytes sent towards each destination switch since the last call (for on-demand links).</summary>
    public IReadOnlyDictionary<NodeId, long> TakeTrafficByNode() => _tables.TakeTraffic();

    /// <summary>A frame the local host sent; <paramref name="batch"/> (the caller's, if any) goes to the ports it is sent on.</summary>
    public void OnLocalFrame(ReadOnlySpan<byte> frame, IFrameBatch? batch = null)
    {
        Interlocked.Increment(ref Counters.LocalInValue);
        if (!Admit(frame)) return;
        var now = Volatile.Read(ref _now);
        var source = EthernetFrame.Source(frame);
        var destination = EthernetFrame.Destination(frame);
        if (!EthernetFrame.IsGroup(source) && !_localMacSnapshot.Contains(source))
        {
            // The host sends from an address another member advertised or is known by: refused here, at its source.
            if (_tables.IsOwnedByOther(source, Self))
            {
                Interlocked.Increment(ref Counters.AddressNotOwnedValue);
                return;
            }
            AddLocalMac(source);
        }

        if (!EthernetFrame.IsGroup(destination))
        {
            if (_localMacSnapshot.Contains(destination)) return; // the host talking to itself
            if (TryForwardUnicast(source, destination, frame, _local, now, batch)) return;
            if (PathFit.IsTcpSyn(frame) && frame.Length <= MaxSynFrame)
            {
                // Its path is not known yet: clamped to what every link takes.
                Span<byte> copy = stackalloc byte[frame.Length];
                frame.CopyTo(copy);
                if (PathFit.ClampMss(copy, SmallestLinkFrame())) Interlocked.Increment(ref Counters.MssClampedValue);
                Originate(FloodType.UnknownUnicast, destination, copy, batch);
                return;
            }
            Originate(FloodType.UnknownUnicast, destination, frame, batch);
            return;
        }
        if (destination == EthernetFrame.Broadcast)
        {
            Originate(FloodType.Broadcast, destination, frame, batch);
            return;
        }
        // Membership reports go to every switch (each must learn the subscriber); data is pruned.
        var report = SnoopReports(frame, Self, now);
        Originate(FloodType.Multicast, destination, frame, batch, prune: !report);
    }

    /// <summary>A plain frame from the link to <paramref name="from"/>.</summary>
    public void OnLinkFrame(NodeId from, ReadOnlySpan<byte> frame, IFrameBatch? batch = null)
    {
        Interlocked.Increment(ref Counters.LinkInValue);
        if (!Admit(frame)) return;
        var port = FindPort(from);
        if (port is null)
        {
            Interlocked.Increment(ref Counters.UnknownPortValue);
            return;
        }
        var now = Volatile.Read(ref _now);
        var source = EthernetFrame.Source(frame);
        var destination = EthernetFrame.Destination(frame);
        if (EthernetFrame.IsGroup(destination))
        {
            // Group frames travel only as floods; a plain one on a link is malformed.
            Interlocked.Increment(ref Counters.LoopValue);
            return;
        }
        // A conversation already pinned to this port was vetted when its path was installed: the common case costs one lookup.
        var pinned = _tables.TryGetCurrentFlow(destination, source, out var reverse);
        var ownerElsewhere = false;
        if (!pinned || !ReferenceEquals(reverse.Port, port))
        {
            // A plain frame names no root: only the link it came on vouches for its source. This host's own address arriving
            // from the overlay is a forgery. So is a frame for this host from an address whose owner is linked here
            // directly: that owner sends it on its own link. Passing through, such a frame is on a path the destination's
            // floods taught (which need not be the link between the two), so it goes on, but it sets no path: this
            // switch's traffic to the address keeps going to its owner, never to whoever sent a frame in its name.
            MacEntry? known = null;
            if (!EthernetFrame.IsGroup(source))
            {
                ownerElsewhere = IsOwnedByLinkedSwitch(source, out var owner, out known) && owner != from;
                if (_localMacSnapshot.Contains(source) || ownerElsewhere && _localMacSnapshot.Contains(destination))
                {
                    Interlocked.Increment(ref Counters.AddressNotOwnedValue);
                    return;
                }
            }
            // The reply path installs the forward path: (destination → source) leaves by the port this came in on, unless the
            // source is known to be reached by another port (then the address table, which floods taught, decides). A path that
            // agreed with the table lasts as long as that entry: when the address is learned again by another port (its
            // switch announced it after a link on the old way went down), the path is recomputed, not kept into the break.
            if (!pinned && !ownerElsewhere && (known is null || ReferenceEquals(known.Port, port)))
            {
                if (_tables.HasRoomForFlow(destination, source))
                    _tables.SetFlow(destination, source, new FlowEntry(port, known, known?.Owner ?? from, now));
                else Interlocked.Increment(ref Counters.NotLearnedValue);
            }
        }

        if (_localMacSnapshot.Contains(destination))
        {
            DeliverFrom(port, frame, batch);
            return;
        }
        if (!TryForwardUnicast(source, destination, frame, port, now, batch))
        {
            if (_localFull && !ownerElsewhere) DeliverFrom(port, frame, batch);
            Originate(FloodType.UnknownUnicast, destination, frame, batch);
        }
    }

    /// <summary>A bounded-flood frame from the link to <paramref name="from"/>.</summary>
    public void OnLinkFlood(NodeId from, in FloodHeader header, ReadOnlySpan<byte> frame, IFrameBatch? batch = null)
    {
        Interlocked.Increment(ref Counters.FloodInValue);
        if (!Admit(frame)) return;
        // A copy for a gap alone may come back to its root: the gap lies just behind it, at the end of its own flood's arc.
        if (header.Root == Self && header.Gap != FloodGap.GapBehindOnly)
        {
            Interlocked.Increment(ref Counters.OwnRootValue);
            return;
        }
        if (header.Hop >= _options.MaxHops)
        {
            Interlocked.Increment(ref Counters.HopLimitValue);
            return;
        }
        var port = FindPort(from);
        if (port is null)
        {
            Interlocked.Increment(ref Counters.UnknownPortValue);
            return;
        }
        if (!InsideGivenArc(from, header))
        {
            Interlocked.Increment(ref Counters.OutsideArcValue);
            return;
        }
        // The first hop comes from the root itself, and only the root's own copies are first hops.
        if ((header.Hop <= 1) != (from == header.Root))
        {
            Interlocked.Increment(ref Counters.NotFromRootValue);
            return;
        }
        if (header.Gap is FloodGap.GapBehindOnly or FloodGap.RelayIntoGap)
        {
            // This switch gets the flood itself from its own branch (a copy here would be a duplicate): only the gap,
            // (sender, bound) for a copy for the gap alone, (bound, sender) for a relayed one.
            var (start, end) = header.Gap == FloodGap.GapBehindOnly ? (from, header.Bound) : (header.Bound, from);
            PassIntoGap(start, end, header with { Hop = (byte)(header.Hop + 1) }, EthernetFrame.Destination(frame), frame, Volatile.Read(ref _now), batch, prune: false);
            return;
        }
        if (!_duplicates.TryAdd(header.Root, header.Sequence))
        {
            Interlocked.Increment(ref Counters.DuplicateValue);
            return;
        }
        var now = Volatile.Read(ref _now);
        var source = EthernetFrame.Source(frame);
        var destination = EthernetFrame.Destination(frame);
        var withheld = false;
        if (!EthernetFrame.IsGroup(source))
        {
            // A switch that gets a plain frame for an address it does not know floods it on as unknown unicast in its own
            // name: such a flood's source may be another switch's host, so it teaches the way to the address, not its
            // owner. Broadcasts and multicast are flooded only by the source's own switch, and claim the address.
            var claim = header.Type != FloodType.UnknownUnicast;
            // An address of this switch's own host, coming back from the overlay: claimed (a broadcast, multicast), another
            // member's forgery; in unknown unicast, this host's frame relayed (or a forgery, which gets nothing here either).
            var own = _localMacSnapshot.Contains(source);
            var result = own ? LearnResult.NotOwner : _tables.Learn(source, port, header.Root, now, claim);
            switch (result)
            {
                case LearnResult.NotOwner when claim:
                    Interlocked.Increment(ref Counters.AddressNotOwnedValue);
                    return;
                case LearnResult.NotOwner when own:
                    // This host's own frame, flooded by a switch that had no way to its destination (the local host sent it
                    // to that switch): nothing to learn or deliver here, but the flood goes on through the arc this switch
                    // was given. Stopped here, it would miss every member behind this switch, the destination among them
                    // when it lies there, and the conversation would stay cut for as long as the relay had no way.
                    withheld = true;
                    break;
                case LearnResult.NotOwner:
                    // Relayed (or forged) for an address another switch owns: not learned; passed on through the arc,
                    // whose switches may be on the way to its destination. Its owner, when linked here, would have sent
                    // it here itself, so the local host does not get it.
                    withheld = IsOwnedByLinkedSwitch(source, out _, out _);
                    if (withheld) Interlocked.Increment(ref Counters.RelayedFromLinkedOwnerValue);
                    break;
                case LearnResult.TableFull or LearnResult.OwnerFull:
                    Interlocked.Increment(ref Counters.NotLearnedValue);
                    break;
            }
        }

        var report = header.Type == FloodType.Multicast && SnoopReports(frame, header.Root, now);
        var deliver = header.Type switch
        {
            FloodType.Broadcast => true,
            FloodType.UnknownUnicast => _localMacSnapshot.Count == 0 || _localFull || _localMacSnapshot.Contains(destination),
            // Other hosts' reports are kept from the local host: hearing one, an IGMPv2/MLDv1 host would
            // suppress its own report (RFC 2236 §3) and this switch would never learn it subscribed.
            _ => !report && (AlwaysFlooded(destination) || !_groups.IsKnown(destination, now) || _groups.HasLocal(destination, now)),
        };
        if (deliver && !withheld)
        {
            DeliverFrom(port, frame, batch);
            if (header.Type == FloodType.UnknownUnicast && _localMacSnapshot.Contains(destination)) Announce(destination, now, batch);
        }
        var next = header with { Hop = (byte)(header.Hop + 1), Gap = FloodGap.None };
        Forward(next, destination, frame, now, batch, prune: !report);
        if (header.Gap == FloodGap.WithGapBehind) PassIntoGap(from, Self, next, destination, frame, now, batch, prune: !report);
    }

    private bool TryForwardUnicast(ulong source, ulong destination, ReadOnlySpan<byte> frame, PortEntry ingress, long now, IFrameBatch? batch)
    {
        if (!_tables.TryGetCurrentFlow(source, destination, out var flow))
        {
            if (!_tables.TryGetLiveMac(destination, out var mac) || Unvouched(mac, ingress)) return false;
            // A directly linked owner switch is the shortest path there is (the advertised owner, where the entry was
            // taught by another switch's flood).
            var owner = _tables.TryGetOwner(destination, out var claimed, out _) ? claimed : mac.Owner;
            var port = owner != Self && FindPort(owner) is { } direct ? direct : mac.Port;
            if (!_tables.HasRoomForFlow(source, destination))
            {
                Interlocked.Increment(ref Counters.NotLearnedValue);
                SendUnicast(port, frame, ingress, batch);
                return true;
            }
            flow = new FlowEntry(port, mac, owner, now);
            _tables.SetFlow(source, destination, flow);
        }
        if (flow.Target is { } target && Unvouched(target, ingress))
        {
            _tables.ForgetWay(source, destination, flow.Port);
            return false;
        }
        if (ReferenceEquals(flow.Port, ingress))
        {
            // The neighbour this frame came from is where the way to its destination leads: the two switches point at each
            // other (one kept a way the other lost, as after a crash took a switch on it away). Sent back, the frame would
            // go to and fro for as long as both entries live; dropped, the conversation would stop for good. This way is
            // forgotten and the frame flooded, which reaches the destination's switch, whose announcement then teaches
            // every switch the way again.
            Interlocked.Increment(ref Counters.PathLoopsBrokenValue);
            _tables.ForgetWay(source, destination, ingress);
            return false;
        }
        flow.LastSeen = now;
        if (SendUnicast(flow.Port, frame, ingress, batch)) Interlocked.Add(ref flow.Bytes, frame.Length);
        return true;
    }

    /// <summary>
    /// Whether a way learned from a relay's unknown-unicast flood (an entry that gives the way to an address, not its owner)
    /// is not to be followed by a frame that came from a link. Such an entry points towards the relay, which may have
    /// reached the address through this very switch: after a crash, four switches were seen passing a frame round for
    /// good, two by the way their tables learned from the destination's own floods, two by a relay's. A frame from the
    /// local host still takes it (the relay knew a way when it flooded), and one from a link is flooded instead: that
    /// reaches the destination's switch, whose announcement then gives every switch the owner's own way.
    /// </summary>
    private static bool Unvouched(MacEntry entry, PortEntry ingress) => !entry.Claimed && !ingress.IsLocal;

    /// <summary>Delivers or sends a unicast frame on its path; false when it was not sent on a link.</summary>
    private bool SendUnicast(PortEntry port, ReadOnlySpan<byte> frame, PortEntry ingress, IFrameBatch? batch)
    {
        if (port.IsLocal)
        {
            DeliverFrom(ingress, frame, batch);
            return false;
        }
        if (ReferenceEquals(port, ingress))
        {
            Interlocked.Increment(ref Counters.LoopValue);
            return false;
        }
        var fits = port.Port.MaxFrameLength;
        if (frame.Length > fits)
        {
            if (!ingress.IsLocal || !SendFragments(port, frame, fits, batch)) TooBig(frame, fits, ingress, batch);
            return true;
        }
        if (ingress.IsLocal && PathFit.IsTcpSyn(frame))
        {
            SendClamped(port, frame, fits, batch);
            return true;
        }
        if (port.Port.TrySendFrame(frame, batch)) Interlocked.Increment(ref Counters.UnicastForwardedValue);
        else Interlocked.Increment(ref Counters.SendFailedValue);
        return true;
    }

    /// <summary>
    /// A frame too long for its link's path: the local host's gets an ICMP answer (written into the local port, so its own
    /// path MTU discovery learns the size); another switch's is dropped (that switch answers its own host).
    /// </summary>
    private void TooBig(ReadOnlySpan<byte> frame, int fits, PortEntry ingress, IFrameBatch? batch)
    {
        if (ingress.IsLocal)
        {
            Span<byte> answer = stackalloc byte[PathFit.MaxTooBigFrame];
            var length = PathFit.WriteTooBig(frame, fits, answer);
            if (length > 0 && _local.Port.TrySendFrame(answer[..length], batch))
            {
                Interlocked.Increment(ref Counters.TooBigAnsweredValue);
                return;
            }
        }
        Interlocked.Increment(ref Counters.TooBigDroppedValue);
    }

    /// <summary>
    /// An IPv4 packet from the local host without DF that does not fit its link: sent in fragments that do, as a router
    /// would (the peer's host reassembles them); false when it cannot be fragmented (DF, IPv6, options).
    /// </summary>
    private bool SendFragments(PortEntry port, ReadOnlySpan<byte> frame, int fits, IFrameBatch? batch)
    {
        Span<byte> fragment = stackalloc byte[Math.Min(fits, MaxStackFragment)];
        var position = 0;
        var length = PathFit.WriteFragment(frame, fragment.Length, ref position, fragment);
        if (length == 0) return false;
        do
        {
            if (port.Port.TrySendFrame(fragment[..length], batch)) Interlocked.Increment(ref Counters.UnicastForwardedValue);
            else Interlocked.Increment(ref Counters.SendFailedValue);
            length = PathFit.WriteFragment(frame, fragment.Length, ref position, fragment);
        }
        while (length > 0);
        Interlocked.Increment(ref Counters.FragmentedValue);
        return true;
    }

    private const int MaxStackFragment = 4096;

    /// <summary>A TCP SYN (small) copied and sent with its MSS lowered to what fits <paramref name="fits"/>-byte frames.</summary>
    private void SendClamped(PortEntry port, ReadOnlySpan<byte> frame, int fits, IFrameBatch? batch)
    {
        Span<byte> copy = stackalloc byte[Math.Min(frame.Length, MaxSynFrame)];
        if (frame.Length > copy.Length)
        {
            Interlocked.Increment(ref Counters.TooBigDroppedValue);
            return;
        }
        frame.CopyTo(copy);
        if (PathFit.ClampMss(copy, fits)) Interlocked.Increment(ref Counters.MssClampedValue);
        if (port.IsLocal)
        {
            Deliver(copy, batch);
            return;
        }
        if (port.Port.TrySendFrame(copy, batch)) Interlocked.Increment(ref Counters.UnicastForwardedValue);
        else Interlocked.Increment(ref Counters.SendFailedValue);
    }

    // A SYN carries at most 60 bytes of IP options or 40 of IPv6 header, 60 of TCP header, and rarely data (TCP Fast Open).
    private const int MaxSynFrame = 1600;

    /// <summary>The smallest frame any link takes now (for SYNs that are flooded: their path is not known yet).</summary>
    private int SmallestLinkFrame()
    {
        var smallest = int.MaxValue;
        foreach (var n in _neighbours) smallest = Math.Min(smallest, n.Port.MaxFrameLength);
        return smallest;
    }

    /// <summary>
    /// Another switch flooded a frame for this host: it had no way here, because it never learned one or because a link on
    /// the way it knew went down. Switches further back on that way still send there, so every frame of the conversation
    /// would be flooded from the break on. This switch broadcasts in the host's name (<see cref="AddressAnnouncement"/>):
    /// every switch learns the address again along the links there are now, and the paths built on the old way are
    /// recomputed. At most once per address per second of the switch clock, so floods aimed at this host cannot make
    /// this switch flood more than that.
    /// </summary>
    private void Announce(ulong mac, long now, IFrameBatch? batch)
    {
        if (_announced.TryGetValue(mac, out var last) && last == now) return;
        _announced[mac] = now; // local addresses only: bounded by MaxLocalAddresses
        Span<byte> frame = stackalloc byte[AddressAnnouncement.FrameLength];
        var length = AddressAnnouncement.Write(frame, mac);
        Interlocked.Increment(ref Counters.AnnouncementsValue);
        Originate(FloodType.Broadcast, EthernetFrame.Broadcast, frame[..length], batch);
    }

    /// <summary>
    /// Starts a flood: neighbour p_i gets the arc up to p_{i+1}; the farthest gets the arc back to this switch. When the
    /// link to the ring successor could not form, p_0's copy also covers the gap before it (see <see cref="Forward"/>).
    /// </summary>
    private void Originate(FloodType type, ulong destination, ReadOnlySpan<byte> frame, IFrameBatch? batch, bool prune = true)
    {
        var sequence = NextSequence(); // not remembered: a flood of our own that comes back is dropped as OwnRoot first
        Interlocked.Increment(ref Counters.FloodsOriginatedValue);
        if (type == FloodType.UnknownUnicast) Interlocked.Increment(ref Counters.UnknownUnicastFloodsValue);
        Forward(new FloodHeader(Self, Self, sequence, 1, type), destination, frame, Volatile.Read(ref _now), batch, prune);
    }

    /// <summary>
    /// A random sequence number, not a count: a member that sees this switch's floods cannot send the next numbers first
    /// and make every switch drop the real ones as duplicates. Duplicate suppression needs only (root, sequence) to be
    /// unique among recent floods (a chance collision, 4,096 in 2^32, drops one flood at one switch). The operating
    /// system's generator costs about 2 µs a call, so its bytes are drawn 1 KiB (256 floods) at a time.
    /// </summary>
    private uint NextSequence()
    {
        lock (_sequenceLock)
        {
            if (_sequenceBytes is null || _sequencePosition == _sequenceBytes.Length)
            {
                _sequenceBytes ??= new byte[1024];
                System.Security.Cryptography.RandomNumberGenerator.Fill(_sequenceBytes);
                _sequencePosition = 0;
            }
            var sequence = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(_sequenceBytes.AsSpan(_sequencePosition));
            _sequencePosition += sizeof(uint);
            return sequence;
        }
    }

    /// <summary>
    /// Sends copies to the neighbours strictly inside (Self, header.Bound), each with the arc up to the next one. A ring
    /// successor inside the arc that has no link here (it could not form) would get nothing: it lies before the first
    /// neighbour, where no arc starts. That neighbour's copy says so (<see cref="FloodGap.WithGapBehind"/>), and it is
    /// linked to the successor when the successor's own successor link is up; with no neighbour inside the arc, the bound
    /// gets a copy for the gap alone.
    /// </summary>
    private void Forward(FloodHeader header, ulong destination, ReadOnlySpan<byte> frame, long now, IFrameBatch? batch, bool prune)
    {
        var neighbours = _neighbours;
        prune = Prunes(header.Type, destination, now, prune);
        var gap = _ring is { } ring && ring.Successor != Self && Self.ArcContains(ring.Successor, header.Bound) && FindPort(ring.Successor) is null;
        var copies = 0;
        for (var i = 0; i < neighbours.Length; i++)
        {
            var n = neighbours[i];
            if (!Self.ArcContains(n.Id, header.Bound)) break; // sorted by distance: the rest lie beyond the bound
            var bound = i + 1 < neighbours.Length && Self.ArcContains(neighbours[i + 1].Id, header.Bound) ? neighbours[i + 1].Id : header.Bound;
            SendCopy(n, header with { Bound = bound, Gap = gap && i == 0 ? FloodGap.WithGapBehind : FloodGap.None }, destination, frame, now, batch, prune);
            copies++;
        }
        if (gap && copies == 0 && header.Bound != Self)
        {
            // The bound takes the copy for the gap; where its link could not form either, the nearest neighbour beyond it.
            var to = FindPort(header.Bound) ?? (neighbours.Length > 0 ? neighbours[0] : null);
            if (to is not null) SendCopy(to, header with { Gap = FloodGap.GapBehindOnly }, destination, frame, now, batch, prune);
        }
    }

    /// <summary>
    /// Passes a flood into the gap (<paramref name="start"/>, <paramref name="end"/>), behind this switch or behind the
    /// sender of a relayed gap: to the first neighbour there, with the arc up to <paramref name="end"/>. A switch at the
    /// gap's end with no link into it, whose own ring predecessor lies there unlinked (a member linked on neither ring
    /// side), has its next neighbour on relay it (<see cref="FloodGap.RelayIntoGap"/>): that member's own successor links
    /// reach past this switch, to the nearest members it could link.
    /// </summary>
    private void PassIntoGap(NodeId start, NodeId end, FloodHeader header, ulong destination, ReadOnlySpan<byte> frame, long now, IFrameBatch? batch, bool prune)
    {
        var neighbours = _neighbours;
        PortEntry? first = null;
        foreach (var n in neighbours)
            if (start.ArcContains(n.Id, end) && (first is null || start.DistanceTo(n.Id) < start.DistanceTo(first.Id))) first = n;
        if (first is not null)
        {
            SendCopy(first, header with { Bound = end, Gap = FloodGap.IntoGap }, destination, frame, now, batch, Prunes(header.Type, destination, now, prune));
            return;
        }
        if (end != Self || _ring is not { } ring || !start.ArcContains(ring.Predecessor, Self) || FindPort(ring.Predecessor) is not null) return;
        // The nearest neighbour on (the list is in clockwise order from here); never back to the gap's start. A root's copies
        // are all first hops, this one too (the gap lies at the end of its own flood's arc).
        if (neighbours.Length > 0 && neighbours[0].Id != start)
        {
            Interlocked.Increment(ref Counters.GapRelaysValue);
            var relay = header with { Bound = start, Gap = FloodGap.RelayIntoGap, Hop = header.Root == Self ? (byte)1 : header.Hop };
            SendCopy(neighbours[0], relay, destination, frame, now, batch, prune: false);
        }
    }

    private bool Prunes(FloodType type, ulong destination, long now, bool prune) =>
        prune && type == FloodType.Multicast && !AlwaysFlooded(destination) && _groups.IsKnown(destination, now);

    private void SendCopy(PortEntry to, in FloodHeader header, ulong destination, ReadOnlySpan<byte> frame, long now, IFrameBatch? batch, bool prune)
    {
        // A copy that also covers this switch's gap covers the members from here on.
        var start = header.Gap is FloodGap.WithGapBehind or FloodGap.GapBehindOnly ? Self : to.Id;
        if (prune && !_groups.HasSubscriberIn(destination, start, header.Bound)) return;
        if (!to.Port.TrySendFlood(header, frame, batch))
        {
            Interlocked.Increment(ref Counters.SendFailedValue);
            return;
        }
        Interlocked.Increment(ref Counters.FloodCopiesSentValue);
        if (header.Gap != FloodGap.None) Interlocked.Increment(ref Counters.GapCopiesValue);
    }

    /// <summary>
    /// Whether this switch lies inside the arc its sender was given. A plain copy: inside (root, bound), from the root or
    /// from a sender inside it, and inside the sender's own (sender, bound); so a member can send floods in another
    /// root's name only into its own stretch of the ring, where it forwards that root's floods anyway. A copy for a
    /// gap: the sender's stretch ended here and lies on the root's side (at the root itself, only when its own unlinked
    /// ring predecessor lies in the gap). A copy into a gap: behind its sender, bounded at or before it, on the root's
    /// side, and only where the link to the ring predecessor is missing, which is the only place such copies go. A relayed
    /// gap: behind its sender, on the root's side, not holding this switch.
    /// </summary>
    private bool InsideGivenArc(NodeId from, in FloodHeader header)
    {
        var root = header.Root;
        return header.Gap switch
        {
            // Back at its root only for the gap just behind it: its ring predecessor, unlinked, lies there.
            FloodGap.GapBehindOnly => (header.Bound == Self || !from.ArcContains(Self, header.Bound)) && (from == root || root.ArcContains(from, header.Bound))
                && (root != Self || header.Bound == Self && _ring is { } own && from.ArcContains(own.Predecessor, Self) && FindPort(own.Predecessor) is null),
            FloodGap.IntoGap => (header.Bound == from || Self.ArcContains(header.Bound, from)) && root.ArcContains(Self, header.Bound) && _ring is { } ring
                && ring.Predecessor != Self && FindPort(ring.Predecessor) is null,
            FloodGap.RelayIntoGap => header.Bound != from && (header.Bound == root || root.ArcContains(header.Bound, from)) && Self != header.Bound
                && !header.Bound.ArcContains(Self, from),
            _ => root.ArcContains(Self, header.Bound) && (from == root || root.ArcContains(from, header.Bound)) && from.ArcContains(Self, header.Bound),
        };
    }

    /// <summary>Applies the IGMP/MLD membership changes the frame carries; true when it is a membership message.</summary>
    private bool SnoopReports(ReadOnlySpan<byte> frame, NodeId member, long now)
    {
        Span<GroupChange> changes = stackalloc GroupChange[8];
        var count = MulticastReport.Read(frame, changes);
        var expires = now + (long)_options.GroupAgeing.TotalSeconds;
        for (var i = 0; i < count; i++)
            if (!_groups.Update(changes[i].GroupMac, member, Self, changes[i].Join, expires)) Interlocked.Increment(ref Counters.GroupsRefusedValue);
        return count > 0;
    }

    /// <summary>Link-local groups every host may need (224.0.0.x, ff02::x, IPv6 solicited-node): never pruned.</summary>
    private static bool AlwaysFlooded(ulong group) =>
        (group & 0xFFFF_FFFF_FF00) == 0x0100_5E00_0000
        || (group & 0xFFFF_FFFF_FF00) == 0x3333_0000_0000
        || (group & 0xFFFF_FF00_0000) == 0x3333_FF00_0000;

    /// <summary>Delivers a frame that came over a link: a TCP SYN (or SYN-ACK) with its MSS clamped to what that link takes back.</summary>
    private void DeliverFrom(PortEntry ingress, ReadOnlySpan<byte> frame, IFrameBatch? batch)
    {
        if (PathFit.IsTcpSyn(frame)) SendClamped(_local, frame, ingress.Port.MaxFrameLength, batch);
        else Deliver(frame, batch);
    }

    private void Deliver(ReadOnlySpan<byte> frame, IFrameBatch? batch)
    {
        if (_local.Port.TrySendFrame(frame, batch)) Interlocked.Increment(ref Counters.DeliveredLocalValue);
        else Interlocked.Increment(ref Counters.SendFailedValue);
    }

    private bool Admit(ReadOnlySpan<byte> frame)
    {
        if (frame.Length < EthernetFrame.HeaderLength)
        {
            Interlocked.Increment(ref Counters.RuntValue);
            return false;
        }
        if (frame.Length > _options.MaxFrameLength)
        {
            Interlocked.Increment(ref Counters.OversizeValue);
            return false;
        }
        return true;
    }

    /// <summary>Whether <paramref name="mac"/>'s owner (advertised or claimed) is a switch linked to this one.</summary>
    private bool IsOwnedByLinkedSwitch(ulong mac, out NodeId owner, out MacEntry? known) =>
        _tables.TryGetOwner(mac, out owner, out known) && FindPort(owner) is not null;

    private PortEntry? FindPort(NodeId id)
    {
        foreach (var p in _neighbours)
            if (p.Id == id) return p;
        return null;
    }

    private void AddLocalMac(ulong mac)
    {
        if (_localFull) // local addresses are never forgotten, so a full table stays full: no lock per frame from then on
        {
            Interlocked.Increment(ref Counters.NotLearnedValue);
            return;
        }
        lock (_portsLock)
        {
            if (_localMacs.Count >= _options.MaxLocalAddresses && !_localMacs.Contains(mac))
            {
                _localFull = true;
                Interlocked.Increment(ref Counters.NotLearnedValue);
                return;
            }
            if (!_localMacs.Add(mac)) return;
            _localMacSnapshot = [.. _localMacs];
            _tables.Learn(mac, _local, Self, Volatile.Read(ref _now));
        }
    }

    private void Retire(PortEntry port)
    {
        port.Alive = false;
        _tables.Purge(port);
    }

    private sealed record RingNeighbours(NodeId Predecessor, NodeId Successor);
}
