namespace Overlay.Host;

/// <summary>Writes the host's status file so that a reader never sees half of it and no link on the way is followed.</summary>
public static class StatusFile
{
    /// <summary>
    /// Writes <paramref name="text"/> to a new temporary file beside <paramref name="path"/> (a random name, created
    /// exclusively, so a symbolic link planted there cannot redirect the write: O_CREAT|O_EXCL never follows one), owner
    /// read-write only (the status names peers and their addresses), then renames it over <paramref name="path"/>: a
    /// link at <paramref name="path"/> is replaced, not followed.
    /// </summary>
    public static async Task WriteAsync(string path, string text, CancellationToken cancellationToken = default)
    {
        var temporary = $"{path}.{Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8))}.tmp";
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        try
        {
            await using (var file = new FileStream(temporary, options))
            await using (var writer = new StreamWriter(file))
                await writer.WriteAsync(text.AsMemory(), cancellationToken).ConfigureAwait(false);
            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }
}
