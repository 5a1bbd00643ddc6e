using PeerSharp.Distributed;
using PeerSharp.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.ExpertParallel;

/// <summary>
/// PEER step 5 with the expert tables sharded over the ranks (<see cref="ExpertOwners"/>: id mod P = r on rank r),
/// DESIGN.md "Distributed training". Same contract as <see cref="FusedExperts.Forward(TorchSharp.torch.Tensor, TorchSharp.torch.Tensor, TorchSharp.torch.Tensor, TorchSharp.torch.Tensor, TorchSharp.torch.Tensor, ExpertActivation, int?)"/> on the whole table, but
/// every rank passes only its own rows [N_r, d_model], and every rank must call it at the same point with its own
/// tokens (possibly none):
/// <list type="number">
/// <item>forward: each rank groups its selections by owner; per (token, owner) it sends x once with the
/// selections' local rows and gates (all-to-all); each owner runs <see cref="FusedExpertsKernel"/> on the requests
/// it received, as one local batch, and sends the partial outputs Σ g·σ(u·x)·v back (all-to-all); each token's
/// output is the sum of its partials in owner order, so the result does not depend on timing;</item>
/// <item>backward: ∂y of each (token, owner) goes to the owner, which computes the ∂gates, the ∂x partials and the
/// row gradients of its own rows; ∂x (summed in owner order) and ∂gates return. The row gradients are then
/// complete, every rank's tokens included, so sharded tables need no gradient exchange.</item>
/// </list>
/// A token has a varying number of selections per owner; the owner's batch is padded to the largest with the
/// pair's first row at gate 0, which adds exact zeros to a row the pair touches anyway (so no extra row is
/// touched and the sparse update is that of the whole table). The backward exchanges as the forward did: every rank
/// runs the same collectives in the same order, as autograd walks the same graph on every rank.
/// </summary>
public static class ExpertExchange
{
    /// <param name="x">[M, d_model] this rank's tokens.</param>
    /// <param name="ids">[M, h, k] selected expert ids, global, in [0, N).</param>
    /// <param name="gates">[M, h, k] softmax gates.</param>
    /// <param name="down">[N_r, d_model] this rank's rows of u (expert id r + P·i at row i).</param>
    /// <param name="up">[N_r, d_model] this rank's rows of v.</param>
    /// <param name="activation">σ.</param>
    /// <param name="shards">Who holds which rows, over which ranks.</param>
    /// <param name="threads">Threads of the kernels; null: <see cref="KernelThreads.Default"/>.</param>
    /// <returns>[M, d_model].</returns>
    public static Tensor Forward(Tensor x, Tensor ids, Tensor gates, Tensor down, Tensor up, ExpertActivation activation, ExpertOwners shards, int? threads = null)
    {
        using var scope = NewDisposeScope();
        long d = down.shape[1];
        if (x.dim() != 2 || x.shape[1] != d || !up.shape.SequenceEqual(down.shape) || !gates.shape.SequenceEqual(ids.shape) || ids.shape[0] != x.shape[0] || down.shape[0] != shards.LocalRowCount)
            throw new ArgumentException($"sharded experts: shapes x [{string.Join(", ", x.shape)}], ids [{string.Join(", ", ids.shape)}], gates [{string.Join(", ", gates.shape)}], tables [{string.Join(", ", down.shape)}] / [{string.Join(", ", up.shape)}] do not fit {shards.LocalRowCount} local rows");
        if (x.dtype != ScalarType.Float32 || gates.dtype != ScalarType.Float32 || down.dtype != ScalarType.Float32 || up.dtype != ScalarType.Float32 || ids.dtype != ScalarType.Int64)
            throw new ArgumentException("sharded experts take float32 tensors and int64 ids");
        if (ids.numel() > 0 && (ids.min().item<long>() < 0 || ids.max().item<long>() >= shards.ExpertCount))
            throw new ArgumentException($"sharded experts: an expert id is outside [0, {shards.ExpertCount})");
        var y = ShardFunction.apply(x.contiguous(), ids.contiguous(), gates.contiguous(), down.contiguous(), up.contiguous(),
                                    activation, shards, threads ?? KernelThreads.Default);
        return scope.MoveToOuter(y);
    }

