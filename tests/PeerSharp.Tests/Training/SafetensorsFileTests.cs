using System.Buffers.Binary;
using System.Text;
using PeerSharp.Checkpoints;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace PeerSharp.Tests.Training;

/// <summary>
/// Crafted safetensors files are refused from their header alone, in one line, before anything is allocated
/// for them; honest ones round-trip bit-exactly and interoperate with PyBridge (and so with PyTorch).
/// </summary>
public class SafetensorsFileTests : IDisposable
{
    readonly TempFolder _folder = new();

    /// <summary>What the crafted files are checked against: one [2, 3] F32 weight.</summary>
    static readonly Dictionary<string, Tensor> Model = new() { ["w"] = zeros(2, 3) };

    public void Dispose() => _folder.Dispose();

    [Fact]
    public void AFileTooShortForTheLengthIsRefused() =>
        AssertRefused(File([1, 2, 3]), "holds 3 bytes, too few for a safetensors file");

    [Theory]
    [InlineData(ulong.MaxValue)]
    [InlineData(1UL << 40)]
    [InlineData(1000UL)]
    public void AHeaderLongerThanTheFileIsRefused(ulong declared) =>
        AssertRefused(Craft("""{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}""", dataBytes: 24, declaredLength: declared),
            $"declares a header of {declared} bytes but holds only");

    [Fact]
    public void AHeaderOverTheLimitIsRefused()
    {
        // A sparse file, long enough that only the limit stops the header from being read.
        var path = _folder.File("huge-header.safetensors");
        using (var stream = System.IO.File.Create(path))
        {
            stream.Write(Length((ulong)SafetensorsFile.MaxHeaderBytes + 1));
            stream.SetLength(SafetensorsFile.MaxHeaderBytes + 4096);
        }
        AssertRefused(path, $"declares a header of {SafetensorsFile.MaxHeaderBytes + 1} bytes; expected at most {SafetensorsFile.MaxHeaderBytes}");
    }

