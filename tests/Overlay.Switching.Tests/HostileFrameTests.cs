using NUnit.Framework;
using Overlay.Switching;
using Overlay.Switching.Flood;
using Overlay.Switching.Frames;

namespace Overlay.Switching.Tests;

/// <summary>Frames a broken or hostile peer could send: each is dropped and counted, and other traffic still flows.</summary>
public class HostileFrameTests
{
    private static (SwitchFabric Fabric, NodeId[] Ids) Ring() => SwitchFabric.Ring(12, successors: 2, new Random(3), SwitchFabric.Harmonic);

    [Test]
    public void Runts_and_oversize_frames_are_dropped_and_counted_from_every_side()
    {
        var (fabric, ids) = Ring();
        var sw = fabric.Switches[ids[0]];
        var neighbour = sw.Neighbours[0];
        sw.OnLocalFrame(new byte[13]);
        sw.OnLinkFrame(neighbour, new byte[5]);
        sw.OnLinkFlood(neighbour, new FloodHeader(neighbour, neighbour, 1, 1, FloodType.Broadcast), new byte[0]);
        sw.OnLocalFrame(new byte[1429]);
        fabric.Pump();
        Assert.That((sw.Counters.Runts, sw.Counters.Oversize), Is.EqualTo((3L, 1L)));
        Assert.That(fabric.LinkTransmissions, Is.Zero);
        AssertBroadcastStillWorks(fabric, ids);
    }

    [Test]
    public void A_flood_claiming_the_receiver_as_root_is_dropped()
    {
        var (fabric, ids) = Ring();
        var sw = fabric.Switches[ids[0]];
        var neighbour = sw.Neighbours[0];
        sw.OnLinkFlood(neighbour, new FloodHeader(ids[0], ids[0], 7, 1, FloodType.Broadcast), Broadcast(ids[5], 1));
        fabric.Pump();
        Assert.That(sw.Counters.OwnRoot, Is.EqualTo(1));
        Assert.That(fabric.Hosts[ids[0]].Count(1), Is.Zero);
        AssertBroadcastStillWorks(fabric, ids);
    }

    [Test]
    public void A_flood_whose_arc_excludes_the_receiver_is_dropped()
    {
        var (fabric, ids) = Ring();
        // ids are in ring order: a flood rooted at ids[4] bounded at ids[6] covers ids[5] only.
        var sw = fabric.Switches[ids[8]];
        var neighbour = sw.Neighbours[0];
        sw.OnLinkFlood(neighbour, new FloodHeader(ids[4], ids[6], 7, 1, FloodType.Broadcast), Broadcast(ids[4], 2));
        fabric.Pump();
        Assert.That(sw.Counters.OutsideArc, Is.EqualTo(1));
        Assert.That(fabric.Hosts.Values.Sum(h => h.Count(2)), Is.Zero, "nobody got the forged flood");
        AssertBroadcastStillWorks(fabric, ids);
    }

    [Test]
    public void A_copy_into_a_gap_is_taken_only_where_the_link_to_the_ring_predecessor_is_missing()
    {
        var (fabric, ids) = Ring();
        fabric.TellRing(ids);
        // ids[5] is linked to its predecessor ids[4]: a copy of ids[2]'s flood passed back to it from ids[7] is forged.
        var header = new FloodHeader(ids[2], ids[7], 7, 3, FloodType.Broadcast, FloodGap.IntoGap);
        fabric.Switches[ids[5]].OnLinkFlood(ids[7], header, Broadcast(ids[2], 5));
        fabric.Pump();
        Assert.That(fabric.Switches[ids[5]].Counters.OutsideArc, Is.EqualTo(1));
        Assert.That(fabric.Hosts.Values.Sum(h => h.Count(5)), Is.Zero);

        // Where that link could not form, ids[5] is the gap such copies fill: it takes the arc up to the sender.
        fabric.Disconnect(ids[4], ids[5]);
        fabric.Switches[ids[5]].OnLinkFlood(ids[7], header with { Sequence = 8 }, Broadcast(ids[2], 6));
        fabric.Pump();
        Assert.That(ids.Select(id => fabric.Hosts[id].Count(6)), Is.EqualTo(ids.Select(id => id == ids[5] || id == ids[6] ? 1 : 0)),
            "ids[5] and ids[6], inside (ids[5], ids[7]), and no one else");

        // A relayed gap's copy is bounded before its sender, at the gap's end: ids[5] takes (ids[5], ids[6]), itself alone.
        fabric.Switches[ids[5]].OnLinkFlood(ids[7], header with { Sequence = 10, Bound = ids[6] }, Broadcast(ids[2], 8));
        fabric.Pump();
        Assert.That(ids.Select(id => fabric.Hosts[id].Count(8)), Is.EqualTo(ids.Select(id => id == ids[5] ? 1 : 0)));

        // Never from the sender's wrong side: a copy into a gap bounded beyond its sender.
        fabric.Switches[ids[5]].OnLinkFlood(ids[7], header with { Sequence = 9, Bound = ids[9] }, Broadcast(ids[2], 7));
        fabric.Pump();
        Assert.That(fabric.Switches[ids[5]].Counters.OutsideArc, Is.EqualTo(2));
        AssertBroadcastStillWorks(fabric, ids);
    }

