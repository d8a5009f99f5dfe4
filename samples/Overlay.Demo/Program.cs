// Overlay demo: what the engine does today, in one process, with no servers and no root.
//   1. two ICE agents find a path on this machine (host candidates; add --stun host:port for a server-reflexive one)
//   2. a TinCan link over it: DTLS authenticates both certificates, AES-GCM seals every frame
//   3. a ring of 16 switches with in-memory hosts: ARP + ping between every pair, broadcast reaching each once
// It exits non-zero if any step fails.
using System.Diagnostics;
using System.Net;
using System.Net.NetworkInformation;
using Overlay.Links;
using Overlay.Nat.Ice;
using Overlay.Switching;
using Overlay.Switching.Flood;
using Overlay.Tap;
using Overlay.Tap.InMemory;

var stun = args.Length == 2 && args[0] == "--stun" ? args[1] : null;
var failures = 0;
var total = Stopwatch.StartNew();

Console.WriteLine("1. ICE: two agents on this machine");
var iceOptions = new IceOptions { StunServers = stun is null ? [] : [IPEndPoint.Parse(stun)] };
await using var agentA = IceAgent.Create(iceOptions, IceRole.Controlling);
await using var agentB = IceAgent.Create(iceOptions, IceRole.Controlled);
using (var gather = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
    await Task.WhenAll(agentA.GatherAsync(gather.Token), agentB.GatherAsync(gather.Token));
foreach (var c in agentA.LocalCandidates) Console.WriteLine($"   A {c}");
agentA.SetRemoteCredentials(agentB.LocalCredentials);
agentB.SetRemoteCredentials(agentA.LocalCredentials);
foreach (var c in agentB.LocalCandidates) agentA.AddRemoteCandidate(c);
foreach (var c in agentA.LocalCandidates) agentB.AddRemoteCandidate(c);
var iceClock = Stopwatch.StartNew();
agentA.Start();
agentB.Start();
using var iceTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
var pair = await agentA.WaitForSelectedPairAsync(iceTimeout.Token);
await agentB.WaitForSelectedPairAsync(iceTimeout.Token);
Console.WriteLine($"   selected {pair.Local.Type} {pair.Local.Address} -> {pair.Remote.Type} {pair.Remote.Address} in {iceClock.ElapsedMilliseconds} ms");

Console.WriteLine("2. TinCan link: DTLS handshake, then AES-GCM frames");
using var alice = NodeIdentity.CreateEphemeral("alice");
using var bob = NodeIdentity.CreateEphemeral("bob");
var inbox = new Inbox();
await using var linkA = new TinCanLink(agentA.Channel, true, alice, bob.Fingerprint, new Inbox());
await using var linkB = new TinCanLink(agentB.Channel, false, bob, alice.Fingerprint, inbox);
var dtlsClock = Stopwatch.StartNew();
await Task.WhenAll(linkA.ConnectAsync(), linkB.ConnectAsync());
Console.WriteLine($"   both certificates checked against the signalled fingerprints in {dtlsClock.ElapsedMilliseconds} ms ({bob.Fingerprint.ToString()[..23]}...)");
var frame = new byte[1400];
for (var i = 0; i < 1000; i++) linkA.TrySend(frame);
using (var wait = new CancellationTokenSource(TimeSpan.FromSeconds(5)))
    while (Interlocked.Read(ref inbox.Frames) < 1000 && !wait.IsCancellationRequested) await Task.Delay(10, CancellationToken.None);
Console.WriteLine($"   {inbox.Frames} of 1000 frames of 1400 bytes arrived sealed and intact");
if (inbox.Frames < 950) failures++;

Console.WriteLine("3. Switching: 16 switches on a ring with chords, an in-memory host behind each");
var nodes = Enumerable.Range(1, 16).Select(i => new NodeId((UInt128)(ulong)Random.Shared.NextInt64() << 64 | (UInt128)(uint)i)).Order().ToArray();
var devices = new InMemoryEthernetDevice[nodes.Length];
var hosts = new InMemoryIpHost[nodes.Length];
var switches = new OverlaySwitch[nodes.Length];
for (var i = 0; i < nodes.Length; i++)
{
    devices[i] = new InMemoryEthernetDevice($"mem{i}", PhysicalAddress.Parse($"02-00-00-00-00-{i + 1:X2}"));
    switches[i] = new OverlaySwitch(nodes[i], new DevicePort(devices[i]));
    devices[i].Start(new SwitchInput(switches[i]));
    hosts[i] = new InMemoryIpHost(devices[i], IPAddress.Parse($"10.10.0.{i + 1}"));
}
for (var i = 0; i < nodes.Length; i++)
    foreach (var j in new[] { (i + 1) % nodes.Length, (i + 2) % nodes.Length, (i + nodes.Length / 2) % nodes.Length })
    {
        switches[i].AddLink(nodes[j], new MemoryLink(nodes[i], switches[j]));
        switches[j].AddLink(nodes[i], new MemoryLink(nodes[j], switches[i]));
    }
var pings = 0;
var rtts = new List<double>();
for (var i = 0; i < nodes.Length; i++)
    for (var j = 0; j < nodes.Length; j++)
    {
        if (i == j) continue;
        try { rtts.Add((await hosts[i].PingAsync(hosts[j].Address, TimeSpan.FromSeconds(2))).TotalMilliseconds); pings++; }
        catch (TimeoutException) { Console.WriteLine($"   ping {hosts[i].Address} -> {hosts[j].Address} timed out"); failures++; }
    }
Console.WriteLine($"   {pings} of {nodes.Length * (nodes.Length - 1)} pings answered (ARP first), mean RTT {rtts.DefaultIfEmpty().Average():0.000} ms");
await hosts[0].BroadcastProbeAsync(1);
await hosts[0].PingAsync(hosts[1].Address, TimeSpan.FromSeconds(2));
var once = hosts.Skip(1).Count(h => h.ProbesReceived.Values.SingleOrDefault() == 1);
Console.WriteLine($"   a broadcast from {hosts[0].Address} reached {once} of {nodes.Length - 1} other hosts exactly once");
if (once != nodes.Length - 1) failures++;
foreach (var h in hosts) await h.DisposeAsync();

Console.WriteLine(failures == 0 ? $"OK in {total.Elapsed.TotalSeconds:0.0} s" : $"{failures} failure(s)");
return failures == 0 ? 0 : 1;

sealed class Inbox : ILinkFrameReceiver
{
    public long Frames;
    public void OnFrame(TinCanLink link, PacketKind kind, ReadOnlySpan<byte> payload) => Interlocked.Increment(ref Frames);
}

sealed class SwitchInput(OverlaySwitch sw) : IFrameSink
{
    public void OnFrame(ReadOnlySpan<byte> frame) => sw.OnLocalFrame(frame);
}

sealed class DevicePort(InMemoryEthernetDevice device) : ISwitchPort
{
    public bool TrySendFrame(ReadOnlySpan<byte> frame) => device.TryWrite(frame);
    public bool TrySendFlood(in FloodHeader header, ReadOnlySpan<byte> frame) => false;
}

sealed class MemoryLink(NodeId self, OverlaySwitch peer) : ISwitchPort
{
    public bool TrySendFrame(ReadOnlySpan<byte> frame) { peer.OnLinkFrame(self, frame); return true; }
    public bool TrySendFlood(in FloodHeader header, ReadOnlySpan<byte> frame) { peer.OnLinkFlood(self, header, frame); return true; }
}
