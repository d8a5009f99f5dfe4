using System.IO.Compression;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Xml.Linq;
using NUnit.Framework;
using Overlay.TestSupport;

namespace Overlay.Extensions.Hosting.Tests;

/// <summary>
/// <c>dotnet pack</c> of every package, checked as a user of NuGet would meet it: distinctive IDs, metadata, its own
/// README, symbols, dependencies on the lowest Microsoft.Extensions versions (no NU1605 for a .NET 10.0.x app), and a
/// public surface that is exactly the declared API baseline (PublicAPI.*.txt).
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class PackageTests
{
    private static readonly string[] Projects = ["Overlay.Tap", "Overlay.Switching", "Overlay.Core", "Overlay.Extensions.Hosting"];
    private string _repository = "";
    private DirectoryInfo? _output;

    [OneTimeSetUp]
    public void Pack()
    {
        _repository = FindRepository();
        // The tests run from bin/<Configuration>/<framework>: pack what that configuration built.
        var configuration = Path.GetFileName(Path.GetDirectoryName(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)))!;
        _output = Directory.CreateTempSubdirectory("overlay-packages-");
        var dotnet = Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : Prerequisites.FindOnPath("dotnet") ?? "dotnet";
        foreach (var project in Projects)
            Prerequisites.Run(dotnet, $"pack {Path.Combine(_repository, "src", project)} -c {configuration} --no-build -nologo -v:q -o {_output.FullName}",
                TimeSpan.FromMinutes(5));
    }

    [OneTimeTearDown]
    public void Clean() => _output?.Delete(recursive: true);

    [TestCaseSource(nameof(Projects))]
    public void The_package_has_its_id_metadata_readme_symbols_and_lowest_dependencies(string project)
    {
        var id = project.Replace("Overlay.", "OverlayVpn.", StringComparison.Ordinal);
        using var package = ZipFile.OpenRead(Path.Combine(_output!.FullName, $"{id}.0.1.0.nupkg"));
        var nuspec = XDocument.Load(package.GetEntry($"{id}.nuspec")!.Open()).Root!;
        var ns = nuspec.Name.Namespace;
        var metadata = nuspec.Element(ns + "metadata")!;
        string Field(string name) => metadata.Element(ns + name)?.Value ?? "";

        Assert.That(Field("id"), Is.EqualTo(id));
        Assert.That(Field("description"), Has.Length.GreaterThan(60));
        Assert.That(Field("license"), Is.EqualTo("MIT"));
        Assert.That(Field("projectUrl"), Does.StartWith("https://"));
        Assert.That(metadata.Element(ns + "repository")?.Attribute("url")?.Value, Does.StartWith("https://"));
        Assert.That(metadata.Element(ns + "repository")?.Attribute("commit")?.Value, Does.Match("^[0-9a-f]{40}$"), "the commit it was built from");

        Assert.That(Field("readme"), Is.EqualTo("README.md"));
        using (var readme = new StreamReader(package.GetEntry("README.md")!.Open()))
        {
            var text = readme.ReadToEnd();
            Assert.That(text, Is.EqualTo(File.ReadAllText(Path.Combine(_repository, "src", project, "README.md"))), "the package's own README");
            Assert.That(text, Does.StartWith($"# {id}").And.Contain("dotnet add package").And.Not.Contain("sudo"));
        }

        Assert.That(package.GetEntry($"lib/net10.0/{project}.dll"), Is.Not.Null);
        Assert.That(package.GetEntry($"lib/net10.0/{project}.xml"), Is.Not.Null, "XML documentation");
        using (var symbols = ZipFile.OpenRead(Path.Combine(_output.FullName, $"{id}.0.1.0.snupkg")))
            Assert.That(symbols.GetEntry($"lib/net10.0/{project}.pdb"), Is.Not.Null, "symbols in the .snupkg");

        var dependencies = metadata.Descendants(ns + "dependency").Select(d => (Id: d.Attribute("id")!.Value, Version: d.Attribute("version")!.Value)).ToArray();
        Assert.That(dependencies.Where(d => d.Id.StartsWith("Microsoft.Extensions.", StringComparison.Ordinal) || d.Id.StartsWith("System.", StringComparison.Ordinal)),
            Is.All.Matches<(string Id, string Version)>(d => d.Version == "10.0.0"), "the lowest versions that work on net10.0");
        Assert.That(dependencies.Where(d => d.Id.StartsWith("Overlay", StringComparison.Ordinal)).Select(d => d.Id),
            Is.All.StartWith("OverlayVpn."), "packages depend on each other by their package IDs");
    }

    /// <summary>
    /// The build is deterministic (the assembly says so in its debug directory), files the build generated are embedded
    /// in the PDB of the .snupkg, and SourceLink maps the sources to the remote when the clone's origin is on a host it
    /// knows; without one (this machine's clones) the PDB has no map, and the build said nothing about it.
    /// </summary>
    [TestCaseSource(nameof(Projects))]
    public void The_build_is_deterministic_with_generated_sources_embedded_and_sourcelink_where_a_remote_exists(string project)
    {
        var id = project.Replace("Overlay.", "OverlayVpn.", StringComparison.Ordinal);
        using var package = ZipFile.OpenRead(Path.Combine(_output!.FullName, $"{id}.0.1.0.nupkg"));
        using (var pe = new PEReader(Copy(package, $"lib/net10.0/{project}.dll")))
            Assert.That(pe.ReadDebugDirectory().Select(e => e.Type), Does.Contain(DebugDirectoryEntryType.Reproducible), "a deterministic build");

        using var symbols = ZipFile.OpenRead(Path.Combine(_output.FullName, $"{id}.0.1.0.snupkg"));
        using var pdb = MetadataReaderProvider.FromPortablePdbStream(Copy(symbols, $"lib/net10.0/{project}.pdb"));
        var reader = pdb.GetMetadataReader();
        var embedded = new Guid("0E8A571B-6926-466E-B4AD-8AB04611F5FE");
        var sourceLink = new Guid("CC110556-A091-4D38-9FEC-25AB9A351A6A");
        var embeddedNames = reader.CustomDebugInformation.Select(reader.GetCustomDebugInformation)
            .Where(c => reader.GetGuid(c.Kind) == embedded && c.Parent.Kind == HandleKind.Document)
            .Select(c => reader.GetString(reader.GetDocument((DocumentHandle)c.Parent).Name)).ToArray();
        Assert.That(embeddedNames, Has.Some.EndsWith(".AssemblyInfo.cs"), "the generated assembly attributes are embedded (EmbedUntrackedSources)");
        var map = reader.GetCustomDebugInformation(EntityHandle.ModuleDefinition).Select(reader.GetCustomDebugInformation)
            .Where(c => reader.GetGuid(c.Kind) == sourceLink).Select(c => System.Text.Encoding.UTF8.GetString(reader.GetBlobBytes(c.Value))).SingleOrDefault();

        var origin = Origin();
        if (origin is not null && new[] { "github.com", "gitlab.com", "dev.azure.com", "bitbucket.org" }.Contains(origin.Host))
            Assert.That(map, Does.Contain("\"documents\"").And.Contain(origin.Host == "github.com" ? "raw.githubusercontent.com" : origin.Host), $"sources mapped to {origin}");
        else
            Assert.That(map, Is.Null, $"no remote SourceLink knows ({origin?.ToString() ?? "none"}): no map");
    }

    [TestCaseSource(nameof(Projects))]
    public void The_packed_assembly_exposes_exactly_the_declared_public_types(string project)
    {
        var id = project.Replace("Overlay.", "OverlayVpn.", StringComparison.Ordinal);
        using var package = ZipFile.OpenRead(Path.Combine(_output!.FullName, $"{id}.0.1.0.nupkg"));
        using var dll = new MemoryStream();
        using (var entry = package.GetEntry($"lib/net10.0/{project}.dll")!.Open()) entry.CopyTo(dll);
        dll.Position = 0;
        using var pe = new PEReader(dll);
        var reader = pe.GetMetadataReader();
        var exposed = reader.TypeDefinitions.Select(reader.GetTypeDefinition).Where(t => IsVisible(reader, t)).Select(t => FullName(reader, t)).ToHashSet();

        var declared = new[] { "PublicAPI.Shipped.txt", "PublicAPI.Unshipped.txt" }
            .SelectMany(f => File.ReadAllLines(Path.Combine(_repository, "src", project, f)))
            .Where(l => l.Length > 0 && !l.StartsWith('#') && !l.Contains("->", StringComparison.Ordinal))
            .Select(l => l.Split(' ')[^1].Split('<')[0]).ToHashSet();

        Assert.That(exposed, Is.EquivalentTo(declared));
    }

    /// <summary>The clone's origin as a web URL (https or an scp-like ssh address), or null when it has none or it is a path.</summary>
    private Uri? Origin()
    {
        string url;
        try { url = Prerequisites.Run("git", $"-C {_repository} remote get-url origin").Trim(); }
        catch (InvalidOperationException) { return null; } // no origin
        var scp = System.Text.RegularExpressions.Regex.Match(url, @"^[\w.-]+@([\w.-]+):");
        if (scp.Success) return new Uri($"https://{scp.Groups[1].Value}/");
        return Uri.TryCreate(url, UriKind.Absolute, out var uri) && uri.Scheme is "https" or "http" or "ssh" ? uri : null;
    }

    private static MemoryStream Copy(ZipArchive archive, string entry)
    {
        var copy = new MemoryStream();
        using (var stream = archive.GetEntry(entry)!.Open()) stream.CopyTo(copy);
        copy.Position = 0;
        return copy;
    }

    private static bool IsVisible(MetadataReader reader, TypeDefinition type)
    {
        var visibility = type.Attributes & System.Reflection.TypeAttributes.VisibilityMask;
        if (visibility == System.Reflection.TypeAttributes.Public) return true;
        if (visibility is not (System.Reflection.TypeAttributes.NestedPublic or System.Reflection.TypeAttributes.NestedFamily
            or System.Reflection.TypeAttributes.NestedFamORAssem)) return false;
        return IsVisible(reader, reader.GetTypeDefinition(type.GetDeclaringType()));
    }

    private static string FullName(MetadataReader reader, TypeDefinition type)
    {
        var name = reader.GetString(type.Name);
        var tick = name.IndexOf('`', StringComparison.Ordinal);
        if (tick >= 0) name = name[..tick];
        if (!type.GetDeclaringType().IsNil) return FullName(reader, reader.GetTypeDefinition(type.GetDeclaringType())) + "." + name;
        var space = reader.GetString(type.Namespace);
        return space.Length == 0 ? name : space + "." + name;
    }

    private static string FindRepository()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Overlay.sln"))) return dir.FullName;
        throw new InvalidOperationException($"no Overlay.sln above {AppContext.BaseDirectory}");
    }
}