    [Test]
    public void A_relayed_gap_is_passed_to_the_member_in_it_and_delivered_nowhere_else()
    {
        var (fabric, ids) = Ring();
        fabric.TellRing(ids);
        // ids[5] is linked on neither ring side; it keeps its links to ids[3] and ids[7] (second predecessor and successor).
        fabric.Disconnect(ids[4], ids[5]);
        fabric.Disconnect(ids[5], ids[6]);
        // ids[4]'s arc of ids[2]'s flood held the gap (ids[4], ids[6]); ids[6] has no link into it and relays it to ids[7],
        // which passes a copy to ids[5] and keeps none itself.
        var relay = new FloodHeader(ids[2], ids[4], 7, 3, FloodType.Broadcast, FloodGap.RelayIntoGap);
        fabric.Switches[ids[7]].OnLinkFlood(ids[6], relay, Broadcast(ids[2], 5));
        fabric.Pump();
        Assert.That(ids.Select(id => fabric.Hosts[id].Count(5)), Is.EqualTo(ids.Select(id => id == ids[5] ? 1 : 0)));

        // A gap that starts at the receiver or at its sender, or does not lie on the root's side, is refused.
        fabric.Switches[ids[7]].OnLinkFlood(ids[6], relay with { Sequence = 8, Bound = ids[7] }, Broadcast(ids[2], 6));
        fabric.Switches[ids[7]].OnLinkFlood(ids[6], relay with { Sequence = 9, Bound = ids[6] }, Broadcast(ids[2], 6));
        fabric.Switches[ids[7]].OnLinkFlood(ids[6], relay with { Sequence = 10, Bound = ids[9] }, Broadcast(ids[2], 6));
        fabric.Switches[ids[7]].OnLinkFlood(ids[6], relay with { Sequence = 11, Root = ids[5] }, Broadcast(ids[5], 6));
        fabric.Pump();
        Assert.That(fabric.Switches[ids[7]].Counters.OutsideArc, Is.EqualTo(4));
        Assert.That(fabric.Hosts.Values.Sum(h => h.Count(6)), Is.Zero);

        // A copy for a gap alone comes back to its root only for the gap just behind it, where its ring predecessor lies
        // unlinked: ids[6]'s predecessor ids[5] is, ids[8]'s predecessor ids[7] is linked to it.
        var back = new FloodHeader(ids[6], ids[6], 13, 2, FloodType.Broadcast, FloodGap.GapBehindOnly);
        fabric.Switches[ids[6]].OnLinkFlood(ids[4], back, Broadcast(ids[6], 9));
        fabric.Switches[ids[8]].OnLinkFlood(ids[6], back with { Root = ids[8], Bound = ids[8] }, Broadcast(ids[8], 10));
        fabric.Pump();
        Assert.That(ids.Select(id => fabric.Hosts[id].Count(9)), Is.EqualTo(ids.Select(id => id == ids[5] ? 1 : 0)), "relayed by ids[7] to ids[5]");
        Assert.That((fabric.Switches[ids[6]].Counters.GapRelays, fabric.Switches[ids[6]].Counters.OwnRoot), Is.EqualTo((1L, 0L)));
        Assert.That((fabric.Switches[ids[8]].Counters.OutsideArc, fabric.Hosts.Values.Sum(h => h.Count(10))), Is.EqualTo((1L, 0)));

        // ids[5] takes a relayed copy only while its predecessor link is missing.
        fabric.Connect(ids[4], ids[5]);
        fabric.Switches[ids[7]].OnLinkFlood(ids[6], relay with { Sequence = 12 }, Broadcast(ids[2], 7));
        fabric.Pump();
        Assert.That(fabric.Switches[ids[5]].Counters.OutsideArc, Is.EqualTo(1));
        Assert.That(fabric.Hosts.Values.Sum(h => h.Count(7)), Is.Zero);
        AssertBroadcastStillWorks(fabric, ids);
    }

