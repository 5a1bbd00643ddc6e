using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.MemoryMappedFiles;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace PeerSharp.Data;

/// <summary>
/// A tokenized <see cref="TextSource"/>, kept on disk and memory-mapped so that a corpus of any size is
/// never in memory whole. Tokenizing a large corpus takes long, so the tokens are cached in a file named
/// by a hash of the source files (paths, sizes, modification times) and the tokenizer; building the same
/// corpus again opens that file instead.
/// </summary>
/// <remarks>
/// Cache file layout, little-endian: the 8 ASCII bytes <c>PEERTOK1</c>, int32 bytes per token (2 when the
/// vocabulary fits in uint16, else 4), int32 vocabulary size, int64 token count, int64 byte count, then the
/// tokens.
/// </remarks>
public sealed unsafe class TokenCorpus : IDisposable
{
    private const int HeaderBytes = 32;
    private static readonly byte[] Magic = "PEERTOK1"u8.ToArray();
    private static readonly Regex TemporaryFileName = new(@"\.tokens\.(?<pid>[0-9]{1,10})-[0-9a-f]{32}\.tmp$", RegexOptions.CultureInvariant);

    private readonly MemoryMappedFile file;
    private readonly MemoryMappedViewAccessor view;
    private readonly byte* tokens;
    private readonly int bytesPerToken;
    private readonly bool ownsMapping;   // false for a Slice, which borrows its parent's mapping
    private bool disposed;

    private TokenCorpus(string cachePath, string tokenizerName, MemoryMappedFile file, MemoryMappedViewAccessor view,
        byte* mapped, int bytesPerToken, long tokenCount, long byteCount, bool ownsMapping = true)
    {
        this.ownsMapping = ownsMapping;
        CachePath = cachePath;
        TokenizerName = tokenizerName;
        this.file = file;
        this.view = view;
        tokens = mapped + HeaderBytes;
        this.bytesPerToken = bytesPerToken;
        TokenCount = tokenCount;
        ByteCount = byteCount;
    }

