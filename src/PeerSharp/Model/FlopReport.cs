namespace PeerSharp.Model;

/// <summary>One part of a model's forward cost.</summary>
/// <param name="Part">What is computed.</param>
/// <param name="Flops">Forward FLOPs per token.</param>
/// <param name="MatrixProducts">
/// True when the FLOPs are the multiply-adds of matrix products (2 FLOPs each); false for product-key selection,
/// the additions of the k² candidate scores and the elements top-k scans (1 FLOP each).
/// </param>
public sealed record FlopLine(string Part, double Flops, bool MatrixProducts);

/// <summary>A model's forward FLOPs per token by part (<see cref="FlopCounter"/>), with its parameter counts.</summary>
/// <param name="Lines">Forward FLOPs per token, by part.</param>
/// <param name="Parameters">Every parameter of the model.</param>
/// <param name="ActiveParameters">
/// Parameters one token's forward uses: all of the dense parts, and of each sparse layer its router or query
/// network and product keys plus the experts or values a token is given (on average, for expert choice).
/// </param>
/// <param name="ContextLength">T, the training sequence length the attention FLOPs were counted at.</param>
public sealed record FlopReport(IReadOnlyList<FlopLine> Lines, long Parameters, double ActiveParameters, int ContextLength)
{
    /// <summary>Forward FLOPs per token.</summary>
    public double ForwardFlopsPerToken => Lines.Sum(l => l.Flops);

    /// <summary>Training FLOPs per token: forward plus a backward of twice its cost.</summary>
    public double TrainingFlopsPerToken => FlopCounter.TrainingPerForward * ForwardFlopsPerToken;

    /// <summary>Training FLOPs of one optimizer step of <paramref name="batchSize"/> sequences of T tokens.</summary>
    public double TrainingFlopsPerStep(int batchSize) => TrainingFlopsPerToken * batchSize * ContextLength;

    /// <summary>Whole optimizer steps that fit in a training FLOP budget (the paper's isoFLOP setup: steps = budget / FLOPs per step).</summary>
    public long StepsForBudget(double flopBudget, int batchSize) => (long)Math.Floor(flopBudget / TrainingFlopsPerStep(batchSize));
}