    [Test]
    public void A_copy_for_a_gap_alone_is_passed_into_the_gap_and_delivered_nowhere_else()
    {
        var (fabric, ids) = Ring();
        fabric.TellRing(ids);
        fabric.Disconnect(ids[5], ids[6]);
        // ids[5]'s arc of ids[2]'s flood ended at ids[7]: ids[7] passes the gap's copy to ids[6] and keeps none itself.
        fabric.Switches[ids[7]].OnLinkFlood(ids[5], new FloodHeader(ids[2], ids[7], 7, 3, FloodType.Broadcast, FloodGap.GapBehindOnly), Broadcast(ids[2], 5));
        fabric.Pump();
        Assert.That(ids.Select(id => fabric.Hosts[id].Count(5)), Is.EqualTo(ids.Select(id => id == ids[6] ? 1 : 0)));

        // One whose stretch does not end at the receiver, or does not lie on the root's side, is refused.
        fabric.Switches[ids[7]].OnLinkFlood(ids[5], new FloodHeader(ids[2], ids[8], 8, 3, FloodType.Broadcast, FloodGap.GapBehindOnly), Broadcast(ids[2], 6));
        fabric.Switches[ids[7]].OnLinkFlood(ids[5], new FloodHeader(ids[6], ids[7], 9, 3, FloodType.Broadcast, FloodGap.GapBehindOnly), Broadcast(ids[6], 6));
        fabric.Pump();
        Assert.That(fabric.Switches[ids[7]].Counters.OutsideArc, Is.EqualTo(2));
        Assert.That(fabric.Hosts.Values.Sum(h => h.Count(6)), Is.Zero);
        AssertBroadcastStillWorks(fabric, ids);
    }

    [Test]
    public void A_copy_for_a_gap_whose_bound_its_sender_cannot_reach_goes_to_the_next_switch_on()
    {
        var (fabric, ids) = Ring();
        fabric.TellRing(ids);
        // ids[4] reaches neither ids[5] nor ids[6]; its arc of ids[2]'s flood, (ids[4], ids[6]), holds only its gap. It
        // sends the gap's copy, bounded at ids[6], to ids[7], which passes it to ids[5] with the arc up to ids[6].
        fabric.Disconnect(ids[4], ids[5]);
        fabric.Disconnect(ids[4], ids[6]);
        fabric.Connect(ids[4], ids[7]);
        var header = new FloodHeader(ids[2], ids[6], 7, 3, FloodType.Broadcast, FloodGap.GapBehindOnly);
        fabric.Switches[ids[7]].OnLinkFlood(ids[4], header, Broadcast(ids[2], 5));
        fabric.Pump();
        Assert.That(ids.Select(id => fabric.Hosts[id].Count(5)), Is.EqualTo(ids.Select(id => id == ids[5] ? 1 : 0)));

        // Never a gap that holds the receiver, nor one off the root's side.
        fabric.Switches[ids[7]].OnLinkFlood(ids[4], header with { Sequence = 8, Bound = ids[8] }, Broadcast(ids[2], 6));
        fabric.Switches[ids[7]].OnLinkFlood(ids[4], header with { Sequence = 9, Root = ids[5] }, Broadcast(ids[5], 6));
        fabric.Pump();
        Assert.That(fabric.Switches[ids[7]].Counters.OutsideArc, Is.EqualTo(2));
        Assert.That(fabric.Hosts.Values.Sum(h => h.Count(6)), Is.Zero);
        AssertBroadcastStillWorks(fabric, ids);
    }

