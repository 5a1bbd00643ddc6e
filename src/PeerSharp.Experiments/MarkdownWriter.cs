using System.Text;

namespace PeerSharp.Experiments;

/// <summary>Builds the report's Markdown: headings, paragraphs, bullet lists, tables and figure links.</summary>
sealed class MarkdownWriter
{
    readonly StringBuilder _text = new();

    /// <summary>A heading of <paramref name="level"/> (1 = "#").</summary>
    public void Heading(int level, string title) => Block($"{new string('#', level)} {title}");

    /// <summary>A paragraph.</summary>
    public void Paragraph(string text) => Block(text);

    /// <summary>A bullet list; nothing when empty.</summary>
    public void Bullets(IEnumerable<string> items)
    {
        var lines = items.Select(item => $"- {item}").ToList();
        if (lines.Count > 0) Block(string.Join('\n', lines));
    }

    /// <summary>A figure: a PNG linked relative to the Markdown file.</summary>
    public void Image(string description, string relativePath) => Block($"![{description}]({relativePath})");

    /// <summary>
    /// A table. <paramref name="align"/> has one letter per column, 'l' or 'r' (numbers are right-aligned);
    /// pipes in cells are escaped so that a run name cannot break the table.
    /// </summary>
    public void Table(IReadOnlyList<string> header, string align, IEnumerable<IReadOnlyList<string>> rows)
    {
        if (align.Length != header.Count) throw new ArgumentException($"alignment '{align}' does not have one letter per column of {header.Count}");
        var lines = new List<string>
        {
            Row(header),
            "|" + string.Concat(align.Select(a => a == 'r' ? "---:|" : "---|")),
        };
        foreach (var row in rows)
        {
            if (row.Count != header.Count) throw new ArgumentException($"a row has {row.Count} cells for {header.Count} columns");
            lines.Add(Row(row));
        }
        Block(string.Join('\n', lines));
    }

    static string Row(IEnumerable<string> cells) => "| " + string.Join(" | ", cells.Select(c => c.Replace("|", "\\|"))) + " |";

    void Block(string text) => _text.Append(text).Append("\n\n");

    /// <summary>The Markdown so far, ending in one newline.</summary>
    public override string ToString() => _text.ToString().TrimEnd('\n') + "\n";
}