    /// <summary>
    /// This rank's selections grouped into (token, owner) pairs: owners ascending, tokens ascending within an owner,
    /// and per pair its selections p = m·S + s ascending.
    /// </summary>
    sealed class Requests
    {
        public required int[] OwnerStart;   // [P + 1]: the pairs of owner o are [OwnerStart[o], OwnerStart[o + 1])
        public required int[] PairToken;    // [pairs]: the token m of each pair
        public required int[] SlotStart;    // [pairs + 1]: the selections of pair i are Slots[SlotStart[i] .. SlotStart[i + 1])
        public required int[] Slots;        // [M·S]

        public int Pairs(int owner) => OwnerStart[owner + 1] - OwnerStart[owner];

        public int Selections(int owner) => SlotStart[OwnerStart[owner + 1]] - SlotStart[OwnerStart[owner]];

        public static unsafe Requests Build(long* ids, int tokens, int slots, int ranks)
        {
            var counts = new int[tokens * ranks];                                    // [M, P]: selections per (token, owner)
            for (int p = 0; p < tokens * slots; p++) counts[p / slots * ranks + (int)(ids[p] % ranks)]++;
            var ownerStart = new int[ranks + 1];
            for (int o = 0; o < ranks; o++)
            {
                ownerStart[o + 1] = ownerStart[o];
                for (int m = 0; m < tokens; m++) if (counts[m * ranks + o] > 0) ownerStart[o + 1]++;
            }
            int pairs = ownerStart[ranks];
            var (pairToken, slotStart, pairOf) = (new int[pairs], new int[pairs + 1], new int[tokens * ranks]);
            for (int o = 0, i = 0; o < ranks; o++)
                for (int m = 0; m < tokens; m++)
                {
                    if (counts[m * ranks + o] == 0) continue;
                    (pairToken[i], pairOf[m * ranks + o], slotStart[i + 1]) = (m, i, slotStart[i] + counts[m * ranks + o]);
                    i++;
                }
            var filled = slotStart[..pairs];                                          // the next free place of each pair
            var slotList = new int[tokens * slots];
            for (int p = 0; p < tokens * slots; p++) slotList[filled[pairOf[p / slots * ranks + (int)(ids[p] % ranks)]]++] = p;
            return new Requests { OwnerStart = ownerStart, PairToken = pairToken, SlotStart = slotStart, Slots = slotList };
        }
    }

    /// <summary>What this rank computes for the others: per source rank its pairs and selections, and each pair's selection count.</summary>
    sealed record Work(int[] SourcePairs, int[] SourceSelections, int[] PairSelections);

    /// <summary>The autograd node; a singleton, so everything its backward needs travels in the context.</summary>
    sealed unsafe class ShardFunction : autograd.SingleTensorFunction<ShardFunction>
    {
        public override string Name => "ShardedPeerExperts";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var (x, ids, gates, down, up) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (Tensor)vars[3], (Tensor)vars[4]);
            var (activation, shards, threads) = ((ExpertActivation)vars[5], (ExpertOwners)vars[6], (int)vars[7]);
            var communicator = shards.Communicator;
            int P = communicator.Size, M = (int)x.shape[0], S = M == 0 ? 0 : (int)(ids.numel() / M), d = (int)x.shape[1];
            var requests = Requests.Build(TensorMemory.Pointer<long>(ids), M, S, P);

            // 1. Sizes: per owner, the pairs and selections this rank sends it.
            var sizes = new long[2 * P];
            for (int o = 0; o < P; o++) (sizes[2 * o], sizes[2 * o + 1]) = (requests.Pairs(o), requests.Selections(o));
            var twos = Enumerable.Repeat(2, P).ToArray();
            var received = new long[2 * P];
            communicator.AllToAll<long>(sizes, twos, received, twos);
            shards.CountSent(twos, sizeof(long));
            var work = new Work([.. Enumerable.Range(0, P).Select(r => checked((int)received[2 * r]))],
                                [.. Enumerable.Range(0, P).Select(r => checked((int)received[2 * r + 1]))], []);

