namespace PeerSharp.Data;

/// <summary>Creates tokenizers by the names used on the command line and in checkpoints.</summary>
public static class Tokenizers
{
    /// <summary>Creates the tokenizer called <paramref name="name"/>: <c>byte</c> or <c>gpt2</c>.</summary>
    /// <exception cref="PeerSharpException">The name is neither.</exception>
    public static ITokenizer Create(string name) => name switch
    {
        "byte" => new ByteTokenizer(),
        "gpt2" => new Gpt2Tokenizer(),
        _ => throw new PeerSharpException($"unknown tokenizer '{name}'; expected 'byte' or 'gpt2'"),
    };
}
