using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using NUnit.Framework;
using Overlay.Signaling;
using Overlay.Signaling.Xmpp;
using Overlay.Switching;

namespace Overlay.Core.Tests.Signaling;

/// <summary>
/// Client behaviour prosody's stock configuration cannot show: roster pushes (shared groups do not push)
/// and SASL EXTERNAL with a client certificate, against a scripted server.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class XmppScriptedSessionTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(15);

    [Test]
    public async Task Roster_pushes_from_the_server_add_and_remove_members_and_spoofed_pushes_are_refused()
    {
        string peer = NodeId.NewRandom().ToString();
        var announce = $"<presence from='node2@overlay.test/r'><signal xmlns='urn:overlay:signal:1'>{{\"v\":1,\"type\":\"announce\",\"node\":\"{peer}\",\"overlays\":[\"ovl1\"]}}</signal></presence>";
        var spoofChecked = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var proceed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var removalAnswered = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = new ScriptedXmppServer(async (p, n) =>
        {
            await p.EstablishAsync();
            // Not yet in the roster: this presence must be dropped.
            await p.SendAsync(announce);
            await p.SendAsync("<iq type='set' id='push1'><query xmlns='jabber:iq:roster'><item jid='node2@overlay.test' subscription='both'/></query></iq>");
            var ack = await p.ReadAsync();
            if (ack.Attribute("id") != "push1" || ack.Attribute("type") != "result") throw new InvalidDataException($"push not acknowledged: {ack}");
            await p.SendAsync(announce);
            // A roster push from another user is an attack (RFC 6121 §2.1.6): refused, roster unchanged.
            await p.SendAsync("<iq type='set' id='spoof' from='evil@overlay.test/x'><query xmlns='jabber:iq:roster'><item jid='node2@overlay.test' subscription='remove'/></query></iq>");
            var refusal = await p.ReadAsync();
            spoofChecked.TrySetResult(refusal.Attribute("type") ?? "");
            await proceed.Task.WaitAsync(Wait);
            await p.SendAsync("<iq type='set' id='push2'><query xmlns='jabber:iq:roster'><item jid='node2@overlay.test' subscription='remove'/></query></iq>");
            removalAnswered.TrySetResult((await p.ReadAsync()).Attribute("type") ?? "");
            try { while (true) await p.ReadAsync(); } catch (Exception ex) when (ex is EndOfStreamException or IOException) { }
        });
        await using var channel = new XmppSignalingChannel(server.ClientOptions(NodeId.NewRandom().ToString()));
        await channel.ConnectAsync();

        await SignalingBehaviourTests.WaitForPeerAsync(channel, "ovl1", peer);
        Assert.That(channel.Counters.DroppedNotInRoster, Is.EqualTo(1), "the presence before the push was dropped");
        Assert.That(await spoofChecked.Task.WaitAsync(Wait), Is.EqualTo("error"));
        Assert.That(channel.GetPeers("ovl1"), Does.ContainKey(peer), "a spoofed push changes nothing");

        proceed.SetResult();
        await SignalingBehaviourTests.WaitForPeerAsync(channel, "ovl1", peer, present: false);
        Assert.That(await removalAnswered.Task.WaitAsync(Wait), Is.EqualTo("result"));
    }

    [Test]
    public async Task An_iq_result_from_another_user_does_not_answer_our_request_to_the_server()
    {
        var member = Switching.NodeId.NewRandom().ToString();
        var processed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = new ScriptedXmppServer(async (p, _) =>
        {
            // Another user answers our roster request first, listing itself as a member. Only the server's answer, which
            // follows, may count: the roster stays empty and the user's presence is dropped.
            await p.EstablishAsync(beforeRoster: id => p.SendAsync(
                $"<iq type='result' id='{id}' from='mallory@overlay.test/x'><query xmlns='jabber:iq:roster'><item jid='mallory@overlay.test' subscription='both'/></query></iq>"));
            await p.SendAsync($"<presence from='mallory@overlay.test/x'><signal xmlns='urn:overlay:signal:1'>{{\"v\":1,\"type\":\"announce\",\"node\":\"{member}\",\"overlays\":[\"ovl1\"]}}</signal></presence>");
            // Stanzas are handled in order: once the ping is answered, the presence before it has been handled.
            await p.SendAsync("<iq type='get' id='sync' from='overlay.test'><ping xmlns='urn:xmpp:ping'/></iq>");
            await p.ReadAsync();
            processed.TrySetResult();
            try { while (true) await p.ReadAsync(); } catch (Exception ex) when (ex is EndOfStreamException or IOException) { }
        });
        await using var channel = new XmppSignalingChannel(server.ClientOptions(Switching.NodeId.NewRandom().ToString()));
        await channel.ConnectAsync();
        await processed.Task.WaitAsync(Wait);

        Assert.That(channel.GetPeers("ovl1"), Does.Not.ContainKey(member));
        Assert.That(channel.Counters.DroppedNotInRoster, Is.EqualTo(1), "the user's presence was dropped");
        Assert.That(channel.Counters.DroppedUnmatchedResponse, Is.EqualTo(1), "the forged result was counted");
    }

    [Test]
    public async Task Server_pings_are_answered_and_unknown_queries_get_service_unavailable()
    {
        var answers = new TaskCompletionSource<(XmppElement Ping, XmppElement Unknown)>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = new ScriptedXmppServer(async (p, _) =>
        {
            await p.EstablishAsync();
            await p.SendAsync("<iq type='get' id='ping1' from='overlay.test'><ping xmlns='urn:xmpp:ping'/></iq>");
            var ping = await p.ReadAsync();
            await p.SendAsync("<iq type='get' id='q1' from='someone@overlay.test/x'><query xmlns='jabber:iq:version'/></iq>");
            answers.TrySetResult((ping, await p.ReadAsync()));
            try { while (true) await p.ReadAsync(); } catch (Exception ex) when (ex is EndOfStreamException or IOException) { }
        });
        await using var channel = new XmppSignalingChannel(server.ClientOptions(NodeId.NewRandom().ToString()));
        await channel.ConnectAsync();

        var (pingReply, unknownReply) = await answers.Task.WaitAsync(Wait);

        Assert.That((pingReply.Attribute("type"), pingReply.Attribute("id")), Is.EqualTo(("result", "ping1")));
        Assert.That((unknownReply.Attribute("type"), unknownReply.Attribute("id")), Is.EqualTo(("error", "q1")));
        Assert.That(unknownReply.Child("error", "jabber:client")?.Child("service-unavailable", "urn:ietf:params:xml:ns:xmpp-stanzas"), Is.Not.Null);
    }

    [Test]
    public async Task Sasl_external_authenticates_with_the_client_certificate_and_no_password()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var ephemeral = new CertificateRequest("CN=node1@overlay.test", key, HashAlgorithmName.SHA256)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        using var clientCertificate = X509CertificateLoader.LoadPkcs12(ephemeral.Export(X509ContentType.Pkcs12), null);
        ScriptedPeer? seen = null;
        var established = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = new ScriptedXmppServer(async (p, _) =>
        {
            await p.EstablishAsync(external: true);
            seen = p;
            established.TrySetResult();
            try { while (true) await p.ReadAsync(); } catch (Exception ex) when (ex is EndOfStreamException or IOException) { }
        });
        await using var channel = new XmppSignalingChannel(server.ClientOptions(NodeId.NewRandom().ToString()) with { Password = null, ClientCertificate = clientCertificate });

        await channel.ConnectAsync();
        await established.Task.WaitAsync(Wait);

        Assert.That(channel.AuthenticationMechanism, Is.EqualTo("EXTERNAL"));
        Assert.That(seen!.ClientCertificate?.GetCertHashString(), Is.EqualTo(clientCertificate.GetCertHashString()));
    }

    /// <summary>
    /// A node that goes away says so at every layer, in order: unavailable presence, the end of its XML stream (RFC 6120
    /// §4.4), then TLS's own close_notify (RFC 5246 §7.2.1, RFC 8446 §6.1) before the TCP close. Without the last a
    /// server sees a truncated session: prosody logs most such closes as "unexpected eof".
    /// </summary>
    [Test]
    public async Task Closing_ends_the_presence_the_stream_and_the_tls_session_before_the_connection()
    {
        var closed = new TaskCompletionSource<(List<string> Items, IReadOnlyList<byte> Records)>(TaskCreationOptions.RunContinuationsAsynchronously);
        var established = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = new ScriptedXmppServer(async (p, _) =>
        {
            await p.EstablishAsync(tls12: true);
            established.TrySetResult();
            var items = new List<string>();
            try
            {
                while (true) items.Add((await p.ReadAsync()).Name);
            }
            catch (EndOfStreamException ex)
            {
                items.Add(ex.Message);
            }
            await p.DrainAsync();
            closed.TrySetResult((items, p.ClientRecordTypes));
        });
        var channel = new XmppSignalingChannel(server.ClientOptions(NodeId.NewRandom().ToString()));
        await channel.ConnectAsync();
        await established.Task.WaitAsync(Wait);

        await channel.DisposeAsync();
        var (items, records) = await closed.Task.WaitAsync(Wait);

        Assert.That(items, Is.EqualTo(new[] { "presence", "client closed the stream" }));
        const byte Alert = 21, ApplicationData = 23;
        Assert.That(records.Skip(records.Count - 2), Is.EqualTo(new[] { ApplicationData, Alert }), "the stream's end, then one alert (close_notify) last: " + string.Join(",", records));
        Assert.That(records.Count(r => r == Alert), Is.EqualTo(1));
    }
}
