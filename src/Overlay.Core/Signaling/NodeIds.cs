namespace Overlay.Signaling;

/// <summary>Validation of node IDs as DESIGN.md §4 writes them: 128 bits as 32 lower-case hex characters.</summary>
public static class NodeIds
{
    /// <summary>Length of a node ID in characters.</summary>
    public const int Length = 32;

    /// <summary>True when <paramref name="value"/> is 32 lower-case hex characters.</summary>
    public static bool IsValid(string? value)
    {
        if (value is null || value.Length != Length) return false;
        foreach (var c in value)
        {
            if (!(c is >= '0' and <= '9' or >= 'a' and <= 'f')) return false;
        }
        return true;
    }

    /// <summary>A random node ID.</summary>
    public static string NewRandom() => Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));
}
