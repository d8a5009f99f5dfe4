namespace Overlay.Switching;

/// <summary>What the switch did with frames, and why it dropped the ones it dropped. Read from any thread.</summary>
internal sealed class SwitchCounters
{
    internal long LocalInValue, LinkInValue, FloodInValue, UnicastForwardedValue, FloodsOriginatedValue, UnknownUnicastFloodsValue, FloodCopiesSentValue, DeliveredLocalValue;
    internal long MembershipQueriesValue, NotLearnedValue, AnnouncementsValue, GapRelaysValue, GapCopiesValue, PathLoopsBrokenValue;
    internal long RuntValue, OversizeValue, OwnRootValue, OutsideArcValue, HopLimitValue, DuplicateValue, LoopValue, SendFailedValue, UnknownPortValue;
    internal long NotFromRootValue, AddressNotOwnedValue, GroupsRefusedValue, RelayedFromLinkedOwnerValue;
    internal long MssClampedValue, TooBigAnsweredValue, TooBigDroppedValue, FragmentedValue;

    /// <summary>IPv4 packets from the local host without DF, too long for their link, sent in fragments that fit.</summary>
    public long Fragmented => Volatile.Read(ref FragmentedValue);

    /// <summary>TCP SYNs crossing the local port whose MSS was lowered to what the link's path MTU leaves room for.</summary>
    public long MssClamped => Volatile.Read(ref MssClampedValue);
    /// <summary>Frames from the local host too long for their link, answered with ICMP "fragmentation needed" or ICMPv6 "packet too big".</summary>
    public long TooBigAnswered => Volatile.Read(ref TooBigAnsweredValue);
    /// <summary>Dropped: too long for their link and no ICMP answer due (not IP, IPv4 with options, or forwarded for another switch).</summary>
    public long TooBigDropped => Volatile.Read(ref TooBigDroppedValue);

    /// <summary>
    /// Plain frames that came from the neighbour their way led back to (two switches pointing at each other): the way was
    /// forgotten and the frame flooded instead.
    /// </summary>
    public long PathLoopsBroken => Volatile.Read(ref PathLoopsBrokenValue);

