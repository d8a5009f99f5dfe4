using System.Net;
using System.Net.Sockets;
using NUnit.Framework;
using Overlay.Nat;
using Overlay.Nat.Stun;
using Overlay.Nat.Turn;
using Overlay.Transport;

namespace Overlay.Core.Tests.Nat;

/// <summary>The long-term credential dance against a scripted server: 401 challenge, then 438 stale nonce, then success.</summary>
public class TurnChallengeTests
{
    [Test]
    public async Task Allocate_answers_the_401_challenge_and_retries_after_a_438_stale_nonce()
    {
        using var server = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        server.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var serverEndPoint = (IPEndPoint)server.LocalEndPoint!;
        var key = StunCredentials.LongTermKey("node", "test-realm", "secret");
        var seen = new List<string>();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));

        var script = Task.Run(async () =>
        {
            var buffer = new byte[2048];
            for (var step = 0; step < 3; step++)
            {
                var r = await server.ReceiveFromAsync(buffer, new IPEndPoint(IPAddress.Any, 0), cts.Token);
                var reply = new byte[512];
                int length;
                {
                    Assert.That(StunReader.TryParse(buffer.AsSpan(0, r.ReceivedBytes), out var request), Is.True);
                    request.TryGetString(StunAttributeType.Nonce, out var nonce);
                    seen.Add($"{request.Method} nonce={nonce} integrity={request.VerifyMessageIntegrity(key)}");
                    var w = new StunWriter(reply, request.Method, step == 2 ? StunClass.SuccessResponse : StunClass.ErrorResponse, request.TransactionId);
                    if (step == 0)
                    {
                        w.AddErrorCode(401, "Unauthorized");
                        w.AddString(StunAttributeType.Realm, "test-realm");
                        w.AddString(StunAttributeType.Nonce, "nonce-1");
                    }
                    else if (step == 1)
                    {
                        w.AddErrorCode(438, "Stale Nonce");
                        w.AddString(StunAttributeType.Realm, "test-realm");
                        w.AddString(StunAttributeType.Nonce, "nonce-2");
                    }
                    else
                    {
                        w.AddXorAddress(StunAttributeType.XorRelayedAddress, new StunAddress(IPEndPoint.Parse("192.0.2.9:50000")));
                        w.AddXorAddress(StunAttributeType.XorMappedAddress, new StunAddress((IPEndPoint)r.RemoteEndPoint));
                        w.AddUInt32(StunAttributeType.Lifetime, 600);
                        w.AddMessageIntegrity(key);
                    }
                    w.AddFingerprint();
                    length = w.Length;
                }
                await server.SendToAsync(reply.AsMemory(0, length), r.RemoteEndPoint, cts.Token);
            }
        }, cts.Token);

        using var endpoint = new StunEndpoint(UdpMux.Bind(), TimeProvider.System);
        var turn = endpoint.AttachTurn(new TurnServer(serverEndPoint, "node", "secret"));
        endpoint.Mux.Attach(null); // a loop of its own
        Assert.That(await turn.AllocateAsync(cts.Token), Is.True);
        await script;
        Assert.That(seen, Is.EqualTo(new[]
        {
            "Allocate nonce= integrity=False",
            "Allocate nonce=nonce-1 integrity=True",
            "Allocate nonce=nonce-2 integrity=True",
        }));
        Assert.That(turn.RelayedAddress!.Value.ToEndPoint(), Is.EqualTo(IPEndPoint.Parse("192.0.2.9:50000")));
    }
}
