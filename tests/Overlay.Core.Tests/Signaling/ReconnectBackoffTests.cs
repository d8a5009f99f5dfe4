using NUnit.Framework;
using Overlay.Signaling.Xmpp;

namespace Overlay.Core.Tests.Signaling;

/// <summary>Reconnection delays: exponential from the minimum, capped, with 50–100 % jitter.</summary>
public sealed class ReconnectBackoffTests
{
    private static readonly TimeSpan Min = TimeSpan.FromSeconds(1), Max = TimeSpan.FromSeconds(60);

    [TestCase(0, 0.0, 500)]
    [TestCase(0, 0.999999, 1000)]
    [TestCase(3, 0.0, 4000)]
    [TestCase(3, 0.5, 6000)]
    [TestCase(6, 0.999999, 60000)]
    [TestCase(1000, 0.0, 30000)]
    public void Delay_doubles_per_attempt_is_capped_and_jittered(int attempt, double random, double expectedMs)
        => Assert.That(XmppSignalingChannel.Backoff(attempt, Min, Max, random).TotalMilliseconds, Is.EqualTo(expectedMs).Within(0.1));
}
