using System.Runtime.InteropServices;

namespace PeerSharp;

/// <summary>
/// The type of a file, which .NET does not tell: a pipe, socket or device passes <see cref="File.Exists"/>, and opening
/// or reading one can block for ever (a FIFO without a writer) or never end (/dev/zero).
/// </summary>
static unsafe partial class FileTypes
{
    // Values shared by every Linux architecture .NET runs on (x64, arm64).
    const int CurrentFolder = -100, NoFollow = 0x100;
    const uint TypeMask = 0x1;
    const int ModeOffset = 28;                   // stx_mode in struct statx, the same on every architecture
    const int FileTypeBits = 0xF000, RegularFile = 0x8000;

    /// <summary>
    /// Whether <paramref name="path"/> is a regular file; <paramref name="followLinks"/>: or a link to one (else a link
    /// is not). Off Linux, whether it exists as a file. Throws an <see cref="IOException"/> if it cannot be inspected.
    /// </summary>
    public static bool IsRegularFile(string path, bool followLinks)
    {
        if (!OperatingSystem.IsLinux()) return File.Exists(path);
        var result = stackalloc byte[256];      // sizeof(struct statx)
        if (statx(CurrentFolder, path, followLinks ? 0 : NoFollow, TypeMask, result) != 0)
            throw new IOException($"could not inspect '{path}': {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        return (*(ushort*)(result + ModeOffset) & FileTypeBits) == RegularFile;
    }

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int statx(int folder, string path, int flags, uint mask, byte* result);
}
