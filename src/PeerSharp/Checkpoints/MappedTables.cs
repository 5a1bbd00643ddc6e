using Microsoft.Win32.SafeHandles;
using PeerSharp.Kernels;
using PeerSharp.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Checkpoints;

/// <summary>
/// Expert tables (PEER's down.weight and up.weight, PKM's values.weight) read in place from a checkpoint's
/// safetensors file through a memory mapping instead of copied into memory (DESIGN.md "Memory-mapped tables"):
/// resident memory holds only the pages of the rows tokens read. The tensors over the mapping are
/// <see cref="FileMappedTensors"/>'s.
/// </summary>
static class MappedTables
{
    /// <summary>The state-dict names of the model's expert tables.</summary>
    public static HashSet<string> TableNames(nn.Module model) =>
        RetrievalLayers.Of(model).SelectMany(l => l.Layer.Tables.Select(t => RetrievalLayers.Prefixed(l.name, t.Name))).ToHashSet();

    /// <summary>
    /// Replaces each expert table of <paramref name="model"/> with a tensor over its bytes in the safetensors file at
    /// <paramref name="path"/> (open as <paramref name="handle"/>), whose header <paramref name="tensors"/> has been
    /// checked against the model.
    /// </summary>
    public static void Map(nn.Module model, SafeFileHandle handle, string path, SafetensorsFile tensors)
    {
        // The handle whose header was checked is the one mapped, so what is mapped is what was checked.
        var mapping = FileMappedTensors.MapFile(handle);   // held by this method until every table is made
        try
        {
            foreach (var (prefix, layer) in RetrievalLayers.Of(model))
                foreach (var (name, table) in layer.Tables)
                {
                    var fullName = RetrievalLayers.Prefixed(prefix, name);
                    var entry = tensors.Tensors[fullName];
                    var offset = tensors.DataStart + entry.Begin;
                    if (entry.DType is not (ScalarType.Float32 or ScalarType.BFloat16) || entry.DType != table.dtype || offset % table.element_size() != 0)
                        throw new PeerSharpException($"tensor '{fullName}' in '{path}' is {entry.DType} at byte {offset}; a mapped table must be float32 or bfloat16 as the model's ({table.dtype}), at a multiple of its element size (load it without mapping instead)");
                    var parameter = new Parameter(FileMappedTensors.Wrap(mapping, offset, entry.Shape, entry.DType), requires_grad: false);
                    Replace((nn.Module)layer, name, parameter);
                }
        }
        finally
        {
            FileMappedTensors.Unreference(mapping);
        }
    }

    /// <summary>Sets the weight of the table's embedding module (name "down.weight" → submodule "down").</summary>
    static void Replace(nn.Module layer, string tableName, Parameter parameter)
    {
        var module = layer.named_children().Single(c => c.name == tableName[..tableName.IndexOf('.')]).module;
        using var old = module switch
        {
            Embedding embedding => Swap(() => embedding.weight!, value => embedding.weight = value),
            EmbeddingBag bag => Swap(() => bag.weight!, value => bag.weight = value),
            _ => throw new InvalidOperationException($"table '{tableName}' is held by a {module.GetType().Name}, not an embedding"),
        };

        Parameter Swap(Func<Parameter> get, Action<Parameter> set)
        {
            var previous = get();
            set(parameter);
            return previous;
        }
    }
}
