using System.Diagnostics.Metrics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Overlay.Extensions.Hosting;

/// <summary>
/// Where the registered node's settings come from: a configuration section or options read already (a JSON file), then
/// code.
/// </summary>
internal sealed class OverlayNodeServiceOptions
{
    public IConfiguration? Configuration { get; set; }

    /// <summary>Options read or built already (<see cref="OverlayConfiguration.Load"/>), used when no section is given.</summary>
    public OverlayNodeOptions? Options { get; set; }

    public List<Action<OverlayNodeBuilder>> Configure { get; } = [];

    /// <summary>
    /// A builder with the section's settings (or the given options), the container's clock and meter factory (when it has them), then the
    /// code's changes. Throws <see cref="OverlayConfigurationException"/> naming the key of a bad setting.
    /// </summary>
    public OverlayNodeBuilder CreateBuilder(IServiceProvider? services)
    {
        var builder = new OverlayNodeBuilder(Configuration is null ? Options : OverlayConfiguration.Read(Configuration));
        if (services?.GetService<TimeProvider>() is { } time) builder.WithTimeProvider(time);
        if (services?.GetService<IMeterFactory>() is { } meters) builder.WithMeterFactory(meters);
        foreach (var configure in Configure) configure(builder);
        return builder;
    }

    /// <summary>The node's own validation, run when the host starts (<c>ValidateOnStart</c>).</summary>
    internal sealed class Validator : IValidateOptions<OverlayNodeServiceOptions>
    {
        public ValidateOptionsResult Validate(string? name, OverlayNodeServiceOptions options)
        {
            try
            {
                options.CreateBuilder(null).BuildOptions();
                return ValidateOptionsResult.Success;
            }
            catch (OverlayConfigurationException e)
            {
                var section = (options.Configuration as IConfigurationSection)?.Path;
                return ValidateOptionsResult.Fail(section is null or "" ? e.Message : $"{e.Message} (in section '{section}')");
            }
        }
    }
}
