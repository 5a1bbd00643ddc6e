using System.Buffers.Binary;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using static TorchSharp.torch;

namespace PeerSharp.Checkpoints;

/// <summary>
/// A safetensors file (the format PyTorch's safetensors reads): an 8-byte little-endian header length, a JSON
/// header giving each tensor's dtype, shape and [begin, end) byte range in the data section, then the raw
/// little-endian data. Read here rather than by PyBridge so that nothing in a file is trusted before it is
/// checked: <see cref="Open"/> validates the whole header, <see cref="CheckFits"/> compares it with the
/// tensors it must fill, and only then does <see cref="ReadInto"/> read bytes, through a window of bounded
/// size, into those tensors. A hostile file can neither make it allocate nor read outside the file. Written
/// here too, so that the writer and reader agree, and a tensor of any size or layout streams out in chunks.
/// </summary>
sealed class SafetensorsFile
{
    /// <summary>The longest header accepted: a million-expert model needs a few kilobytes.</summary>
    public const long MaxHeaderBytes = 100L << 20;

    /// <summary>Bytes moved at a time, so a tensor of any size passes through a window of bounded memory.</summary>
    const long ChunkBytes = 64L << 20;

    static readonly Dictionary<string, ScalarType> DTypes = new()
    {
        ["BOOL"] = ScalarType.Bool, ["U8"] = ScalarType.Byte, ["I8"] = ScalarType.Int8, ["I16"] = ScalarType.Int16,
        ["I32"] = ScalarType.Int32, ["I64"] = ScalarType.Int64, ["F16"] = ScalarType.Float16,
        ["BF16"] = ScalarType.BFloat16, ["F32"] = ScalarType.Float32, ["F64"] = ScalarType.Float64,
    };

    /// <summary>One tensor of the header; <c>Begin</c> and <c>End</c> are byte offsets into the data section.</summary>
    public sealed record Entry(ScalarType DType, long[] Shape, long Begin, long End);

    readonly SafeFileHandle _file;
    readonly string _path;
    readonly long _dataStart;

    SafetensorsFile(SafeFileHandle file, string path, long dataStart, Dictionary<string, Entry> tensors) =>
        (_file, _path, _dataStart, Tensors) = (file, path, dataStart, tensors);

    /// <summary>The file offset of the data section, where each entry's <c>Begin</c> counts from.</summary>
    public long DataStart => _dataStart;

    /// <summary>The tensors the header describes, by name.</summary>
    public IReadOnlyDictionary<string, Entry> Tensors { get; }

    /// <summary>Writes <paramref name="tensors"/>, in order, as one safetensors file.</summary>
    public static void Write(Stream stream, IReadOnlyList<KeyValuePair<string, Tensor>> tensors) => Write(stream, tensors, null, null);

