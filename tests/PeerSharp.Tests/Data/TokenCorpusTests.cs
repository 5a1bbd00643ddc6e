using System.Text;
using PeerSharp.Data;

namespace PeerSharp.Tests.Data;

public class TokenCorpusTests
{
    private const string First = "Emma Woodhouse, handsome, clever, and rich.\n";
    private const string Second = "Call me Ishmael. Some years ago — never mind how long.\n";

    [Fact]
    public void ByteTokensAreTheDocumentsJoinedByABlankLine()
    {
        using var temp = new TempFolder();
        temp.Write("texts/1.txt", First);
        temp.Write("texts/2.txt", Second);
        var tokenizer = new ByteTokenizer();

        using var corpus = TokenCorpus.Build(TextSource.Open(temp.File("texts")), tokenizer, temp.File("cache"));

        int[] expected = [.. tokenizer.Encode(First), 10, 10, .. tokenizer.Encode(Second)];
        Assert.Equal(expected.Select(id => (long)id), ReadAll(corpus));
        Assert.Equal(Encoding.UTF8.GetByteCount(First + Second), corpus.ByteCount);
        Assert.Equal("byte", corpus.TokenizerName);
        // Byte ids fit in uint16: two bytes per token after the 32-byte header.
        Assert.Equal(32 + 2 * corpus.TokenCount, new FileInfo(corpus.CachePath).Length);
    }

    [Fact]
    public void HoldOutSplitsTheTokensIntoTwoSlices()
    {
        using var temp = new TempFolder();
        string path = temp.Write("book.txt", string.Concat(Enumerable.Repeat(First + Second, 20)));
        using var corpus = TokenCorpus.Build(TextSource.Open(path), new ByteTokenizer(), temp.File("cache"));
        long[] all = ReadAll(corpus).ToArray();

        var (train, validation) = corpus.HoldOut(0.1, minimum: 50);
        using (train)
        using (validation)
        {
            Assert.Equal(corpus.TokenCount, train.TokenCount + validation.TokenCount);
            Assert.Equal(corpus.TokenCount / 10, validation.TokenCount);
            Assert.Equal(all[..(int)train.TokenCount], ReadAll(train));
            Assert.Equal(all[(int)train.TokenCount..], ReadAll(validation));
            Assert.Equal(validation.TokenCount, validation.ByteCount);   // byte tokens, no separators
        }
        // The slices borrowed the mapping; the corpus still reads after they are disposed.
        Assert.Equal(all, ReadAll(corpus));
        Assert.Throws<PeerSharpException>(() => corpus.HoldOut(0.1, minimum: corpus.TokenCount));
    }

    [Fact]
    public void Gpt2TokensAreTheDocumentsJoinedByEndOfText()
    {
        using var temp = new TempFolder();
        string path = temp.Write("docs.jsonl", $"{{\"text\": \"{First.TrimEnd()}\"}}\n{{\"text\": \"{Second.TrimEnd()}\"}}\n");
        var tokenizer = new Gpt2Tokenizer();

        using var corpus = TokenCorpus.Build(TextSource.Open(path), tokenizer, temp.File("cache"));

        int[] expected = [.. tokenizer.Encode(First.TrimEnd()), Gpt2Tokenizer.EndOfTextId, .. tokenizer.Encode(Second.TrimEnd())];
        Assert.Equal(expected.Select(id => (long)id), ReadAll(corpus));
        Assert.Equal(Encoding.UTF8.GetByteCount(First.TrimEnd() + Second.TrimEnd()), corpus.ByteCount);
    }

    [Fact]
    public void ASecondBuildReusesTheCacheFile()
    {
        using var temp = new TempFolder();
        string path = temp.Write("book.txt", First + Second);
        var tokenizer = new CountingTokenizer();
        string cachePath;
        using (var corpus = TokenCorpus.Build(TextSource.Open(path), tokenizer, temp.File("cache")))
        {
            cachePath = corpus.CachePath;
        }
        Assert.Equal(1, tokenizer.EncodeCalls);
        var written = new DateTime(2001, 1, 1, 0, 0, 0, DateTimeKind.Utc);
        File.SetLastWriteTimeUtc(cachePath, written);

        using var again = TokenCorpus.Build(TextSource.Open(path), tokenizer, temp.File("cache"));

        Assert.Equal(1, tokenizer.EncodeCalls);
        Assert.Equal(cachePath, again.CachePath);
        Assert.Equal(written, File.GetLastWriteTimeUtc(cachePath));
        Assert.Equal(Encoding.UTF8.GetByteCount(First + Second), again.TokenCount);
        Assert.Single(Directory.GetFiles(temp.File("cache")));
    }

