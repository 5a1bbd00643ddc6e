namespace PeerSharp.Data;

/// <summary>
/// The small corpus committed with PeerSharp (<c>data/gutenberg</c>): about 4.2 MB of Project Gutenberg
/// books for training and one further book for validation, so that training runs out of the box. See
/// <c>data/gutenberg/README.md</c> for the books and how the files are made.
/// </summary>
public static class BundledCorpus
{
    private const string Folder = "data/gutenberg";

    /// <summary>The training split, <c>train.txt.gz</c>.</summary>
    /// <exception cref="PeerSharpException">The file is neither next to the program nor in the repository.</exception>
    public static string TrainPath => Locate("train.txt.gz");

    /// <summary>The validation split, <c>validation.txt.gz</c>: books that are not in the training split.</summary>
    /// <exception cref="PeerSharpException">The file is neither next to the program nor in the repository.</exception>
    public static string ValidationPath => Locate("validation.txt.gz");

    /// <summary>
    /// Looks next to the program first (the build copies the files to the output folder of every project
    /// that references PeerSharp), then in the repository root above the program or the current folder,
    /// for a program run from a checkout some other way.
    /// </summary>
    private static string Locate(string fileName)
    {
        string relative = Path.Combine(Folder, fileName);
        string beside = Path.Combine(AppContext.BaseDirectory, relative);
        if (File.Exists(beside))
            return beside;
        foreach (string origin in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
        {
            for (var folder = new DirectoryInfo(origin); folder is not null; folder = folder.Parent)
            {
                if (File.Exists(Path.Combine(folder.FullName, "PeerSharp.sln")))
                {
                    string inRepository = Path.Combine(folder.FullName, relative);
                    if (File.Exists(inRepository))
                        return inRepository;
                    break;
                }
            }
        }
        throw new PeerSharpException($"the bundled corpus file {relative} was not found; expected it beside the program in {AppContext.BaseDirectory} or in a PeerSharp checkout above it or the current folder");
    }
}
