namespace PeerSharp.Training;

/// <summary>
/// An exclusive lock on a run folder, so that two trainings never write the same checkpoint and log.
/// FOLDER/.lock is held open exclusively (an advisory lock the system drops when the process dies, so a crash
/// never leaves the folder locked); FOLDER/.lock.owner says who holds it, for the refusal message.
/// </summary>
sealed class RunFolderLock : IDisposable
{
    readonly FileStream _lock;
    readonly string _ownerPath;

    RunFolderLock(FileStream handle, string ownerPath) => (_lock, _ownerPath) = (handle, ownerPath);

    /// <summary>Creates the folder if needed and locks it; a <see cref="PeerSharpException"/> naming the holder if another process has it.</summary>
    public static RunFolderLock Acquire(string folder)
    {
        try
        {
            Directory.CreateDirectory(folder);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new PeerSharpException($"cannot create run folder '{folder}' ({e.Message}); expected a path where a folder can be made");
        }
        var lockPath = Path.Combine(folder, ".lock");
        var ownerPath = Path.Combine(folder, ".lock.owner");
        FileStream handle;
        try
        {
            handle = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e) when (HeldByAnother(e))
        {
            var owner = File.Exists(ownerPath) ? File.ReadAllText(ownerPath).Trim() : "another process";
            throw new PeerSharpException($"run folder '{folder}' is in use by {owner}; wait for it to finish or choose another --out");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A folder that takes no files (/proc, a read-only mount), or one without write permission.
            throw new PeerSharpException($"cannot write to run folder '{folder}' ({e.Message}); expected a writable folder");
        }
        try
        {
            File.WriteAllText(ownerPath, $"process {Environment.ProcessId} on {Environment.MachineName} (since {DateTime.UtcNow:yyyy-MM-dd HH:mm:ss} UTC)");
        }
        catch
        {
            handle.Dispose();
            throw;
        }
        return new RunFolderLock(handle, ownerPath);
    }

    /// <summary>
    /// Whether opening the lock file failed because another process holds it: the lock's EWOULDBLOCK on Unix (errno
    /// 11 on Linux, 35 on macOS and BSD), a sharing violation on Windows.
    /// </summary>
    static bool HeldByAnother(IOException e) =>
        e.GetType() == typeof(IOException) && e.HResult is 11 or 35 or unchecked((int)0x80070020);

    /// <summary>Releases the lock.</summary>
    public void Dispose()
    {
        try
        {
            File.Delete(_ownerPath);
        }
        catch (DirectoryNotFoundException)
        {
            // The folder was deleted while the run held it; the trainer said so.
        }
        _lock.Dispose();
    }
}
