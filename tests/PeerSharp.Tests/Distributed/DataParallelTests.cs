using PeerSharp.Checkpoints;
using PeerSharp.Tests.Cli;
using PeerSharp.Training;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Distributed;

/// <summary>
/// `mpirun -np 2 peer train`: two ranks, each on half of every batch, train the model one process trains on the
/// whole batch (same losses, same final parameters, within float32 rounding), for a dense model and a PEER one,
/// data parallel and with the PEER tables sharded (expert parallel); the ranks stay identical; a checkpoint of two
/// ranks resumes on one; a killed rank ends the job.
/// </summary>
public class DataParallelTests : IDisposable
{
    readonly TempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    // Tiny models, a few steps: the point is the arithmetic, not the learning. Validation at step 4 and the end
    // exercises the split evaluation; the batch of 8 is the global batch (4 sequences per rank).
    static readonly string[] Short = ["--preset", "tiny", "--eval-interval", "4", "--batch-size", "8", "--sample-tokens", "0"];

    string[] Train(string folder, params string[] more) => ["train", .. Short, "--out", _folder.File(folder), .. more.Contains("--steps") ? more : [.. more, "--steps", "6"]];

    PeerProcess.Result OneProcess(params string[] args)
    {
        var result = PeerProcess.Run(_folder.Path, args);
        Assert.True(result.ExitCode == 0, $"peer {string.Join(' ', args)} failed:\n{result.Output}\n{result.Error}");
        return result;
    }

    MpiRun.Result TwoRanks(params string[] args)
    {
        var result = MpiRun.Run(_folder.Path, 2, args);
        Assert.True(result.ExitCode == 0, $"mpirun -np 2 peer {string.Join(' ', args)} failed:\n{result.Output}\n{result.Error}");
        return result;
    }

    [MpiFact]
    public void TwoRanksTrainTheDenseModelOneProcessTrains() => AssertSameTraining("--sparse-blocks", "none");

    [MpiFact]
    public void TwoRanksTrainThePeerModelOneProcessTrains() => AssertSameTraining("--sparse-blocks", "all");

    void AssertSameTraining(params string[] model)
    {
        OneProcess(Train("one", model));
        var parallel = TwoRanks(Train("two", model));

        Assert.Contains("Data parallel over 2 ranks: each trains on 4 of the 8 sequences", parallel.Output);
        Assert.Contains("The parameters are identical on all 2 ranks", parallel.Output);
        AssertSameLosses(_folder.File("one"), _folder.File("two"));
        AssertSameParameters(_folder.File("one"), _folder.File("two"));
        Assert.Single(Directory.GetFiles(_folder.File("two"), "checkpoint.step-*.safetensors"), f => !f.Contains("optimizer"));
    }

    [MpiFact]
    public void TwoExpertParallelRanksTrainThePeerModelOneProcessTrains()
    {
        // 7 validation batches: one rank runs a forward on no tokens to stay in step with the other's exchanges.
        string[] model = ["--sparse-blocks", "all", "--eval-tokens", "1792"];
        OneProcess(Train("one", model));
        var args = Train("two", [.. model, "--expert-parallel"]);
        args[Array.IndexOf(args, "--sample-tokens") + 1] = "20";                             // a sample from the model gathered on rank 0
        var parallel = TwoRanks(args);

        Assert.Contains("Expert parallel: each rank holds the experts of id mod 2 = its rank, 32 of the 64 rows", parallel.Output);
        Assert.Matches(@"Expert parallel: rank 0 sent [0-9.]+ MB per step", parallel.Output);
        Assert.Contains("The parameters outside the sharded tables are identical on all 2 ranks", parallel.Output);
        Assert.Contains("Sample", parallel.Output);
        AssertSameLosses(_folder.File("one"), _folder.File("two"));
        AssertSameParameters(_folder.File("one"), _folder.File("two"));
    }

    [MpiFact]
    public void AnExpertParallelCheckpointResumesInOneProcess()
    {
        OneProcess(Train("one"));
        TwoRanks(Train("resumed", "--steps", "3", "--expert-parallel"));

        var resumed = OneProcess("train", "--resume", Path.Combine(_folder.File("resumed"), "checkpoint"), "--steps", "6", "--sample-tokens", "0");

        Assert.Contains("at step 3", resumed.Output);
        AssertSameLosses(_folder.File("one"), _folder.File("resumed"), validations: false);
        AssertSameParameters(_folder.File("one"), _folder.File("resumed"));
    }

