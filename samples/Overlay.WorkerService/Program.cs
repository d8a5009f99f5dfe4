// A plain .NET worker that runs one Overlay node, configured only by appsettings.json and the environment:
//
//   Overlay__Signal__Password=secret dotnet run --project samples/Overlay.WorkerService
//
// Any key may be overridden the same way (Overlay__Signal__HostAddress, Overlay__Overlays__ovl1__NetDevice__IP4, ...).
// Without NetDevice.Name the overlay's NIC is in memory (no root needed: the links form, nothing reaches the kernel);
// Overlay__Overlays__ovl1__NetDevice__Name=ovl0 makes it a TAP (needs CAP_NET_ADMIN).
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Overlay;
using Overlay.Samples.WorkerService;

var builder = Host.CreateApplicationBuilder(args);
builder.Services.AddOverlayNode(builder.Configuration.GetSection("Overlay"));
builder.Services.AddHealthChecks().AddOverlayNode();
builder.Services.AddHostedService<LinkReporter>();
await builder.Build().RunAsync();
