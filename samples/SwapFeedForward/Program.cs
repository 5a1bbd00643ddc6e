// A small byte-level transformer written with plain TorchSharp, whose middle block has a PEER layer
// (PeerSharp.Layers.Peer) where a dense feed-forward would be. It trains on a text of your choice and prints the loss.
//
//   dotnet run -- [--text FILE] [--steps 300]
//
// Without --text it reads the books bundled with the PeerSharp package (PeerSharp.Data.BundledCorpus).
using System.IO.Compression;
using PeerSharp.Config;
using PeerSharp.Data;
using PeerSharp.Layers;
using PeerSharp.Optimizers;
using PeerSharp.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

string? textPath = null;
int steps = 300;
for (int i = 0; i + 1 < args.Length; i += 2)
{
    if (args[i] == "--text") textPath = args[i + 1];
    else if (args[i] == "--steps") steps = int.Parse(args[i + 1]);
}

const int ContextLength = 64, BatchSize = 16, ModelDim = 64, Heads = 4, Layers = 3, Vocabulary = 256;
var data = tensor(ReadText(textPath, maxBytes: 4 << 20).Select(b => (long)b).ToArray());   // (N) bytes as tokens
if (data.shape[0] <= ContextLength + 1)
{
    Console.Error.WriteLine($"the text has {data.shape[0]} bytes; it needs more than {ContextLength + 1}");
    return 1;
}

manual_seed(0);
var model = new TinyTransformer(Vocabulary, ContextLength, ModelDim, Heads, Layers, feedForward: layer => layer == Layers / 2
    ? new Peer(ModelDim, new PeerOptions { SubKeyCount = 64, HeadCount = 4, TopK = 8, KeyDim = 32 })   // 64² = 4,096 experts
    : new FeedForward(ModelDim));
Console.WriteLine($"{model.parameters().Sum(p => p.numel()):N0} parameters, {data.shape[0]:N0} bytes of text, {steps} steps");

// PeerSharp's optimizer: AdamW, with row-sparse updates for the expert tables (the fused PEER kernel's gradients);
// PeerSharp's training step: backward, gradients clipped to norm 1, update, gradients cleared.
var train = new TrainConfig { GradientClip = 1.0 };
using var optimizer = OptimizerFactory.Create(model, train);
using var trainStep = new TrainStep(model, optimizer, train);
for (int step = 1; step <= steps; step++)
{
    var outcome = trainStep.Run(step - 1, learningRate: 3e-3 * Math.Min(1.0, step / 30.0), () =>   // short warm-up
    {
        var starts = randint(0, data.shape[0] - ContextLength - 1, [BatchSize, 1]);   // (B, 1)
        var windows = data[starts + arange(ContextLength + 1)];                      // (B, T+1)
        var input = windows.narrow(1, 0, ContextLength);                             // (B, T)
        var target = windows.narrow(1, 1, ContextLength);                            // (B, T)
        var logits = model.forward(input);                                           // (B, T, V)
        return nn.functional.cross_entropy(logits.view(-1, Vocabulary), target.reshape(-1));
    });
    if (step == 1 || step % 50 == 0 || step == steps)
        Console.WriteLine($"step {step,4}  loss {outcome.Loss:F3}");
}
return 0;

static byte[] ReadText(string? path, int maxBytes)
{
    using var file = File.OpenRead(path ?? BundledCorpus.TrainPath);
    using Stream text = (path ?? BundledCorpus.TrainPath).EndsWith(".gz") ? new GZipStream(file, CompressionMode.Decompress) : file;
    var buffer = new byte[maxBytes];
    int length = 0, read;
    while (length < maxBytes && (read = text.Read(buffer, length, maxBytes - length)) > 0) length += read;
    return buffer[..length];
}

/// <summary>GPT-style decoder: token and position embeddings, pre-norm blocks, a linear head.</summary>
sealed class TinyTransformer : nn.Module<Tensor, Tensor>
{
    readonly Embedding tokens, positions;
    readonly ModuleList<Block> blocks;
    readonly LayerNorm norm;
    readonly Linear head;

    public TinyTransformer(int vocabulary, int contextLength, int modelDim, int heads, int layers,
        Func<int, nn.Module<Tensor, Tensor>> feedForward) : base(nameof(TinyTransformer))
    {
        tokens = nn.Embedding(vocabulary, modelDim);
        positions = nn.Embedding(contextLength, modelDim);
        blocks = nn.ModuleList(Enumerable.Range(0, layers).Select(layer => new Block(modelDim, heads, feedForward(layer))).ToArray());
        norm = nn.LayerNorm(modelDim);
        head = nn.Linear(modelDim, vocabulary);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)   // (B, T) token ids
    {
        using var scope = NewDisposeScope();
        var x = tokens.forward(input) + positions.forward(arange(input.shape[1]));   // (B, T, C)
        foreach (var block in blocks) x = block.forward(x);
        return scope.MoveToOuter(head.forward(norm.forward(x)));                     // (B, T, V)
    }
}

/// <summary>Causal self-attention, then the block's feed-forward: any module from (…, C) to (…, C).</summary>
sealed class Block : nn.Module<Tensor, Tensor>
{
    readonly LayerNorm attentionNorm, feedForwardNorm;
    readonly Linear qkv, projection;
    readonly nn.Module<Tensor, Tensor> feedForward;
    readonly int heads;

    public Block(int modelDim, int heads, nn.Module<Tensor, Tensor> feedForward) : base(nameof(Block))
    {
        this.heads = heads;
        attentionNorm = nn.LayerNorm(modelDim);
        qkv = nn.Linear(modelDim, 3 * modelDim);
        projection = nn.Linear(modelDim, modelDim);
        feedForwardNorm = nn.LayerNorm(modelDim);
        this.feedForward = feedForward;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)   // (B, T, C)
    {
        using var scope = NewDisposeScope();
        long B = x.shape[0], T = x.shape[1], C = x.shape[2];
        var q_k_v = qkv.forward(attentionNorm.forward(x)).view(B, T, 3, heads, C / heads).permute(2, 0, 3, 1, 4);   // (3, B, H, T, C/H)
        var attended = nn.functional.scaled_dot_product_attention(q_k_v[0], q_k_v[1], q_k_v[2], is_casual: true);  // (B, H, T, C/H)
        x = x + projection.forward(attended.transpose(1, 2).reshape(B, T, C));                                     // (B, T, C)
        return scope.MoveToOuter(x + feedForward.forward(feedForwardNorm.forward(x)));                             // (B, T, C)
    }
}

/// <summary>The usual feed-forward: C → 4C → GELU → C.</summary>
sealed class FeedForward : nn.Module<Tensor, Tensor>
{
    readonly Linear up, down;

    public FeedForward(int modelDim) : base(nameof(FeedForward))
    {
        up = nn.Linear(modelDim, 4 * modelDim);
        down = nn.Linear(4 * modelDim, modelDim);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => down.forward(nn.functional.gelu(up.forward(x)));
}
