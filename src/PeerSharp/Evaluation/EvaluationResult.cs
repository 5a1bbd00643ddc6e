namespace PeerSharp.Evaluation;

/// <summary>Expert usage of one PEER or PKM layer over an evaluation (DESIGN.md "Metrics"); for PKM the experts are the memory values.</summary>
/// <param name="Block">0-based block index.</param>
/// <param name="ExpertCount">N, experts or memory values.</param>
/// <param name="Usage">Fraction of experts that received any gate weight.</param>
/// <param name="Unevenness">KL(z ‖ uniform) in nats.</param>
/// <param name="Halves">Per half, the sub-keys in selected experts (<see cref="ExpertUsage.Halves"/>); null unless N = n².</param>
/// <param name="FirstChoices">Distinct first-choice experts per head (<see cref="ExpertUsage.FirstChoices"/>).</param>
public sealed record LayerUsage(int Block, long ExpertCount, double Usage, double Unevenness, IReadOnlyList<SubKeyUsage>? Halves = null, double FirstChoices = 0)
{
    /// <summary>One line: "usage 17.8%, unevenness 4.02, sub-keys used 96%/98%, first choices 114/head".</summary>
    public string Describe()
    {
        var line = $"usage {Usage:P1}, unevenness {Unevenness:F2}";
        if (Halves is [var a, var b]) line += $", sub-keys used {a.Usage:P0}/{b.Usage:P0}";
        if (FirstChoices > 0) line += $", first choices {FirstChoices:F0}/head";
        return line;
    }
}

/// <summary>Language-model metrics over held-out text.</summary>
/// <param name="Loss">Mean cross-entropy, nats per token.</param>
/// <param name="Tokens">Target tokens scored.</param>
/// <param name="BytesPerToken">UTF-8 bytes per token of the text, to convert to bits per byte.</param>
/// <param name="Layers">Expert usage per PEER or PKM layer.</param>
public sealed record EvaluationResult(double Loss, long Tokens, double BytesPerToken, IReadOnlyList<LayerUsage> Layers)
{
    /// <summary>exp(loss).</summary>
    public double Perplexity => Math.Exp(Loss);

    /// <summary>Bits per UTF-8 byte: comparable across tokenizers.</summary>
    public double BitsPerByte => Loss / Math.Log(2) / BytesPerToken;

    /// <summary>
    /// Several texts scored as one: the mean loss over all their tokens (each text weighted by its tokens), and bytes
    /// per token such that bits per byte is all their bits over all their bytes; <paramref name="layers"/> is the
    /// expert usage over all of them, which the texts' own usages do not determine.
    /// </summary>
    public static EvaluationResult Combine(IReadOnlyList<EvaluationResult> parts, IReadOnlyList<LayerUsage> layers)
    {
        long tokens = parts.Sum(p => p.Tokens);
        return new EvaluationResult(parts.Sum(p => p.Loss * p.Tokens) / tokens, tokens, parts.Sum(p => p.BytesPerToken * p.Tokens) / tokens, layers);
    }
}

/// <summary>A text scored by parts (<see cref="Evaluator.EvaluateParts"/>).</summary>
/// <param name="Together">All parts as one text.</param>
/// <param name="Parts">Each part, by name, in the order given.</param>
public sealed record PartsEvaluation(EvaluationResult Together, IReadOnlyList<(string Name, EvaluationResult Result)> Parts);
