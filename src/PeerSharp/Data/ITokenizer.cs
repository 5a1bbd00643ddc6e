namespace PeerSharp.Data;

/// <summary>
/// Turns text into token ids and back. Ids are always in <c>[0, VocabSize)</c>, so a model's embedding
/// table of <see cref="VocabSize"/> rows covers every id a tokenizer can produce.
/// </summary>
public interface ITokenizer
{
    /// <summary>The name used on the command line and in cache keys, such as <c>byte</c> or <c>gpt2</c>.</summary>
    string Name { get; }

    /// <summary>The number of distinct token ids, including special tokens.</summary>
    int VocabSize { get; }

    /// <summary>
    /// The ids placed between two documents when a corpus is tokenized, so the model learns where one
    /// text ends and an unrelated one begins.
    /// </summary>
    IReadOnlyList<int> DocumentSeparator { get; }

    /// <summary>Encodes <paramref name="text"/> into token ids.</summary>
    int[] Encode(string text);

    /// <summary>
    /// Decodes token ids into text. Never throws for ids in <c>[0, VocabSize)</c>: byte sequences that are
    /// not valid UTF-8 (a model can emit any sequence) decode to U+FFFD replacement characters.
    /// </summary>
    string Decode(ReadOnlySpan<int> ids);
}
