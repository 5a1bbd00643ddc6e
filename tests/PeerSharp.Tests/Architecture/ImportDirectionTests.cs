using System.Text.RegularExpressions;

namespace PeerSharp.Tests.Architecture;

/// The folders of src/PeerSharp import each other only as docs/DESIGN.md's table ("Folders and the direction of
/// imports") allows: every `using PeerSharp.X` line of a file in folder F must name F itself or a folder F's row
/// lists, and the table names every folder there is. The table is read from DESIGN.md, so the document and the code
/// cannot drift apart unnoticed.
public class ImportDirectionTests
{
    static readonly string Root = FindRoot();

    static string FindRoot()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
            if (File.Exists(Path.Combine(folder.FullName, "PeerSharp.sln"))) return folder.FullName;
        throw new InvalidOperationException($"no PeerSharp.sln above {AppContext.BaseDirectory}");
    }

    /// The rows of the table: folder → the folders it may import ("–": none). Parenthesised reasons are dropped.
    static Dictionary<string, HashSet<string>> AllowedImports()
    {
        var design = File.ReadAllText(Path.Combine(Root, "docs", "DESIGN.md"));
        var section = design[design.IndexOf("### Folders and the direction of imports", StringComparison.Ordinal)..];
        section = section[..section.IndexOf("\n### ", 1, StringComparison.Ordinal)];
        var rows = new Dictionary<string, HashSet<string>>();
        foreach (Match row in Regex.Matches(section, @"^\| (?<folder>[A-Z][A-Za-z]*|\(root\)) \| (?<imports>.*) \|$", RegexOptions.Multiline))
        {
            var imports = Regex.Replace(row.Groups["imports"].Value, @"\([^)]*\)", "");
            rows[row.Groups["folder"].Value] = [.. imports.Split(',').Select(i => i.Trim()).Where(i => i is not ("" or "–"))];
        }
        return rows;
    }

    /// Folder of each library file → the PeerSharp folders its `using` lines name (root files: "(root)").
    static Dictionary<string, HashSet<string>> MeasuredImports()
    {
        var library = Path.Combine(Root, "src", "PeerSharp");
        var measured = new Dictionary<string, HashSet<string>>();
        foreach (var file in Directory.EnumerateFiles(library, "*.cs", SearchOption.AllDirectories))
        {
            var parts = Path.GetRelativePath(library, file).Split(Path.DirectorySeparatorChar);
            if (parts[0] is "bin" or "obj") continue;
            var folder = parts.Length > 1 ? parts[0] : "(root)";
            var imports = measured.TryGetValue(folder, out var set) ? set : measured[folder] = [];
            foreach (Match line in Regex.Matches(File.ReadAllText(file), @"^using (?:static )?PeerSharp\.(?<folder>\w+)", RegexOptions.Multiline))
                if (line.Groups["folder"].Value != folder) imports.Add(line.Groups["folder"].Value);
        }
        return measured;
    }

    [Fact]
    public void EveryFolderImportsOnlyWhatTheDesignTableAllows()
    {
        var allowed = AllowedImports();
        var measured = MeasuredImports();
        Assert.True(allowed.Count > 5, "the import table of docs/DESIGN.md was not found");
        var forbidden = Violations(allowed, measured);
        Assert.True(forbidden.Count == 0, $"imports the table of docs/DESIGN.md does not allow: {string.Join(", ", forbidden)}");
    }

    /// "F → X" for each import of folder F that the table does not allow ("F → (no row)" for a folder it lacks).
    static List<string> Violations(Dictionary<string, HashSet<string>> allowed, Dictionary<string, HashSet<string>> measured) =>
        [.. measured.SelectMany(m => allowed.TryGetValue(m.Key, out var row)
            ? m.Value.Where(i => !row.Contains(i)).Order().Select(i => $"{m.Key} → {i}")
            : [$"{m.Key} → (no row)"])];

    [Fact]
    public void TheAllowedImportsFormNoCycle()
    {
        var allowed = AllowedImports();
        var state = new Dictionary<string, int>();   // 1: on the path, 2: done
        void Visit(string folder, List<string> path)
        {
            if (state.GetValueOrDefault(folder) == 2) return;
            Assert.False(state.GetValueOrDefault(folder) == 1, $"the import table has a cycle: {string.Join(" → ", path.Append(folder))}");
            state[folder] = 1;
            foreach (var next in allowed.GetValueOrDefault(folder) ?? []) Visit(next, [.. path, folder]);
            state[folder] = 2;
        }
        foreach (var folder in allowed.Keys) Visit(folder, []);
    }

    /// The check sees what it is for: a kernel importing the layers above it, and a folder the table lacks.
    [Fact]
    public void AnImportOutsideTheTableIsFound()
    {
        var allowed = AllowedImports();
        var measured = new Dictionary<string, HashSet<string>> { ["Kernels"] = ["Layers"], ["Layers"] = ["Kernels"], ["Plugins"] = [] };
        Assert.Equal(["Kernels → Layers", "Plugins → (no row)"], Violations(allowed, measured));
    }
}
