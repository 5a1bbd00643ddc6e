using System;
using System.IO;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

/// <summary>
/// Sets VER_FLG_WEAK on the GLIBCXX_3.4.32 requirement of every libLibTorchSharp.so below the given
/// folders, when the host's libstdc++ does not define that version, or always when <see cref="Always"/> is set
/// (a tool package runs on machines other than the one that packed it). See WeakGlibcxx.targets for why.
/// </summary>
public class MarkGlibcxxVersionWeak : Task
{
    [Required] public string[] Folders { get; set; }

    /// <summary>Patch whatever the host's libstdc++ defines: the weak flag changes nothing where the version exists.</summary>
    public bool Always { get; set; }

    const string Library = "libLibTorchSharp.so";
    const string MissingVersion = "GLIBCXX_3.4.32";
    const uint ShtGnuVerneed = 0x6ffffffe;
    const ushort VerFlgWeak = 0x2;

    public override bool Execute()
    {
        if (!Always && HostHasVersion()) return true;
        foreach (var folder in Folders)
        {
            if (string.IsNullOrEmpty(folder) || !Directory.Exists(folder)) continue;
            foreach (var file in Directory.EnumerateFiles(folder, Library, SearchOption.AllDirectories))
            {
                try
                {
                    if (MarkWeak(file)) Log.LogMessage(MessageImportance.High, "PeerSharp: marked " + MissingVersion + " weak in " + file);
                }
                catch (Exception e) when (e is IOException || e is InvalidDataException)
                {
                    Log.LogWarning("PeerSharp: could not patch " + file + ": " + e.Message);
                }
            }
        }
        return !Log.HasLoggedErrors;
    }

    static bool HostHasVersion()
    {
        string[] candidates =
        {
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
            "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
        };
        foreach (var path in candidates)
            if (File.Exists(path))
                return IndexOf(File.ReadAllBytes(path), Encoding.ASCII.GetBytes(MissingVersion + "\0")) >= 0;
        return true; // no libstdc++ where we look: leave the library as shipped
    }

    static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
        {
            int j = 0;
            while (j < needle.Length && haystack[i + j] == needle[j]) j++;
            if (j == needle.Length) return i;
        }
        return -1;
    }

    /// <summary>Returns true when the file was changed; false when it was already weak or has no such entry.</summary>
    static bool MarkWeak(string path)
    {
        var elf = File.ReadAllBytes(path);
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F' || elf[4] != 2 || elf[5] != 1)
            throw new InvalidDataException("not a little-endian 64-bit ELF file");
        long shoff = BitConverter.ToInt64(elf, 0x28);
        int shentsize = BitConverter.ToUInt16(elf, 0x3A), shnum = BitConverter.ToUInt16(elf, 0x3C);
        for (int s = 0; s < shnum; s++)
        {
            long sh = shoff + (long)s * shentsize;
            if (BitConverter.ToUInt32(elf, (int)sh + 4) != ShtGnuVerneed) continue;
            long offset = BitConverter.ToInt64(elf, (int)sh + 0x18);
            int link = (int)BitConverter.ToUInt32(elf, (int)sh + 0x28);
            int count = (int)BitConverter.ToUInt32(elf, (int)sh + 0x2C);
            long strtab = BitConverter.ToInt64(elf, (int)(shoff + (long)link * shentsize + 0x18));
            long verneed = offset;
            for (int v = 0; v < count; v++)
            {
                int auxCount = BitConverter.ToUInt16(elf, (int)verneed + 2);
                long aux = verneed + BitConverter.ToUInt32(elf, (int)verneed + 8);
                for (int a = 0; a < auxCount; a++)
                {
                    ushort flags = BitConverter.ToUInt16(elf, (int)aux + 4);
                    long name = strtab + BitConverter.ToUInt32(elf, (int)aux + 8);
                    if (ReadString(elf, name) == MissingVersion)
                    {
                        if ((flags & VerFlgWeak) != 0) return false;
                        BitConverter.GetBytes((ushort)(flags | VerFlgWeak)).CopyTo(elf, (int)aux + 4);
                        // Write beside, then rename: a build that is stopped half-way never leaves a torn library.
                        var temp = path + ".weak.tmp";
                        File.WriteAllBytes(temp, elf);
                        File.Replace(temp, path, null);
                        return true;
                    }
                    aux += BitConverter.ToUInt32(elf, (int)aux + 12);
                }
                verneed += BitConverter.ToUInt32(elf, (int)verneed + 12);
            }
        }
        return false;
    }

    static string ReadString(byte[] data, long start)
    {
        int end = (int)start;
        while (data[end] != 0) end++;
        return Encoding.ASCII.GetString(data, (int)start, end - (int)start);
    }
}
