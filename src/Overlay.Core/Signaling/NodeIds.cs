using Overlay.Switching;

namespace Overlay.Signaling;

/// <summary>Forwarders to <see cref="NodeId"/>, the one place node IDs are validated; kept only until the engine calls it directly.</summary>
internal static class NodeIds
{
    public static bool IsValid(string? value) => NodeId.IsValid(value);

    public static string NewRandom() => NodeId.NewRandom().ToString();
}