            // 2. Requests: per pair x_m and the gates of its selections (floats), its selection count and their local rows (ids).
            var (floatCounts, longCounts) = (new int[P], new int[P]);
            for (int o = 0; o < P; o++)
            {
                floatCounts[o] = checked(requests.Pairs(o) * d + requests.Selections(o));
                longCounts[o] = requests.Pairs(o) + requests.Selections(o);
            }
            var sendFloats = shards.SendFloats(floatCounts.Sum(c => (long)c));
            var sendLongs = shards.SendLongs(longCounts.Sum(c => (long)c));
            float* xs = TensorMemory.Pointer<float>(x), gs = TensorMemory.Pointer<float>(gates);
            long* idp = TensorMemory.Pointer<long>(ids);
            for (int i = 0, f = 0, l = 0; i < requests.PairToken.Length; i++)
            {
                new ReadOnlySpan<float>(xs + (long)requests.PairToken[i] * d, d).CopyTo(sendFloats.AsSpan(f));
                f += d;
                sendLongs[l++] = requests.SlotStart[i + 1] - requests.SlotStart[i];
                for (int j = requests.SlotStart[i]; j < requests.SlotStart[i + 1]; j++)
                    (sendFloats[f++], sendLongs[l++]) = (gs[requests.Slots[j]], idp[requests.Slots[j]] / P);
            }
            var (workFloatCounts, workLongCounts) = (new int[P], new int[P]);
            for (int r = 0; r < P; r++)
                (workFloatCounts[r], workLongCounts[r]) = (checked(work.SourcePairs[r] * d + work.SourceSelections[r]), work.SourcePairs[r] + work.SourceSelections[r]);
            var receiveFloats = shards.ReceiveFloats(workFloatCounts.Sum(c => (long)c));
            var receiveLongs = shards.ReceiveLongs(workLongCounts.Sum(c => (long)c));
            communicator.AllToAll<float>(sendFloats.AsSpan(0, floatCounts.Sum()), floatCounts, receiveFloats.AsSpan(0, workFloatCounts.Sum()), workFloatCounts);
            communicator.AllToAll<long>(sendLongs.AsSpan(0, longCounts.Sum()), longCounts, receiveLongs.AsSpan(0, workLongCounts.Sum()), workLongCounts);
            shards.CountSent(floatCounts, sizeof(float));
            shards.CountSent(longCounts, sizeof(long));

            // 3. The owner's local batch: the received pairs in source order, padded to the widest pair.
            int T = work.SourcePairs.Sum(), width = 1;
            var pairSelections = new int[T];
            for (int i = 0, l = 0; i < T; l += 1 + pairSelections[i], i++)
                width = Math.Max(width, pairSelections[i] = (int)receiveLongs[l]);
            work = work with { PairSelections = pairSelections };
            var (localX, localIds, localGates) = (empty(T, d), empty(T, width, dtype: ScalarType.Int64), zeros(T, width));   // [T, d], [T, S'], [T, S']
            float* lx = TensorMemory.Pointer<float>(localX), lg = TensorMemory.Pointer<float>(localGates);
            long* li = TensorMemory.Pointer<long>(localIds);
            for (int i = 0, f = 0, l = 0; i < T; i++)
            {
                int c = pairSelections[i];
                receiveFloats.AsSpan(f, d).CopyTo(new Span<float>(lx + (long)i * d, d));
                receiveFloats.AsSpan(f + d, c).CopyTo(new Span<float>(lg + (long)i * width, c));
                receiveLongs.AsSpan(l + 1, c).CopyTo(new Span<long>(li + (long)i * width, c));
                new Span<long>(li + (long)i * width + c, width - c).Fill(li[(long)i * width]);   // padding: the pair's first row, gate 0
                (f, l) = (f + d + c, l + 1 + c);
            }
            var localY = empty(T, d);                                                           // [T, d]: partial outputs
            var preActivations = empty(T, width);                                               // [T, S']
            if (T > 0)
                FusedExpertsKernel.Forward(FusedExperts.BatchOf(localX, localIds, localGates, down, up), TensorMemory.Pointer<float>(preActivations),
                                           TensorMemory.Pointer<float>(localY), activation, threads);