    [Test]
    public void A_replayed_flood_is_dropped_by_the_duplicate_cache()
    {
        var (fabric, ids) = Ring();
        var sw = fabric.Switches[ids[1]];
        var header = new FloodHeader(ids[0], ids[0], 99, 1, FloodType.Broadcast);
        sw.OnLinkFlood(ids[0], header, Broadcast(ids[0], 3));
        sw.OnLinkFlood(ids[0], header, Broadcast(ids[0], 3));
        fabric.Pump();
        Assert.That(sw.Counters.Duplicates, Is.EqualTo(1));
        Assert.That(fabric.Hosts[ids[1]].Count(3), Is.EqualTo(1));
    }

    [Test]
    public void A_flood_past_the_hop_limit_and_frames_from_strangers_are_dropped()
    {
        var (fabric, ids) = Ring();
        var sw = fabric.Switches[ids[1]];
        sw.OnLinkFlood(ids[0], new FloodHeader(ids[0], ids[0], 5, 64, FloodType.Broadcast), Broadcast(ids[0], 4));
        var stranger = new NodeId(12345);
        sw.OnLinkFlood(stranger, new FloodHeader(ids[0], ids[0], 6, 1, FloodType.Broadcast), Broadcast(ids[0], 4));
        sw.OnLinkFrame(stranger, SwitchFabric.Frame(SwitchFabric.MacOf(ids[1]), 0x0200_0000_0001, 4));
        fabric.Pump();
        Assert.That((sw.Counters.HopLimit, sw.Counters.UnknownPort), Is.EqualTo((1L, 2L)));
        Assert.That(fabric.Hosts.Values.Sum(h => h.Count(4)), Is.Zero);
    }

    [Test]
    public void Random_garbage_from_links_never_throws_and_never_reaches_other_hosts_twice()
    {
        var (fabric, ids) = Ring();
        var random = new Random(11);
        var sw = fabric.Switches[ids[2]];
        var neighbours = sw.Neighbours;
        for (var i = 0; i < 20_000; i++)
        {
            var frame = new byte[random.Next(0, 1500)];
            random.NextBytes(frame);
            var header = new FloodHeader(ids[random.Next(ids.Length)], ids[random.Next(ids.Length)], (uint)random.Next(), (byte)random.Next(256), (FloodType)random.Next(3), (FloodGap)random.Next(5));
            var from = neighbours[random.Next(neighbours.Count)];
            if (random.Next(2) == 0) sw.OnLinkFrame(from, frame);
            else sw.OnLinkFlood(from, header, frame);
        }
        fabric.Pump();
        AssertBroadcastStillWorks(fabric, ids);
    }

    [Test]
    public void A_host_sending_from_made_up_addresses_fills_no_table_past_its_bound_and_other_traffic_still_arrives()
    {
        var options = new SwitchOptions { MaxLearnedAddresses = 100, MaxLearnedPaths = 200, MaxLocalAddresses = 10 };
        var (fabric, ids) = SwitchFabric.Ring(12, successors: 2, new Random(5), SwitchFabric.Harmonic, options);
        var random = new Random(6);
        var hostile = fabric.Switches[ids[0]];
        // A host behind one TAP sends broadcasts and unicasts from 5,000 made-up addresses (macof, in effect).
        for (var i = 0; i < 5_000; i++)
        {
            var source = 0x0200_0000_0000UL | (ulong)random.NextInt64(1, 1L << 40);
            hostile.OnLocalFrame(SwitchFabric.Frame(i % 2 == 0 ? EthernetFrame.Broadcast : source ^ 1, source, 7));
        }
        fabric.Pump();
        Assert.That(fabric.Switches.Values.Max(s => s.LearnedAddresses), Is.LessThanOrEqualTo(100));
        Assert.That(fabric.Switches.Values.Max(s => s.LearnedPaths), Is.LessThanOrEqualTo(200));
        Assert.That(fabric.Switches.Values.Sum(s => s.Counters.NotLearned), Is.GreaterThan(0));
        Assert.That(hostile.Counters.NotLearned, Is.GreaterThanOrEqualTo(5_000 - 10), "its own host's addresses are bounded too");

        // The tables are full, but other hosts still reach each other (flooded when unlearned), each frame once. The
        // hostile host may see them too: its switch cannot tell which addresses are its host's, as on a hub.
        fabric.ResetCounts();
        fabric.Switches[ids[3]].OnLocalFrame(SwitchFabric.Frame(SwitchFabric.MacOf(ids[7]), SwitchFabric.MacOf(ids[3]), 31));
        fabric.Switches[ids[7]].OnLocalFrame(SwitchFabric.Frame(SwitchFabric.MacOf(ids[3]), SwitchFabric.MacOf(ids[7]), 32));
        fabric.Pump();
        Assert.That(fabric.Hosts[ids[7]].Count(31), Is.EqualTo(1));
        Assert.That(fabric.Hosts[ids[3]].Count(32), Is.EqualTo(1));
        foreach (var id in ids.Except([ids[0], ids[3], ids[7]]))
            Assert.That(fabric.Hosts[id].Count(31) + fabric.Hosts[id].Count(32), Is.Zero, "no other host gets them");
        AssertBroadcastStillWorks(fabric, ids);
    }

