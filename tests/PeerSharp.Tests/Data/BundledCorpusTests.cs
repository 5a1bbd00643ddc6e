using System.Text.RegularExpressions;
using PeerSharp.Data;

namespace PeerSharp.Tests.Data;

public class BundledCorpusTests
{
    [Fact]
    public void TheSplitsAreCopiedBesideTheProgram()
    {
        string expectedFolder = Path.Combine(AppContext.BaseDirectory, "data", "gutenberg");

        Assert.Equal(Path.Combine(expectedFolder, "train.txt.gz"), BundledCorpus.TrainPath);
        Assert.Equal(Path.Combine(expectedFolder, "validation.txt.gz"), BundledCorpus.ValidationPath);
    }

    [Fact]
    public void TrainAndValidationShareNoBook()
    {
        string[] train = Titles(BundledCorpus.TrainPath);
        string[] validation = Titles(BundledCorpus.ValidationPath);

        Assert.Equal(7, train.Length);
        Assert.Equal(["The Man Who Was Thursday by G. K. Chesterton 1908"], validation);
        Assert.Empty(train.Intersect(validation));
    }

    /// <summary>Each book starts with a line like <c>[Emma by Jane Austen 1816]</c> (see data/gutenberg/make.sh).</summary>
    private static string[] Titles(string path)
    {
        string text = Assert.Single(TextSource.Open(path).Documents());
        return [.. Regex.Matches(text, @"^\[(.+ by .+)\]$", RegexOptions.Multiline).Select(match => match.Groups[1].Value)];
    }
}
