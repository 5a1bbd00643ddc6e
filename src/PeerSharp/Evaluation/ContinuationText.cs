using PeerSharp.Data;

namespace PeerSharp.Evaluation;

/// <summary>
/// The text of a continuation as its tokens arrive, handed out in pieces that are final: a piece never ends in half
/// a multi-byte character (a character may span tokens, so the whole continuation is decoded each time) nor in what
/// could be the start of a stop sequence. When a stop sequence appears the text ends before it.
/// </summary>
public sealed class ContinuationText(ITokenizer tokenizer, IReadOnlyList<string>? stops = null)
{
    readonly List<int> _tokens = [];
    readonly IReadOnlyList<string> _stops = [.. (stops ?? []).Where(s => s.Length > 0)];
    string _emitted = "";

    /// <summary>The tokens so far.</summary>
    public IReadOnlyList<int> Tokens => _tokens;

    /// <summary>Whether a stop sequence has appeared; the text then ends before it.</summary>
    public bool Stopped { get; private set; }

    /// <summary>The text handed out so far.</summary>
    public string Text => _emitted;

    /// <summary>Adds a token; returns the new final text ("" when there is none yet).</summary>
    public string Add(int token)
    {
        if (Stopped) throw new InvalidOperationException("the continuation has reached a stop sequence");
        _tokens.Add(token);
        var text = tokenizer.Decode(_tokens.ToArray());
        var stop = _stops.Select(s => text.IndexOf(s, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(-1).Min();
        if (stop >= 0)
        {
            Stopped = true;
            return Emit(text[..stop]);
        }
        if (text.EndsWith('\uFFFD')) return "";
        return Emit(text[..(text.Length - HeldBack(text))]);
    }

    /// <summary>The rest of the text at the end of the continuation (a held-back prefix of a stop sequence, an unfinished character).</summary>
    public string Finish() => Stopped ? "" : Emit(tokenizer.Decode(_tokens.ToArray()));

    /// <summary>Characters at the end of text that begin a stop sequence, kept back until the next token tells.</summary>
    int HeldBack(string text)
    {
        int longest = 0;
        foreach (var stop in _stops)
            for (int length = Math.Min(stop.Length - 1, text.Length); length > longest; length--)
                if (text.AsSpan(text.Length - length).SequenceEqual(stop.AsSpan(0, length)))
                {
                    longest = length;
                    break;
                }
        return longest;
    }

    string Emit(string text)
    {
        if (text.Length <= _emitted.Length) return "";
        var piece = text[_emitted.Length..];
        _emitted = text;
        return piece;
    }
}