            // 4. Partial outputs back to their tokens' ranks, summed per token in owner order.
            var y = zeros(M, d);                                                                // [M, d]
            Exchange(shards, localY, work.SourcePairs, requests, d, y, null);

            ctx.save_for_backward([localX, localIds, localGates, preActivations, down, up]);
            ctx.save_data("requests", requests);
            ctx.save_data("work", work);
            ctx.save_data("shards", shards);
            ctx.save_data("activation", activation);
            ctx.save_data("threads", threads);
            ctx.save_data("shape", new[] { M, S, d });
            ctx.save_data("gatesShape", gates.shape);
            ctx.save_data("needs", new[] { x.requires_grad, gates.requires_grad });
            ctx.save_data("leaves", new[] { down.is_leaf && down.requires_grad, up.is_leaf && up.requires_grad });
            return y;
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput) =>
            BackwardGuard.Run("expert-parallel PEER", () => Backward(ctx, gradOutput));

        static List<Tensor> Backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            using var scope = NewDisposeScope();
            var saved = ctx.get_saved_variables();
            var (localX, localIds, localGates, preActivations, down, up) = (saved[0], saved[1], saved[2], saved[3], saved[4], saved[5]);
            var requests = (Requests)ctx.get_data("requests");
            var work = (Work)ctx.get_data("work");
            var shards = (ExpertOwners)ctx.get_data("shards");
            var activation = (ExpertActivation)ctx.get_data("activation");
            var threads = (int)ctx.get_data("threads");
            var shape = (int[])ctx.get_data("shape");
            var gatesShape = (long[])ctx.get_data("gatesShape");
            var needs = (bool[])ctx.get_data("needs");
            var leaves = (bool[])ctx.get_data("leaves");
            var communicator = shards.Communicator;
            int P = communicator.Size, M = shape[0], S = shape[1], d = shape[2];
            int T = (int)localX.shape[0], width = (int)localIds.shape[1];
            var dy = gradOutput.contiguous();                                                   // [M, d]

            // 1. ∂y of each (token, owner) pair to the owner.
            var sendCounts = new int[P];
            for (int o = 0; o < P; o++) sendCounts[o] = requests.Pairs(o) * d;
            var sendFloats = shards.SendFloats(sendCounts.Sum(c => (long)c));
            float* dys = TensorMemory.Pointer<float>(dy);
            for (int i = 0; i < requests.PairToken.Length; i++)
                new ReadOnlySpan<float>(dys + (long)requests.PairToken[i] * d, d).CopyTo(sendFloats.AsSpan(i * d));
            var localDy = empty(T, d);                                                          // [T, d]
            var receiveCounts = work.SourcePairs.Select(p => p * d).ToArray();
            communicator.AllToAll<float>(sendFloats.AsSpan(0, sendCounts.Sum()), sendCounts, new Span<float>(TensorMemory.Pointer<float>(localDy), T * d), receiveCounts);
            shards.CountSent(sendCounts, sizeof(float));

            // 2. The owner's backward over its local batch: ∂gates, ∂x partials, and the gradients of its rows.
            var localDx = empty(T, d);                                                          // [T, d]
            var localDGates = empty(T, width);                                                  // [T, S']
            var coefficientU = empty(T, width);                                                 // [T, S']
            Tensor? dDown = null, dUp = null;
            if (T > 0)
            {
                var batch = FusedExperts.BatchOf(localX, localIds, localGates, down, up);
                using var groups = RowGroups.Build(TensorMemory.Pointer<long>(localIds), T * width, down.shape[0]);
                var dDownRows = empty(groups.RowCount, d);                                      // [U, d]
                var dUpRows = empty(groups.RowCount, d);                                        // [U, d]
                FusedExpertsKernel.BackwardRows(batch, groups, TensorMemory.Pointer<float>(preActivations), TensorMemory.Pointer<float>(localDy),
                                                TensorMemory.Pointer<float>(localDGates), TensorMemory.Pointer<float>(coefficientU),
                                                TensorMemory.Pointer<float>(dDownRows), TensorMemory.Pointer<float>(dUpRows), null, activation, threads);
                FusedExpertsKernel.BackwardInputs(batch, TensorMemory.Pointer<float>(coefficientU), TensorMemory.Pointer<float>(localDx), threads);
                var rows = empty(1, groups.RowCount, dtype: ScalarType.Int64);                 // [1, U]: touched local rows, ascending
                groups.Rows.CopyTo(new Span<long>(TensorMemory.Pointer<long>(rows), groups.RowCount));
                (dDown, dUp) = (sparse_coo_tensor(rows, dDownRows, down.shape), sparse_coo_tensor(rows, dUpRows, up.shape));
            }

            // 3. ∂x partials and the ∂gates of the real selections back to the tokens' ranks.
            var dx = zeros(M, d);                                                               // [M, d]
            var dGates = zeros(M, S);                                                           // [M, h·k]
            Exchange(shards, localDx, work.SourcePairs, requests, d, dx, (localDGates, work, dGates));

            if (leaves[0] && dDown is not null) FusedExperts.AccumulateGradient(down, dDown);
            if (leaves[1] && dUp is not null) FusedExperts.AccumulateGradient(up, dUp);
            var grads = new List<Tensor> { needs[0] ? dx : null!, null!, needs[1] ? dGates.view(gatesShape) : null!, null!, null!, null!, null!, null! };
            scope.MoveToOuter(grads.Where(g => g is not null));
            return grads;
        }

        /// <summary>
        /// Owners send each pair's row of <paramref name="local"/> (and, for the backward, the ∂gates of its real
        /// selections) back to the pair's rank, which adds the rows into <paramref name="sum"/> in owner order (and
        /// puts the ∂gates at their selections).
        /// </summary>
        static void Exchange(ExpertOwners shards, Tensor local, int[] sourcePairs, Requests requests, int d, Tensor sum,
                             (Tensor LocalDGates, Work Work, Tensor DGates)? gates)
        {
            var communicator = shards.Communicator;
            int P = communicator.Size, width = gates is { } g0 ? (int)g0.LocalDGates.shape[1] : 0;
            var sendCounts = new int[P];
            var receiveCounts = new int[P];
            for (int r = 0; r < P; r++)
            {
                sendCounts[r] = checked(sourcePairs[r] * d + (gates is { } g ? g.Work.SourceSelections[r] : 0));
                receiveCounts[r] = checked(requests.Pairs(r) * d + (gates is null ? 0 : requests.Selections(r)));
            }
            var send = shards.SendFloats(sendCounts.Sum(c => (long)c));
            float* rows = TensorMemory.Pointer<float>(local);
            if (gates is { } withGates)
            {
                float* dg = TensorMemory.Pointer<float>(withGates.LocalDGates);
                var counts = withGates.Work.PairSelections;
                for (int i = 0, f = 0; i < counts.Length; i++)
                {
                    new ReadOnlySpan<float>(rows + (long)i * d, d).CopyTo(send.AsSpan(f));
                    new ReadOnlySpan<float>(dg + (long)i * width, counts[i]).CopyTo(send.AsSpan(f + d));
                    f += d + counts[i];
                }
            }
            else
                new ReadOnlySpan<float>(rows, sendCounts.Sum()).CopyTo(send);
            var receive = shards.ReceiveFloats(receiveCounts.Sum(c => (long)c));
            communicator.AllToAll<float>(send.AsSpan(0, sendCounts.Sum()), sendCounts, receive.AsSpan(0, receiveCounts.Sum()), receiveCounts);
            shards.CountSent(sendCounts, sizeof(float));

            float* total = TensorMemory.Pointer<float>(sum);
            float* dGates = gates is { } withDGates ? TensorMemory.Pointer<float>(withDGates.DGates) : null;
            fixed (float* parts = receive)
                for (int i = 0, f = 0; i < requests.PairToken.Length; i++)
                {
                    VectorMath.Axpy(total + (long)requests.PairToken[i] * d, 1f, parts + f, d);   // owners ascending: a fixed order
                    f += d;
                    if (dGates is null) continue;
                    for (int j = requests.SlotStart[i]; j < requests.SlotStart[i + 1]; j++) dGates[requests.Slots[j]] = parts[f++];
                }
        }
    }
}
