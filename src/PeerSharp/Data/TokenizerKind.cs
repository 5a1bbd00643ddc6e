namespace PeerSharp.Data;

/// <summary>The tokenizers a model can be trained with (<see cref="Tokenizers.Create"/>).</summary>
public enum TokenizerKind
{
    /// <summary>UTF-8 bytes: vocabulary 256, no training, any text.</summary>
    Byte,
    /// <summary>GPT-2's byte-level BPE (vocabulary 50,257), offline from Microsoft.ML.Tokenizers.</summary>
    Gpt2,
}
