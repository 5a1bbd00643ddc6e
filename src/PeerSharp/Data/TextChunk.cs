namespace PeerSharp.Data;

/// <summary>
/// A piece of a document from a <see cref="TextSource"/>. Long documents come in several chunks so that
/// they never have to be in memory whole; concatenating the chunks of a document gives its exact text.
/// </summary>
/// <param name="Text">The text of this piece; never empty.</param>
/// <param name="StartsDocument">Whether this is the first piece of a new document.</param>
public readonly record struct TextChunk(string Text, bool StartsDocument);
