using PeerSharp.Experiments;

namespace PeerSharp.Tests.Experiments;

/// Every figure of docs/EXPERIMENTS.md comes from the committed results files: regenerating the report from the
/// files its header names gives the committed text, byte for byte (only the folder it was written to differs).
public class CommittedReportTests
{
    [Fact]
    public void TheCommittedReportRegeneratesFromTheCommittedResults()
    {
        var root = RepositoryRoot();
        var committed = File.ReadAllText(Path.Combine(root, "docs", "EXPERIMENTS.md"));
        var command = committed.Split('\n').Select(l => l.Trim()).First(l => l.StartsWith("peer report ", StringComparison.Ordinal)).Split(' ');
        var files = command.Skip(2).TakeWhile(a => !a.StartsWith("--", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(files);

        using var folder = new TempFolder();
        var markdown = Path.Combine(folder.Path, "docs", "EXPERIMENTS.md");
        var absolute = files.Select(f => Path.Combine(root, f)).ToList();
        ExperimentReport.Write(absolute, markdown, Path.Combine(folder.Path, "docs", "figures"));
        var regenerated = File.ReadAllText(markdown)
            .Replace(markdown, "docs/EXPERIMENTS.md").Replace(Path.Combine(folder.Path, "docs", "figures"), "docs/figures")
            .Replace(root + Path.DirectorySeparatorChar, "");
        Assert.Equal(committed, regenerated);
    }

    /// The checkout this test was built from: the first folder above the test binaries that holds PeerSharp.sln.
    static string RepositoryRoot()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
            if (File.Exists(Path.Combine(folder.FullName, "PeerSharp.sln"))) return folder.FullName;
        throw new InvalidOperationException($"no PeerSharp.sln above {AppContext.BaseDirectory}");
    }
}
