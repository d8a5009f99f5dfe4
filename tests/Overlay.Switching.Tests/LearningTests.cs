using NUnit.Framework;
using Overlay.Switching;
using Overlay.Switching.Frames;

namespace Overlay.Switching.Tests;

public class LearningTests
{
    [Test]
    public void Traffic_is_counted_per_destination_switch_and_taken_once()
    {
        var (fabric, ids) = SwitchFabric.Ring(8, successors: 1, new Random(1));
        var (a, b) = (ids[0], ids[4]);
        fabric.Switches[b].OnLocalFrame(SwitchFabric.Frame(EthernetFrame.Broadcast, SwitchFabric.MacOf(b), 1)); // b announces itself
        fabric.Pump();
        for (var i = 0; i < 10; i++) fabric.Switches[a].OnLocalFrame(SwitchFabric.Frame(SwitchFabric.MacOf(b), SwitchFabric.MacOf(a), 2, length: 100));
        fabric.Pump();
        var traffic = fabric.Switches[a].TakeTrafficByNode();
        Assert.That(traffic, Is.EquivalentTo(new Dictionary<NodeId, long> { [b] = 1000 }));
        Assert.That(fabric.Switches[a].TakeTrafficByNode(), Is.Empty, "counters restart after each take");
    }

    [Test]
    public void Learned_paths_age_out_on_the_switch_clock_and_traffic_refloods()
    {
        var clock = new ManualClock();
        var local = new SwitchFabric.LocalHost(new NodeId(1));
        var link = new RecordingPort();
        var sw = new OverlaySwitch(new NodeId(1), local, new SwitchOptions { Ageing = TimeSpan.FromSeconds(60) }, clock, localMacs: [0x0200_0000_0001]);
        var neighbour = new NodeId(2);
        sw.AddLink(neighbour, link);
        sw.OnLinkFlood(neighbour, new Flood.FloodHeader(neighbour, neighbour, 1, 1, Flood.FloodType.Broadcast), SwitchFabric.Frame(EthernetFrame.Broadcast, 0x0200_0000_0002, 1));
        sw.OnLocalFrame(SwitchFabric.Frame(0x0200_0000_0002, 0x0200_0000_0001, 2));
        Assert.That((link.Frames, link.Floods), Is.EqualTo((1, 0)), "known: sent as unicast");

        clock.Now += TimeSpan.FromSeconds(61);
        sw.Tick();
        sw.OnLocalFrame(SwitchFabric.Frame(0x0200_0000_0002, 0x0200_0000_0001, 3));
        Assert.That((link.Frames, link.Floods), Is.EqualTo((1, 1)), "aged out: flooded as unknown unicast");
    }

    [TestCase(true)]
    [TestCase(false)]
    public void A_conversation_over_relays_moves_to_a_direct_link_when_one_comes_up(bool knownAddresses)
    {
        // Two hosts that talk before their switches are linked directly: their paths go over the ring's relays. Once the
        // direct link is up (and each side has bound the other's advertised address), a switch accepts the other's plain
        // frames only from that link, so paths still pinned to a relay would lose every frame from then on.
        var (fabric, ids) = SwitchFabric.Ring(8, successors: 1, new Random(3));
        var (a, b) = (ids[0], ids[4]);
        var (macA, macB) = (SwitchFabric.MacOf(a), SwitchFabric.MacOf(b));
        if (knownAddresses)
        {
            fabric.Switches[a].OnLocalFrame(SwitchFabric.Frame(EthernetFrame.Broadcast, macA, 1)); // ARP-like: every switch learns a
            fabric.Switches[b].OnLocalFrame(SwitchFabric.Frame(EthernetFrame.Broadcast, macB, 2));
            fabric.Pump();
        }
        fabric.Switches[a].OnLocalFrame(SwitchFabric.Frame(macB, macA, 3));
        fabric.Pump();
        fabric.Switches[b].OnLocalFrame(SwitchFabric.Frame(macA, macB, 4));
        fabric.Pump();
        Assert.That((fabric.Hosts[b].Count(3), fabric.Hosts[a].Count(4)), Is.EqualTo((1, 1)), "over the relays");

        fabric.Connect(a, b);
        fabric.Switches[a].BindAddress(b, macB); // from the link's offer and answer
        fabric.Switches[b].BindAddress(a, macA);
        fabric.ResetCounts();
        for (var i = 0; i < 3; i++)
        {
            fabric.Switches[a].OnLocalFrame(SwitchFabric.Frame(macB, macA, 5));
            fabric.Pump();
            fabric.Switches[b].OnLocalFrame(SwitchFabric.Frame(macA, macB, 6));
            fabric.Pump();
        }
        Assert.That((fabric.Hosts[b].Count(5), fabric.Hosts[a].Count(6)), Is.EqualTo((3, 3)), "over the direct link");
        Assert.That(fabric.Switches.Values.Sum(s => s.Counters.AddressNotOwned), Is.Zero);
        Assert.That(fabric.LinkTransmissions, Is.LessThanOrEqualTo(6 + 8), "one hop each once the paths are known (a flood at most while relearning)");
    }

