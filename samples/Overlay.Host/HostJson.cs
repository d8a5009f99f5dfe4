using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Overlay.Host;

/// <summary>
/// How the host writes its status as JSON (enums by name, endpoints as "address:port"): through code generated at build
/// time for exactly the types it writes, so the host needs no reflection over them and can be published ahead of time
/// (Native AOT), where reflection-based serialization is refused.
/// </summary>
internal static class HostJson
{
    /// <summary>Indented: the control socket's <c>status --json</c>, the map's <c>/status</c> and the status file.</summary>
    public static HostJsonContext Indented => HostJsonContext.Default;

    /// <summary>The same on one line (one server-sent event each).</summary>
    public static HostJsonContext Compact { get; } = new(new JsonSerializerOptions(HostJsonContext.Default.Options) { WriteIndented = false });
}

/// <summary>The types the host serializes: its own status and the node's (the status file).</summary>
[JsonSourceGenerationOptions(WriteIndented = true, UseStringEnumConverter = true, Converters = [typeof(EndPointConverter)])]
[JsonSerializable(typeof(HostStatus))]
[JsonSerializable(typeof(OverlayNodeStatus))]
internal sealed partial class HostJsonContext : JsonSerializerContext;

/// <summary>Endpoints as "address:port" (IPEndPoint itself does not serialize).</summary>
internal sealed class EndPointConverter : JsonConverter<IPEndPoint>
{
    /// <inheritdoc />
    public override IPEndPoint Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        IPEndPoint.Parse(reader.GetString() ?? throw new JsonException("an endpoint must be a string"));

    /// <inheritdoc />
    public override void Write(Utf8JsonWriter writer, IPEndPoint value, JsonSerializerOptions options) => writer.WriteStringValue(value.ToString());
}
