namespace Overlay.Nat.Stun;

/// <summary>
/// Client transaction retransmission over UDP (RFC 8489 §6.2.1): send at 0, RTO, 3·RTO, … doubling,
/// <see cref="MaxRequests"/> times (Rc), then wait <see cref="FinalWaitMultiplier"/>·RTO (Rm) for the response.
/// </summary>
/// <param name="InitialRto">RTO; RFC 8489 recommends 500 ms.</param>
/// <param name="MaxRequests">Rc; default 7.</param>
/// <param name="FinalWaitMultiplier">Rm; default 16.</param>
internal sealed record StunRetransmissionOptions(TimeSpan InitialRto, int MaxRequests = 7, int FinalWaitMultiplier = 16)
{
    /// <summary>The RFC 8489 defaults: RTO 500 ms, Rc 7, Rm 16 (gives up after 39.5 s).</summary>
    public static StunRetransmissionOptions Default { get; } = new(TimeSpan.FromMilliseconds(500));

    /// <summary>Throws with the setting's name when a value is out of range.</summary>
    public void Validate()
    {
        if (InitialRto <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(InitialRto), InitialRto, "InitialRto must be positive");
        if (MaxRequests < 1) throw new ArgumentOutOfRangeException(nameof(MaxRequests), MaxRequests, "MaxRequests (Rc) must be at least 1");
        if (FinalWaitMultiplier < 1) throw new ArgumentOutOfRangeException(nameof(FinalWaitMultiplier), FinalWaitMultiplier, "FinalWaitMultiplier (Rm) must be at least 1");
    }
}