    [Test]
    public void A_relay_flooding_anothers_frame_in_its_own_name_does_not_make_that_address_its_own()
    {
        // What 32 hosts on one machine showed: a relay that gets a plain frame for an address it does not know yet floods
        // it on as unknown unicast, with itself as the flood's root and the sender's host's address as the source. A
        // switch that learned the address from that flood took the relay for its owner, refused the owner's own
        // advertisement when their link came up, and from then on dropped every frame and broadcast the owner sent.
        var clock = new ManualClock();
        var self = new NodeId(1UL << 60);
        var (relay, owner) = (new NodeId(2UL << 60), new NodeId(3UL << 60));
        var (selfMac, ownerMac) = (0x0200_0000_0001UL, 0x0200_0000_0003UL);
        var host = new SwitchFabric.LocalHost(self);
        var sw = new OverlaySwitch(self, host, time: clock, localMacs: [selfMac]);
        var (toRelay, toOwner) = (new RecordingPort(), new RecordingPort());
        sw.AddLink(relay, toRelay);
        sw.OnLinkFlood(relay, new Flood.FloodHeader(relay, relay, 1, 1, Flood.FloodType.UnknownUnicast), SwitchFabric.Frame(selfMac, ownerMac, 70));
        Assert.That(host.Count(70), Is.EqualTo(1), "delivered: the relay did not know where this host is");
        Assert.That((toRelay.Frames, toRelay.Floods, sw.Counters.Announcements), Is.EqualTo((0, 1, 1)),
            "nothing goes back to where it came from but the broadcast that tells where this host is");

        // The relay's flood taught the way to the address: a reply takes it.
        sw.OnLocalFrame(SwitchFabric.Frame(ownerMac, selfMac, 71));
        Assert.That(toRelay.Frames, Is.EqualTo(1));

        // The owner's link comes up and advertises its address: it is the owner's.
        sw.AddLink(owner, toOwner);
        Assert.That(sw.BindAddress(owner, ownerMac), Is.True, "the advertisement is accepted");
        sw.OnLinkFrame(owner, SwitchFabric.Frame(selfMac, ownerMac, 72));
        sw.OnLinkFlood(owner, new Flood.FloodHeader(owner, owner, 2, 1, Flood.FloodType.Broadcast), SwitchFabric.Frame(EthernetFrame.Broadcast, ownerMac, 73));
        Assert.That((host.Count(72), host.Count(73)), Is.EqualTo((1, 1)), "the owner's frame and broadcast are delivered");
        sw.OnLocalFrame(SwitchFabric.Frame(ownerMac, selfMac, 74));
        Assert.That((toOwner.Frames, toRelay.Frames), Is.EqualTo((1, 1)), "replies take the direct link");

        // A relayed flood of the owner's frame that comes this way now is passed on, but not delivered: the owner is linked
        // here, so its frames for this host come on its link; nor does the relay's flood take the address over.
        sw.OnLinkFlood(relay, new Flood.FloodHeader(relay, relay, 3, 1, Flood.FloodType.UnknownUnicast), SwitchFabric.Frame(selfMac, ownerMac, 75));
        Assert.That(host.Count(75), Is.Zero);
        sw.OnLocalFrame(SwitchFabric.Frame(ownerMac, selfMac, 76));
        Assert.That((toOwner.Frames, toRelay.Frames), Is.EqualTo((2, 1)), "still the direct link");
        Assert.That((sw.Counters.AddressNotOwned, sw.Counters.RelayedFromLinkedOwner), Is.EqualTo((0, 1)), "only the relayed copy was held back");
    }

