using System.Buffers.Binary;
using System.IO.Compression;

namespace PeerSharp.Data;

/// <summary>
/// Decompresses a gzip file (RFC 1952) member by member and checks each member's trailer, the CRC-32 and length
/// of what it decompresses to. .NET's GZipStream ends a truncated file silently, as if it were complete, so a
/// file cut short by an interrupted download or copy would otherwise be read as part of the text without a word.
/// Several members one after the other (concatenated .gz files, bgzip) are one stream, as gzip reads them.
/// </summary>
internal sealed class CheckedGzipStream : ReadOnlyStream
{
    private const int ChunkBytes = 1 << 16;

    private readonly FileStream file;
    private readonly string fileName;
    private readonly ChunkedInput input;
    private DeflateStream? member;
    private uint crc;
    private long memberLength;
    private int members;

    /// <param name="file">The gzip file, positioned at its start; disposed with this stream.</param>
    /// <param name="fileName">The file named in error messages.</param>
    public CheckedGzipStream(FileStream file, string fileName)
    {
        this.file = file;
        this.fileName = fileName;
        input = new ChunkedInput(file);
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        if (buffer.IsEmpty)
            return 0;
        while (true)
        {
            if (member is null && !StartMember())
                return 0;
            int read = member!.Read(buffer);
            if (read > 0)
            {
                crc = Crc32.Append(crc, buffer[..read]);
                memberLength += read;
                return read;
            }
            EndMember();
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            member?.Dispose();
            file.Dispose();
        }
        base.Dispose(disposing);
    }

    /// <summary>Reads the next member's header; false at the end of the file (trailing zero bytes are ignored, as gzip does).</summary>
    private bool StartMember()
    {
        int id1 = file.ReadByte();
        if (id1 < 0 || (members > 0 && id1 == 0 && RestIsZeros()))
            return false;
        Span<byte> header = stackalloc byte[10];
        header[0] = (byte)id1;
        ReadHeaderBytes(header[1..]);
        if (header[0] != 0x1f || header[1] != 0x8b || header[2] != 8 || (header[3] & 0xe0) != 0)
        {
            throw new PeerSharpException(members == 0
                ? $"{fileName} is not a valid gzip file; expected gzip-compressed text"
                : $"{fileName} has bytes that are not gzip data after gzip member {members}; expected a complete .gz file");
        }
        byte flags = header[3];
        if ((flags & 0x04) != 0)
        {
            Span<byte> extraLength = stackalloc byte[2];
            ReadHeaderBytes(extraLength);
            Skip(BinaryPrimitives.ReadUInt16LittleEndian(extraLength));
        }
        if ((flags & 0x08) != 0)
            SkipZeroTerminated();   // original file name
        if ((flags & 0x10) != 0)
            SkipZeroTerminated();   // comment
        if ((flags & 0x02) != 0)
            Skip(2);                // header CRC
        input.Reset();
        member = new DeflateStream(input, CompressionMode.Decompress, leaveOpen: true);
        crc = 0;
        memberLength = 0;
        return true;
    }

    /// <summary>
    /// Finds and checks the trailer of the member just decompressed, and moves past it. The deflate data ended inside
    /// the last chunk DeflateStream read, so the trailer (CRC-32, then length mod 2³², little-endian) is in that
    /// chunk or the 8 bytes after it; a member whose data stops before its end (a truncated file) has none there.
    /// </summary>
    private void EndMember()
    {
        member!.Dispose();
        member = null;
        members++;
        long from = input.LastChunkStart;
        var window = new byte[Math.Min(file.Length, input.LastChunkEnd + 8) - from];
        int length = RandomAccess.Read(file.SafeFileHandle, window, from);
        Span<byte> trailer = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(trailer, crc);
        BinaryPrimitives.WriteUInt32LittleEndian(trailer[4..], (uint)memberLength);
        int at = window.AsSpan(0, length).IndexOf(trailer);
        if (at < 0)
            throw new PeerSharpException($"{fileName} is truncated or corrupt: gzip member {members} stops after {memberLength} decompressed bytes without a matching checksum; expected a complete .gz file");
        file.Position = from + at + 8;
    }

    private bool RestIsZeros()
    {
        int next;
        while ((next = file.ReadByte()) == 0) { }
        return next < 0;
    }

    private void ReadHeaderBytes(Span<byte> bytes)
    {
        if (file.ReadAtLeast(bytes, bytes.Length, throwOnEndOfStream: false) < bytes.Length)
            throw Truncated();
    }

    private void Skip(int count)
    {
        if (file.Position + count > file.Length)
            throw Truncated();
        file.Position += count;
    }

    private void SkipZeroTerminated()
    {
        int next;
        while ((next = file.ReadByte()) > 0) { }
        if (next < 0)
            throw Truncated();
    }

    private PeerSharpException Truncated() =>
        new($"{fileName} is truncated: it ends inside the header of gzip member {members + 1}; expected a complete .gz file");

    /// <summary>The file as DeflateStream reads it, remembering where the last chunk it handed out started and ended.</summary>
    private sealed class ChunkedInput(FileStream file) : ReadOnlyStream
    {
        public long LastChunkStart { get; private set; }
        public long LastChunkEnd { get; private set; }

        public void Reset() => LastChunkStart = LastChunkEnd = file.Position;

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            LastChunkStart = file.Position;
            int read = file.Read(buffer[..Math.Min(buffer.Length, ChunkBytes)]);
            LastChunkEnd = LastChunkStart + read;
            return read;
        }

    }
}

/// <summary>The CRC-32 of gzip and zip (IEEE 802.3, reflected polynomial 0xEDB88320).</summary>
internal static class Crc32
{
    private static readonly uint[] Table = CreateTable();

    /// <summary>The CRC-32 of the bytes hashed so far (<paramref name="crc"/>, 0 for none) followed by <paramref name="bytes"/>.</summary>
    public static uint Append(uint crc, ReadOnlySpan<byte> bytes)
    {
        crc = ~crc;
        foreach (byte b in bytes)
            crc = Table[(crc ^ b) & 0xff] ^ (crc >> 8);
        return ~crc;
    }

    private static uint[] CreateTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++)
                c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
            table[n] = c;
        }
        return table;
    }
}

/// <summary>What every forward-only, read-only stream of ours answers the same way: no seeking, no writing.</summary>
internal abstract class ReadOnlyStream : Stream
{
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
