using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using PeerSharp.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Training;

/// <summary>
/// Expert tables (PEER's down.weight and up.weight, PKM's values.weight) read in place from a checkpoint's
/// safetensors file through a memory mapping instead of copied into memory (DESIGN.md "Memory-mapped tables"):
/// resident memory holds only the pages of the rows tokens read. The mapping is private (copy-on-write) over a
/// file opened read-only, so nothing can reach the file. Each table tensor holds one reference to the mapping,
/// released by libtorch's deleter when the tensor's storage is freed; the last release unmaps the file, so the
/// mapping lives exactly as long as any tensor (or view) of it.
/// </summary>
static unsafe partial class MappedTables
{
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    delegate void Deleter(IntPtr data);

    [DllImport("LibTorchSharp")]
    static extern IntPtr THSTensor_new(IntPtr rawArray, Deleter deleter, long* dimensions, int numDimensions, sbyte type, sbyte dtype, int deviceType, int deviceIndex, [MarshalAs(UnmanagedType.U1)] bool requiresGrad);

    [DllImport("LibTorchSharp")]
    static extern void THSTorch_get_and_reset_last_err();

    /// <summary>Kept alive for as long as the process: libtorch calls it whenever a mapped tensor's storage is freed.</summary>
    static readonly Deleter Release = ReleaseTable;

    /// <summary>The mapping behind each table's data pointer, one entry per live table tensor.</summary>
    static readonly Dictionary<IntPtr, Mapping> Owners = [];

    /// <summary>One mapped file, unmapped when its last table is freed.</summary>
    sealed class Mapping(byte* start, Action unmap)
    {
        public byte* Start { get; } = start;
        public int References;

        public void Unmap() => unmap();
    }

    const int ProtRead = 1, ProtWrite = 2, MapPrivate = 2, MapNoReserve = 0x4000, AdviseRandom = 1;   // Linux <sys/mman.h>

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial IntPtr Mmap(IntPtr address, nuint length, int protection, int flags, int descriptor, long offset);

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(IntPtr address, nuint length, int advice);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    private static partial int Munmap(IntPtr address, nuint length);

