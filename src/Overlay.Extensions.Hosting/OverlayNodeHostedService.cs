using Microsoft.Extensions.Hosting;

namespace Overlay.Extensions.Hosting;

/// <summary>Starts the registered node with the host and stops it (links torn down, peers told) when the host stops.</summary>
internal sealed class OverlayNodeHostedService(OverlayNode node) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => node.StartAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => node.StopAsync(cancellationToken);
}
