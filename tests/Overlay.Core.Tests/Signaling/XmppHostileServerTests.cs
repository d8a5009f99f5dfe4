using System.Text;
using NUnit.Framework;
using Overlay.Signaling;
using Overlay.Signaling.Xmpp;
using Overlay.Switching;

namespace Overlay.Core.Tests.Signaling;

/// <summary>
/// A hostile or broken server must get a clean disconnect and a clear error, never a crash, a hang or
/// unbounded memory. Each test names the attack it models.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class XmppHostileServerTests
{
    private const string ServerHeader = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='overlay.test' id='h' version='1.0'>";
    private const long HundredMegabytes = 100L * 1024 * 1024;

    private static async Task<XmppProtocolException> ConnectExpectingProtocolErrorAsync(ScriptedXmppServer server)
    {
        await using var channel = new XmppSignalingChannel(server.ClientOptions(NodeId.NewRandom().ToString()));
        var ex = await Assert.ThrowsAsync<XmppProtocolException>(() => channel.ConnectAsync().WaitAsync(TimeSpan.FromSeconds(20)));
        TestContext.Out.WriteLine(ex!.Message);
        return ex;
    }

    [Test]
    public async Task Billion_laughs_entity_expansion_in_a_DTD_is_refused_before_any_expansion()
    {
        var lol = new StringBuilder("<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol \"lol\">");
        for (var i = 1; i <= 9; i++)
            lol.Append($"<!ENTITY lol{i} \"{string.Concat(Enumerable.Repeat($"&lol{(i == 1 ? "" : (i - 1).ToString(System.Globalization.CultureInfo.InvariantCulture))};", 10))}\">");
        lol.Append("]>").Append(ServerHeader).Append("<stream:features><x>&lol9;</x></stream:features>");
        await using var server = new ScriptedXmppServer(async (peer, _) =>
        {
            await peer.ReadAsync();
            await peer.SendAsync(lol.ToString());
            await peer.ReadAsync(); // until the client hangs up
        });

        var ex = await ConnectExpectingProtocolErrorAsync(server);

        Assert.That(ex.Message, Does.Contain("document type declarations"));
    }

    [Test]
    public async Task An_entity_reference_inside_a_stanza_is_refused_not_expanded()
    {
        await using var server = new ScriptedXmppServer(async (peer, _) =>
        {
            await peer.ReadAsync();
            await peer.SendAsync("<?xml version='1.0'?>" + ServerHeader + "<stream:features><x>&lol9;</x></stream:features>");
            await peer.ReadAsync();
        });

        var ex = await ConnectExpectingProtocolErrorAsync(server);

        Assert.That(ex.Message, Does.Contain("undefined entity &lol9;"));
    }

    [Test]
    public async Task Garbage_after_the_stream_header_closes_the_connection_with_a_clear_error()
    {
        await using var server = new ScriptedXmppServer(async (peer, _) =>
        {
            await peer.ReadAsync();
            await peer.SendAsync(ServerHeader);
            await peer.SendAsync([0xff, 0xfe, 0x00, (byte)'<', (byte)'<', 0xc3, 0x28, (byte)'>', (byte)'>']);
            await peer.ReadAsync();
        });

        var ex = await ConnectExpectingProtocolErrorAsync(server);

        Assert.That(ex.Message, Does.Contain("malformed or prohibited XML"));
    }

    [Test]
    public async Task An_abrupt_close_mid_stanza_is_reported_as_such()
    {
        await using var server = new ScriptedXmppServer(async (peer, _) =>
        {
            await peer.ReadAsync();
            await peer.SendAsync(ServerHeader + "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>");
            // The script returns: the server closes the socket with the features element unfinished.
        });

        var ex = await ConnectExpectingProtocolErrorAsync(server);

        Assert.That(ex.Message, Does.Contain("closed the connection in the middle of a stanza"));
    }

    [Test]
    public async Task A_server_without_starttls_never_sees_the_password()
    {
        var sawAuth = false;
        await using var server = new ScriptedXmppServer(async (peer, _) =>
        {
            await peer.OpenAsync("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>");
            var next = await peer.ReadAsync();
            sawAuth = next.Name == "auth";
        });

        var ex = await ConnectExpectingProtocolErrorAsync(server);

        Assert.That(ex.Message, Does.Contain("does not offer STARTTLS"));
        Assert.That(sawAuth, Is.False);
    }

    [Test]
    public async Task A_100_MB_stanza_is_cut_off_at_the_limit_with_bounded_memory()
    {
        long sent = 0;
        await using var server = new ScriptedXmppServer(async (peer, _) =>
        {
            await peer.ReadAsync();
            await peer.SendAsync(ServerHeader + "<stream:features><huge>");
            var chunk = Encoding.ASCII.GetBytes(new string('A', 64 * 1024));
            while (sent < HundredMegabytes)
            {
                await peer.SendAsync(chunk); // fails once the client has hung up
                sent += chunk.Length;
            }
        });

        var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var ex = await ConnectExpectingProtocolErrorAsync(server);
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;

        Assert.That(ex.Message, Does.Contain("exceeds the limit of 65536 bytes"));
        TestContext.Out.WriteLine($"server got {sent / 1024} KiB out before the client hung up; process allocated {allocated / 1024} KiB meanwhile");
        Assert.That(sent, Is.LessThan(HundredMegabytes), "the client must hang up, not read 100 MB");
        Assert.That(allocated, Is.LessThan(24L * 1024 * 1024), "memory stays bounded by the stanza limit");
    }

    [TestCase("huge-stanza", TestName = "A 100 MB stanza during an established session disconnects, reports, and the client reconnects")]
    [TestCase("garbage", TestName = "Garbage during an established session disconnects, reports, and the client reconnects")]
    [TestCase("close", TestName = "An abrupt close during an established session is reported and the client reconnects")]
    [TestCase("stall", TestName = "A server that stalls mid-stanza is detected by the keepalive ping and the client reconnects")]
    [TestCase("dtd", TestName = "A DTD inside an established session disconnects, reports, and the client reconnects")]
    public async Task Hostile_input_in_an_established_session(string attack)
    {
        var secondConnection = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = new ScriptedXmppServer(async (peer, n) =>
        {
            await peer.EstablishAsync();
            if (n > 1)
            {
                secondConnection.TrySetResult();
                try { await peer.ReadAsync(); } catch (EndOfStreamException) { }
                return;
            }
            switch (attack)
            {
                case "huge-stanza":
                    await peer.SendAsync("<message from='x@overlay.test/y'><body>");
                    var chunk = Encoding.ASCII.GetBytes(new string('B', 64 * 1024));
                    for (long sent = 0; sent < HundredMegabytes; sent += chunk.Length) await peer.SendAsync(chunk);
                    break;
                case "garbage":
                    await peer.SendAsync([(byte)'<', 0xff, 0xfe, (byte)'>', 0x00, 0x01]);
                    await peer.ReadAsync();
                    break;
                case "close":
                    await peer.SendAsync("<message from='x@overlay.test/y'><bo");
                    return;
                case "stall":
                    // Slowloris: half a stanza, then silence. The client's pings queue up behind it unanswered.
                    await peer.SendAsync("<message from='x@overlay.test/y'><body>");
                    try { while (true) await peer.ReadAsync(); } catch (Exception ex) when (ex is EndOfStreamException or IOException) { }
                    break;
                case "dtd":
                    await peer.SendAsync("<!DOCTYPE x [<!ENTITY a 'b'>]><message/>");
                    await peer.ReadAsync();
                    break;
            }
        });
        await using var channel = new XmppSignalingChannel(server.ClientOptions(NodeId.NewRandom().ToString()) with
        {
            KeepaliveInterval = TimeSpan.FromMilliseconds(300),
            KeepaliveTimeout = TimeSpan.FromMilliseconds(500),
        });
        var lost = new TaskCompletionSource<Exception?>(TaskCreationOptions.RunContinuationsAsynchronously);
        channel.StateChanged += (_, e) =>
        {
            if (e.State == SignalingState.Reconnecting) lost.TrySetResult(e.Error);
        };

        await channel.ConnectAsync();
        var error = await lost.Task.WaitAsync(TimeSpan.FromSeconds(20));
        await secondConnection.Task.WaitAsync(TimeSpan.FromSeconds(20));

        TestContext.Out.WriteLine($"{attack}: {error?.GetType().Name}: {error?.Message}");
        Assert.That(error, Is.InstanceOf<XmppException>());
        if (attack is not ("close" or "stall")) Assert.That(error, Is.InstanceOf<XmppProtocolException>());
        Assert.That(server.Connections, Is.GreaterThanOrEqualTo(2), "the client keeps running and reconnects");
    }
}
