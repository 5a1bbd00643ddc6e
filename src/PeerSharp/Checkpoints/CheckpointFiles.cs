using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

// The tests stop a checkpoint save between any two of its file operations through the seam below.

namespace PeerSharp.Checkpoints;

/// <summary>
/// The file-system operations a checkpoint save is made of, each one durable when it returns. Every operation
/// is one virtual method, so a test can fail a save between any two of them, as a crash or a full disk would;
/// <see cref="Durable"/> is the real thing. Also opens checkpoint files for reading, regular files only.
/// </summary>
partial class CheckpointFiles
{
    /// <summary>The operations as they are: fsync after every write, rename and folder change.</summary>
    public static readonly CheckpointFiles Durable = new();

    /// <summary>Creates <paramref name="path"/>, which must not exist, fills it and forces it to disk.</summary>
    public virtual void Write(string path, Action<Stream> write)
    {
        // CreateNew never follows a link or truncates a file some sidecar may still name.
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 20);
        write(stream);
        stream.Flush(flushToDisk: true);
    }

    /// <summary>Forces the entries of a folder (files created, renamed or deleted in it) to disk.</summary>
    public virtual void SyncFolder(string folder)
    {
        // Only Linux needs (and allows) this: a rename is durable once its folder is fsynced. Windows cannot
        // open a folder for fsync, and NTFS journals its metadata.
        if (!OperatingSystem.IsLinux()) return;
        var descriptor = Native.open(folder, Native.ReadOnly | Native.CloseOnExec);
        if (descriptor < 0) throw Native.Error($"could not open folder '{folder}' to sync it");
        try
        {
            if (Native.fsync(descriptor) != 0) throw Native.Error($"could not sync folder '{folder}'");
        }
        finally
        {
            Native.close(descriptor);
        }
    }

    /// <summary>Renames <paramref name="source"/> over <paramref name="destination"/> in one atomic step.</summary>
    public virtual void Replace(string source, string destination) => File.Move(source, destination, overwrite: true);

    /// <summary>Deletes a file; nothing happens if it does not exist.</summary>
    public virtual void Delete(string path) => File.Delete(path);

    /// <summary>
    /// Opens a checkpoint file for reading after checking that it is a regular file: not a link (which could
    /// point anywhere), a folder, a pipe (which would block) or a device (which may never end).
    /// </summary>
    public virtual SafeFileHandle OpenRegularFile(string path)
    {
        var info = new FileInfo(path);
        if (info.LinkTarget is not null)
            throw new PeerSharpException($"checkpoint file '{path}' is a symbolic link; expected a regular file");
        if (!info.Exists)
            throw new PeerSharpException(Directory.Exists(path)
                ? $"checkpoint file '{path}' is a folder; expected a regular file"
                : $"checkpoint file '{path}' is missing");
        if (!FileTypes.IsRegularFile(path, followLinks: false))
            throw new PeerSharpException($"checkpoint file '{path}' is not a regular file (a pipe, socket or device); expected a regular file");
        return File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
    }

    /// <summary>The Linux calls of a folder's fsync, which .NET does not offer.</summary>
    static partial class Native
    {
        // Values shared by every Linux architecture .NET runs on (x64, arm64).
        public const int ReadOnly = 0, CloseOnExec = 0x80000;

        [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int open(string path, int flags);

        [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
        public static partial int fsync(int descriptor);

        [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
        public static partial int close(int descriptor);

        public static IOException Error(string what) =>
            new($"{what}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
    }
}
