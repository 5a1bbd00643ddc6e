using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using PeerSharp.Data;
using PeerSharp.Evaluation;
using PeerSharp.Layers;
using PeerSharp.Model;
using static TorchSharp.torch;

namespace PeerSharp.Generation;

/// <summary>Limits of a <see cref="BatchGenerator"/>.</summary>
public sealed record BatchGeneratorOptions
{
    /// <summary>Sequences decoded together, at most; more requests wait in the queue.</summary>
    public int MaxBatch { get; init; } = 16;

    /// <summary>Requests waiting for a place in the batch, at most; more are refused.</summary>
    public int MaxQueue { get; init; } = 64;

    /// <summary>Throws a <see cref="PeerSharpException"/> naming the first impossible limit.</summary>
    public void Validate()
    {
        if (MaxBatch < 1) throw new PeerSharpException($"batch size {MaxBatch} must be at least 1");
        if (MaxQueue < 0) throw new PeerSharpException($"queue length {MaxQueue} must not be negative");
    }
}

/// <summary>
/// Continuous batching (docs/SERVING.md, "Batching"): one thread decodes every active request together, one
/// <see cref="TransformerLM.Decode"/> per step, each request with its own KV cache, sampler and stop sequences. A
/// request joins between two steps, after its prompt has run alone (the prefill), and leaves as soon as it ends or
/// its client cancels. Since the batched step is batch-invariant and each request samples with its own seeded
/// generator, a request's completion is the same alone or beside others. When a sequence fills the context, the
/// last half of its text runs again (as in <see cref="TextGenerator"/>).
/// </summary>
public sealed class BatchGenerator : IDisposable
{
    readonly TransformerLM _model;
    readonly ITokenizer _tokenizer;
    readonly BatchGeneratorOptions _options;
    readonly Lock _lock = new();
    readonly Queue<Sequence> _waiting = new();
    readonly SemaphoreSlim _signal = new(0);
    readonly CancellationTokenSource _stop = new();
    readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly List<IDisposable> _observed = [];   // the layers' observer scopes
    readonly Thread _thread;
    readonly int? _endOfDocument;
    int _running;          // sequences taken from the queue and not yet ended
    bool _accepting = true;

    /// <summary>Starts the decoding thread for a model in evaluation mode.</summary>
    public BatchGenerator(TransformerLM model, ITokenizer tokenizer, BatchGeneratorOptions? options = null)
    {
        _options = options ?? new BatchGeneratorOptions();
        _options.Validate();
        (_model, _tokenizer) = (model, tokenizer);
        model.eval();
        // A one-token document separator (GPT-2's <|endoftext|>) ends a completion; the byte tokenizer's blank line does not.
        _endOfDocument = tokenizer.DocumentSeparator is [var separator] ? separator : null;
        var experts = new List<ExpertSelections>();
        foreach (var (name, module) in model.named_modules())
            if (module is IExpertRetrieval layer)
            {
                var selections = new ExpertSelections(name, layer.ExpertCount);
                _observed.Add(layer.Retrieval.Attach(c => c with { Observer = selections }));
                experts.Add(selections);
            }
        Experts = experts;
        _thread = new Thread(Run) { IsBackground = true, Name = "peer batch generator" };
        _thread.Start();
    }

    /// <summary>Counters and histograms since the start.</summary>
    public GenerationStatistics Statistics { get; } = new();

    /// <summary>Expert usage of each PEER and PKM layer over the traffic served.</summary>
    public IReadOnlyList<ExpertSelections> Experts { get; }

    /// <summary>Requests waiting for a place in the batch.</summary>
    public int QueueLength
    {
        get { lock (_lock) return _waiting.Count; }
    }

    /// <summary>Requests in the batch (prefilled or decoding).</summary>
    public int Running => Volatile.Read(ref _running);

    /// <summary>The model's context length: a prompt's most tokens.</summary>
    public int ContextLength => _model.Config.ContextLength;

