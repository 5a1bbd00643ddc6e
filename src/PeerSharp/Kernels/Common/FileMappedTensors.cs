using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using static TorchSharp.torch;

namespace PeerSharp.Kernels;

/// <summary>
/// Tensors over the pages of a file mapping instead of memory of their own (DESIGN.md "Memory-mapped tables"): the
/// mapping is private (copy-on-write) over a file opened read-only, so nothing can reach the file. Each tensor holds
/// one reference to its mapping, released by libtorch's deleter when the tensor's storage is freed; the last release
/// unmaps the file, so the mapping lives exactly as long as any tensor (or view) of it. Raw memory, as the other
/// Common kernels: what is mapped (a checkpoint's expert tables) is decided in Checkpoints/MappedTables.cs, and the
/// optimizer asks <see cref="IsMapped"/> to refuse training such a tensor.
/// </summary>
static unsafe partial class FileMappedTensors
{
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    delegate void Deleter(IntPtr data);

    [DllImport("LibTorchSharp")]
    static extern IntPtr THSTensor_new(IntPtr rawArray, Deleter deleter, long* dimensions, int numDimensions, sbyte type, sbyte dtype, int deviceType, int deviceIndex, [MarshalAs(UnmanagedType.U1)] bool requiresGrad);

    [DllImport("LibTorchSharp")]
    static extern void THSTorch_get_and_reset_last_err();

    /// <summary>Kept alive for as long as the process: libtorch calls it whenever a mapped tensor's storage is freed.</summary>
    static readonly Deleter Release = ReleaseTable;

    /// <summary>The mapping behind each tensor's data pointer, one entry per live tensor.</summary>
    static readonly Dictionary<IntPtr, Mapping> Owners = [];

    /// <summary>One mapped file, unmapped when its last table is freed.</summary>
    public sealed class Mapping(byte* start, Action unmap)
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
    /// A private, copy-on-write mapping of the whole file, held by this method's caller (one reference) until it
    /// <see cref="Unreference"/>s it: writes through a table would change private pages, never
    /// the file. On Linux it is made with mmap(MAP_PRIVATE | MAP_NORESERVE): without MAP_NORESERVE the kernel
    /// charges a writable private mapping's full size against memory up front and refuses one larger than memory
    /// (ENOMEM), which is the very case mapping is for (a 34 GB file on a 24 GB machine). It is advised as read at
    /// random (MADV_RANDOM): a token reads h·k scattered rows of d_model floats, and the default read-ahead around
    /// each fault would read 128 KB from disk for each 1 KB row. Elsewhere, .NET's copy-on-write mapping.
    /// </summary>
    public static Mapping MapFile(SafeFileHandle handle)
    {
        var mapping = Open(handle);
        lock (Owners) mapping.References = 1;
        return mapping;
    }

    static Mapping Open(SafeFileHandle handle)
    {
        var length = RandomAccess.GetLength(handle);
        if (OperatingSystem.IsLinux())
        {
            var address = Mmap(IntPtr.Zero, (nuint)length, ProtRead | ProtWrite, MapPrivate | MapNoReserve, (int)handle.DangerousGetHandle(), 0);
            if (address == new IntPtr(-1))
                throw new IOException($"mmap of {length:N0} bytes failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
            Madvise(address, (nuint)length, AdviseRandom);   // advice only: a failure changes speed, not results
            RowReadAhead.Register(address, length);     // the layers ask for each step's rows ahead
            return new Mapping((byte*)address, () =>
            {
                RowReadAhead.Unregister(address);
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

    /// <summary>A tensor over the mapping's bytes from <paramref name="offset"/>, holding one reference to it until libtorch frees its storage.</summary>
    public static Tensor Wrap(Mapping mapping, long offset, long[] shape, ScalarType dtype)
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

    /// <summary>Whether <paramref name="table"/>'s data lies in a mapping made here.</summary>
    public static bool IsMapped(Tensor table)
    {
        if (!table.is_contiguous() || table.numel() == 0) return false;
        var data = TensorMemory.Bytes(table).Start;
        lock (Owners) return Owners.ContainsKey(data);
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

    /// <summary>Drops one reference; the last unmaps the file.</summary>
    public static void Unreference(Mapping mapping)
    {
        bool last;
        lock (Owners) last = --mapping.References == 0;
        if (last) mapping.Unmap();
    }
}