    [Test]
    public void A_local_address_the_full_table_did_not_learn_is_still_reached()
    {
        var (fabric, ids) = SwitchFabric.Ring(12, successors: 2, new Random(5), SwitchFabric.Harmonic, new SwitchOptions { MaxLocalAddresses = 2 });
        const ulong vm1 = 0x0200_00AA_0001, vm2 = 0x0200_00AA_0002; // two guests bridged behind ids[3]'s TAP; only one fits
        fabric.Switches[ids[3]].OnLocalFrame(SwitchFabric.Frame(EthernetFrame.Broadcast, vm1, 40));
        fabric.Switches[ids[3]].OnLocalFrame(SwitchFabric.Frame(EthernetFrame.Broadcast, vm2, 41));
        fabric.Pump();
        Assert.That(fabric.Switches[ids[3]].Counters.NotLearned, Is.EqualTo(1));
        fabric.ResetCounts();
        // Both are answered by unicast from ids[7]: to vm1 along the learned path, to vm2 through a flood that ids[3] delivers too.
        fabric.Switches[ids[7]].OnLocalFrame(SwitchFabric.Frame(vm1, SwitchFabric.MacOf(ids[7]), 42));
        fabric.Switches[ids[7]].OnLocalFrame(SwitchFabric.Frame(vm2, SwitchFabric.MacOf(ids[7]), 43));
        fabric.Pump();
        Assert.That(fabric.Hosts[ids[3]].Count(42), Is.EqualTo(1));
        Assert.That(fabric.Hosts[ids[3]].Count(43), Is.EqualTo(1), "delivered exactly once");
    }

    [Test]
    public void Addresses_forgotten_with_a_link_make_room_to_learn_again()
    {
        var (fabric, ids) = SwitchFabric.Ring(12, successors: 2, new Random(5), SwitchFabric.Harmonic, new SwitchOptions { MaxLearnedAddresses = 100 });
        var sw = fabric.Switches[ids[1]];
        var random = new Random(8);
        void Flood(uint sequence) => sw.OnLinkFlood(ids[0], new FloodHeader(ids[0], ids[0], sequence, 1, FloodType.Broadcast),
            SwitchFabric.Frame(EthernetFrame.Broadcast, 0x0200_0000_0000UL | (ulong)random.NextInt64(1, 1L << 40), 9));
        for (var i = 0u; i < 500; i++) Flood(1_000 + i);
        Assert.That((sw.LearnedAddresses, sw.Counters.NotLearned), Is.EqualTo((100, 400L)));
        fabric.Disconnect(ids[0], ids[1]);
        Assert.That(sw.LearnedAddresses, Is.Zero, "everything was learned through that link");
        fabric.Connect(ids[0], ids[1]);
        for (var i = 0u; i < 50; i++) Flood(2_000 + i);
        Assert.That((sw.LearnedAddresses, sw.Counters.NotLearned), Is.EqualTo((50, 400L)));
    }