    [Test]
    public void A_frame_from_a_linked_owners_address_on_its_way_elsewhere_passes_through_and_turns_no_replies()
    {
        // Paths follow the destination's flood tree, so a frame from a host whose switch is linked here may come through
        // another neighbour on its way: it goes on (32 hosts lost such pairs while it was dropped), but replies to its
        // source still go to the owner's own link, and one for this switch's own host is refused.
        var self = new NodeId(1UL << 60);
        var (owner, other, destination) = (new NodeId(2UL << 60), new NodeId(3UL << 60), new NodeId(4UL << 60));
        var (selfMac, ownerMac, destinationMac) = (0x0200_0000_0001UL, 0x0200_0000_0002UL, 0x0200_0000_0004UL);
        var host = new SwitchFabric.LocalHost(self);
        var sw = new OverlaySwitch(self, host, localMacs: [selfMac]);
        var (toOwner, toOther, toDestination) = (new RecordingPort(), new RecordingPort(), new RecordingPort());
        sw.AddLink(owner, toOwner);
        sw.AddLink(other, toOther);
        sw.AddLink(destination, toDestination);
        Assert.That(sw.BindAddress(owner, ownerMac), Is.True);
        sw.OnLinkFlood(destination, new Flood.FloodHeader(destination, destination, 1, 1, Flood.FloodType.Broadcast),
            SwitchFabric.Frame(EthernetFrame.Broadcast, destinationMac, 80));

        sw.OnLinkFrame(other, SwitchFabric.Frame(destinationMac, ownerMac, 81));
        Assert.That(toDestination.Frames, Is.EqualTo(1), "passed on");
        sw.OnLinkFrame(destination, SwitchFabric.Frame(ownerMac, destinationMac, 82));
        Assert.That((toOwner.Frames, toOther.Frames), Is.EqualTo((1, 0)), "the reply goes to the owner");
        sw.OnLinkFrame(other, SwitchFabric.Frame(selfMac, ownerMac, 83));
        Assert.That(host.Count(83), Is.Zero, "for this host, the owner would have sent it itself");
        Assert.That(sw.Counters.AddressNotOwned, Is.EqualTo(1));
    }

    [Test]
    public void A_second_relays_flood_does_not_move_a_live_way_to_an_address()
    {
        // Two relays flooding the same host's frames in their own names: the second must not move the way the first taught
        // (a relay whose own path runs through this switch would then bounce the traffic back: a loop).
        var self = new NodeId(1UL << 60);
        var (first, second) = (new NodeId(2UL << 60), new NodeId(3UL << 60));
        var (selfMac, farMac) = (0x0200_0000_0001UL, 0x0200_0000_0009UL);
        var sw = new OverlaySwitch(self, new SwitchFabric.LocalHost(self), localMacs: [selfMac]);
        var (toFirst, toSecond) = (new RecordingPort(), new RecordingPort());
        sw.AddLink(first, toFirst);
        sw.AddLink(second, toSecond);
        sw.OnLinkFlood(first, new Flood.FloodHeader(first, first, 1, 1, Flood.FloodType.UnknownUnicast), SwitchFabric.Frame(selfMac, farMac, 90));
        sw.OnLinkFlood(second, new Flood.FloodHeader(second, second, 2, 1, Flood.FloodType.UnknownUnicast), SwitchFabric.Frame(selfMac, farMac, 91));
        sw.OnLocalFrame(SwitchFabric.Frame(farMac, selfMac, 92));
        Assert.That((toFirst.Frames, toSecond.Frames), Is.EqualTo((1, 0)));
    }

