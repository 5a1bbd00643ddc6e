using System.Text.Json.Nodes;
using PeerSharp.Experiments;

namespace PeerSharp.Tests.Experiments;

/// Every committed spec (experiments/*.json) loads, plans (each run's settings resolve and validate, growth included)
/// and names data files that are in the checkout, so a spec edited for the next background run fails here, in CI,
/// rather than hours later on its first run.
public class CommittedSpecTests
{
    [Fact]
    public void EveryCommittedSpecLoadsPlansAndNamesFilesThatExist()
    {
        var experiments = Path.Combine(CommittedReportTests.RepositoryRoot(), "experiments");
        var specs = Directory.GetFiles(experiments, "*.json").Order(StringComparer.Ordinal).ToList();
        Assert.Contains(specs, s => s.EndsWith("lifelong-routed.json", StringComparison.Ordinal));
        Assert.Contains(specs, s => s.EndsWith("expert-curve.json", StringComparison.Ordinal));
        using var runs = new TempFolder();
        foreach (var path in specs)
        {
            var name = Path.GetFileName(path);
            List<SweepData> data;
            int items;
            if (JsonNode.Parse(File.ReadAllText(path))!.AsObject().ContainsKey("phase1"))
            {
                var spec = LifelongSpec.Load(path);
                items = Lifelong.Plan(spec, experiments, runs.Path).Count;
                data = [spec.DomainA, spec.DomainB, .. spec.DomainC is { } c ? [c] : Array.Empty<SweepData>()];
            }
            else
            {
                var spec = SweepSpec.Load(path);
                items = Sweep.Plan(spec).Count;
                data = [spec.Data];
            }
            Assert.True(items > 0, $"{name} plans no run");
            foreach (var file in data.SelectMany(Files))
                Assert.True(File.Exists(Path.Combine(experiments, file)), $"{name} names '{file}', which is not in the checkout");
        }
    }

    static IEnumerable<string> Files(SweepData data) =>
        new[] { data.Train, data.Validation, data.Test }.OfType<string>()
            .Concat((data.ValidationParts ?? []).Concat(data.TestParts ?? []).Select(p => p.Path));
}
