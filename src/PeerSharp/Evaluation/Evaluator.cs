using TorchSharp;
using PeerSharp.Data;
using PeerSharp.Distributed;
using PeerSharp.Layers;
using PeerSharp.Model;
using static TorchSharp.torch;

namespace PeerSharp.Evaluation;

/// <summary>Scores a model on held-out text: loss, perplexity, bits per byte and expert usage (PEER and PKM layers).</summary>
public static class Evaluator
{
    /// <summary>
    /// Evaluates on consecutive non-overlapping windows from the start of the corpus, at most
    /// <paramref name="maxTokens"/> target tokens, in evaluation mode (query BatchNorm uses its running
    /// statistics, so every position sees only its past). The model's training mode is restored after.
    /// With <paramref name="replicas"/> of P ranks (the same model on each), rank r scores batches r, r + P, …
    /// and the sums (loss, tokens, expert usage) are added over the ranks, so every rank returns the result of
    /// the whole evaluation. Every rank runs the same number of forwards (a rank left without a batch in the last
    /// round runs one on no tokens), since an expert-parallel layer exchanges tokens with all ranks in each.
    /// </summary>
    public static EvaluationResult Evaluate(TransformerLM model, TokenCorpus corpus, int batchSize, long maxTokens, IProgress<double>? progress = null,
                                            ICommunicator? replicas = null)
    {
        replicas ??= SingleProcess.Instance;
        var wasTraining = model.training;
        model.eval();
        var retrievals = model.Blocks.Select((block, index) => (index, layer: block.FeedForward as IExpertRetrieval)).Where(p => p.layer is not null).ToList();
        var trackers = retrievals.Select(p => new ExpertUsage(p.layer!.ExpertCount)).ToList();
        var observing = retrievals.Select((p, i) => p.layer!.Retrieval.Attach(c => c with { Observer = trackers[i] })).ToList();
        try
        {
            double lossSum = 0;
            long tokens = 0;
            var budget = Math.Min(maxTokens, corpus.TokenCount - 1);
            using var noGrad = no_grad();
            long batch = 0, scored = 0;
            foreach (var (input, target) in new SequentialBatches(corpus, batchSize, model.Config.ContextLength, budget))
            {
                using var scope = NewDisposeScope();
                if (batch++ % replicas.Size != replicas.Rank)
                {
                    input.Dispose();
                    target.Dispose();
                    continue;
                }
                scored++;
                var logits = model.forward(input);
                var loss = nn.functional.cross_entropy(logits.view(-1, logits.shape[^1]), target.view(-1), reduction: nn.Reduction.Sum);
                lossSum += loss.ToDouble();
                tokens += target.numel();
                progress?.Report((double)tokens * replicas.Size / budget);
                input.Dispose();
                target.Dispose();
            }
            if (scored < (batch + replicas.Size - 1) / replicas.Size)
                using (NewDisposeScope()) model.forward(zeros(0, model.Config.ContextLength, dtype: ScalarType.Int64));   // [0, T]: in step with the others
            if (replicas.Size > 1)
            {
                Span<double> sums = [lossSum, tokens];
                replicas.AllReduceSum(sums);
                (lossSum, tokens) = (sums[0], (long)sums[1]);
                foreach (var tracker in trackers) tracker.AddOverRanks(replicas);
            }
            if (tokens == 0) throw new PeerSharpException("the evaluation text is too short to score a single token");
            var layers = retrievals.Select((p, i) => new LayerUsage(p.index, trackers[i].ExpertCount, trackers[i].Usage, trackers[i].Unevenness, trackers[i].Halves, trackers[i].FirstChoices)).ToList();
            return new EvaluationResult(lossSum / tokens, tokens, (double)corpus.ByteCount / corpus.TokenCount, layers);
        }
        finally
        {
            foreach (var scope in observing) scope.Dispose();
            foreach (var tracker in trackers) tracker.Dispose();
            model.train(wasTraining);
        }
    }
}