    [Test]
    public void A_stream_whose_way_lost_a_link_is_flooded_once_then_takes_a_path_again()
    {
        // A host streams to another that never answers (a UDP stream): each switch on the way keeps the path it learned from
        // the receiver's broadcast. When a long link on that way goes down, the switch before it has no way on and floods
        // the next frame. Every switch behind it still sends there, so without more every later frame was flooded too,
        // for as long as the stream ran. The receiver's switch, flooded a frame for its host, announces the host; every
        // switch learns the way again, and the paths built on the old one are recomputed. Each long link is cut in turn.
        const int n = 24;
        var (fabric, ids) = SwitchFabric.Ring(n, successors: 2, new Random(11), SwitchFabric.Harmonic);
        var (a, b) = (ids[0], ids[n / 2]);
        var longLinks = fabric.Links.Where(l => Math.Abs(Array.IndexOf(ids, l.Item1) - Array.IndexOf(ids, l.Item2)) is > 2 and < n - 2).ToList();
        var breaks = 0;
        foreach (var (x, y) in longLinks)
        {
            (fabric, _) = SwitchFabric.Ring(n, successors: 2, new Random(11), SwitchFabric.Harmonic);
            var (macA, macB) = (SwitchFabric.MacOf(a), SwitchFabric.MacOf(b));
            fabric.Switches[b].OnLocalFrame(SwitchFabric.Frame(EthernetFrame.Broadcast, macB, 1));
            fabric.Pump();
            fabric.Switches[a].OnLocalFrame(SwitchFabric.Frame(macB, macA, 2));
            fabric.Pump();
            fabric.Disconnect(x, y);
            fabric.Tick(TimeSpan.FromSeconds(1));
            var copies = new List<long>();
            for (var tag = 3; tag < 6; tag++)
            {
                fabric.ResetCounts();
                fabric.Switches[a].OnLocalFrame(SwitchFabric.Frame(macB, macA, tag));
                fabric.Pump();
                Assert.That(fabric.Hosts[b].Count(tag), Is.EqualTo(1), $"frame {tag} arrives once, cut {x}-{y}");
                copies.Add(fabric.LinkTransmissions);
            }
            var flooded = copies[0] >= n - 1; // a flood: a copy to every other switch
            Assert.That(fabric.Switches.Values.Sum(s => s.Counters.UnknownUnicastFloods), Is.EqualTo(flooded ? 1 : 0),
                $"cut {x}-{y}: unknown-unicast floods counted (the broadcasts and the announcement are not)");
            if (flooded)
            {
                breaks++;
                Assert.That(fabric.Switches[b].Counters.Announcements, Is.EqualTo(1), $"cut {x}-{y}: the receiver's switch announced its host");
            }
            Assert.That(copies.Skip(1), Has.All.LessThan(n - 1), $"cut {x}-{y}: after at most one flooded frame the stream takes a path (copies per frame: {string.Join(", ", copies)})");
            Assert.That(fabric.Switches.Values.Sum(s => s.Counters.Loops), Is.Zero);
        }
        TestContext.Out.WriteLine($"{longLinks.Count} long links, {breaks} on the stream's way");
        Assert.That(breaks, Is.GreaterThan(0), "some cut link was on the stream's way");
    }

