namespace PeerSharp.Data;

/// <summary>Creates the tokenizer of a <see cref="TokenizerKind"/>.</summary>
public static class Tokenizers
{
    /// <summary>A new tokenizer of the given kind.</summary>
    public static ITokenizer Create(TokenizerKind kind) => kind switch
    {
        TokenizerKind.Byte => new ByteTokenizer(),
        TokenizerKind.Gpt2 => new Gpt2Tokenizer(),
        _ => throw Unknown(kind),
    };

    /// <summary>The vocabulary size of a kind, without loading its tokenizer (a model config checks against it).</summary>
    public static int VocabSize(TokenizerKind kind) => kind switch
    {
        TokenizerKind.Byte => ByteTokenizer.Vocabulary,
        TokenizerKind.Gpt2 => Gpt2Tokenizer.Vocabulary,
        _ => throw Unknown(kind),
    };

    static PeerSharpException Unknown(TokenizerKind kind) =>
        new($"tokenizer {(int)kind} is not known; expected {string.Join(", ", EnumNames.All<TokenizerKind>())}");
}