    [Fact]
    public void ExpertParallelInOneProcessIsAUserError()
    {
        var result = PeerProcess.Run(_folder.Path, Train("alone", "--expert-parallel"));

        Assert.NotEqual(0, result.ExitCode);
        Assert.Equal("peer: expert parallelism (--expert-parallel, \"expertParallel\") shards the expert tables over the ranks of an mpirun job, but this run has 1 rank; start it with mpirun -np P (P ≥ 2) or leave the setting out", result.Error.Trim());
        Assert.False(Directory.Exists(_folder.File("alone")), "nothing may be left behind");
    }

    [MpiFact]
    public void ACheckpointOfTwoRanksResumesOnOne()
    {
        OneProcess(Train("one"));
        TwoRanks(Train("resumed", "--steps", "3"));

        var resumed = OneProcess("train", "--resume", Path.Combine(_folder.File("resumed"), "checkpoint"), "--steps", "6", "--sample-tokens", "0");

        Assert.Contains("at step 3", resumed.Output);
        AssertSameLosses(_folder.File("one"), _folder.File("resumed"), validations: false);   // the 3-step run also validated at its end
        AssertSameParameters(_folder.File("one"), _folder.File("resumed"));
    }

    [MpiFact]
    public void AKilledRankEndsTheJob()
    {
        var run = _folder.File("killed");
        var config = _folder.Write("every5.json", """{ "train": { "checkpointInterval": 5 } }""");
        string[] args = ["train", "--preset", "tiny", "--config", config, "--steps", "100000", "--out", run, "--sample-tokens", "0"];
        var mpirun = MpiRun.Start(_folder.Path, 2, args);
        var sidecar = Path.Combine(run, "checkpoint.json");
        var deadline = DateTime.UtcNow.AddMinutes(2);
        while (!File.Exists(sidecar) && !mpirun.HasExited && DateTime.UtcNow < deadline) Thread.Sleep(100);
        Assert.True(File.Exists(sidecar), "the job wrote no checkpoint within 2 minutes");
        var rank1 = MpiRun.RankProcess(mpirun.Id, 1);
        Assert.NotNull(rank1);

        System.Diagnostics.Process.GetProcessById(rank1.Value).Kill();   // SIGKILL: no chance to say goodbye
        var result = MpiRun.WaitForExit(mpirun, args);

        Assert.NotEqual(0, result.ExitCode);
        Assert.Matches(@"rank 1 .*(signal 9|Killed)", result.Output + result.Error);
        Assert.True(Checkpoint.Read(Path.Combine(run, "checkpoint")).Step % 5 == 0, "the checkpoint on disk must be a whole one");
    }

    static void AssertSameLosses(string a, string b, bool validations = true)
    {
        var one = MetricsLog.Read(Path.Combine(a, "metrics.jsonl")).Where(r => validations || r.Loss is not null).ToList();
        var two = MetricsLog.Read(Path.Combine(b, "metrics.jsonl")).Where(r => validations || r.Loss is not null).ToList();
        Assert.Equal(one.Select(r => r.Step), two.Select(r => r.Step));
        for (int i = 0; i < one.Count; i++)
        {
            Assert.Equal(one[i].Loss is null, two[i].Loss is null);
            if (one[i].Loss is { } loss) Assert.True(Math.Abs(loss - two[i].Loss!.Value) < 1e-5, $"step {one[i].Step}: loss {loss} vs {two[i].Loss}");
            if (one[i].ValidationLoss is { } validation) Assert.True(Math.Abs(validation - two[i].ValidationLoss!.Value) < 1e-5, $"step {one[i].Step}: validation loss {validation} vs {two[i].ValidationLoss}");
        }
        Assert.True(!validations || one.Any(r => r.ValidationLoss is not null), "expected validations to compare");
    }

    /// <summary>
    /// Equal within what float32 rounding can grow to in a few AdamW steps: where a gradient is all rounding (the
    /// key bias, which the attention softmax ignores), m/√v turns different rounding into steps of up to the
    /// learning rate. The losses above are the tight check.
    /// </summary>
    static void AssertSameParameters(string a, string b)
    {
        var (one, _) = Checkpoint.LoadModel(Path.Combine(a, "checkpoint"));
        var (two, _) = Checkpoint.LoadModel(Path.Combine(b, "checkpoint"));
        using (one)
        using (two)
        {
            var theirs = two.state_dict();
            foreach (var (name, mine) in one.state_dict())
            {
                using var difference = (mine.to(ScalarType.Float64) - theirs[name].to(ScalarType.Float64)).abs().max();
                Assert.True(difference.item<double>() < 1e-3, $"{name} differs by {difference.item<double>()}");
            }
        }
    }
}