    [Test]
    public void A_switch_announces_its_host_when_another_floods_a_frame_for_it_at_most_once_a_second()
    {
        var clock = new ManualClock();
        var (self, relay) = (new NodeId(1UL << 60), new NodeId(2UL << 60));
        var (hostMac, otherMac) = (0x0200_0000_0001UL, 0x0200_0000_0002UL);
        var sw = new OverlaySwitch(self, new SwitchFabric.LocalHost(self), time: clock, localMacs: [hostMac]);
        var link = new CapturingPort();
        sw.AddLink(relay, link);
        uint sequence = 0;
        void FloodFor(ulong destination) => sw.OnLinkFlood(relay, new Flood.FloodHeader(relay, relay, ++sequence, 1, Flood.FloodType.UnknownUnicast),
            SwitchFabric.Frame(destination, otherMac, 1));

        FloodFor(hostMac);
        Assert.That(link.Floods, Has.Count.EqualTo(1));
        var (header, frame) = link.Floods[0];
        Assert.That((header.Type, header.Root, header.Hop), Is.EqualTo((Flood.FloodType.Broadcast, self, (byte)1)), "a broadcast of this switch's own");
        Assert.That((EthernetFrame.Destination(frame), EthernetFrame.Source(frame), frame.Length), Is.EqualTo((EthernetFrame.Broadcast, hostMac, 60)));
        Assert.That(Convert.ToHexString(frame.AsSpan(12, 30)), Is.EqualTo("8035" + "0001" + "0800" + "06" + "04" + "0003" + "020000000001" + "00000000" + "020000000001" + "00000000"),
            "a RARP request (RFC 903) from and for the host's address");

        FloodFor(hostMac);
        FloodFor(otherMac);
        Assert.That(link.Floods, Has.Count.EqualTo(1), "not again within the second, nor for an address that is not this host's");
        clock.Now += TimeSpan.FromSeconds(1);
        sw.Tick();
        FloodFor(hostMac);
        Assert.That((link.Floods.Count, sw.Counters.Announcements), Is.EqualTo((2, 2)), "again a second later");
    }

    [Test]
    public void A_relays_flood_of_this_hosts_own_frame_goes_on_through_the_arc_but_not_to_the_host()
    {
        // The host sent a frame to a switch that then had no way to its destination, and that switch flooded it. The copy
        // that comes back here carries this host's address: nothing to learn or deliver, but the members behind this
        // switch (the destination may be one) get the flood only through it.
        var (self, further, relay) = (new NodeId(1UL << 60), new NodeId(2UL << 60), new NodeId(3UL << 60));
        var (hostMac, farMac) = (0x0200_0000_0001UL, 0x0200_0000_0009UL);
        var (sw, host, toFurther, toRelay) = SwitchWithTwoLinks(self, hostMac, further, relay);
        sw.OnLinkFlood(relay, new Flood.FloodHeader(relay, relay, 7, 1, Flood.FloodType.UnknownUnicast), SwitchFabric.Frame(farMac, hostMac, 1));
        Assert.That((toFurther.Floods, toRelay.Floods, host.Received.Count), Is.EqualTo((1, 0, 0)), "on into the arc, not back, not to the host");
        Assert.That(sw.Counters.Dropped, Is.Zero);

        // A broadcast that claims this host's address is another member's forgery, and goes no further.
        sw.OnLinkFlood(relay, new Flood.FloodHeader(relay, relay, 8, 1, Flood.FloodType.Broadcast), SwitchFabric.Frame(EthernetFrame.Broadcast, hostMac, 2));
        Assert.That((toFurther.Floods, sw.Counters.AddressNotOwned), Is.EqualTo((1, 1)));
    }

    [Test]
    public void A_frame_from_the_neighbour_its_way_leads_back_to_is_flooded_and_that_way_forgotten()
    {
        // Two switches pointing at each other for one address (one kept a way the other lost): sent back, the frame would go
        // to and fro for as long as both entries lived; dropped, the conversation would stay cut.
        var (self, back, other) = (new NodeId(1UL << 60), new NodeId(2UL << 60), new NodeId(3UL << 60));
        var (hostMac, farMac, senderMac) = (0x0200_0000_0001UL, 0x0200_0000_0009UL, 0x0200_0000_0005UL);
        var (sw, _, toBack, toOther) = SwitchWithTwoLinks(self, hostMac, back, other);
        sw.OnLinkFlood(back, new Flood.FloodHeader(back, back, 1, 1, Flood.FloodType.Broadcast), SwitchFabric.Frame(EthernetFrame.Broadcast, farMac, 1));
        var floods = (toBack.Floods, toOther.Floods);

        sw.OnLinkFrame(back, SwitchFabric.Frame(farMac, senderMac, 2));
        Assert.That((toBack.Frames, toOther.Frames), Is.EqualTo((0, 0)), "not sent back as it came");
        Assert.That((toBack.Floods + toOther.Floods) - (floods.Item1 + floods.Item2), Is.GreaterThan(0), "flooded");
        Assert.That((sw.Counters.PathLoopsBroken, sw.Counters.Loops, sw.Counters.UnknownUnicastFloods), Is.EqualTo((1L, 0L, 1L)));

        sw.OnLocalFrame(SwitchFabric.Frame(farMac, hostMac, 3));
        Assert.That(toBack.Frames, Is.Zero, "the way is forgotten: the host's own frame is flooded too");
        Assert.That(sw.Counters.UnknownUnicastFloods, Is.EqualTo(2));
    }