    /// <summary>Frames from the local device.</summary>
    public long LocalIn => Volatile.Read(ref LocalInValue);
    /// <summary>Plain frames from links.</summary>
    public long LinkIn => Volatile.Read(ref LinkInValue);
    /// <summary>Flood frames from links.</summary>
    public long FloodIn => Volatile.Read(ref FloodInValue);
    /// <summary>Unicast frames sent on a link.</summary>
    public long UnicastForwarded => Volatile.Read(ref UnicastForwardedValue);
    /// <summary>Floods this switch started.</summary>
    public long FloodsOriginated => Volatile.Read(ref FloodsOriginatedValue);
    /// <summary>
    /// Of <see cref="FloodsOriginated"/>, unicast frames flooded because this switch knew no way to their address. After a
    /// conversation's first frames these mean a way was lost (a link on it went down) or an address went quiet.
    /// </summary>
    public long UnknownUnicastFloods => Volatile.Read(ref UnknownUnicastFloodsValue);
    /// <summary>Flood copies sent on links (originated or forwarded).</summary>
    public long FloodCopiesSent => Volatile.Read(ref FloodCopiesSentValue);
    /// <summary>
    /// Of <see cref="FloodCopiesSent"/>, copies that carried a flood around a missing ring link (see <c>FloodGap</c>):
    /// the gap's mark on a neighbour's copy, copies for a gap alone, into a gap and relayed. Zero where every member is
    /// linked to its ring neighbours; a growing count means some member near this switch is not.
    /// </summary>
    public long GapCopies => Volatile.Read(ref GapCopiesValue);
    /// <summary>
    /// Floods whose gap behind this switch it had the next switch on pass a copy into, having no link there itself: a
    /// member in the gap is linked on neither ring side.
    /// </summary>
    public long GapRelays => Volatile.Read(ref GapRelaysValue);
    /// <summary>IGMP and MLD general queries sent to the local device.</summary>
    public long MembershipQueries => Volatile.Read(ref MembershipQueriesValue);
    /// <summary>Broadcasts in the local host's name after another switch flooded a frame for it (it had lost the way).</summary>
    public long Announcements => Volatile.Read(ref AnnouncementsValue);
    /// <summary>
    /// Frames whose address or path was not learned because its table was full (<see cref="SwitchOptions.MaxLearnedAddresses"/>
    /// and the like): they were still forwarded or flooded, so this is not a drop, but a large count means a member is
    /// sending from made-up addresses.
    /// </summary>
    public long NotLearned => Volatile.Read(ref NotLearnedValue);
    /// <summary>Frames handed to the local device.</summary>
    public long DeliveredLocal => Volatile.Read(ref DeliveredLocalValue);
    /// <summary>Dropped: shorter than an Ethernet header.</summary>
    public long Runts => Volatile.Read(ref RuntValue);
    /// <summary>Dropped: longer than <see cref="SwitchOptions.MaxFrameLength"/>.</summary>
    public long Oversize => Volatile.Read(ref OversizeValue);
    /// <summary>Dropped: a flood claiming this switch as its root.</summary>
    public long OwnRoot => Volatile.Read(ref OwnRootValue);
    /// <summary>Dropped: a flood whose arc does not contain this switch.</summary>
    public long OutsideArc => Volatile.Read(ref OutsideArcValue);
    /// <summary>Dropped: a flood past the hop limit.</summary>
    public long HopLimit => Volatile.Read(ref HopLimitValue);
    /// <summary>Dropped: a flood seen before (same root and sequence).</summary>
    public long Duplicates => Volatile.Read(ref DuplicateValue);
    /// <summary>Dropped: a unicast frame whose path leads back where it came from.</summary>
    public long Loops => Volatile.Read(ref LoopValue);
    /// <summary>Dropped: a port refused the frame.</summary>
    public long SendFailed => Volatile.Read(ref SendFailedValue);
    /// <summary>Dropped: a frame from a link that is not (or no longer) a port.</summary>
    public long UnknownPort => Volatile.Read(ref UnknownPortValue);

    /// <summary>Dropped: a flood's first hop that did not come from the root it names (a member forging another's flood).</summary>
    public long NotFromRoot => Volatile.Read(ref NotFromRootValue);
    /// <summary>Dropped: a flood from a source address that another switch owns (advertised, or learned first).</summary>
    public long AddressNotOwned => Volatile.Read(ref AddressNotOwnedValue);
    /// <summary>
    /// Not delivered here, but passed on: another switch's unknown-unicast flood of a frame from an address whose owner is
    /// linked here (that owner sends this switch's host its frames on its own link).
    /// </summary>
    public long RelayedFromLinkedOwner => Volatile.Read(ref RelayedFromLinkedOwnerValue);

    /// <summary>
    /// Multicast joins not recorded because the group table or the member's share of it was full (the report still
    /// travels on; the group is flooded rather than pruned).
    /// </summary>
    public long GroupsRefused => Volatile.Read(ref GroupsRefusedValue);

    /// <summary>
    /// Every reason a frame is dropped for, with its count, in a fixed order; the names are those the status and the
    /// metric <c>overlay.frames.dropped</c> give (snake case).
    /// </summary>
    public (string Reason, long Count)[] DropsByReason() =>
    [
        ("runt", Runts), ("oversize", Oversize), ("own_root", OwnRoot), ("outside_arc", OutsideArc), ("hop_limit", HopLimit),
        ("duplicate", Duplicates), ("loop", Loops), ("send_failed", SendFailed), ("unknown_port", UnknownPort),
        ("not_from_root", NotFromRoot), ("address_not_owned", AddressNotOwned), ("relayed_from_linked_owner", RelayedFromLinkedOwner), ("too_big_answered", TooBigAnswered),
        ("too_big_dropped", TooBigDropped),
    ];

    /// <summary>Every drop, whatever the reason.</summary>
    public long Dropped => Runts + Oversize + OwnRoot + OutsideArc + HopLimit + Duplicates + Loops + SendFailed + UnknownPort + NotFromRoot + AddressNotOwned + RelayedFromLinkedOwner + TooBigAnswered + TooBigDropped;
}
