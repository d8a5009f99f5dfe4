using NUnit.Framework;
using Overlay.Signaling.Xmpp;

namespace Overlay.Core.Tests.Signaling;

/// <summary>SCRAM against the published exchanges of RFC 5802 §5 (SHA-1) and RFC 7677 §3 (SHA-256).</summary>
public sealed class ScramClientTests
{
    [Test]
    public void Rfc5802_scram_sha1_example()
    {
        var scram = new ScramClient("SCRAM-SHA-1", "user", "pencil", "fyko+d2lbbFgONRv9qkxdawL");
        Assert.That(scram.ClientFirstMessage, Is.EqualTo("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"));

        Assert.That(scram.TryClientFinal("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096", out var final, out var error), Is.True, error);

        Assert.That(final, Is.EqualTo("c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="));
        Assert.That(scram.VerifyServerFinal("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=", out error), Is.True, error);
    }

    [Test]
    public void Rfc7677_scram_sha256_example()
    {
        var scram = new ScramClient("SCRAM-SHA-256", "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        Assert.That(scram.ClientFirstMessage, Is.EqualTo("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"));

        Assert.That(scram.TryClientFinal("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", out var final, out var error), Is.True, error);

        Assert.That(final, Is.EqualTo("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="));
        Assert.That(scram.VerifyServerFinal("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", out error), Is.True, error);
    }

    [Test]
    public void A_server_that_does_not_know_the_password_is_detected()
    {
        var scram = new ScramClient("SCRAM-SHA-256", "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        Assert.That(scram.TryClientFinal("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", out _, out _), Is.True);

        Assert.That(scram.VerifyServerFinal("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", out var error), Is.False);
        Assert.That(error, Does.Contain("impersonation"));
    }

    [TestCase("r=other-nonce,s=QSXCR+Q6sek8bf92,i=4096", "does not extend")]
    [TestCase("r=abcXYZ,s=QSXCR+Q6sek8bf92,i=999999999", "iteration count")]
    [TestCase("r=abcXYZ,s=***,i=4096", "base64")]
    [TestCase("r=abcXYZ,i=4096", "malformed")]
    [TestCase("m=ext,r=abcXYZ,s=QSXCR+Q6sek8bf92,i=4096", "extension")]
    public void Malformed_or_hostile_server_first_messages_are_refused(string serverFirst, string reason)
    {
        var scram = new ScramClient("SCRAM-SHA-1", "user", "pencil", "abc");
        Assert.That(scram.TryClientFinal(serverFirst, out _, out var error), Is.False);
        Assert.That(error, Does.Contain(reason));
    }

    [Test]
    public void Comma_and_equals_in_the_user_name_are_escaped()
        => Assert.That(new ScramClient("SCRAM-SHA-1", "a,b=c", "p", "n").ClientFirstMessage, Is.EqualTo("n,,n=a=2Cb=3Dc,r=n"));
}