    [Theory]
    [InlineData("""{"w":{"dtype":"F32","shape":[2,3],""", "has a header that is not valid JSON")]
    [InlineData("""[1, 2, 3]""", "has a header that is not a JSON object")]
    [InlineData("""{"w":[0, 24]}""", "tensor 'w' in '{0}' is described by Array; expected an object")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24],"extra":1}}""", "has an unknown field 'extra'")]
    [InlineData("""{"w":{"dtype":"Q7","shape":[2,3],"data_offsets":[0,24]}}""", "tensor 'w' in '{0}' has dtype 'Q7'; expected one of BOOL, U8, I8")]
    [InlineData("""{"w":{"shape":[2,3],"data_offsets":[0,24]}}""", "has dtype missing")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2,-3],"data_offsets":[0,24]}}""", "has shape [2,-3]; expected a list of whole numbers ≥ 0")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2.5,3],"data_offsets":[0,24]}}""", "has shape [2.5,3]; expected")]
    [InlineData("""{"w":{"dtype":"F32","shape":"big","data_offsets":[0,24]}}""", "has shape \"big\"; expected")]
    [InlineData("""{"w":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,24]}}""", "has shape [4294967296, 4294967296, 4], too large to address with 64-bit offsets")]
    [InlineData("""{"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,24]}}""", "too large to address")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[-8,16]}}""", "has data_offsets [-8,16]; expected [begin, end] with 0 ≤ begin ≤ end")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[24,0]}}""", "has data_offsets [24,0]; expected [begin, end]")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0]}}""", "has data_offsets [0]; expected [begin, end]")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,9223372036854775807]}}""", "ends at byte 9223372036854775807 of the data, past its end at 24")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}}""", "spans 16 bytes but its dtype F32 and shape [2, 3] need 24")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"v":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}""", "tensors 'w' and 'v' in '{0}' overlap")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}""", "names tensor 'w' twice")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}""", "has 16 bytes of data before tensor 'w' that no tensor owns")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}""", "has 8 bytes of data after its last tensor that no tensor owns")]
    [InlineData("""{"__metadata__":{"a":1},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}""", "has a __metadata__ that is not an object of strings")]
    [InlineData("""{"w":{"dtype":"F64","shape":[3],"data_offsets":[0,24]}}""", "tensor 'w' in '{0}' is F64; the model expects F32")]
    [InlineData("""{"w":{"dtype":"F32","shape":[3,2],"data_offsets":[0,24]}}""", "tensor 'w' in '{0}' has shape [3, 2]; the model expects [2, 3]")]
    [InlineData("""{"v":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}""", "'{0}' has no tensor 'w'; it was written for another model")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"extra":{"dtype":"F32","shape":[0],"data_offsets":[24,24]}}""", "'{0}' holds tensor 'extra', which the model does not have")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"line\nbreak":{"dtype":"F32","shape":[0],"data_offsets":[24,24]}}""", "holds tensor 'line break', which")]
    public void ACraftedHeaderIsRefused(string header, string expected)
    {
        var path = Craft(header, dataBytes: 24);
        AssertRefused(path, string.Format(expected, path));
    }

    [Fact]
    public void AHugeShapeIsRefusedAgainstTheModelBeforeAllocating()
    {
        // 40 GB of (sparse) data that really is there: the header is honest, only the model says no.
        const long bytes = 100_000L * 100_000 * 4;
        var path = Craft("""{"w":{"dtype":"F32","shape":[100000,100000],"data_offsets":[0,BYTES]}}""".Replace("BYTES", $"{bytes}"), dataBytes: bytes);
        AssertRefused(path, "has shape [100000, 100000]; the model expects [2, 3]");
    }

    [Fact]
    public void AliasesOfExpectedTensorsAreAcceptedOnlyWhenTheCallerSaysSo()
    {
        var alias = Craft("""{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"_w":{"dtype":"F32","shape":[2,3],"data_offsets":[24,48]}}""", dataBytes: 48);
        using (var file = System.IO.File.OpenHandle(alias))
        {
            var tensors = SafetensorsFile.Open(file, alias);
            tensors.CheckFits(Model, "model", name => name.StartsWith('_'));
            Assert.Contains("holds tensor '_w', which the model does not have", Assert.Throws<PeerSharpException>(() => tensors.CheckFits(Model, "model", _ => false)).Message);
        }
        // An "alias" that has the shape of no expected tensor is no copy of one.
        var stranger = Craft("""{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"_v":{"dtype":"F32","shape":[3,2],"data_offsets":[24,48]}}""", dataBytes: 48);
        using (var file = System.IO.File.OpenHandle(stranger))
        {
            var tensors = SafetensorsFile.Open(file, stranger);
            Assert.Contains("holds tensor '_v', which the model does not have", Assert.Throws<PeerSharpException>(() => tensors.CheckFits(Model, "model", name => name.StartsWith('_'))).Message);
        }
    }

    [Fact]
    public void TensorsRoundTripBitExactlyAndPyBridgeAgrees()
    {
        var tensors = new Dictionary<string, Tensor>
        {
            ["weight"] = randn(5, 7),
            ["double"] = randn(3, dtype: ScalarType.Float64),
            ["half"] = randn(4, 2).to(ScalarType.BFloat16),
            ["count"] = tensor(123456789012L),
            ["flags"] = tensor(new[] { true, false, true }),
            ["empty"] = zeros(0, 4),
            ["column"] = randn(6, 4).t(),            // not contiguous
            ["big"] = arange(17 << 20, dtype: ScalarType.Int32),   // 68 MB: more than one 64 MB window
        };
        var path = _folder.File("round.safetensors");
        using (var stream = System.IO.File.Create(path)) SafetensorsFile.Write(stream, [.. tensors]);

        var loaded = tensors.ToDictionary(t => t.Key, t => zeros_like(t.Value).contiguous());
        using (var file = System.IO.File.OpenHandle(path))
        {
            var read = SafetensorsFile.Open(file, path);
            read.CheckFits(loaded, "model", _ => false);
            read.ReadInto(loaded);
        }
        CheckpointTests.AssertSameTensors(tensors, loaded);

        // PyBridge reads what we write and we read what it writes (the big one stays out: it adds only time).
        var small = tensors.Where(t => t.Key != "big").ToDictionary();
        System.IO.File.Delete(path);
        using (var stream = System.IO.File.Create(path)) SafetensorsFile.Write(stream, [.. small]);
        CheckpointTests.AssertSameTensors(small, Safetensors.LoadStateDict(path));
        var theirs = _folder.File("pybridge.safetensors");
        Safetensors.SaveStateDict(theirs, small.ToDictionary(t => t.Key, t => t.Value.contiguous()));
        var fromTheirs = small.ToDictionary(t => t.Key, t => zeros_like(t.Value));
        using (var file = System.IO.File.OpenHandle(theirs))
        {
            var read = SafetensorsFile.Open(file, theirs);
            read.CheckFits(fromTheirs, "model", _ => false);
            read.ReadInto(fromTheirs);
        }
        CheckpointTests.AssertSameTensors(small, fromTheirs);
    }

    /// <summary>Opening and checking against <see cref="Model"/> fails with one line naming the file, allocating under a megabyte.</summary>
    static void AssertRefused(string path, string expected)
    {
        using var file = System.IO.File.OpenHandle(path);
        var allocated = GC.GetAllocatedBytesForCurrentThread();
        var error = Assert.Throws<PeerSharpException>(() => SafetensorsFile.Open(file, path).CheckFits(Model, "model", _ => false));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - allocated < 1 << 20, "refusing the file allocated a megabyte or more");
        Assert.Contains(expected, error.Message);
        Assert.Contains($"'{path}'", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    /// <summary>A file with the given header and <paramref name="dataBytes"/> of (sparse) zero data.</summary>
    string Craft(string header, long dataBytes, ulong? declaredLength = null)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var path = _folder.File($"crafted-{Guid.NewGuid():N}.safetensors");
        using var stream = System.IO.File.Create(path);
        stream.Write(Length(declaredLength ?? (ulong)json.Length));
        stream.Write(json);
        stream.SetLength(8 + json.Length + dataBytes);
        return path;
    }

    string File(byte[] bytes)
    {
        var path = _folder.File($"short-{Guid.NewGuid():N}.safetensors");
        System.IO.File.WriteAllBytes(path, bytes);
        return path;
    }

    static byte[] Length(ulong length)
    {
        var bytes = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, length);
        return bytes;
    }
}