    [Fact]
    public void AChangedSourceGetsANewCacheFile()
    {
        using var temp = new TempFolder();
        string path = temp.Write("book.txt", First);
        var tokenizer = new ByteTokenizer();
        string firstCache;
        using (var corpus = TokenCorpus.Build(TextSource.Open(path), tokenizer, temp.File("cache")))
        {
            firstCache = corpus.CachePath;
        }
        temp.Write("book.txt", First + Second);

        using var changed = TokenCorpus.Build(TextSource.Open(path), tokenizer, temp.File("cache"));

        Assert.NotEqual(firstCache, changed.CachePath);
        Assert.Equal(Encoding.UTF8.GetByteCount(First + Second), changed.TokenCount);
    }

    [Fact]
    public void AVocabularyBeyondUint16IsStoredAsInt32()
    {
        using var temp = new TempFolder();
        string path = temp.Write("book.txt", First);
        var tokenizer = new CountingTokenizer(vocabSize: 70_000);

        using var corpus = TokenCorpus.Build(TextSource.Open(path), tokenizer, temp.File("cache"));

        Assert.Equal(tokenizer.Encode(First).Select(id => (long)id), ReadAll(corpus));
        Assert.Equal(32 + 4 * corpus.TokenCount, new FileInfo(corpus.CachePath).Length);
    }

    [Fact]
    public void CopyTokensReadsAnyRangeAndRejectsRangesOutside()
    {
        using var temp = new TempFolder();
        string path = temp.Write("book.txt", First);
        using var corpus = TokenCorpus.Build(TextSource.Open(path), new ByteTokenizer(), temp.File("cache"));
        var window = new long[5];

        corpus.CopyTokens(5, window);

        Assert.Equal("Woodh"u8.ToArray().Select(b => (long)b), window);
        Assert.Throws<ArgumentOutOfRangeException>(() => corpus.CopyTokens(corpus.TokenCount - 4, window));
        Assert.Throws<ArgumentOutOfRangeException>(() => corpus.CopyTokens(-1, window));
    }

    [Fact]
    public void TheDefaultCacheFolderFollowsPeersharpCache()
    {
        string? saved = Environment.GetEnvironmentVariable("PEERSHARP_CACHE");
        try
        {
            Environment.SetEnvironmentVariable("PEERSHARP_CACHE", "/data/cache");
            Assert.Equal(Path.Combine("/data/cache", "tokens"), TokenCorpus.DefaultCacheFolder);

            Environment.SetEnvironmentVariable("PEERSHARP_CACHE", null);
            string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            Assert.Equal(Path.Combine(home, ".cache", "peersharp", "tokens"), TokenCorpus.DefaultCacheFolder);
        }
        finally
        {
            Environment.SetEnvironmentVariable("PEERSHARP_CACHE", saved);
        }
    }

    [Fact]
    public void TemporaryFilesOfTokenizationsThatWereKilledAreDeleted()
    {
        using var temp = new TempFolder();
        string path = temp.Write("book.txt", First + Second);
        string cache = temp.File("cache");
        Directory.CreateDirectory(cache);
        // No process has id 2³¹ − 1 (Linux ids stay below 2²², Windows ids are multiples of 4).
        string abandoned = Path.Combine(cache, $"byte-0123456789abcdef.tokens.{int.MaxValue}-{Guid.NewGuid():N}.tmp");
        string running = Path.Combine(cache, $"byte-0123456789abcdef.tokens.{Environment.ProcessId}-{Guid.NewGuid():N}.tmp");
        string unrelated = Path.Combine(cache, "notes.tmp");
        foreach (string file in new[] { abandoned, running, unrelated })
            File.WriteAllBytes(file, new byte[1000]);

        using var corpus = TokenCorpus.Build(TextSource.Open(path), new ByteTokenizer(), cache);

        Assert.False(File.Exists(abandoned), "the temporary file of a process that no longer runs must be deleted");
        Assert.True(File.Exists(running), "a running process may still be writing its temporary file");
        Assert.True(File.Exists(unrelated), "files not named like a token cache's temporary file are not ours");
    }

    private static long[] ReadAll(TokenCorpus corpus)
    {
        var tokens = new long[corpus.TokenCount];
        corpus.CopyTokens(0, tokens);
        return tokens;
    }

    /// <summary>Byte-level encoding that counts its calls, with a vocabulary size of choice.</summary>
    private sealed class CountingTokenizer(int vocabSize = 256) : ITokenizer
    {
        private readonly ByteTokenizer bytes = new();

        public int EncodeCalls { get; private set; }

        public string Name => $"counting{vocabSize}";

        public int VocabSize => vocabSize;

        public IReadOnlyList<int> DocumentSeparator => bytes.DocumentSeparator;

        public int[] Encode(string text)
        {
            EncodeCalls++;
            return bytes.Encode(text);
        }

        public string Decode(ReadOnlySpan<int> ids) => bytes.Decode(ids);
    }
}
