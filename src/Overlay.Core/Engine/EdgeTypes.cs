using Overlay.Topology;

namespace Overlay.Engine;

/// <summary>
/// The edge kinds of an <see cref="Signaling.EdgeRequest"/>: the requester's link roles as a comma-separated list of
/// EdgeVPN's names (<c>successor</c>, <c>longdistance</c>, <c>ondemand</c>, <c>static</c>). Unknown names are ignored.
/// </summary>
internal static class EdgeTypes
{
    private static readonly (LinkRoles Role, string Name)[] Names =
        [(LinkRoles.Successor, "successor"), (LinkRoles.LongDistance, "longdistance"), (LinkRoles.OnDemand, "ondemand"), (LinkRoles.Static, "static")];

    public static string Format(LinkRoles roles)
    {
        var parts = Names.Where(n => (roles & n.Role) != 0).Select(n => n.Name).ToArray();
        return parts.Length == 0 ? "none" : string.Join(',', parts);
    }

    public static LinkRoles Parse(string? text)
    {
        var roles = LinkRoles.None;
        if (text is null) return roles;
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            foreach (var (role, name) in Names)
                if (string.Equals(part, name, StringComparison.OrdinalIgnoreCase)) roles |= role;
        return roles;
    }
}
