namespace Overlay.Tap.Linux;

/// <summary>
/// The names Linux accepts for a network interface (the kernel's <c>dev_valid_name</c>): shorter than IFNAMSIZ (16)
/// bytes, not "." or "..", no '/', ':' or whitespace. Only printable ASCII is allowed here as well, so that characters
/// and bytes are the same count and the name shows as typed in <c>ip link</c>.
/// </summary>
internal static class InterfaceName
{
    /// <summary>IFNAMSIZ less the terminating NUL.</summary>
    public const int MaxLength = 15;

    /// <summary>The rule in words, for error messages.</summary>
    public const string Rule = "1-15 printable ASCII characters, no '/', ':' or spaces, not '.' or '..'";

    /// <summary>True when Linux would accept <paramref name="name"/> as an interface name.</summary>
    public static bool IsValid(string? name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > MaxLength || name is "." or "..") return false;
        foreach (var c in name)
        {
            if (c is < '!' or > '~' or '/' or ':') return false;
        }
        return true;
    }
}