    /// <summary>
    /// A private, copy-on-write mapping of the whole file: writes through a table would change private pages, never
    /// the file. On Linux it is made with mmap(MAP_PRIVATE | MAP_NORESERVE): without MAP_NORESERVE the kernel
    /// charges a writable private mapping's full size against memory up front and refuses one larger than memory
    /// (ENOMEM), which is the very case mapping is for (a 34 GB file on a 24 GB machine). It is advised as read at
    /// random (MADV_RANDOM): a token reads h·k scattered rows of d_model floats, and the default read-ahead around
    /// each fault would read 128 KB from disk for each 1 KB row. Elsewhere, .NET's copy-on-write mapping.
    /// </summary>
    static Mapping MapFile(SafeFileHandle handle)
    {
        var length = RandomAccess.GetLength(handle);
        if (OperatingSystem.IsLinux())
        {
            var address = Mmap(IntPtr.Zero, (nuint)length, ProtRead | ProtWrite, MapPrivate | MapNoReserve, (int)handle.DangerousGetHandle(), 0);
            if (address == new IntPtr(-1))
                throw new IOException($"mmap of {length:N0} bytes failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
            Madvise(address, (nuint)length, AdviseRandom);   // advice only: a failure changes speed, not results
            Kernels.RowReadAhead.Register(address, length);     // the layers ask for each step's rows ahead
            return new Mapping((byte*)address, () =>
            {
                Kernels.RowReadAhead.Unregister(address);
                Munmap(address, (nuint)length);
            });
        }
        // The mapping outlives the handle, which the caller closes.
        var stream = new FileStream(handle, FileAccess.Read);
        var file = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.CopyOnWrite, HandleInheritability.None, leaveOpen: true);
        var view = file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.CopyOnWrite);
        byte* start = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref start);
        return new Mapping(start + view.PointerOffset, () =>
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
            view.Dispose();
            file.Dispose();
        });
    }

    /// <summary>The state-dict names of the model's expert tables.</summary>
    public static HashSet<string> TableNames(nn.Module model) =>
        OptimizerFactory.RetrievalLayers(model).SelectMany(l => l.Layer.Tables.Select(t => OptimizerFactory.Prefixed(l.name, t.Name))).ToHashSet();

    /// <summary>Throws when an expert table of <paramref name="model"/> is mapped from a file, and so read-only.</summary>
    public static void RefuseTraining(nn.Module model)
    {
        foreach (var (prefix, layer) in OptimizerFactory.RetrievalLayers(model))
            foreach (var (name, table) in layer.Tables)
                if (IsMapped(table))
                    throw new PeerSharpException($"expert table '{OptimizerFactory.Prefixed(prefix, name)}' is memory-mapped read-only from a checkpoint; load the checkpoint without mapping its tables to train it");
    }

    /// <summary>Whether <paramref name="table"/>'s data lies in a mapping made here.</summary>
    static bool IsMapped(Tensor table)
    {
        if (!table.is_contiguous() || table.numel() == 0) return false;
        var data = Kernels.TensorMemory.Bytes(table).Start;
        lock (Owners) return Owners.ContainsKey(data);
    }

    /// <summary>
    /// Replaces each expert table of <paramref name="model"/> with a tensor over its bytes in the safetensors file at
    /// <paramref name="path"/> (open as <paramref name="handle"/>), whose header <paramref name="tensors"/> has been
    /// checked against the model.
    /// </summary>
    public static void Map(nn.Module model, SafeFileHandle handle, string path, SafetensorsFile tensors)
    {
        // The handle whose header was checked is the one mapped, so what is mapped is what was checked.
        var mapping = MapFile(handle);
        lock (Owners) mapping.References = 1;   // held by this method until every table is made
        try
        {
            foreach (var (prefix, layer) in OptimizerFactory.RetrievalLayers(model))
                foreach (var (name, table) in layer.Tables)
                {
                    var fullName = OptimizerFactory.Prefixed(prefix, name);
                    var entry = tensors.Tensors[fullName];
                    var offset = tensors.DataStart + entry.Begin;
                    if (entry.DType is not (ScalarType.Float32 or ScalarType.BFloat16) || entry.DType != table.dtype || offset % table.element_size() != 0)
                        throw new PeerSharpException($"tensor '{fullName}' in '{path}' is {entry.DType} at byte {offset}; a mapped table must be float32 or bfloat16 as the model's ({table.dtype}), at a multiple of its element size (load it without mapping instead)");
                    var parameter = new Parameter(Wrap(mapping, offset, entry.Shape, entry.DType), requires_grad: false);
                    Replace((nn.Module)layer, name, parameter);
                }
        }
        finally
        {
            Unreference(mapping);
        }
    }

    static Tensor Wrap(Mapping mapping, long offset, long[] shape, ScalarType dtype)
    {
        var data = (IntPtr)(mapping.Start + offset);
        lock (Owners)
        {
            Owners[data] = mapping;   // two tables never share a start: the header checks leave no overlap
            mapping.References++;
        }
        IntPtr handle;
        fixed (long* dimensions = shape)
            handle = THSTensor_new(data, Release, dimensions, shape.Length, (sbyte)dtype, (sbyte)dtype, (int)TorchSharp.DeviceType.CPU, 0, false);
        if (handle == IntPtr.Zero)
        {
            THSTorch_get_and_reset_last_err();
            ReleaseTable(data);
            throw new PeerSharpException($"libtorch could not wrap a mapped table of shape [{string.Join(", ", shape)}]");
        }
        return Tensor.UnsafeCreateTensor(handle);
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

    static void ReleaseTable(IntPtr data)
    {
        Mapping mapping;
        lock (Owners)
        {
            if (!Owners.Remove(data, out mapping!)) return;
        }
        Unreference(mapping);
    }

    static void Unreference(Mapping mapping)
    {
        bool last;
        lock (Owners) last = --mapping.References == 0;
        if (last) mapping.Unmap();
    }
}
