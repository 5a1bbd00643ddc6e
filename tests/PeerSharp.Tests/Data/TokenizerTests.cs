using PeerSharp.Data;

namespace PeerSharp.Tests.Data;

public class TokenizerTests
{
    // One Gpt2Tokenizer for the class: loading the vocabulary is the slow part.
    private static readonly Gpt2Tokenizer Gpt2 = new();

    [Fact]
    public void ByteTokenizerRoundTripsNonAsciiText()
    {
        var tokenizer = new ByteTokenizer();
        const string text = "Café, naïve, 日本語, 🙂";

        int[] ids = tokenizer.Encode(text);

        Assert.Equal(System.Text.Encoding.UTF8.GetByteCount(text), ids.Length);
        Assert.All(ids, id => Assert.InRange(id, 0, 255));
        Assert.Equal(text, tokenizer.Decode(ids));
    }

    [Fact]
    public void ByteTokenizerDecodesInvalidUtf8ToReplacementCharacters()
    {
        var tokenizer = new ByteTokenizer();

        Assert.Equal("a\uFFFDb", tokenizer.Decode([(int)'a', 0xFF, (int)'b']));
        // The first two bytes of a three-byte character, cut short.
        Assert.Equal("\uFFFD", tokenizer.Decode([0xE6, 0x97]));
    }

    [Fact]
    public void Gpt2EncodesHelloWorldToTheKnownIds()
    {
        Assert.Equal([15496, 995], Gpt2.Encode("Hello world"));
    }

    [Fact]
    public void Gpt2RoundTripsText()
    {
        const string text = "The Ball and the Cross, by G. K. Chesterton.\n\nCafé — naïve 日本語!";

        Assert.Equal(text, Gpt2.Decode(Gpt2.Encode(text)));
    }

    [Fact]
    public void Gpt2DecodesEveryIdInRangeWithoutThrowing()
    {
        for (int id = 0; id < Gpt2.VocabSize; id++)
        {
            Assert.NotNull(Gpt2.Decode([id]));
        }
        Assert.Equal(50257, Gpt2.VocabSize);
        Assert.Equal("<|endoftext|>", Gpt2.Decode([Gpt2Tokenizer.EndOfTextId]));
    }

    [Fact]
    public void Gpt2DecodesAPartialCharacterToAReplacementCharacter()
    {
        int[] ids = Gpt2.Encode("𝄞");
        Assert.True(ids.Length > 1, "the test needs a character spread over several tokens");

        Assert.Contains('\uFFFD', Gpt2.Decode(ids.AsSpan(0, 1)));
    }

    // TextSource cuts long texts at a line break between two non-blank characters; this is why that
    // changes no GPT-2 tokens.
    [Fact]
    public void Gpt2TokenizesAcrossACleanLineBreakAsItDoesWhole()
    {
        const string first = "It was the best of times.\n";
        const string second = "It was the worst of times, it was 1775.\n";

        int[] apart = [.. Gpt2.Encode(first), .. Gpt2.Encode(second)];

        Assert.Equal(Gpt2.Encode(first + second), apart);
    }

    [Fact]
    public void FactoryCreatesTokenizersByName()
    {
        Assert.IsType<ByteTokenizer>(Tokenizers.Create(EnumNames.Parse<TokenizerKind>("byte", "tokenizer")));
        Assert.Equal("gpt2", Tokenizers.Create(EnumNames.Parse<TokenizerKind>("gpt2", "tokenizer")).Name);
        Assert.Equal(Tokenizers.Create(TokenizerKind.Gpt2).VocabSize, Tokenizers.VocabSize(TokenizerKind.Gpt2));
    }

    [Fact]
    public void FactoryRejectsUnknownNames()
    {
        var error = Assert.Throws<PeerSharpException>(() => EnumNames.Parse<TokenizerKind>("bpe", "tokenizer"));

        Assert.Equal("tokenizer 'bpe' is not known; expected byte, gpt2", error.Message);
    }
}
