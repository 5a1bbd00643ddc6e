using PeerSharp.Distributed;

namespace PeerSharp.Tests.Distributed;

/// <summary>
/// P ranks as P threads of the test process, for testing the data-parallel pieces without MPI: every collective
/// meets at a barrier, and each rank combines the posted parts in rank order (as a deterministic MPI would).
/// A rank that waits more than a minute fails instead of hanging the test run.
/// </summary>
sealed class ThreadRanks
{
    readonly Barrier _barrier;
    readonly object?[] _posted;

    ThreadRanks(int size) => (_barrier, _posted) = (new Barrier(size), new object?[size]);

    /// <summary>Runs <paramref name="body"/> on <paramref name="size"/> threads, one per rank, and returns their results in rank order.</summary>
    public static T[] Run<T>(int size, Func<ICommunicator, T> body)
    {
        var ranks = new ThreadRanks(size);
        var results = new T[size];
        var errors = new Exception?[size];
        var threads = Enumerable.Range(0, size).Select(r => new Thread(() =>
        {
            try { results[r] = body(new OneRank(ranks, r)); }
            catch (Exception e) { errors[r] = e; ranks._barrier.RemoveParticipant(); }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        if (errors.FirstOrDefault(e => e is not null) is { } error) throw new AggregateException(errors.Where(e => e is not null)!);
        return results;
    }

    void Meet()
    {
        if (!_barrier.SignalAndWait(TimeSpan.FromMinutes(1))) throw new TimeoutException("a rank waited a minute for the others");
    }

    /// <summary>Posts this rank's part, then hands every rank's parts (in rank order) to <paramref name="combine"/>.</summary>
    void Exchange(int rank, object part, Action<object[]> combine)
    {
        _posted[rank] = part;
        Meet();
        combine(_posted!);
        Meet();
    }

    sealed class OneRank(ThreadRanks all, int rank) : ICommunicator
    {
        public int Rank => rank;
        public int Size => all._posted.Length;

        public void AllReduceSum(Span<float> values) => Sum(values, (a, b) => a + b);
        public void AllReduceSum(Span<double> values) => Sum(values, (a, b) => a + b);
        public void AllReduceSum(Span<long> values) => Sum(values, (a, b) => a + b);

        void Sum<T>(Span<T> values, Func<T, T, T> add)
        {
            var result = new T[values.Length];
            all.Exchange(rank, values.ToArray(), parts =>
            {
                ((T[])parts[0]).CopyTo(result, 0);
                foreach (var part in parts.Skip(1))
                    for (int i = 0; i < result.Length; i++) result[i] = add(result[i], ((T[])part)[i]);
            });
            result.CopyTo(values);
        }

        public void AllGather(ReadOnlySpan<float> local, ReadOnlySpan<long> counts, Span<float> result) => Gather(local, result);
        public void AllGather(ReadOnlySpan<long> local, ReadOnlySpan<long> counts, Span<long> result) => Gather(local, result);

        void Gather<T>(ReadOnlySpan<T> local, Span<T> result)
        {
            var gathered = new List<T>();
            all.Exchange(rank, local.ToArray(), parts => { foreach (var part in parts) gathered.AddRange((T[])part); });
            gathered.ToArray().CopyTo(result);
        }

        public void AllToAll(ReadOnlySpan<byte> send, ReadOnlySpan<int> sendCounts, Span<byte> receive, ReadOnlySpan<int> receiveCounts)
        {
            var parts = new List<byte>();
            all.Exchange(rank, (send.ToArray(), sendCounts.ToArray()), posted =>
            {
                foreach (var (bytes, counts) in posted.Cast<(byte[], int[])>())   // rank r's part for this rank, in rank order
                    parts.AddRange(bytes.Skip(counts.Take(rank).Sum()).Take(counts[rank]));
            });
            if (parts.Count != receive.Length) throw new InvalidOperationException($"rank {rank} receives {parts.Count} bytes, expected {receive.Length}");
            parts.ToArray().CopyTo(receive);
        }

        public void Broadcast(Span<byte> data, int root = 0)
        {
            var copy = new byte[data.Length];
            all.Exchange(rank, data.ToArray(), parts => ((byte[])parts[root]).CopyTo(copy, 0));
            copy.CopyTo(data);
        }

        public void Barrier() => all.Meet();

        public void Abort(int exitCode) => throw new InvalidOperationException($"rank {rank} aborted with {exitCode}");
    }
}
