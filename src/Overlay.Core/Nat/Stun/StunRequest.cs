using System.Net;

namespace Overlay.Nat.Stun;

/// <summary>
/// Awaitable outcome of one client transaction for control-plane callers (gathering, TURN): the response bytes are
/// copied once, or null on timeout.
/// </summary>
internal sealed class StunRequest : IStunTransactionOwner
{
    private readonly TaskCompletionSource<byte[]?> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private StunRequest() { }

    public static Task<byte[]?> SendAsync(StunTransactionTable table, ReadOnlySpan<byte> message, SocketAddress destination,
        IStunSender sender, StunRetransmissionOptions? options, CancellationToken ct)
    {
        var request = new StunRequest();
        var tx = table.Start(message, destination, sender, request, null, options);
        if (ct.CanBeCanceled)
        {
            ct.Register(() =>
            {
                table.Cancel(tx);
                request._done.TrySetCanceled(ct);
            });
        }
        return request._done.Task;
    }

    public bool Accept(StunTransaction transaction, scoped ref StunReader response, SocketAddress? from, StunAddress? viaRelay, object? relay) => true;

    public void OnResponse(StunTransaction transaction, scoped ref StunReader response) => _done.TrySetResult(response.Message.ToArray());

    public void OnTimeout(StunTransaction transaction) => _done.TrySetResult(null);
}
