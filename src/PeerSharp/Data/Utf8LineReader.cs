using System.Buffers;
using System.Text.Unicode;

namespace PeerSharp.Data;

/// <summary>
/// Reads a stream line by line as strictly valid UTF-8, holding only the current line in memory. Invalid
/// bytes are the user's data problem, so they end the read with a <see cref="PeerSharpException"/> that says
/// where they are, instead of silently becoming U+FFFD and training the model on garbage.
/// </summary>
internal sealed class Utf8LineReader : IDisposable
{
    private static readonly byte[] ByteOrderMark = [0xEF, 0xBB, 0xBF];

    private readonly Stream stream;
    private readonly string fileName;
    private readonly bool compressed;
    private readonly int maxLineBytes;
    private readonly bool splitLongLines;
    private byte[] buffer = new byte[1 << 16];
    private int start;        // buffer[start..end) holds bytes read from the stream but not yet returned
    private int end;
    private long bufferOffset; // byte offset in the (decompressed) stream of buffer[0]
    private bool endOfStream;
    private bool atLineStart = true;

    /// <param name="stream">The stream to read; disposed with this reader.</param>
    /// <param name="fileName">The file named in error messages.</param>
    /// <param name="compressed">Whether byte offsets in error messages refer to decompressed text.</param>
    /// <param name="maxLineBytes">
    /// Longer lines are returned in pieces of at most this many bytes, cut between characters, so that a
    /// file without line breaks still streams; or, without <paramref name="splitLongLines"/>, refused.
    /// </param>
    /// <param name="splitLongLines">False where a line is a whole document that cannot be cut (a JSON line): a longer
    /// line ends the read with a <see cref="PeerSharpException"/> before more than <paramref name="maxLineBytes"/> of it are held.</param>
    public Utf8LineReader(Stream stream, string fileName, bool compressed, int maxLineBytes, bool splitLongLines = true)
    {
        this.stream = stream;
        this.fileName = fileName;
        this.compressed = compressed;
        this.maxLineBytes = maxLineBytes;
        this.splitLongLines = splitLongLines;
    }

    /// <summary>The 1-based number of the line the last returned text belongs to.</summary>
    public long LineNumber { get; private set; }

    /// <summary>
    /// Returns the next line including its <c>'\n'</c> (absent only at the end of the stream), the next
    /// piece of an over-long line, or null when the stream is exhausted.
    /// </summary>
    public string? ReadLine()
    {
        int scanFrom = start;
        while (true)
        {
            int newline = buffer.AsSpan(scanFrom, end - scanFrom).IndexOf((byte)'\n');
            if (newline >= 0)
                return Take(scanFrom + newline + 1, lineEnds: true);
            if (end - start > maxLineBytes && !splitLongLines)
                throw new PeerSharpException($"line {LineNumber + 1} of {fileName} is longer than {maxLineBytes:N0} bytes, the most one line may hold; expected one document per line, each shorter");
            if (end - start > maxLineBytes)
                return Take(CharacterBoundaryBefore(start + maxLineBytes), lineEnds: false);
            if (endOfStream)
                return start == end ? null : Take(end, lineEnds: true);
            scanFrom = end - start;
            Fill();
        }
    }

    /// <inheritdoc/>
    public void Dispose() => stream.Dispose();

    /// <summary>Moves unread bytes to the front of the buffer, growing it if full, and reads more.</summary>
    private void Fill()
    {
        if (start > 0)
        {
            buffer.AsSpan(start, end - start).CopyTo(buffer);
            bufferOffset += start;
            end -= start;
            start = 0;
        }
        if (end == buffer.Length)
            Array.Resize(ref buffer, buffer.Length * 2);
        int read;
        try
        {
            read = stream.Read(buffer, end, buffer.Length - end);
        }
        catch (InvalidDataException e)
        {
            throw new PeerSharpException($"{fileName} is not a valid gzip file; expected gzip-compressed text", e);
        }
        end += read;
        endOfStream = read == 0;
    }

    /// <summary>
    /// Backs off from <paramref name="cut"/> past UTF-8 continuation bytes, so a piece never splits a
    /// character; invalid data with no character start nearby is cut anyway and reported by the decoder.
    /// </summary>
    private int CharacterBoundaryBefore(int cut)
    {
        for (int candidate = cut; candidate > Math.Max(start, cut - 4); candidate--)
        {
            if ((buffer[candidate] & 0b1100_0000) != 0b1000_0000)
                return candidate;
        }
        return cut;
    }

    /// <summary>Decodes and consumes <c>buffer[start..stop)</c>.</summary>
    private string Take(int stop, bool lineEnds)
    {
        if (atLineStart)
            LineNumber++;
        atLineStart = lineEnds;

        ReadOnlySpan<byte> bytes = buffer.AsSpan(start, stop - start);
        long offset = bufferOffset + start;
        if (offset == 0 && bytes.StartsWith(ByteOrderMark))
        {
            // Editors on Windows put a byte order mark first; it is not text.
            bytes = bytes[ByteOrderMark.Length..];
            offset = ByteOrderMark.Length;
        }
        start = stop;

        char[] chars = ArrayPool<char>.Shared.Rent(bytes.Length);
        try
        {
            // UTF-16 never needs more code units than UTF-8 needs bytes, so the buffer is always large enough.
            OperationStatus status = Utf8.ToUtf16(bytes, chars, out int bytesRead, out int charsWritten,
                replaceInvalidSequences: false, isFinalBlock: true);
            if (status != OperationStatus.Done)
            {
                string where = compressed ? "decompressed byte" : "byte";
                throw new PeerSharpException($"{fileName} is not valid UTF-8 at {where} {offset + bytesRead} (line {LineNumber}); expected UTF-8 text");
            }
            return new string(chars, 0, charsWritten);
        }
        finally
        {
            ArrayPool<char>.Shared.Return(chars);
        }
    }
}
