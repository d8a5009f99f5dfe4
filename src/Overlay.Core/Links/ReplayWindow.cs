namespace Overlay.Links;

/// <summary>
/// Sliding anti-replay window over 64-bit sequence numbers (in the manner of RFC 6479): the highest
/// sequence accepted and a bitmap of the <see cref="Size"/> before it. A packet is checked before
/// decryption (cheap rejection) and marked only after it authenticated, so a forgery cannot move the window.
/// </summary>
internal sealed class ReplayWindow
{
    /// <summary>Packets behind the highest accepted one that can still arrive (reordering tolerance).</summary>
    public const int Size = 2048;

    private const int Words = Size / 64;
    private readonly ulong[] _bitmap = new ulong[Words];
    private ulong _highest;
    private bool _any;

    /// <summary>Why a sequence number is refused.</summary>
    public enum Verdict
    {
        /// <summary>New: may be accepted once authenticated.</summary>
        Fresh,
        /// <summary>Seen before.</summary>
        Replayed,
        /// <summary>Older than the window.</summary>
        TooOld,
    }

    /// <summary>Checks <paramref name="sequence"/> without changing the window.</summary>
    public Verdict Check(ulong sequence)
    {
        if (!_any || sequence > _highest) return Verdict.Fresh;
        var behind = _highest - sequence;
        if (behind >= Size) return Verdict.TooOld;
        return (_bitmap[(int)(sequence / 64 % Words)] & (1UL << (int)(sequence % 64))) != 0 ? Verdict.Replayed : Verdict.Fresh;
    }

    /// <summary>Marks an authenticated <paramref name="sequence"/>; false if it was a replay after all (a race).</summary>
    public bool Accept(ulong sequence)
    {
        if (Check(sequence) != Verdict.Fresh) return false;
        if (!_any || sequence > _highest)
        {
            // The bits of the sequences the window slides over are from Size packets ago: clear them.
            if (!_any || sequence - _highest >= Size) Array.Clear(_bitmap);
            else
                for (var s = _highest + 1; s < sequence; s++) _bitmap[(int)(s / 64 % Words)] &= ~(1UL << (int)(s % 64));
            _bitmap[(int)(sequence / 64 % Words)] &= ~(1UL << (int)(sequence % 64));
            _highest = sequence;
            _any = true;
        }
        _bitmap[(int)(sequence / 64 % Words)] |= 1UL << (int)(sequence % 64);
        return true;
    }
}
