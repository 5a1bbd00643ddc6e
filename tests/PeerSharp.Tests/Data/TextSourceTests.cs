using System.IO.Compression;
using System.Text;
using PeerSharp.Data;

namespace PeerSharp.Tests.Data;

public class TextSourceTests
{
    [Fact]
    public void ATextFileIsOneDocument()
    {
        using var temp = new TempFolder();
        string path = temp.Write("book.txt", "First line, café.\n\nSecond paragraph.\n");

        Assert.Equal(["First line, café.\n\nSecond paragraph.\n"], TextSource.Open(path).Documents());
    }

    [Fact]
    public void AFolderGivesOneDocumentPerTextFileInNameOrder()
    {
        using var temp = new TempFolder();
        temp.Write("b.txt", "second");
        temp.Write("a.txt", "first");
        temp.Write("notes.md", "not text data");

        Assert.Equal(["first", "second"], TextSource.Open(temp.Path).Documents());
    }

    [Fact]
    public void AFolderMixesTextFilesAndJsonLinesShards()
    {
        using var temp = new TempFolder();
        temp.Write("a.txt", "a book");
        WriteGzip(temp.File("b.jsonl.gz"), "{\"text\": \"web page 1\"}\n{\"text\": \"web page 2\"}\n");
        WriteGzip(temp.File("c.txt.gz"), "another book");

        Assert.Equal(["a book", "web page 1", "web page 2", "another book"], TextSource.Open(temp.Path).Documents());
    }

    [Fact]
    public void JsonLinesGiveTheTextFieldOfEachLine()
    {
        using var temp = new TempFolder();
        string path = temp.Write("c4.jsonl",
            "{\"text\": \"Beginners BBQ Class.\", \"url\": \"https://example.com\"}\n\n{\"text\": \"Caf\\u00e9 \\\"2\\\"\\n\"}\n");

        Assert.Equal(["Beginners BBQ Class.", "Café \"2\"\n"], TextSource.Open(path).Documents());
    }

    [Theory]
    [InlineData("shard.jsonl.gz")]
    [InlineData("c4-train.00000-of-01024.json.gz")]
    public void GzippedJsonLinesAreDecompressed(string fileName)
    {
        using var temp = new TempFolder();
        string path = temp.File(fileName);
        WriteGzip(path, "{\"text\": \"one\"}\n{\"text\": \"two\"}\n");

        Assert.Equal(["one", "two"], TextSource.Open(path).Documents());
    }

    [Fact]
    public void AGzippedTextFileIsOneDocument()
    {
        using var temp = new TempFolder();
        string path = temp.File("book.txt.gz");
        WriteGzip(path, "Call me Ishmael.\nSome years ago.\n");

        Assert.Equal(["Call me Ishmael.\nSome years ago.\n"], TextSource.Open(path).Documents());
    }

    [Fact]
    public void ALongTextComesInChunksThatJoinToTheExactText()
    {
        using var temp = new TempFolder();
        var text = new StringBuilder();
        for (int line = 0; text.Length < 2_500_000; line++)
        {
            text.Append("Line ").Append(line).Append(line % 7 == 0 ? "\n\n" : ", and then some more words.\n");
        }
        string path = temp.Write("long.txt", text.ToString());

        TextChunk[] chunks = [.. TextSource.Open(path).Chunks()];

        Assert.True(chunks.Length > 1);
        Assert.True(chunks[0].StartsDocument);
        Assert.All(chunks[1..], chunk => Assert.False(chunk.StartsDocument));
        Assert.Equal(text.ToString(), string.Concat(chunks.Select(chunk => chunk.Text)));
    }

    [Fact]
    public void ALineLongerThanTheReadLimitIsCutBetweenCharacters()
    {
        using var temp = new TempFolder();
        // Two-byte characters at an odd offset, so byte-count cuts would land inside a character.
        string text = "x" + new string('é', 1_500_000);
        string path = temp.Write("one-line.txt", text);

        Assert.Equal([text], TextSource.Open(path).Documents());
    }

    [Fact]
    public void InvalidUtf8NamesTheFileAndByteOffset()
    {
        using var temp = new TempFolder();
        string path = temp.File("broken.txt");
        File.WriteAllBytes(path, [.. "good\nbad "u8, 0xFF, .. " rest\n"u8]);

        var error = Assert.Throws<PeerSharpException>(() => TextSource.Open(path).Documents().ToList());

        Assert.Contains(path, error.Message);
        Assert.Contains("byte 9", error.Message);
        Assert.Contains("line 2", error.Message);
    }

