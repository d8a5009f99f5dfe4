using NUnit.Framework;
using Overlay.Links;
using Overlay.TestSupport;

namespace Overlay.Core.Tests.Node;

/// <summary>
/// Whole nodes with an overlay trust anchor, over in-process signaling (which vouches for every member, as a server's
/// operator could) and real links: members with certificates from the overlay's CA link; a member whose certificate
/// another CA issued is refused at every link, with a reason naming its key.
/// </summary>
public class TrustAnchorNodeTests
{
    [Test]
    public async Task Members_the_overlays_ca_certified_link_and_a_member_from_another_ca_is_refused_naming_its_key()
    {
        var dir = Directory.CreateTempSubdirectory("overlay-trust-");
        try
        {
            using var ca = TestCertificateAuthority.Create("overlay CA");
            using var other = TestCertificateAuthority.Create("another CA");
            var caFile = ca.WriteCertificate(Path.Combine(dir.FullName, "ca.pem"));
            await using var cluster = new OverlayCluster();
            var alice = await cluster.AddAsync(o => o.WithTrustedCertificates(caFile),
                n => n.WithCertificateFile(ca.IssueNodeFile(Path.Combine(dir.FullName, "alice.pem"), "alice")));
            var bob = await cluster.AddAsync(o => o.WithTrustedCertificates(caFile),
                n => n.WithCertificateFile(ca.IssueNodeFile(Path.Combine(dir.FullName, "bob.pem"), "bob")));
            // A member of the roster (signaling lists it) whose certificate the overlay's CA did not issue; it names no anchor.
            var malloryFile = other.IssueNodeFile(Path.Combine(dir.FullName, "mallory.pem"), "mallory");
            var mallory = await cluster.AddAsync(configureNode: n => n.WithCertificateFile(malloryFile));
            string malloryKey;
            using (var identity = NodeIdentity.LoadOrCreate(malloryFile)) malloryKey = TrustAnchor.KeyOf(identity.Certificate);

            // Ring neighbours link to Mallory as signaling says; the handshake is where each honest member refuses her.
            await cluster.WaitAsync(async () =>
            {
                var a = (await alice.GetStatusAsync()).Overlays[0].Links;
                return a.Any(l => l.PeerNodeId == bob.NodeId && l.State == LinkChange.Up)
                    && cluster.Events.Count(e => e.PeerNodeId == mallory.NodeId && e.Change == LinkChange.Failed && e.Reason.Contains(malloryKey, StringComparison.Ordinal)) >= 1;
            }, TimeSpan.FromSeconds(30), "alice and bob linked, and a link to mallory refused naming her key");

            await cluster.Hosts[0].PingAsync(cluster.Hosts[1].Address, TimeSpan.FromSeconds(5));
            Assert.That(cluster.Events.Where(e => e.PeerNodeId == mallory.NodeId).Select(e => e.Change), Has.None.EqualTo(LinkChange.Up),
                "no link to mallory ever came up");
            foreach (var node in new[] { alice, bob })
                Assert.That((await node.GetStatusAsync()).Overlays[0].Links.Where(l => l.PeerNodeId == mallory.NodeId).Select(l => l.State),
                    Has.None.EqualTo(LinkChange.Up));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
