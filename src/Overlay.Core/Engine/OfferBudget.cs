namespace Overlay.Engine;

/// <summary>A token bucket for one peer's new links: <see cref="LinkManager.NewLinkBurst"/> at once, refilled one per <see cref="LinkManager.NewLinkInterval"/>.</summary>
internal readonly record struct OfferBudget(double Tokens, DateTimeOffset At)
{
    public static OfferBudget Full(DateTimeOffset now) => new(LinkManager.NewLinkBurst, now);

    private double TokensAt(DateTimeOffset now) =>
        Math.Min(LinkManager.NewLinkBurst, Tokens + (now - At) / LinkManager.NewLinkInterval);

    public bool IsFull(DateTimeOffset now) => TokensAt(now) >= LinkManager.NewLinkBurst;

    /// <summary>Takes one new link if the budget allows; the budget after the attempt either way.</summary>
    public bool TryTake(DateTimeOffset now, out OfferBudget after)
    {
        var tokens = TokensAt(now);
        var taken = tokens >= 1;
        after = new OfferBudget(taken ? tokens - 1 : tokens, now);
        return taken;
    }
}