    [Fact]
    public void InvalidUtf8InJsonLinesNamesTheFileAndLine()
    {
        using var temp = new TempFolder();
        string path = temp.File("broken.jsonl");
        File.WriteAllBytes(path, [.. "{\"text\": \"fine\"}\n{\"text\": \""u8, 0xC3, 0x28, .. "\"}\n"u8]);

        var error = Assert.Throws<PeerSharpException>(() => TextSource.Open(path).Documents().ToList());

        Assert.Contains(path, error.Message);
        Assert.Contains("line 2", error.Message);
    }

    [Fact]
    public void AMissingPathIsNamed()
    {
        using var temp = new TempFolder();
        string path = temp.File("absent.txt");

        var error = Assert.Throws<PeerSharpException>(() => TextSource.Open(path));

        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void AFolderWithoutTextFilesHasNoText()
    {
        using var temp = new TempFolder();

        var error = Assert.Throws<PeerSharpException>(() => TextSource.Open(temp.Path));

        Assert.StartsWith($"no text found in {temp.Path}", error.Message);
    }

    [Fact]
    public void EmptyFilesHaveNoText()
    {
        using var temp = new TempFolder();
        temp.Write("empty.txt", "");
        temp.Write("also-empty.txt", "");

        var error = Assert.Throws<PeerSharpException>(() => TextSource.Open(temp.Path).Documents().ToList());

        Assert.Equal($"no text found in {temp.Path}", error.Message);
    }

    [Theory]
    [InlineData("{\"url\": \"https://example.com\"}")]
    [InlineData("{\"text\": 42}")]
    [InlineData("[\"text\"]")]
    [InlineData("not json")]
    public void AJsonLineWithoutAStringTextFieldNamesTheFileAndLine(string badLine)
    {
        using var temp = new TempFolder();
        string path = temp.Write("bad.jsonl", "{\"text\": \"fine\"}\n" + badLine + "\n");

        var error = Assert.Throws<PeerSharpException>(() => TextSource.Open(path).Documents().ToList());

        Assert.Contains(path, error.Message);
        Assert.Contains("line 2", error.Message);
    }

    [Theory]
    [InlineData(0.5)]
    [InlineData(0.99)]
    public void ATruncatedGzipFileIsAnErrorNamingIt(double kept)
    {
        using var temp = new TempFolder();
        string path = temp.File("book.txt.gz");
        WriteGzip(path, LongText());
        byte[] whole = File.ReadAllBytes(path);
        File.WriteAllBytes(path, whole[..(int)(whole.Length * kept)]);

        var error = Assert.Throws<PeerSharpException>(() => TextSource.Open(path).Chunks().ToList());

        Assert.Contains(path, error.Message);
        Assert.Contains("truncated", error.Message);
    }

    [Fact]
    public void AGzipFileCutInsideItsTrailerIsAnError()
    {
        using var temp = new TempFolder();
        string path = temp.File("book.txt.gz");
        WriteGzip(path, LongText());
        byte[] whole = File.ReadAllBytes(path);
        File.WriteAllBytes(path, whole[..^4]);   // the length field of the trailer is gone, every byte of text is there

        var error = Assert.Throws<PeerSharpException>(() => TextSource.Open(path).Chunks().ToList());

        Assert.Contains("truncated", error.Message);
    }

    [Fact]
    public void AGzipFileWithAWrongChecksumIsAnError()
    {
        using var temp = new TempFolder();
        string path = temp.File("book.txt.gz");
        WriteGzip(path, LongText());
        byte[] bytes = File.ReadAllBytes(path);
        bytes[^8] ^= 0x01;   // the CRC-32 of the trailer
        File.WriteAllBytes(path, bytes);

        var error = Assert.Throws<PeerSharpException>(() => TextSource.Open(path).Chunks().ToList());

        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void ConcatenatedGzipMembersAndTrailingZerosReadAsOneText()
    {
        using var temp = new TempFolder();
        string first = temp.File("first.gz"), second = temp.File("second.gz"), path = temp.File("both.txt.gz");
        string text = LongText();
        WriteGzip(first, text[..40000]);
        WriteGzip(second, text[40000..]);
        File.WriteAllBytes(path, [.. File.ReadAllBytes(first), .. File.ReadAllBytes(second), 0, 0, 0, 0]);

        Assert.Equal([text], TextSource.Open(path).Documents());
    }

    private static string LongText() =>
        string.Concat(Enumerable.Range(0, 3000).Select(i => $"Line {i} of a book that a download cut short, {i * 7919 % 1000}.\n"));

    private static void WriteGzip(string path, string text)
    {
        using var gzip = new GZipStream(File.Create(path), CompressionLevel.Fastest);
        gzip.Write(Encoding.UTF8.GetBytes(text));
    }
}
