using PeerSharp.Evaluation;

namespace PeerSharp.Generation;

/// <summary>One text completion to generate.</summary>
/// <param name="Prompt">The prompt's tokens, at most the model's context length (at least one).</param>
/// <param name="Sampling">Tokens to generate (at most), temperature, top-k, top-p and the seed of the request's own sampler.</param>
/// <param name="Stop">Stop sequences: the completion ends before the first one that appears in it.</param>
public sealed record CompletionRequest(IReadOnlyList<int> Prompt, SamplingOptions Sampling, IReadOnlyList<string> Stop);

/// <summary>Why a completion ended, in the OpenAI API's words where it has them.</summary>
public enum FinishReason
{
    /// <summary>It generated the tokens asked for ("length").</summary>
    Length,

    /// <summary>A stop sequence, or the end of a document (the tokenizer's document separator) ("stop").</summary>
    Stop,

    /// <summary>The client went away, or the server stopped before it finished.</summary>
    Cancelled,
}

/// <summary>A finished completion.</summary>
/// <param name="Text">The generated text (without the prompt, nor the stop sequence).</param>
/// <param name="Reason">Why it ended.</param>
/// <param name="PromptTokens">Tokens of the prompt.</param>
/// <param name="CompletionTokens">Tokens generated.</param>
public sealed record CompletionResult(string Text, FinishReason Reason, int PromptTokens, int CompletionTokens);
