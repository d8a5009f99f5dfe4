using NUnit.Framework;
using Overlay.Host;

namespace Overlay.Core.Tests.Host;

/// <summary>The host's status file: written whole, owner-only, and never through a symbolic link someone planted.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class StatusFileTests
{
    private DirectoryInfo _directory = null!;

    [SetUp]
    public void CreateDirectory() => _directory = Directory.CreateTempSubdirectory("overlay-status-");

    [TearDown]
    public void DeleteDirectory() => _directory.Delete(recursive: true);

    [Test]
    public async Task Links_planted_at_the_status_path_and_at_the_old_temporary_name_are_not_followed()
    {
        var victim = Path.Combine(_directory.FullName, "victim");
        await File.WriteAllTextAsync(victim, "precious");
        var status = Path.Combine(_directory.FullName, "status.json");
        File.CreateSymbolicLink(status, victim);
        File.CreateSymbolicLink(status + ".tmp", victim);

        await StatusFile.WriteAsync(status, "{\"ok\":true}");

        Assert.That(await File.ReadAllTextAsync(victim), Is.EqualTo("precious"));
        Assert.That(new FileInfo(status).LinkTarget, Is.Null, "the link at the status path was replaced by a file");
        Assert.That(await File.ReadAllTextAsync(status), Is.EqualTo("{\"ok\":true}"));
        Assert.That(File.GetUnixFileMode(status), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
        Assert.That(_directory.GetFiles("status.json.*.tmp"), Is.Empty, "no temporary file is left behind");
    }
}