    /// <summary>
    /// Writes <paramref name="tensors"/>, in order, as one safetensors file. A tensor named in <paramref name="drawn"/>
    /// is not read: each slice of its rows is written from a fresh buffer of the slice's shape that its action fills,
    /// so a table of any size is written in slices of <see cref="ChunkBytes"/> (FreshCheckpoint). Reports the bytes
    /// of tensor data written so far to <paramref name="progress"/>.
    /// </summary>
    internal static void Write(Stream stream, IReadOnlyList<KeyValuePair<string, Tensor>> tensors,
                               IReadOnlyDictionary<string, Action<Tensor>>? drawn, IProgress<long>? progress)
    {
        using var header = new MemoryStream();
        using (var json = new Utf8JsonWriter(header))
        {
            json.WriteStartObject();
            long offset = 0;
            foreach (var (name, tensor) in tensors)
            {
                var size = tensor.NumberOfElements * tensor.ElementSize;
                json.WriteStartObject(name);
                json.WriteString("dtype", DTypeName(tensor.dtype));
                json.WriteStartArray("shape");
                foreach (var dimension in tensor.shape) json.WriteNumberValue(dimension);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + size);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += size;
            }
            json.WriteEndObject();
        }
        // Padded with spaces to a multiple of 8 bytes, as the reference writer does, so the data is aligned.
        while (header.Length % 8 != 0) header.WriteByte((byte)' ');
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        stream.Write(length);
        stream.Write(header.GetBuffer().AsSpan(0, (int)header.Length));
        long done = 0;
        foreach (var (name, tensor) in tensors)
        {
            var draw = drawn?.GetValueOrDefault(name);
            ForEachChunk(tensor, part =>
            {
                using var contiguous = draw is null ? part.contiguous() : empty(part.shape, part.dtype);
                draw?.Invoke(contiguous);
                stream.Write(contiguous.bytes);
                progress?.Report(done += contiguous.NumberOfElements * contiguous.ElementSize);
            });
        }
    }

    /// <summary>Reads and validates the header of an open file; throws a <see cref="PeerSharpException"/> naming the first flaw.</summary>
    public static SafetensorsFile Open(SafeFileHandle file, string path)
    {
        var length = RandomAccess.GetLength(file);
        if (length < 8)
            throw new PeerSharpException($"'{path}' holds {length} bytes, too few for a safetensors file; expected an 8-byte header length first");
        Span<byte> prefix = stackalloc byte[8];
        ReadExactly(file, path, prefix, 0);
        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > (ulong)(length - 8))
            throw new PeerSharpException($"'{path}' declares a header of {headerLength} bytes but holds only {length - 8} after the length; the file is truncated or not safetensors");
        if (headerLength > MaxHeaderBytes)
            throw new PeerSharpException($"'{path}' declares a header of {headerLength} bytes; expected at most {MaxHeaderBytes}");
        var header = new byte[headerLength];
        ReadExactly(file, path, header, 8);
        var dataStart = 8 + (long)headerLength;
        var tensors = ParseHeader(header, path, length - dataStart);
        return new SafetensorsFile(file, path, dataStart, tensors);
    }

    static Dictionary<string, Entry> ParseHeader(byte[] header, string path, long dataBytes)
    {
        // JsonDocument checks the UTF-8 of a string only when it is read, and then throws a bug's exception.
        if (!System.Text.Unicode.Utf8.IsValid(header))
            throw new PeerSharpException($"'{path}' has a header that is not valid UTF-8 (a tensor name or value holds other bytes); expected a JSON header in UTF-8");
        JsonDocument document;
        try { document = JsonDocument.Parse(header); }
        catch (JsonException e) { throw new PeerSharpException($"'{path}' has a header that is not valid JSON ({e.Message})"); }
        using var _ = document;
        if (document.RootElement.ValueKind != JsonValueKind.Object)
            throw new PeerSharpException($"'{path}' has a header that is not a JSON object; expected tensor names mapped to their dtype, shape and data_offsets");
        var tensors = new Dictionary<string, Entry>();
        var names = new HashSet<string>();
        foreach (var property in document.RootElement.EnumerateObject())
        {
            if (!names.Add(property.Name))
                throw new PeerSharpException($"'{path}' names tensor '{Printable(property.Name)}' twice");
            if (property.Name == "__metadata__")
            {
                if (property.Value.ValueKind != JsonValueKind.Object || property.Value.EnumerateObject().Any(p => p.Value.ValueKind != JsonValueKind.String))
                    throw new PeerSharpException($"'{path}' has a __metadata__ that is not an object of strings");
                continue;
            }
            tensors[property.Name] = ParseEntry(property.Name, property.Value, path, dataBytes);
        }
        CheckLayout(tensors, path, dataBytes);
        return tensors;
    }

    static Entry ParseEntry(string name, JsonElement json, string path, long dataBytes)
    {
        string Where() => $"tensor '{Printable(name)}' in '{path}'";
        if (json.ValueKind != JsonValueKind.Object)
            throw new PeerSharpException($"{Where()} is described by {json.ValueKind}; expected an object with dtype, shape and data_offsets");
        foreach (var field in json.EnumerateObject())
            if (field.Name is not ("dtype" or "shape" or "data_offsets"))
                throw new PeerSharpException($"{Where()} has an unknown field '{field.Name}'; expected only dtype, shape and data_offsets");

        var dtypeName = json.TryGetProperty("dtype", out var d) && d.ValueKind == JsonValueKind.String ? d.GetString()! : null;
        if (dtypeName is null || !DTypes.TryGetValue(dtypeName, out var dtype))
            throw new PeerSharpException($"{Where()} has dtype {(dtypeName is null ? "missing" : $"'{Printable(dtypeName)}'")}; expected one of {string.Join(", ", DTypes.Keys)}");

        var shape = json.TryGetProperty("shape", out var s) ? WholeNumbers(s) : null;
        if (shape is null)
            throw new PeerSharpException($"{Where()} has shape {Raw(json, "shape")}; expected a list of whole numbers ≥ 0");
        long elements = 1;
        try
        {
            foreach (var dimension in shape) elements = checked(elements * dimension);
            _ = checked(elements * ElementSize(dtype));
        }
        catch (OverflowException)
        {
            throw new PeerSharpException($"{Where()} has shape {ShapeText(shape)}, too large to address with 64-bit offsets");
        }

        var offsets = json.TryGetProperty("data_offsets", out var o) ? WholeNumbers(o) : null;
        if (offsets is not [var begin, var end] || begin > end)
            throw new PeerSharpException($"{Where()} has data_offsets {Raw(json, "data_offsets")}; expected [begin, end] with 0 ≤ begin ≤ end");
        if (end > dataBytes)
            throw new PeerSharpException($"{Where()} ends at byte {end} of the data, past its end at {dataBytes}; the file is truncated or corrupt");
        if (end - begin != elements * ElementSize(dtype))
            throw new PeerSharpException($"{Where()} spans {end - begin} bytes but its dtype {dtypeName} and shape {ShapeText(shape)} need {elements * ElementSize(dtype)}");
        return new Entry(dtype, shape, begin, end);
    }

    /// <summary>The tensors must tile the data section exactly, as the reference reader requires: no overlap, no gap, nothing after.</summary>
    static void CheckLayout(Dictionary<string, Entry> tensors, string path, long dataBytes)
    {
        long covered = 0;
        string? previous = null;
        foreach (var (name, entry) in tensors.OrderBy(t => t.Value.Begin).ThenBy(t => t.Value.End))
        {
            if (entry.Begin < covered)
                throw new PeerSharpException($"tensors '{Printable(previous!)}' and '{Printable(name)}' in '{path}' overlap; expected each byte of data to belong to one tensor");
            if (entry.Begin > covered)
                throw new PeerSharpException($"'{path}' has {entry.Begin - covered} bytes of data before tensor '{Printable(name)}' that no tensor owns");
            covered = entry.End;
            previous = name;
        }
        if (covered != dataBytes)
            throw new PeerSharpException($"'{path}' has {dataBytes - covered} bytes of data after its last tensor that no tensor owns");
    }

    /// <summary>
    /// Checks that the file holds every tensor of <paramref name="expected"/> with its exact dtype and shape, and
    /// nothing else but copies that <paramref name="isAlias"/> recognises (a tensor the model used to register
    /// twice) with the dtype and shape of some expected tensor. <paramref name="owner"/> names what the tensors
    /// belong to ("model", "optimizer") in the error.
    /// </summary>
    public void CheckFits(IReadOnlyDictionary<string, Tensor> expected, string owner, Func<string, bool> isAlias)
    {
        foreach (var (name, tensor) in expected)
        {
            if (!Tensors.TryGetValue(name, out var entry))
                throw new PeerSharpException($"'{_path}' has no tensor '{name}'; it was written for another {owner}");
            if (entry.DType != tensor.dtype)
                throw new PeerSharpException($"tensor '{name}' in '{_path}' is {DTypeName(entry.DType)}; the {owner} expects {DTypeName(tensor.dtype)}");
            if (!entry.Shape.SequenceEqual(tensor.shape))
                throw new PeerSharpException($"tensor '{name}' in '{_path}' has shape {ShapeText(entry.Shape)}; the {owner} expects {ShapeText(tensor.shape)}");
        }
        var signatures = expected.Values.Select(t => Signature(t.dtype, t.shape)).ToHashSet();
        foreach (var (name, entry) in Tensors)
            if (!expected.ContainsKey(name) && !(isAlias(name) && signatures.Contains(Signature(entry.DType, entry.Shape))))
                throw new PeerSharpException($"'{_path}' holds tensor '{Printable(name)}', which the {owner} does not have; it was written for another {owner}");
    }

    /// <summary>Copies each named tensor's data from the file into the tensor of the same name (checked by <see cref="CheckFits"/>).</summary>
    public void ReadInto(IReadOnlyDictionary<string, Tensor> destinations)
    {
        using var noGrad = no_grad();
        foreach (var (name, destination) in destinations)
        {
            var offset = _dataStart + Tensors[name].Begin;
            ForEachChunk(destination, part =>
            {
                using var buffer = empty(part.shape, dtype: part.dtype);
                var bytes = buffer.bytes;
                ReadExactly(_file, _path, bytes, offset);
                part.copy_(buffer);
                offset += bytes.Length;
            });
        }
    }

    /// <summary>Runs <paramref name="action"/> on consecutive slices of rows of at most <see cref="ChunkBytes"/> (a scalar is one slice).</summary>
    static void ForEachChunk(Tensor tensor, Action<Tensor> action)
    {
        if (tensor.dim() == 0)
        {
            action(tensor);
            return;
        }
        var rows = tensor.shape[0];
        var rowBytes = rows == 0 ? 0 : tensor.NumberOfElements / rows * tensor.ElementSize;
        var rowsPerChunk = Math.Max(1, ChunkBytes / Math.Max(1, rowBytes));
        for (long start = 0; start < rows; start += rowsPerChunk)
        {
            using var part = tensor.narrow(0, start, Math.Min(rowsPerChunk, rows - start));
            action(part);
        }
    }

    static void ReadExactly(SafeFileHandle file, string path, Span<byte> buffer, long offset)
    {
        while (!buffer.IsEmpty)
        {
            var read = RandomAccess.Read(file, buffer, offset);
            if (read == 0) throw new PeerSharpException($"'{path}' ended at byte {offset}, before the data its header describes; the file is truncated");
            buffer = buffer[read..];
            offset += read;
        }
    }

    /// <summary>The list of whole numbers ≥ 0 in <paramref name="json"/>, or null if it is anything else.</summary>
    static long[]? WholeNumbers(JsonElement json)
    {
        if (json.ValueKind != JsonValueKind.Array) return null;
        var numbers = new long[json.GetArrayLength()];
        var i = 0;
        foreach (var item in json.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out var number) || number < 0) return null;
            numbers[i++] = number;
        }
        return numbers;
    }

    static string Raw(JsonElement json, string field) => json.TryGetProperty(field, out var value) ? Printable(value.GetRawText()) : "missing";

    /// <summary>
    /// Text from a file made fit for a one-line error: control characters (a newline would split the line)
    /// escaped, whitespace runs collapsed, and at most 80 characters.
    /// </summary>
    public static string Printable(string text)
    {
        var builder = new System.Text.StringBuilder();
        foreach (var c in text)
        {
            if (builder.Length >= 80) return builder.Append('…').ToString();
            if (c is '\n' or '\r' or '\t' or ' ') { if (builder.Length == 0 || builder[^1] != ' ') builder.Append(' '); }
            else if (char.IsControl(c)) builder.Append($"\\u{(int)c:x4}");
            else builder.Append(c);
        }
        return builder.ToString();
    }

    static string Signature(ScalarType dtype, long[] shape) => $"{dtype} [{string.Join(", ", shape)}]";

    static string ShapeText(long[] shape) => Printable($"[{string.Join(", ", shape)}]");

    static long ElementSize(ScalarType dtype) => dtype switch
    {
        ScalarType.Bool or ScalarType.Byte or ScalarType.Int8 => 1,
        ScalarType.Int16 or ScalarType.Float16 or ScalarType.BFloat16 => 2,
        ScalarType.Int32 or ScalarType.Float32 => 4,
        _ => 8,
    };

    static string DTypeName(ScalarType dtype) =>
        DTypes.FirstOrDefault(d => d.Value == dtype).Key ?? throw new PeerSharpException($"tensors of dtype {dtype} cannot be saved in safetensors here; expected one of {string.Join(", ", DTypes.Keys)}");
}
