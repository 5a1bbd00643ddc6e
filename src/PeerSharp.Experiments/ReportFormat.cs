using System.Globalization;

namespace PeerSharp.Experiments;

/// <summary>How the report writes numbers: invariant culture, so the file is the same on every machine.</summary>
static class ReportFormat
{
    /// <summary>A dash for a value a run does not have.</summary>
    public const string Unknown = "—";

    /// <summary><paramref name="value"/> in a .NET numeric <paramref name="format"/>; a dash for NaN.</summary>
    public static string Number(double value, string format) =>
        double.IsNaN(value) ? Unknown : value.ToString(format, CultureInfo.InvariantCulture);

    /// <summary>A FLOP budget as "6e18" or "2.5e17": the way budgets are written in specs and in the paper.</summary>
    public static string Budget(double flops)
    {
        var exponent = (int)Math.Floor(Math.Log10(flops));
        var mantissa = flops / Math.Pow(10, exponent);
        return $"{Number(mantissa, "0.##")}e{exponent}";
    }

    /// <summary>A count with a metric suffix and three significant digits: "842K", "4.95M", "1.02B".</summary>
    public static string Si(double value)
    {
        var (scaled, suffix) = Math.Abs(value) switch
        {
            >= 1e9 => (value / 1e9, "B"),
            >= 1e6 => (value / 1e6, "M"),
            >= 1e3 => (value / 1e3, "K"),
            _ => (value, ""),
        };
        var format = Math.Abs(scaled) >= 100 ? "0" : Math.Abs(scaled) >= 10 ? "0.#" : "0.##";
        return Number(scaled, format) + suffix;
    }

    /// <summary>A fraction as a percentage with one decimal: "17.0%".</summary>
    public static string Percent(double fraction) => double.IsNaN(fraction) ? Unknown : Number(100 * fraction, "F1") + "%";

    /// <summary>A UTC time to the minute: "2026-12-01 10:00".</summary>
    public static string Time(DateTime time) => time.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture);

    /// <summary>N = n² as "16,384 (128²)".</summary>
    public static string ExpertCount(int subKeyCount) => $"{Number((double)subKeyCount * subKeyCount, "N0")} ({subKeyCount}²)";
}
