using System.Text.Json;
using System.Text.Json.Serialization;

namespace PeerSharp.Training;

/// <summary>One line of a run's metrics log: a training step, or a validation after a step.</summary>
public sealed record MetricsRecord
{
    /// <summary>Steps done.</summary>
    public long Step { get; init; }

    /// <summary>Training loss of the step's batch (nats per token); null on validation lines.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? Loss { get; init; }

    /// <summary>Learning rate of the step.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? LearningRate { get; init; }

    /// <summary>Validation loss (nats per token); null on training lines.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? ValidationLoss { get; init; }

    /// <summary>Validation bits per byte.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? BitsPerByte { get; init; }
}

/// <summary>
/// The run's metrics as JSON lines (runs/NAME/metrics.jsonl), appended as training goes, so curves survive
/// interruptions and can be plotted or compared later. Opening it for a resumed run drops the lines past the
/// checkpoint's step, which the resumed run will write again.
/// </summary>
public sealed class MetricsLog : IDisposable
{
    static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };
    readonly StreamWriter _writer;

    /// <summary>Opens (or creates) the log, keeping only the lines up to <paramref name="keepThroughStep"/>.</summary>
    public MetricsLog(string path, long keepThroughStep)
    {
        Path = path;
        var kept = Read(path).Where(r => r.Step <= keepThroughStep).Select(r => JsonSerializer.Serialize(r, Json)).ToList();
        File.WriteAllLines(path, kept);
        _writer = new StreamWriter(path, append: true) { AutoFlush = true };
    }

    /// <summary>Where the log is.</summary>
    public string Path { get; }

    /// <summary>Appends one record.</summary>
    public void Append(MetricsRecord record) => _writer.WriteLine(JsonSerializer.Serialize(record, Json));

    /// <summary>Every record of a log file (none if it does not exist); unreadable lines are skipped.</summary>
    public static IReadOnlyList<MetricsRecord> Read(string path)
    {
        if (!File.Exists(path)) return [];
        var records = new List<MetricsRecord>();
        foreach (var line in File.ReadLines(path))
        {
            try
            {
                if (JsonSerializer.Deserialize<MetricsRecord>(line, Json) is { } record) records.Add(record);
            }
            catch (JsonException)
            {
                // A line cut short by a crash: the rest of the log is still good.
            }
        }
        return records;
    }

    /// <inheritdoc />
    public void Dispose() => _writer.Dispose();
}