    [Test]
    public void A_member_sending_from_another_hosts_address_takes_over_no_traffic()
    {
        var (fabric, ids) = Ring();
        var victim = SwitchFabric.MacOf(ids[3]);
        fabric.Switches[ids[3]].OnLocalFrame(Broadcast(ids[3], 50)); // the victim's host is learned everywhere
        fabric.Pump();

        // A member's host sends broadcasts from the victim's address, as ARP spoofing would: its own switch refuses them.
        fabric.Switches[ids[0]].OnLocalFrame(SwitchFabric.Frame(EthernetFrame.Broadcast, victim, 51));
        fabric.Pump();
        Assert.That(fabric.Switches[ids[0]].Counters.AddressNotOwned, Is.EqualTo(1));
        // A member running modified software floods them in its own name: every receiver refuses them.
        foreach (var neighbour in fabric.Switches[ids[0]].Neighbours)
            fabric.Switches[neighbour].OnLinkFlood(ids[0], new FloodHeader(ids[0], ids[0], 77, 1, FloodType.Broadcast),
                SwitchFabric.Frame(EthernetFrame.Broadcast, victim, 51));
        fabric.Pump();
        Assert.That(fabric.Switches[ids[0]].Neighbours.Sum(n => fabric.Switches[n].Counters.AddressNotOwned), Is.EqualTo(fabric.Switches[ids[0]].Neighbours.Count));
        Assert.That(fabric.Hosts.Sum(h => h.Value.Count(51)), Is.Zero, "the forged frames reach no host");

        // Unicast to the victim still reaches the victim, once, and not the member.
        fabric.Switches[ids[7]].OnLocalFrame(SwitchFabric.Frame(victim, SwitchFabric.MacOf(ids[7]), 52));
        fabric.Pump();
        Assert.That((fabric.Hosts[ids[3]].Count(52), fabric.Hosts[ids[0]].Count(52)), Is.EqualTo((1, 0)));
    }

    [Test]
    public void A_plain_frame_from_a_directly_linked_members_address_sent_by_another_member_turns_no_traffic_to_it()
    {
        var (fabric, ids) = Ring();
        var sw = fabric.Switches[ids[0]];
        var (owner, forger) = (sw.Neighbours[0], sw.Neighbours[1]);
        var (ownerMac, hostMac) = (SwitchFabric.MacOf(owner), SwitchFabric.MacOf(ids[0]));
        sw.BindAddress(owner, ownerMac); // the owner's link advertised it
        // A plain unicast frame carries no root: only the link vouches for its source. The forger claims the owner's address
        // (first, before any traffic between the two), which would make this switch send its replies to the forger.
        sw.OnLinkFrame(forger, SwitchFabric.Frame(hostMac, ownerMac, 60));
        // Nor may a member send from this switch's own host's address.
        sw.OnLocalFrame(Broadcast(ids[0], 61));
        fabric.Pump();
        sw.OnLinkFrame(forger, SwitchFabric.Frame(hostMac, hostMac, 62));
        Assert.That(sw.Counters.AddressNotOwned, Is.EqualTo(2));
        Assert.That(fabric.Hosts[ids[0]].Count(60) + fabric.Hosts[ids[0]].Count(62), Is.Zero, "the forged frames are not delivered");

        // The host's traffic to the owner's address goes to the owner, not to the forger.
        fabric.ResetCounts();
        sw.OnLocalFrame(SwitchFabric.Frame(ownerMac, hostMac, 63));
        fabric.Pump();
        Assert.That((fabric.Hosts[owner].Count(63), fabric.Hosts[forger].Count(63)), Is.EqualTo((1, 0)));
        // The owner's own frames, on its own link, are delivered as ever.
        sw.OnLinkFrame(owner, SwitchFabric.Frame(hostMac, ownerMac, 64));
        fabric.Pump();
        Assert.That(fabric.Hosts[ids[0]].Count(64), Is.EqualTo(1));
    }

    [Test]
    public void An_advertised_address_is_refused_from_any_other_switch_even_before_its_owner_sent()
    {
        var (fabric, ids) = Ring();
        var owned = SwitchFabric.MacOf(ids[3]);
        foreach (var sw in fabric.Switches.Values) sw.BindAddress(ids[3], owned); // from ids[3]'s link offers
        // A later advertisement of the same address by another member is refused: the first claim holds.
        Assert.That(fabric.Switches[ids[5]].BindAddress(ids[0], owned), Is.False);

        fabric.Switches[ids[0]].OnLocalFrame(SwitchFabric.Frame(EthernetFrame.Broadcast, owned, 53)); // first, and forged
        fabric.Switches[ids[3]].OnLocalFrame(Broadcast(ids[3], 54));
        fabric.Pump();
        Assert.That(fabric.Hosts.Where(h => h.Key != ids[0]).Sum(h => h.Value.Count(53)), Is.Zero);
        Assert.That(ids.Where(id => id != ids[3]).All(id => fabric.Hosts[id].Count(54) == 1), Is.True);

        fabric.Switches[ids[7]].OnLocalFrame(SwitchFabric.Frame(owned, SwitchFabric.MacOf(ids[7]), 55));
        fabric.Pump();
        Assert.That((fabric.Hosts[ids[3]].Count(55), fabric.Hosts[ids[0]].Count(55)), Is.EqualTo((1, 0)));
    }

