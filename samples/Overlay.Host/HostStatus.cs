using System.Globalization;
using System.Text;

namespace Overlay.Host;

/// <summary>What the host reports through its control socket and its map: the node's status and the members it heard of.</summary>
/// <param name="NodeId">The node's ID.</param>
/// <param name="Fingerprint">Its certificate fingerprint.</param>
/// <param name="Signaling">The signaling connection's state.</param>
/// <param name="Version">The host's version.</param>
/// <param name="Started">When the node came up.</param>
/// <param name="Overlays">Per overlay: the node's status and its members.</param>
public sealed record HostStatus(string NodeId, string Fingerprint, string Signaling, string Version, DateTimeOffset Started, IReadOnlyList<HostOverlayStatus> Overlays)
{
    /// <summary>The status as people read it: one line per overlay and per link.</summary>
    public string Describe()
    {
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"node {NodeId} (overlay host {Version}), signaling {Signaling}, up since {Started:u}");
        foreach (var o in Overlays)
        {
            var s = o.Status;
            text.AppendLine(CultureInfo.InvariantCulture, $"overlay {s.OverlayId} on {s.Device} ({s.Mac}): {s.Members} members, {s.Links.Count(l => l.State == LinkChange.Up)} of {s.Links.Count} links up, signals refused {s.RefusedSignals}");
            text.AppendLine(CultureInfo.InvariantCulture, $"  switch: in {s.Switch.LocalIn} local / {s.Switch.LinkIn} from links, delivered {s.Switch.Delivered}, forwarded {s.Switch.Forwarded}, floods {s.Switch.Floods} (unknown unicast {s.Switch.UnknownUnicastFloods}, announcements {s.Switch.Announcements}, around ring gaps {s.Switch.GapCopies}), path loops broken {s.Switch.PathLoopsBroken}, dropped {s.Switch.Dropped}{Reasons(s.Switch)}, not learned {s.Switch.NotLearned}, learned addresses {s.LearnedAddresses}");
            text.AppendLine(CultureInfo.InvariantCulture, $"  members: {(o.MemberIds.Count == 0 ? "(none heard of yet)" : string.Join(' ', o.MemberIds))}");
            foreach (var l in s.Links)
            {
                var path = l.Path is { } p ? $"{PathType(p)} {p.Local} -> {p.Remote}" : "no path yet";
                var rtt = l.RoundTrip is { } r ? $"{r.TotalMilliseconds:0.00} ms" : "-";
                var stats = l.Statistics is { } c ? $"path MTU {c.PathMtu}, sent {c.FramesSent} ({c.BytesSent} B), received {c.FramesReceived} ({c.BytesReceived} B)" : "no frames yet";
                text.AppendLine(CultureInfo.InvariantCulture, $"  link {l.PeerNodeId} {l.State} {Roles(l)} via {path}, rtt {rtt}, {stats}");
            }
        }
        return text.ToString();
    }

    /// <summary>" (reason count, ...)" for the reasons frames were dropped for; empty when none were.</summary>
    private static string Reasons(SwitchStatus s)
    {
        var reasons = s.DropsByReason.Where(d => d.Value > 0).Select(d => $"{d.Key.Replace('_', ' ')} {d.Value}").ToList();
        return reasons.Count == 0 ? "" : $" ({string.Join(", ", reasons)})";
    }

    /// <summary>The path's kind as the map colours it: host, srflx, prflx or relay (the more indirect end decides).</summary>
    public static string PathType(LinkPath path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (path.Relayed) return "relay";
        var types = new[] { path.LocalType, path.RemoteType };
        if (types.Contains(Nat.Ice.IceCandidateType.PeerReflexive)) return "prflx";
        if (types.Contains(Nat.Ice.IceCandidateType.ServerReflexive)) return "srflx";
        return "host";
    }

    /// <summary>Why the link exists: this node's roles, or that the peer asked for it.</summary>
    public static string Roles(LinkStatus link)
    {
        ArgumentNullException.ThrowIfNull(link);
        return link.Roles == Topology.LinkRoles.None ? "(peer's link)" : link.Roles.ToString().Replace(", ", "+", StringComparison.Ordinal);
    }
}

/// <summary>One overlay of the host's node.</summary>
/// <param name="Status">The node's own status of the overlay: links, paths, RTTs, counters.</param>
/// <param name="MemberIds">The members signaling announced (present now), this node included.</param>
public sealed record HostOverlayStatus(OverlayStatus Status, IReadOnlyList<string> MemberIds);