    /// <summary>
    /// The folder token caches go to unless told otherwise: <c>$PEERSHARP_CACHE/tokens</c> when that
    /// environment variable is set, else <c>~/.cache/peersharp/tokens</c>.
    /// </summary>
    public static string DefaultCacheFolder
    {
        get
        {
            string? root = Environment.GetEnvironmentVariable("PEERSHARP_CACHE");
            if (string.IsNullOrEmpty(root))
                root = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "peersharp");
            return Path.Combine(root, "tokens");
        }
    }

    /// <summary>What to do about a token cache that cannot be written.</summary>
    private const string CacheAdvice = "expected a folder this user can write, on a disk with room: set PEERSHARP_CACHE to one";

    /// <summary>The cache file the tokens are mapped from.</summary>
    public string CachePath { get; }

    /// <summary>The <see cref="ITokenizer.Name"/> of the tokenizer that produced the tokens.</summary>
    public string TokenizerName { get; }

    /// <summary>The number of tokens, document separators included.</summary>
    public long TokenCount { get; }

    /// <summary>
    /// The number of UTF-8 bytes in the source's documents, separators excluded, so it is the same for
    /// every tokenizer. Bits per byte, comparable across tokenizers, is
    /// <c>meanLossNats / ln(2) * TokenCount / ByteCount</c>.
    /// </summary>
    public long ByteCount { get; }

    /// <summary>
    /// Opens the cached tokens of <paramref name="source"/> under <paramref name="tokenizer"/>, tokenizing
    /// the source first, document by document, if no cache file exists for it.
    /// </summary>
    /// <param name="source">The text to tokenize.</param>
    /// <param name="tokenizer">The tokenizer; its <see cref="ITokenizer.DocumentSeparator"/> goes between documents.</param>
    /// <param name="cacheFolder">Where cache files live; <see cref="DefaultCacheFolder"/> when null.</param>
    /// <exception cref="PeerSharpException">The source cannot be read as text.</exception>
    public static TokenCorpus Build(TextSource source, ITokenizer tokenizer, string? cacheFolder = null)
    {
        string folder = cacheFolder ?? DefaultCacheFolder;
        string cachePath = Path.Combine(folder, $"{tokenizer.Name}-{CacheKey(source, tokenizer)}.tokens");
        int bytesPerToken = tokenizer.VocabSize <= 65536 ? 2 : 4;

        if (Directory.Exists(folder))
            DeleteAbandonedTemporaryFiles(folder);
        if (TryOpen(cachePath, tokenizer, bytesPerToken) is { } cached)
            return cached;
        // A unique temporary name and a rename make the cache file appear complete or not at all, even
        // when the process is killed or two processes tokenize the same corpus at once. The process id in
        // the name lets a later Build delete the file of a process that was killed midway.
        string temporaryPath = $"{cachePath}.{Environment.ProcessId}-{Guid.NewGuid():N}.tmp";
        try
        {
            Directory.CreateDirectory(folder);
            Tokenize(source, tokenizer, bytesPerToken, temporaryPath);
            File.Move(temporaryPath, cachePath, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The cache folder is not writable (a file, read-only, /proc) or its disk is full: the user's to fix, in one line.
            throw new PeerSharpException(PeerSharpException.DiskFull(e, $"run the command again (the token cache is in '{folder}'; {CacheAdvice})")
                                         ?? $"cannot write the token cache in '{folder}' ({e.Message}); {CacheAdvice}", e);
        }
        finally
        {
            if (Directory.Exists(folder))
                File.Delete(temporaryPath);
        }
        return TryOpen(cachePath, tokenizer, bytesPerToken)
            ?? throw new InvalidOperationException($"The token cache {cachePath} just written does not read back.");
    }

    /// <summary>
    /// Deletes the temporary files (NAME.tokens.PID-GUID.tmp, as large as the cache they were to become) that a
    /// tokenization killed midway left behind: those whose process no longer runs. A running process's file is
    /// kept, since it may still be writing it.
    /// </summary>
    private static void DeleteAbandonedTemporaryFiles(string folder)
    {
        foreach (string path in Directory.EnumerateFiles(folder, "*.tokens.*.tmp"))
        {
            Match name = TemporaryFileName.Match(Path.GetFileName(path));
            if (!name.Success || !int.TryParse(name.Groups["pid"].ValueSpan, out int pid) || IsRunning(pid))
                continue;
            try
            {
                File.Delete(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Another user's file, or one deleted meanwhile by another process: not ours to worry about.
            }
        }
    }

    private static bool IsRunning(int pid)
    {
        if (pid == Environment.ProcessId)
            return true;
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>
    /// Copies the tokens from position <paramref name="start"/> on into <paramref name="destination"/>.
    /// Only reads the mapped file, so several threads may call it at once.
    /// </summary>
    public void CopyTokens(long start, Span<long> destination)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (start < 0 || start > TokenCount - destination.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(start), start,
                $"Tokens [{start}, {start + destination.Length}) are outside the corpus of {TokenCount} tokens.");
        }
        if (bytesPerToken == 2)
        {
            var source = new ReadOnlySpan<ushort>(tokens + start * 2, destination.Length);
            for (int i = 0; i < source.Length; i++)
                destination[i] = source[i];
        }
        else
        {
            var source = new ReadOnlySpan<int>(tokens + start * 4, destination.Length);
            for (int i = 0; i < source.Length; i++)
                destination[i] = source[i];
        }
    }

    /// <summary>
    /// Tokens [<paramref name="start"/>, <paramref name="start"/> + <paramref name="count"/>) as a corpus of their
    /// own, for holding out validation text from a single source. It shares this corpus's mapping, so this corpus
    /// must outlive it. Its <see cref="ByteCount"/> is this corpus's bytes per token times <paramref name="count"/>.
    /// </summary>
    public TokenCorpus Slice(long start, long count)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (start < 0 || count < 0 || start + count > TokenCount)
            throw new ArgumentOutOfRangeException(nameof(start), start, $"Slice [{start}, {start + count}) is outside the corpus of {TokenCount} tokens.");
        long bytes = (long)Math.Round((double)ByteCount * count / Math.Max(1, TokenCount));
        return new TokenCorpus(CachePath, TokenizerName, file, view, tokens - HeaderBytes + start * bytesPerToken, bytesPerToken, count, bytes, ownsMapping: false);
    }

    /// <summary>The tokens of a text file, folder or JSON-lines file (<see cref="TextSource.Open"/>), tokenized once and cached.</summary>
    public static TokenCorpus Open(string path, TokenizerKind tokenizer) => Build(TextSource.Open(path), Tokenizers.Create(tokenizer));

    /// <summary>
    /// Splits off the last <paramref name="fraction"/> of the tokens, at least <paramref name="minimum"/>, as
    /// validation text: for a single source given without held-out text. Both parts are slices of this corpus.
    /// </summary>
    public (TokenCorpus Train, TokenCorpus Validation) HoldOut(double fraction, long minimum)
    {
        long held = Math.Max(minimum, (long)(TokenCount * fraction));
        if (held * 2 > TokenCount)
            throw new PeerSharpException($"the training text has only {TokenCount} tokens, too few to hold out {held} for validation; give held-out text with --validation");
        return (Slice(0, TokenCount - held), Slice(TokenCount - held, held));
    }

    /// <summary>Unmaps the cache file; the file itself stays for the next run.</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        if (!ownsMapping)
            return;
        view.SafeMemoryMappedViewHandle.ReleasePointer();
        view.Dispose();
        file.Dispose();
    }

    /// <summary>
    /// A hash of everything the tokens depend on. Sizes and modification times stand in for the contents,
    /// which would take as long to hash as to tokenize.
    /// </summary>
    private static string CacheKey(TextSource source, ITokenizer tokenizer)
    {
        var key = new StringBuilder("peersharp tokens 1\n").Append(tokenizer.Name).Append('\n');
        foreach (string path in source.Files)
        {
            var info = new FileInfo(path);
            key.Append(path).Append('\t').Append(info.Length).Append('\t').Append(info.LastWriteTimeUtc.Ticks).Append('\n');
        }
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key.ToString())))[..16];
    }

    private static void Tokenize(TextSource source, ITokenizer tokenizer, int bytesPerToken, string path)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        stream.Write(new byte[HeaderBytes]);
        long tokenCount = 0;
        long byteCount = 0;
        byte[] buffer = [];
        foreach (TextChunk chunk in source.Chunks())
        {
            if (chunk.StartsDocument && tokenCount > 0)
                tokenCount += Write(stream, [.. tokenizer.DocumentSeparator], bytesPerToken, ref buffer);
            tokenCount += Write(stream, tokenizer.Encode(chunk.Text), bytesPerToken, ref buffer);
            byteCount += Encoding.UTF8.GetByteCount(chunk.Text);
        }

        Span<byte> header = stackalloc byte[HeaderBytes];
        Magic.CopyTo(header);
        BinaryPrimitives.WriteInt32LittleEndian(header[8..], bytesPerToken);
        BinaryPrimitives.WriteInt32LittleEndian(header[12..], tokenizer.VocabSize);
        BinaryPrimitives.WriteInt64LittleEndian(header[16..], tokenCount);
        BinaryPrimitives.WriteInt64LittleEndian(header[24..], byteCount);
        stream.Position = 0;
        stream.Write(header);
        stream.Flush(flushToDisk: true);
    }

    private static int Write(Stream stream, int[] ids, int bytesPerToken, ref byte[] buffer)
    {
        if (buffer.Length < ids.Length * bytesPerToken)
            buffer = new byte[ids.Length * bytesPerToken];
        for (int i = 0; i < ids.Length; i++)
        {
            if (bytesPerToken == 2)
            {
                BinaryPrimitives.WriteUInt16LittleEndian(buffer.AsSpan(i * 2), checked((ushort)ids[i]));
            }
            else
            {
                BinaryPrimitives.WriteInt32LittleEndian(buffer.AsSpan(i * 4), ids[i]);
            }
        }
        stream.Write(buffer, 0, ids.Length * bytesPerToken);
        return ids.Length;
    }

    /// <summary>Maps the cache file, or returns null when it is absent or not a cache of this tokenizer.</summary>
    private static TokenCorpus? TryOpen(string path, ITokenizer tokenizer, int bytesPerToken)
    {
        if (!File.Exists(path) || new FileInfo(path).Length < HeaderBytes)
            return null;
        long fileLength = new FileInfo(path).Length;
        var file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, mapName: null, capacity: 0, MemoryMappedFileAccess.Read);
        MemoryMappedViewAccessor view = file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* mapped = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref mapped);
        mapped += view.PointerOffset;

        var header = new ReadOnlySpan<byte>(mapped, HeaderBytes);
        long tokenCount = BinaryPrimitives.ReadInt64LittleEndian(header[16..]);
        bool valid = header[..8].SequenceEqual(Magic)
            && BinaryPrimitives.ReadInt32LittleEndian(header[8..]) == bytesPerToken
            && BinaryPrimitives.ReadInt32LittleEndian(header[12..]) == tokenizer.VocabSize
            && tokenCount >= 0
            && fileLength == HeaderBytes + tokenCount * bytesPerToken;
        if (!valid)
        {
            // Not written by this version (the atomic rename rules out a torn write): tokenize again.
            view.SafeMemoryMappedViewHandle.ReleasePointer();
            view.Dispose();
            file.Dispose();
            return null;
        }
        return new TokenCorpus(path, tokenizer.Name, file, view, mapped, bytesPerToken, tokenCount,
            BinaryPrimitives.ReadInt64LittleEndian(header[24..]));
    }
}
