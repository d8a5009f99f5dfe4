using System.Diagnostics.Metrics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Overlay;
using Overlay.Extensions.Hosting;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>
/// Registers an <see cref="OverlayNode"/> in a service collection: the node (a singleton), a hosted service that starts
/// it with the host and stops it (saying goodbye to its peers) when the host stops, and validation of its settings when
/// the host starts (<c>ValidateOnStart</c>), whose errors name the key. The node logs through the registered
/// <see cref="ILoggerFactory"/>, runs on the registered <see cref="TimeProvider"/> (the system clock when none is), and
/// creates its instruments through the registered <see cref="IMeterFactory"/> (README "Metrics").
/// </summary>
public static class OverlayServiceCollectionExtensions
{
    /// <summary>
    /// Adds a node configured by <paramref name="configuration"/>, a section holding the node's keys as the JSON file
    /// has them (<see cref="OverlayConfiguration.Read"/>): for example <c>builder.Configuration.GetSection("Overlay")</c>,
    /// filled from appsettings.json, environment variables (<c>Overlay__Signal__Password</c>) or the command line.
    /// </summary>
    public static IServiceCollection AddOverlayNode(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        return services.AddOverlayNode(configuration, null, null);
    }

    /// <summary>Adds a node described in code (after the configuration section, when one is given: it may change what the section set).</summary>
    public static IServiceCollection AddOverlayNode(this IServiceCollection services, Action<OverlayNodeBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        return services.AddOverlayNode(null, configure, null);
    }

    /// <summary>
    /// Adds a node with options read or built already, for example from a JSON file by
    /// <see cref="OverlayConfiguration.Load"/> (its own types and key case, as <c>overlay run</c> reads it).
    /// </summary>
    public static IServiceCollection AddOverlayNode(this IServiceCollection services, OverlayNodeOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return services.AddOverlayNode(null, null, options);
    }

    /// <summary>Adds a node read from <paramref name="configuration"/>, then changed by <paramref name="configure"/>.</summary>
    public static IServiceCollection AddOverlayNode(this IServiceCollection services, IConfiguration? configuration, Action<OverlayNodeBuilder>? configure) =>
        services.AddOverlayNode(configuration, configure, null);

    private static IServiceCollection AddOverlayNode(this IServiceCollection services, IConfiguration? configuration, Action<OverlayNodeBuilder>? configure,
        OverlayNodeOptions? options)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddOptions<OverlayNodeServiceOptions>()
            .Configure(o =>
            {
                if (configuration is not null) o.Configuration = configuration;
                if (options is not null) o.Options = options;
                if (configure is not null) o.Configure.Add(configure);
            })
            .ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<OverlayNodeServiceOptions>, OverlayNodeServiceOptions.Validator>());
        services.TryAddSingleton(sp =>
        {
            var builder = sp.GetRequiredService<IOptions<OverlayNodeServiceOptions>>().Value.CreateBuilder(sp);
            return builder.Build(sp.GetService<ILoggerFactory>());
        });
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, OverlayNodeHostedService>());
        return services;
    }
}
