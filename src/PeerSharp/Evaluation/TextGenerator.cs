using PeerSharp.Data;
using PeerSharp.Model;
using static TorchSharp.torch;

namespace PeerSharp.Evaluation;

/// <summary>Sampling settings for <see cref="TextGenerator"/>.</summary>
/// <param name="MaxNewTokens">Tokens to generate.</param>
/// <param name="Temperature">Softmax temperature; 0 picks the most likely token (greedy).</param>
/// <param name="TopK">Sample only among the k most likely tokens (0: all).</param>
/// <param name="Seed">Seed of the sampler.</param>
public sealed record SamplingOptions(int MaxNewTokens = 200, double Temperature = 0.8, int TopK = 40, long Seed = 0)
{
    /// <summary>
    /// Lowest temperature above 0: logits divided by less overflow float32 (a temperature of 1e-40 turns every
    /// logit into ±infinity and the softmax into NaN).
    /// </summary>
    public const double MinTemperature = 1e-3;

    /// <summary>Sample only among the most likely tokens whose probabilities add up to this (nucleus sampling; 1: all).</summary>
    public double TopP { get; init; } = 1;

    /// <summary>Throws a <see cref="PeerSharpException"/> naming the first impossible setting.</summary>
    public void Validate()
    {
        if (MaxNewTokens < 0) throw new PeerSharpException($"tokens to generate {MaxNewTokens} must not be negative");
        if (!double.IsFinite(Temperature) || Temperature < 0 || (Temperature > 0 && Temperature < MinTemperature))
            throw new PeerSharpException($"temperature {Temperature} must be 0 (greedy) or a finite number of at least {MinTemperature}");
        if (TopK < 0) throw new PeerSharpException($"top-k {TopK} must not be negative (0: all tokens)");
        if (!double.IsFinite(TopP) || TopP <= 0 || TopP > 1) throw new PeerSharpException($"top-p {TopP} must be above 0 and at most 1");
    }
}

/// <summary>
/// Autoregressive generation with a KV cache: the prompt is run once, then each new token costs one
/// position. When the context is full, the last half of the text is run again to refill the cache.
/// </summary>
public static class TextGenerator
{
    /// <summary>Generates text after the prompt; <paramref name="onText"/> receives each new piece as it is decoded.</summary>
    public static string Generate(TransformerLM model, ITokenizer tokenizer, string prompt, SamplingOptions options, Action<string>? onText = null)
    {
        options.Validate();
        var context = tokenizer.Encode(prompt.Length == 0 ? "\n" : prompt).ToList();
        var wasTraining = model.training;
        model.eval();
        using var noGrad = no_grad();
        using var cache = new KvCache(model.Config, 1);
        using var random = new TorchSharp.torch.Generator((ulong)options.Seed);
        var continuation = new ContinuationText(tokenizer);
        try
        {
            var pending = context.TakeLast(model.Config.ContextLength).ToList();   // tokens not yet in the cache
            for (int i = 0; i < options.MaxNewTokens; i++)
            {
                using var scope = NewDisposeScope();
                if (cache.Length + pending.Count > cache.Capacity)
                {
                    // Full: keep the last half of the context and run it again.
                    cache.Clear();
                    pending = context.TakeLast(model.Config.ContextLength / 2).ToList();
                }
                var input = tensor(pending.Select(t => (long)t).ToArray(), dtype: ScalarType.Int64).unsqueeze(0);   // (1, T)
                var logits = model.forward(input, cache).select(1, -1).squeeze(0);                                   // (V)
                var next = TokenSampler.Sample(logits, options, random);
                context.Add(next);
                pending = [next];
                if (continuation.Add(next) is { Length: > 0 } piece) onText?.Invoke(piece);
            }
            if (continuation.Finish() is { Length: > 0 } rest) onText?.Invoke(rest);
            return continuation.Text;
        }
        finally
        {
            model.train(wasTraining);
        }
    }
}
