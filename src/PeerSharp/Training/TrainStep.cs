using PeerSharp.Config;
using PeerSharp.Distributed;
using PeerSharp.ExpertParallel;
using PeerSharp.Layers;
using PeerSharp.Optimizers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Training;

/// <summary>What one <see cref="TrainStep.Run"/> measured.</summary>
/// <param name="Loss">The step's training loss (the mean over the ranks), before the update.</param>
/// <param name="GradientNorm">The global gradient norm before clipping.</param>
public sealed record StepOutcome(double Loss, double GradientNorm);

/// <summary>The stages of a <see cref="TrainStep"/> a caller can time (<see cref="TrainStep.StageCompleted"/>).</summary>
public enum TrainStage
{
    /// <summary>The loss was computed.</summary>
    Forward,
    /// <summary>The backward ended (with updates in the backward, the expert tables were updated).</summary>
    Backward,
    /// <summary>Exchange, freeze, clipping, optimizer step and cleared gradients are done.</summary>
    Update,
}

/// <summary>
/// One optimizer step, the only place its stages are written (DESIGN.md "One training step"): the forward (the
/// caller's loss), the backward (with <see cref="TrainConfig.UpdateInBackward"/>, the expert tables' update runs in
/// it), the gradient exchange over the ranks (data parallelism; expert parallelism's tables are averaged on their
/// owners), frozen rows out of the gradients, clipping to the global norm, the divergence check, the optimizer's
/// step, the pull toward anchor weights (<see cref="TrainConfig.AnchorPull"/>), frozen rows put back, gradients cleared. The trainer, the benchmarks, the sample and the tests all train
/// through it.
/// <para>
/// For its lifetime it attaches what the stages need to the model's product-key layers (the ranks to the query
/// BatchNorm, the frozen query statistics, the updating step 5), and takes them off when disposed.
/// </para>
/// </summary>
public sealed class TrainStep : IDisposable
{
    readonly IOptimizer _optimizer;
    readonly TrainConfig _train;
    readonly ICommunicator _replicas;
    readonly ExpertParallelism? _sharding;
    readonly List<Parameter> _parameters, _replicated;
    readonly IReadOnlyList<Parameter> _sharded;
    readonly GradientExchange _exchange;
    readonly ParameterFreeze? _freeze;
    readonly TableUpdatesInBackward? _tablesInBackward;
    readonly AnchorPull? _anchorPull;
    readonly List<IDisposable> _replicaScopes;

    /// <summary>
    /// Steps of <paramref name="model"/> by <paramref name="optimizer"/> (built by <see cref="OptimizerFactory.Create"/>
    /// with the same <paramref name="train"/>), on the ranks of <paramref name="replicas"/> (one process by default),
    /// with <paramref name="sharding"/>'s tables split over them in expert parallelism; <paramref name="anchor"/> holds
    /// the weights (by parameter name) that <see cref="TrainConfig.AnchorPull"/> pulls toward.
    /// </summary>
    public TrainStep(nn.Module model, IOptimizer optimizer, TrainConfig train, ICommunicator? replicas = null, ExpertParallelism? sharding = null,
                     IReadOnlyDictionary<string, Tensor>? anchor = null)
    {
        (_optimizer, _train, _replicas, _sharding) = (optimizer, train, replicas ?? SingleProcess.Instance, sharding);
        _parameters = model.parameters().ToList();
        _sharded = sharding?.Parameters ?? [];
        _replicated = _parameters.Where(p => sharding?.Holds(p) != true).ToList();   // all, unless expert parallel
        _exchange = new GradientExchange(_replicas, _replicated);
        _freeze = ParameterFreeze.Apply(model, optimizer, train.Freeze);
        try
        {
            _tablesInBackward = train.UpdateInBackward ? TableUpdatesInBackward.Attach(model, optimizer, train.GradientClip, _freeze, _replicas.Size) : null;
            _anchorPull = AnchorPull.Create(model, anchor, train.AnchorPull);   // after the freeze: frozen parameters are not pulled
        }
        catch
        {
            _tablesInBackward?.Dispose();
            _freeze?.Dispose();
            throw;
        }
        var replicasAttached = _replicas;   // the query BatchNorm sees the global batch
        _replicaScopes = [.. RetrievalLayers.Of(model).Select(l => l.Layer).Distinct()
                                             .Select(layer => layer.Retrieval.Attach(c => c with { Replicas = replicasAttached }))];
    }

    /// <summary>Raised after each stage of a step, for callers that time them (the benchmarks).</summary>
    public event Action<TrainStage>? StageCompleted;

    /// <summary>
    /// Runs step <paramref name="step"/> (0-based) at <paramref name="learningRate"/> on the loss <paramref name="loss"/>
    /// computes (the forward, on this rank's share of the batch), inside one dispose scope. Throws a
    /// <see cref="PeerSharpException"/> before the update when the loss or the gradient norm is not finite, so a
    /// diverged step never reaches the weights.
    /// </summary>
    public StepOutcome Run(long step, double learningRate, Func<Tensor> loss)
    {
        using var scope = NewDisposeScope();
        _tablesInBackward?.BeginStep(learningRate);                  // the tables' update in the backward: this step's rate
        var lossTensor = loss();
        StageCompleted?.Invoke(TrainStage.Forward);
        lossTensor.backward();
        StageCompleted?.Invoke(TrainStage.Backward);
        _exchange.Exchange();                                         // gradients: the mean over the ranks
        _sharding?.AverageGradients();                                // sharded tables: complete on their owner, ÷ P
        _freeze?.BeforeStep();                                        // frozen rows leave the gradients before clipping
        var gradientNorm = _tablesInBackward?.ClipGlobalNorm(_parameters)   // one rank only: replicated = parameters
                           ?? GradientClipping.ClipGlobalNorm(_replicated, _train.GradientClip, _sharded, _replicas);
        var lossValue = MeanOverRanks(lossTensor.ToDouble());
        if (!double.IsFinite(lossValue) || !double.IsFinite(gradientNorm))
            throw new PeerSharpException($"training diverged at step {step + 1} (loss {lossValue}, gradient norm {gradientNorm}); nothing from this step was saved; try a lower learning rate than {_train.LearningRate}");
        _optimizer.Step(learningRate);
        _anchorPull?.Step(learningRate);                              // θ toward θ₀, decoupled like weight decay
        _freeze?.AfterStep();
        _optimizer.ZeroGrad();
        StageCompleted?.Invoke(TrainStage.Update);
        return new StepOutcome(lossValue, gradientNorm);
    }

    /// <summary>The mean of the ranks' values: the loss of the global batch, as every rank's shard has the same size.</summary>
    double MeanOverRanks(double value)
    {
        Span<double> sum = [value];
        _replicas.AllReduceSum(sum);
        return sum[0] / _replicas.Size;
    }

    /// <summary>Takes off what the steps attached to the layers.</summary>
    public void Dispose()
    {
        foreach (var scope in _replicaScopes) scope.Dispose();
        _tablesInBackward?.Dispose();
        _freeze?.Dispose();
    }
}