    /// <summary>
    /// Queues a request; false when the batch and the queue are full or the generator is draining (the caller
    /// answers "try later"). Cancelling <paramref name="cancellation"/> ends it (<see cref="FinishReason.Cancelled"/>)
    /// and takes it out of the batch before the next step. Throws a <see cref="PeerSharpException"/> for an impossible request.
    /// </summary>
    public bool TrySubmit(CompletionRequest request, CancellationToken cancellation, [NotNullWhen(true)] out Completion? completion)
    {
        request.Sampling.Validate();
        if (request.Prompt.Count == 0 || request.Prompt.Count > ContextLength)
            throw new PeerSharpException($"a prompt of {request.Prompt.Count} tokens must hold between 1 and the model's context length {ContextLength}");
        if (request.Prompt.FirstOrDefault(t => t < 0 || t >= _model.Config.VocabSize, -1) is var bad and >= 0)
            throw new PeerSharpException($"token {bad} is outside the vocabulary [0, {_model.Config.VocabSize})");
        lock (_lock)
        {
            if (!_accepting || _waiting.Count + _running >= _options.MaxBatch + _options.MaxQueue)
            {
                Statistics.Refused();
                completion = null;
                return false;
            }
            completion = new Completion(request, cancellation);
            _waiting.Enqueue(new Sequence(completion, _tokenizer));
        }
        Statistics.Accepted(request.Prompt.Count);
        _signal.Release();
        return true;
    }

    /// <summary>
    /// Stops accepting requests and waits for the queued and running ones to finish, at most <paramref name="timeout"/>;
    /// true when they all did. Whatever is left is cancelled by <see cref="Dispose"/>.
    /// </summary>
    public async Task<bool> DrainAsync(TimeSpan timeout)
    {
        lock (_lock) _accepting = false;
        var deadline = Stopwatch.StartNew();
        while (QueueLength + Running > 0)
        {
            if (deadline.Elapsed >= timeout || _stopped.Task.IsCompleted) return false;
            await Task.Delay(20).ConfigureAwait(false);
        }
        return true;
    }

    /// <summary>Stops the decoding thread; requests still queued or running end as cancelled.</summary>
    public void Dispose()
    {
        lock (_lock) _accepting = false;
        _stop.Cancel();
        _thread.Join();
        foreach (var scope in _observed) scope.Dispose();
        _signal.Dispose();
        _stop.Dispose();
    }

    void Run()
    {
        var active = new List<Sequence>();
        try
        {
            using var noGrad = no_grad();
            while (!_stop.IsCancellationRequested)
            {
                Admit(active);
                if (active.Count == 0)
                {
                    try { _signal.Wait(_stop.Token); }
                    catch (OperationCanceledException) { break; }
                    continue;
                }
                try
                {
                    Step(active);
                }
                catch (Exception error)
                {
                    // A bug, not the request's fault: those in the step fail, the generator goes on serving.
                    foreach (var sequence in active) End(sequence, error);
                }
                active.RemoveAll(s => s.Ended);
            }
        }
        finally
        {
            lock (_lock)
            {
                active.AddRange(_waiting);
                _running += _waiting.Count;
                _waiting.Clear();
            }
            foreach (var sequence in active.Where(s => !s.Ended)) End(sequence, FinishReason.Cancelled);
            _stopped.TrySetResult();
        }
    }

    /// <summary>Takes waiting requests into the batch while it has room, each after its prompt has run.</summary>
    void Admit(List<Sequence> active)
    {
        while (active.Count < _options.MaxBatch)
        {
            Sequence? next;
            lock (_lock)
            {
                if (!_waiting.TryDequeue(out next)) return;
                _running++;
            }
            if (next.Completion.Cancellation.IsCancellationRequested) End(next, FinishReason.Cancelled);
            else if (next.Completion.Request.Sampling.MaxNewTokens == 0) End(next, FinishReason.Length);
            else
            {
                try
                {
                    Prefill(next, next.Context);
                }
                catch (Exception error)
                {
                    End(next, error);
                }
                if (!next.Ended) active.Add(next);
            }
        }
    }

