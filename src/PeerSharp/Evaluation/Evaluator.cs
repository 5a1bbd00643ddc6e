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
                                            ICommunicator? replicas = null) =>
        Evaluate(model, corpus, batchSize, maxTokens, progress, replicas ?? SingleProcess.Instance, together: null);

    /// <summary>
    /// Scores each of <paramref name="parts"/> of a text (such as a split's books and its speeches) as
    /// <see cref="Evaluate(TransformerLM, TokenCorpus, int, long, IProgress{double}?, ICommunicator?)"/> scores a
    /// text, each from its own start and up to <paramref name="maxTokens"/> tokens, and the parts together: their
    /// token-weighted mean loss, bits per byte over all their bytes (<see cref="EvaluationResult.Combine"/>), and
    /// expert usage over all the tokens of all parts. Scoring the parts one after another in one file would differ
    /// only at the joins: each part here starts a fresh window and drops its own last partial window (under one
    /// window of tokens per part), where the joined file would have one window across each join.
    /// </summary>
    public static PartsEvaluation EvaluateParts(TransformerLM model, IReadOnlyList<(string Name, TokenCorpus Corpus)> parts, int batchSize, long maxTokens)
    {
        if (parts.Count == 0) throw new PeerSharpException("there are no parts to score; expected at least one text");
        var retrievals = Retrievals(model);
        var together = retrievals.Select(p => new ExpertUsage(p.layer.ExpertCount)).ToList();
        try
        {
            var scored = parts.Select(part => (part.Name, Evaluate(model, part.Corpus, batchSize, maxTokens, null, SingleProcess.Instance, together))).ToList();
            return new PartsEvaluation(EvaluationResult.Combine(scored.Select(p => p.Item2).ToList(), Usage(retrievals, together)), scored);
        }
        finally
        {
            foreach (var tracker in together) tracker.Dispose();
        }
    }

    /// <summary>
    /// Sets how every expert-choice MoE layer of <paramref name="model"/> routes in evaluation (<see cref="ExpertChoiceEvaluation"/>);
    /// with <see cref="ExpertChoiceEvaluation.TrainingGroup"/>, evaluate with the training batch size so that the groups are the training's size.
    /// </summary>
    public static void RouteExpertChoice(TransformerLM model, ExpertChoiceEvaluation routing)
    {
        foreach (var block in model.Blocks)
            if (block.FeedForward is ExpertChoiceMoe moe) moe.Evaluation = routing;
    }

    static List<(int index, IExpertRetrieval layer)> Retrievals(TransformerLM model) =>
        [.. model.Blocks.Select((block, index) => (index, layer: block.FeedForward as IExpertRetrieval)).Where(p => p.layer is not null).Select(p => (p.index, p.layer!))];

    static List<LayerUsage> Usage(List<(int index, IExpertRetrieval layer)> retrievals, List<ExpertUsage> trackers) =>
        [.. retrievals.Select((p, i) => new LayerUsage(p.index, trackers[i].ExpertCount, trackers[i].Usage, trackers[i].Unevenness, trackers[i].Halves, trackers[i].FirstChoices))];

    /// <summary>The evaluation; <paramref name="together"/>, when given, also receives every layer's selections (one tracker per layer).</summary>
    static EvaluationResult Evaluate(TransformerLM model, TokenCorpus corpus, int batchSize, long maxTokens, IProgress<double>? progress,
                                     ICommunicator replicas, List<ExpertUsage>? together)
    {
        var wasTraining = model.training;
        model.eval();
        var retrievals = Retrievals(model);
        var trackers = retrievals.Select(p => new ExpertUsage(p.layer.ExpertCount)).ToList();
        var observing = retrievals.Select((p, i) => p.layer.Retrieval.Attach(c => c with
        {
            Observer = together is null ? trackers[i] : new BothObservers(trackers[i], together[i]),
        })).ToList();
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
            return new EvaluationResult(lossSum / tokens, tokens, (double)corpus.ByteCount / corpus.TokenCount, Usage(retrievals, trackers));
        }
        finally
        {
            foreach (var scope in observing) scope.Dispose();
            foreach (var tracker in trackers) tracker.Dispose();
            model.train(wasTraining);
        }
    }

    /// <summary>Hands each batch of selections to a part's tracker and to the tracker of all parts together.</summary>
    sealed class BothObservers(ISelectionObserver part, ISelectionObserver together) : ISelectionObserver
    {
        public void Observe(Tensor ids, Tensor gates)
        {
            part.Observe(ids, gates);
            together.Observe(ids, gates);
        }
    }
}
