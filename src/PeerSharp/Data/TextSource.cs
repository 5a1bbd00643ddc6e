using System.Text;
using System.Text.Json;

namespace PeerSharp.Data;

/// <summary>
/// The documents behind a user's data path, read as a stream:
/// <list type="bullet">
/// <item>a text file, optionally gzipped (<c>.txt.gz</c>): one document;</item>
/// <item>a JSON-lines file, <c>.jsonl</c>, <c>.jsonl.gz</c> or <c>.json.gz</c> (the C4 format and C4's shard
/// names): one document per line, the string field <c>text</c> of a JSON object;</item>
/// <item>a folder: its <c>.txt</c>, <c>.txt.gz</c> and JSON-lines files, in ordinal order of file name, so
/// that a folder of C4 shards or of one-book text files works as one source.</item>
/// </list>
/// Files must be valid UTF-8, and gzipped files complete (a truncated one is an error, not part of the text);
/// errors name the file and where the problem is.
/// </summary>
public sealed class TextSource
{
    // Chunks of a text document are cut only once this long, and only at a line break between two
    // non-blank characters: GPT-2's pre-tokenizer splits there anyway, so chunking changes no tokens.
    private const int TargetChunkChars = 1 << 20;

    // A text with no such line break is cut here regardless, so memory stays bounded.
    private const int MaxChunkChars = 1 << 23;

    private const int MaxTextLineBytes = 1 << 20;

    /// <summary>
    /// The longest JSON line read: a line is one document and is parsed whole, taking some fifteen times its length in
    /// memory, so a longer one is refused rather than read (a document that long is a book's worth a hundred times).
    /// </summary>
    internal const int MaxJsonLineBytes = 64 << 20;

    private readonly string[] files;

    private TextSource(string path, string[] files)
    {
        // A pipe, socket or device would block or never end, and its tokens could not be cached by size and time.
        foreach (string file in files)
        {
            if (!FileTypes.IsRegularFile(file, followLinks: true))
                throw new PeerSharpException($"text source '{file}' is not a regular file (a pipe, socket or device); expected a text file, a JSON-lines file or a folder of them");
        }
        Path = path;
        this.files = files;
    }

    /// <summary>The path the source was opened with.</summary>
    public string Path { get; }

    /// <summary>The full paths of the files read, in reading order.</summary>
    public IReadOnlyList<string> Files => files;

    /// <summary>Opens the text file, JSON-lines file or folder of them at <paramref name="path"/>.</summary>
    /// <exception cref="PeerSharpException">The path does not exist, or is a folder with no text or JSON-lines file.</exception>
    public static TextSource Open(string path)
    {
        if (File.Exists(path))
            return new TextSource(path, [System.IO.Path.GetFullPath(path)]);
        if (Directory.Exists(path))
        {
            string[] found = Directory.GetFiles(path)
                .Where(file => IsJsonLines(file) || HasExtension(file, ".txt") || HasExtension(file, ".txt.gz"))
                .Select(System.IO.Path.GetFullPath)
                .Order(StringComparer.Ordinal)
                .ToArray();
            if (found.Length == 0)
                throw new PeerSharpException($"no text found in {path}; expected .txt, .txt.gz, .jsonl, .jsonl.gz or .json.gz files in the folder");
            return new TextSource(path, found);
        }
        throw new PeerSharpException($"text source '{path}' does not exist; expected a text file, a JSON-lines file or a folder of them");
    }

    /// <summary>
    /// Enumerates whole documents. Each is in memory at once; <see cref="Chunks"/> streams large ones.
    /// </summary>
    /// <exception cref="PeerSharpException">A file is not valid UTF-8 or JSON lines, or there is no text at all.</exception>
    internal IEnumerable<string> Documents()
    {
        var document = new StringBuilder();
        foreach (TextChunk chunk in Chunks())
        {
            if (chunk.StartsDocument && document.Length > 0)
            {
                yield return document.ToString();
                document.Clear();
            }
            document.Append(chunk.Text);
        }
        if (document.Length > 0)
            yield return document.ToString();
    }

    /// <summary>
    /// Enumerates the text as chunks of at most a few million characters, skipping empty documents.
    /// </summary>
    /// <exception cref="PeerSharpException">A file is not valid UTF-8 or JSON lines, or there is no text at all.</exception>
    public IEnumerable<TextChunk> Chunks()
    {
        bool anyText = false;
        foreach (string file in files)
        {
            bool gzipped = HasExtension(file, ".gz");
            bool jsonLines = IsJsonLines(file);
            using var reader = jsonLines
                ? new Utf8LineReader(OpenStream(file, gzipped), file, gzipped, MaxJsonLineBytes, splitLongLines: false)
                : new Utf8LineReader(OpenStream(file, gzipped), file, gzipped, MaxTextLineBytes);
            IEnumerable<TextChunk> chunks = jsonLines ? JsonLinesDocuments(reader, file) : TextDocument(reader);
            foreach (TextChunk chunk in chunks)
            {
                anyText = true;
                yield return chunk;
            }
        }
        if (!anyText)
            throw new PeerSharpException($"no text found in {Path}");
    }

    private static bool IsJsonLines(string file) =>
        HasExtension(file, ".jsonl") || HasExtension(file, ".jsonl.gz") || HasExtension(file, ".json.gz");

    private static bool HasExtension(string file, string extension) =>
        file.EndsWith(extension, StringComparison.OrdinalIgnoreCase);

    private static Stream OpenStream(string file, bool gzipped)
    {
        var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
        return gzipped ? new CheckedGzipStream(stream, file) : stream;
    }

    /// <summary>The whole file as one document, cut into chunks where that changes no tokenization.</summary>
    private static IEnumerable<TextChunk> TextDocument(Utf8LineReader reader)
    {
        var chunk = new StringBuilder();
        bool first = true;
        while (reader.ReadLine() is { } line)
        {
            bool cleanBreak = chunk.Length >= 2 && chunk[^1] == '\n' && !char.IsWhiteSpace(chunk[^2]) && line.Length > 0 && !char.IsWhiteSpace(line[0]);
            if ((chunk.Length >= TargetChunkChars && cleanBreak) || chunk.Length >= MaxChunkChars)
            {
                yield return new TextChunk(chunk.ToString(), first);
                chunk.Clear();
                first = false;
            }
            chunk.Append(line);
        }
        if (chunk.Length > 0)
            yield return new TextChunk(chunk.ToString(), first);
    }

    /// <summary>One document per non-blank line; documents with empty text are skipped.</summary>
    private static IEnumerable<TextChunk> JsonLinesDocuments(Utf8LineReader reader, string file)
    {
        while (reader.ReadLine() is { } line)
        {
            if (string.IsNullOrWhiteSpace(line))
                continue;
            string text = TextField(line, file, reader.LineNumber);
            if (text.Length > 0)
                yield return new TextChunk(text, StartsDocument: true);
        }
    }

    private static string TextField(string line, string file, long lineNumber)
    {
        try
        {
            using JsonDocument json = JsonDocument.Parse(line);
            if (json.RootElement.ValueKind == JsonValueKind.Object
                && json.RootElement.TryGetProperty("text", out JsonElement text)
                && text.ValueKind == JsonValueKind.String)
            {
                return text.GetString()!;
            }
        }
        catch (JsonException e)
        {
            throw new PeerSharpException($"line {lineNumber} of {file} is not valid JSON; expected an object with a string field \"text\"", e);
        }
        throw new PeerSharpException($"line {lineNumber} of {file} has no string field \"text\"; expected an object like {{\"text\": \"...\"}}");
    }
}
