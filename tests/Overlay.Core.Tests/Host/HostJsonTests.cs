using System.Net;
using System.Text.Json;
using NUnit.Framework;
using Overlay.Host;
using Overlay.Links;
using Overlay.Nat.Ice;
using Overlay.Signaling;
using Overlay.Topology;

namespace Overlay.Core.Tests.Host;

/// <summary>
/// The host writes its status (control socket, map, status file) through a JSON context generated at build time, so it
/// can run published ahead of time (Native AOT), where reflection-based serialization is refused. The context's options
/// resolve types only through the context: a type the host writes that the context did not cover would throw here.
/// </summary>
public sealed class HostJsonTests
{
    private static readonly LinkStatus Link = new("fedcba9876543210fedcba9876543210", "link-1", LinkRoles.Successor | LinkRoles.OnDemand,
        LinkChange.Up, Initiator: true,
        new LinkPath(IceCandidateType.ServerReflexive, IPEndPoint.Parse("198.51.100.7:40000"), IceCandidateType.Relayed, IPEndPoint.Parse("[2001:db8::1]:3478")),
        TimeSpan.FromMilliseconds(1.5),
        new LinkStatistics(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, TimeSpan.FromMilliseconds(2), 1, 12) { PathMtu = 1420, PathMtuSearched = true },
        DateTimeOffset.UnixEpoch.AddDays(1));

    private static readonly OverlayStatus Overlay = new("ovl", "ovl0", "02:00:00:00:00:01", 2, [Link],
        new SwitchStatus(1, 2, 3, 4, 5, 6) { MssClamped = 7, Fragmented = 8, DropsByReason = new Dictionary<string, long> { ["address_not_owned"] = 5 } }, LearnedAddresses: 3, RefusedSignals: 4);

    [Test]
    public void The_hosts_status_is_written_with_names_and_addresses_and_read_back_alike_through_the_context_alone()
    {
        var status = new HostStatus("0123456789abcdef0123456789abcdef", "sha-256 00", "Connected", "test", DateTimeOffset.UnixEpoch,
            [new HostOverlayStatus(Overlay, ["0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"])]);
        Assert.That(HostJson.Indented.Options.TypeInfoResolver, Is.SameAs(HostJsonContext.Default), "no reflection behind the context");
        Assert.That(HostJson.Compact.Options.TypeInfoResolver, Is.SameAs(HostJson.Compact));

        var json = JsonSerializer.Serialize(status, HostJson.Indented.HostStatus);
        using var document = JsonDocument.Parse(json);
        var link = document.RootElement.GetProperty("Overlays")[0].GetProperty("Status").GetProperty("Links")[0];
        Assert.Multiple(() =>
        {
            Assert.That(link.GetProperty("State").GetString(), Is.EqualTo("Up"));
            Assert.That(link.GetProperty("Roles").GetString(), Is.EqualTo("Successor, OnDemand"));
            Assert.That(link.GetProperty("Path").GetProperty("LocalType").GetString(), Is.EqualTo("ServerReflexive"));
            Assert.That(link.GetProperty("Path").GetProperty("Local").GetString(), Is.EqualTo("198.51.100.7:40000"));
            Assert.That(link.GetProperty("Path").GetProperty("Remote").GetString(), Is.EqualTo("[2001:db8::1]:3478"));
            Assert.That(link.GetProperty("Statistics").GetProperty("PathMtu").GetInt32(), Is.EqualTo(1420));
            Assert.That(document.RootElement.GetProperty("Overlays")[0].GetProperty("Status").GetProperty("Switch").GetProperty("MssClamped").GetInt64(), Is.EqualTo(7));
            Assert.That(document.RootElement.GetProperty("Overlays")[0].GetProperty("Status").GetProperty("Switch").GetProperty("DropsByReason")
                .GetProperty("address_not_owned").GetInt64(), Is.EqualTo(5));
        });

        var back = JsonSerializer.Deserialize(json, HostJson.Indented.HostStatus)!;
        Assert.That(JsonSerializer.Serialize(back, HostJson.Indented.HostStatus), Is.EqualTo(json));
        var compact = JsonSerializer.Serialize(status, HostJson.Compact.HostStatus);
        Assert.That(compact, Does.Not.Contain('\n'), "one server-sent event per status");
        using var compactDocument = JsonDocument.Parse(compact);
        Assert.That(JsonElement.DeepEquals(compactDocument.RootElement, document.RootElement), Is.True);
    }

    [Test]
    public void The_nodes_status_of_the_status_file_round_trips_through_the_context_alone()
    {
        var status = new OverlayNodeStatus("0123456789abcdef0123456789abcdef", "sha-256 00", SignalingState.Connected, [Overlay])
        {
            NodeIdConflicts = ["copy@overlay.test/x"],
        };
        var json = JsonSerializer.Serialize(status, HostJson.Indented.OverlayNodeStatus);
        using var document = JsonDocument.Parse(json);
        Assert.That(document.RootElement.GetProperty("Signaling").GetString(), Is.EqualTo("Connected"));
        Assert.That(document.RootElement.GetProperty("NodeIdConflicts")[0].GetString(), Is.EqualTo("copy@overlay.test/x"));
        var back = JsonSerializer.Deserialize(json, HostJson.Indented.OverlayNodeStatus)!;
        Assert.That(JsonSerializer.Serialize(back, HostJson.Indented.OverlayNodeStatus), Is.EqualTo(json));
    }
}
