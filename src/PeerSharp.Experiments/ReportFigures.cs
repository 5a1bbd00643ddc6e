using ScottPlot;

namespace PeerSharp.Experiments;

/// <summary>
/// The report's figures: PNGs in one folder, linked from the Markdown by a relative path, with the same colour
/// for a method in every figure and logarithmic axes drawn as ticks on log-transformed data (ScottPlot plots
/// linear axes only).
/// </summary>
sealed class ReportFigures
{
    /// <summary>Pixel size of a figure, or of one panel row of a grid.</summary>
    public const int Width = 900, Height = 500;

    readonly string _folder;
    readonly string _link;
    readonly List<string> _written = [];

    /// <summary>Figures go to <paramref name="folder"/>; links are relative to the folder of <paramref name="markdownPath"/>.</summary>
    public ReportFigures(string folder, string markdownPath)
    {
        _folder = folder;
        var markdownFolder = Path.GetDirectoryName(Path.GetFullPath(markdownPath))!;
        _link = Path.GetRelativePath(markdownFolder, Path.GetFullPath(folder)).Replace('\\', '/');
    }

    /// <summary>Every PNG written so far.</summary>
    public IReadOnlyList<string> Written => _written;

    /// <summary>Saves <paramref name="plot"/> as NAME.png and links it.</summary>
    public void Add(MarkdownWriter markdown, Plot plot, string name, string description) =>
        Add(markdown, name, description, path => plot.SavePng(path, Width, Height));

    /// <summary>Saves a grid of panels as NAME.png, <see cref="Height"/> pixels per row, and links it.</summary>
    public void Add(MarkdownWriter markdown, Multiplot grid, int rows, string name, string description) =>
        Add(markdown, name, description, path => grid.SavePng(path, Width, Height * rows));

    void Add(MarkdownWriter markdown, string name, string description, Action<string> save)
    {
        Directory.CreateDirectory(_folder);
        var path = Path.Combine(_folder, name + ".png");
        save(path);
        _written.Add(path);
        markdown.Image(description, $"{_link}/{name}.png");
    }

    static readonly ScottPlot.Palettes.Category10 Palette = new();

    /// <summary>The i-th colour of the palette, for series that are not methods.</summary>
    public static Color SeriesColor(int i) => Palette.GetColor(i);

    /// <summary>The colour of a method in every figure: dense grey, MoE blue, PKM green, PEER red, others after them.</summary>
    public static Color MethodColor(string method) => method switch
    {
        "dense" => Palette.GetColor(7),
        "moe" => Palette.GetColor(0),
        "pkm" => Palette.GetColor(2),
        "peer" => Palette.GetColor(3),
        _ => Palette.GetColor(4 + Math.Abs(StableHash(method)) % 3),
    };

    // string.GetHashCode differs between processes; a figure must not change colour between runs of the report.
    static int StableHash(string text) => text.Aggregate(17, (hash, c) => unchecked(hash * 31 + c));

    /// <summary>
    /// Log-scale ticks for an axis whose data are log10 of <paramref name="values"/>: 1, 2, 5 times powers of ten
    /// within the data's range (every integer multiple when the range is too short for three of those), labelled
    /// by <paramref name="label"/>, with minor ticks at the integer multiples.
    /// </summary>
    public static void LogAxis(IAxis axis, IEnumerable<double> values, Func<double, string> label)
    {
        var positive = values.Where(v => v > 0).ToList();
        if (positive.Count == 0) return;
        double low = positive.Min() / 1.2, high = positive.Max() * 1.2;
        int first = (int)Math.Floor(Math.Log10(low)), last = (int)Math.Ceiling(Math.Log10(high));
        var multiples = Enumerable.Range(first, last - first + 1)
            .SelectMany(e => Enumerable.Range(1, 9).Select(m => m * Math.Pow(10, e)))
            .Where(v => v >= low && v <= high).ToList();
        var major = multiples.Where(IsOneTwoFive).ToList();
        if (major.Count < 3) major = multiples;
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        foreach (var v in multiples)
        {
            if (major.Contains(v)) ticks.AddMajor(Math.Log10(v), label(v));
            else ticks.AddMinor(Math.Log10(v));
        }
        axis.TickGenerator = ticks;
    }

    static bool IsOneTwoFive(double value)
    {
        var mantissa = Math.Round(value / Math.Pow(10, Math.Floor(Math.Log10(value) + 1e-9)));
        return mantissa is 1 or 2 or 5;
    }

    /// <summary>Ticks at the data's own <paramref name="values"/> for an axis whose data are log2 of them.</summary>
    public static void Log2Axis(IAxis axis, IEnumerable<double> values, Func<double, string> label)
    {
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        foreach (var v in values.Where(v => v > 0).Distinct().Order()) ticks.AddMajor(Math.Log2(v), label(v));
        axis.TickGenerator = ticks;
    }
}