    [Test]
    public void Floods_forged_in_another_roots_name_with_its_next_sequence_numbers_do_not_silence_it()
    {
        var (fabric, ids) = Ring();
        var victim = ids[0];
        var forger = fabric.Switches[victim].Neighbours[0];
        // The forger claims to forward the victim's floods (hop 2) with the sequence numbers a counting root would use
        // next, into its own stretch of the ring (bound: the victim, so the whole ring after the forger).
        foreach (var neighbour in fabric.Switches[forger].Neighbours.Where(n => n != victim))
            for (var sequence = 0u; sequence <= 100; sequence++)
                fabric.Switches[neighbour].OnLinkFlood(forger, new FloodHeader(victim, victim, sequence, 2, FloodType.Broadcast), Broadcast(victim, 56));
        fabric.Pump();

        fabric.ResetCounts();
        fabric.Switches[victim].OnLocalFrame(Broadcast(victim, 57));
        fabric.Pump();
        foreach (var id in ids.Where(id => id != victim)) Assert.That(fabric.Hosts[id].Count(57), Is.EqualTo(1), $"{id} got the victim's broadcast");
    }

    [Test]
    public void A_first_hop_that_does_not_come_from_its_root_is_dropped()
    {
        var (fabric, ids) = Ring();
        // ids[4]'s ring predecessor ids[3] claims to be the first hop of a flood of ids[0]'s (which it is not).
        var sw = fabric.Switches[ids[4]];
        sw.OnLinkFlood(ids[3], new FloodHeader(ids[0], ids[0], 5, 1, FloodType.Broadcast), Broadcast(ids[0], 58));
        fabric.Pump();
        Assert.That(sw.Counters.NotFromRoot, Is.EqualTo(1));
        Assert.That(fabric.Hosts.Values.Sum(h => h.Count(58)), Is.Zero);
        AssertBroadcastStillWorks(fabric, ids);
    }

    [Test]
    public void A_member_subscribing_to_thousands_of_groups_gets_its_share_of_the_group_table_only()
    {
        var options = new SwitchOptions { MaxMulticastGroups = 500, MaxMulticastGroupsPerMember = 20 };
        var (fabric, ids) = SwitchFabric.Ring(12, successors: 2, new Random(5), SwitchFabric.Harmonic, options);
        for (var i = 0u; i < 1_000; i++)
            fabric.Switches[ids[0]].OnLocalFrame(Packets.IgmpV2Report(SwitchFabric.MacOf(ids[0]), 0xE1000000 + i));
        fabric.Switches[ids[5]].OnLocalFrame(Packets.IgmpV2Report(SwitchFabric.MacOf(ids[5]), 0xE2400001)); // a MAC no member group maps to
        fabric.Pump();

        foreach (var (id, sw) in fabric.Switches.Where(s => s.Key != ids[0]))
        {
            Assert.That(sw.MulticastGroups, Is.LessThanOrEqualTo(21), $"{id}: 20 of the member's groups and the honest one");
            Assert.That(sw.Counters.GroupsRefused, Is.EqualTo(980));
        }
        Assert.That(fabric.Switches[ids[9]].MulticastGroups, Is.EqualTo(21), "the honest member's group found room");
    }

    private static byte[] Broadcast(NodeId from, int tag) => SwitchFabric.Frame(EthernetFrame.Broadcast, SwitchFabric.MacOf(from), tag);

    private static void AssertBroadcastStillWorks(SwitchFabric fabric, NodeId[] ids)
    {
        fabric.ResetCounts();
        fabric.Switches[ids[3]].OnLocalFrame(Broadcast(ids[3], 424242));
        fabric.Pump();
        foreach (var id in ids) Assert.That(fabric.Hosts[id].Count(424242), Is.EqualTo(id == ids[3] ? 0 : 1));
    }
}
