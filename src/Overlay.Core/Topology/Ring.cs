namespace Overlay.Topology;

/// <summary>Arithmetic on the 2^128 identifier ring, where node IDs are ordered as unsigned integers.</summary>
internal static class Ring
{
    /// <summary>Clockwise distance from <paramref name="from"/> to <paramref name="to"/> (0 when equal).</summary>
    public static UInt128 Distance(UInt128 from, UInt128 to) => unchecked(to - from);

    /// <summary>True when <paramref name="x"/> lies strictly inside the clockwise arc (from, to).</summary>
    /// <remarks>When <paramref name="to"/> equals <paramref name="from"/> the arc is the whole ring but <paramref name="from"/>.</remarks>
    public static bool StrictlyBetween(UInt128 from, UInt128 x, UInt128 to)
    {
        var dx = Distance(from, x);
        return dx != 0 && (to == from || dx < Distance(from, to));
    }

    /// <summary>The point a fraction <paramref name="fraction"/> (0..1) of the ring clockwise from <paramref name="from"/>.</summary>
    public static UInt128 Advance(UInt128 from, double fraction)
    {
        // 2^128 · fraction, computed in two 64-bit halves to keep the double's precision where it matters.
        var high = fraction * 18446744073709551616.0; // fraction · 2^64
        var whole = Math.Floor(high);
        var hi = whole >= 18446744073709551615.0 ? ulong.MaxValue : (ulong)whole;
        var lo = (ulong)Math.Min((high - whole) * 18446744073709551616.0, 18446744073709551615.0);
        return unchecked(from + new UInt128(hi, lo));
    }
}