    [Test]
    public void A_way_a_relay_taught_takes_the_hosts_frames_but_not_those_passing_through()
    {
        // A relay's unknown-unicast flood teaches the way to the frame's source towards the relay, which may have reached the
        // address through this very switch: frames from links are flooded instead, so they reach the destination's switch,
        // which then announces the owner's own way. The local host's frames take it.
        var (self, relay, other) = (new NodeId(8UL << 60), new NodeId(6UL << 60), new NodeId(10UL << 60));
        var (hostMac, farMac, senderMac) = (0x0200_0000_0001UL, 0x0200_0000_0009UL, 0x0200_0000_0005UL);
        var (sw, _, toRelay, toOther) = SwitchWithTwoLinks(self, hostMac, relay, other);
        sw.OnLinkFlood(relay, new Flood.FloodHeader(relay, relay, 1, 1, Flood.FloodType.UnknownUnicast), SwitchFabric.Frame(senderMac, farMac, 1));

        sw.OnLocalFrame(SwitchFabric.Frame(farMac, hostMac, 2));
        Assert.That((toRelay.Frames, sw.Counters.UnknownUnicastFloods), Is.EqualTo((1, 0L)), "the host's frame goes to the relay");
        sw.OnLinkFrame(other, SwitchFabric.Frame(farMac, senderMac, 3));
        Assert.That((toRelay.Frames, toOther.Frames, sw.Counters.UnknownUnicastFloods), Is.EqualTo((1, 0, 1L)), "one passing through is flooded");

        // Once the owner's own flood has taught the way, passing frames take it.
        sw.OnLinkFlood(relay, new Flood.FloodHeader(new NodeId(4UL << 60), new NodeId(9UL << 60), 2, 2, Flood.FloodType.Broadcast), SwitchFabric.Frame(EthernetFrame.Broadcast, farMac, 4));
        sw.OnLinkFrame(other, SwitchFabric.Frame(farMac, senderMac, 5));
        Assert.That((toRelay.Frames, sw.Counters.UnknownUnicastFloods), Is.EqualTo((2, 1L)));
    }

    /// <summary>A switch whose host has <paramref name="hostMac"/>, linked to <paramref name="first"/> and <paramref name="second"/> through recording ports.</summary>
    private static (OverlaySwitch Switch, SwitchFabric.LocalHost Host, RecordingPort First, RecordingPort Second) SwitchWithTwoLinks(
        NodeId self, ulong hostMac, NodeId first, NodeId second)
    {
        var host = new SwitchFabric.LocalHost(self);
        var sw = new OverlaySwitch(self, host, localMacs: [hostMac]);
        var (toFirst, toSecond) = (new RecordingPort(), new RecordingPort());
        sw.AddLink(first, toFirst);
        sw.AddLink(second, toSecond);
        return (sw, host, toFirst, toSecond);
    }

    private sealed class CapturingPort : ISwitchPort
    {
        public List<(Flood.FloodHeader Header, byte[] Frame)> Floods { get; } = [];
        public bool TrySendFrame(ReadOnlySpan<byte> frame, IFrameBatch? batch) => true;
        public bool TrySendFlood(in Flood.FloodHeader header, ReadOnlySpan<byte> frame, IFrameBatch? batch)
        {
            Floods.Add((header, frame.ToArray()));
            return true;
        }
    }

    private sealed class RecordingPort : ISwitchPort
    {
        public int Frames, Floods;
        public bool TrySendFrame(ReadOnlySpan<byte> frame, IFrameBatch? batch) { Frames++; return true; }
        public bool TrySendFlood(in Flood.FloodHeader header, ReadOnlySpan<byte> frame, IFrameBatch? batch) { Floods++; return true; }
    }
}
