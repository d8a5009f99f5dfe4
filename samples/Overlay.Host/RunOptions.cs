using System.Net;
using Microsoft.Extensions.Logging;

namespace Overlay.Host;

/// <summary>What <c>overlay run</c> was asked to do.</summary>
/// <param name="ConfigPath">The node's JSON configuration.</param>
/// <param name="LogLevel">The least level logged.</param>
/// <param name="StatusInterval">How often the status goes to the log (zero: never).</param>
/// <param name="StatusFile">Where the status is written as JSON once a second, or null.</param>
/// <param name="ControlSocket">The control socket's path.</param>
/// <param name="Map">Where the map is served, or null for no map.</param>
public sealed record RunOptions(string ConfigPath, LogLevel LogLevel, TimeSpan StatusInterval, string? StatusFile, string ControlSocket, IPEndPoint? Map);