    /// <summary>One step: cancelled requests leave, full ones refill alone, every other one advances by one token, together.</summary>
    void Step(List<Sequence> active)
    {
        foreach (var sequence in active.Where(s => s.Completion.Cancellation.IsCancellationRequested)) End(sequence, FinishReason.Cancelled);
        var decoding = new List<Sequence>();
        foreach (var sequence in active.Where(s => !s.Ended))
        {
            if (sequence.Cache!.Length < ContextLength) decoding.Add(sequence);
            else Prefill(sequence, sequence.Context.TakeLast(ContextLength / 2).ToList());   // full: keep the last half and run it again
        }
        if (decoding.Count == 0) return;
        using var scope = NewDisposeScope();
        var tokens = tensor(decoding.Select(s => (long)s.Context[^1]).ToArray());       // (B): each sequence's newest token
        var logits = _model.Decode(tokens, [.. decoding.Select(s => s.Cache!)]);         // (B, V)
        Statistics.Step(decoding.Count);
        for (int b = 0; b < decoding.Count; b++) Accept(decoding[b], logits[b]);
    }

    /// <summary>Runs tokens through a sequence's emptied cache and samples from the last position.</summary>
    void Prefill(Sequence sequence, IReadOnlyList<int> tokens)
    {
        sequence.Cache ??= new KvCache(_model.Config, 1);   // outside the step's dispose scope: it lives as long as the sequence
        using var scope = NewDisposeScope();
        sequence.Cache.Clear();
        var input = tensor(tokens.Select(t => (long)t).ToArray()).unsqueeze(0);          // (1, T)
        var logits = _model.forward(input, sequence.Cache).select(1, -1).squeeze(0);      // (V)
        Accept(sequence, logits);
    }

    /// <summary>Samples the sequence's next token, hands out its text and ends the sequence when it is done.</summary>
    void Accept(Sequence sequence, Tensor logits)
    {
        var sampling = sequence.Completion.Request.Sampling;
        var token = TokenSampler.Sample(logits, sampling, sequence.Random);
        sequence.Context.Add(token);
        sequence.Generated++;
        Statistics.Generated();
        var now = Stopwatch.GetTimestamp();
        (sequence.Generated == 1 ? Statistics.TimeToFirstToken : Statistics.TokenLatency).Observe(Stopwatch.GetElapsedTime(sequence.LastToken, now).TotalSeconds);
        sequence.LastToken = now;
        if (token == _endOfDocument)
        {
            End(sequence, FinishReason.Stop);
            return;
        }
        sequence.Completion.Write(sequence.Text.Add(token));
        if (sequence.Text.Stopped) End(sequence, FinishReason.Stop);
        else if (sequence.Generated >= sampling.MaxNewTokens) End(sequence, FinishReason.Length);
    }

    void End(Sequence sequence, FinishReason reason)
    {
        if (sequence.Ended) return;
        if (reason != FinishReason.Cancelled) sequence.Completion.Write(sequence.Text.Finish());
        Release(sequence);
        Statistics.Ended(reason);
        sequence.Completion.End(new CompletionResult(sequence.Text.Text, reason, sequence.Completion.Request.Prompt.Count, sequence.Generated));
    }

    void End(Sequence sequence, Exception error)
    {
        if (sequence.Ended) return;
        Release(sequence);
        sequence.Completion.Fail(error);
    }

    void Release(Sequence sequence)
    {
        sequence.Ended = true;
        sequence.Cache?.Dispose();
        sequence.Random.Dispose();
        lock (_lock) _running--;
    }

    /// <summary>A request's state in the batch.</summary>
    sealed class Sequence(Completion completion, ITokenizer tokenizer)
    {
        public Completion Completion { get; } = completion;
        public List<int> Context { get; } = [.. completion.Request.Prompt];   // prompt and generated tokens; the last is not in the cache yet
        public ContinuationText Text { get; } = new(tokenizer, completion.Request.Stop);
        public TorchSharp.torch.Generator Random { get; } = new((ulong)completion.Request.Sampling.Seed);
        public KvCache? Cache { get; set; }
        public int Generated { get; set; }
        public long LastToken { get; set; } = Stopwatch.GetTimestamp();      // arrival, then the newest token
        public bool Ended { get; set; }
    }
}
