using System.Text;

namespace PeerSharp.Data;

/// <summary>
/// The simplest tokenizer: one token per UTF-8 byte, so <see cref="VocabSize"/> is 256. Losses measured
/// with it are directly per byte, which makes it the baseline for bits-per-byte comparisons.
/// </summary>
public sealed class ByteTokenizer : ITokenizer
{
    // Non-strict on purpose: a model can emit any byte sequence, and Decode promises never to throw.
    private static readonly UTF8Encoding Utf8WithReplacement = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false);

    private static readonly int[] BlankLine = [(byte)'\n', (byte)'\n'];

    /// <inheritdoc/>
    public string Name => "byte";

    /// <inheritdoc/>
    public int VocabSize => Vocabulary;

    /// <summary>256 byte values.</summary>
    public const int Vocabulary = 256;

    /// <summary>A blank line (<c>"\n\n"</c>): the byte-level way plain text separates unrelated passages.</summary>
    public IReadOnlyList<int> DocumentSeparator => BlankLine;

    /// <inheritdoc/>
    public int[] Encode(string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        int[] ids = new int[bytes.Length];
        for (int i = 0; i < bytes.Length; i++)
            ids[i] = bytes[i];
        return ids;
    }

    /// <inheritdoc/>
    public string Decode(ReadOnlySpan<int> ids)
    {
        byte[] bytes = new byte[ids.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            if ((uint)ids[i] >= 256)
                throw new ArgumentOutOfRangeException(nameof(ids), ids[i], "Byte token ids must be in [0, 256).");
            bytes[i] = (byte)ids[i];
        }
        return Utf8WithReplacement.GetString(bytes);
    }
}
