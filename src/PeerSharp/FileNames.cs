namespace PeerSharp;

/// <summary>Names from files and specs that the code joins to a folder: a checkpoint's tensor files, a sweep's run folders.</summary>
static class FileNames
{
    /// <summary>
    /// Whether <paramref name="name"/> is a plain file name, one that joined to a folder stays in it: not empty, not
    /// "." or "..", without a folder separator of any system ('/' or '\'), a control character or a root.
    /// </summary>
    public static bool IsPlain(string name) =>
        name.Length > 0 && name is not ("." or "..") && name.IndexOfAny(['/', '\\']) < 0 && !name.Any(char.IsControl)
        && !Path.IsPathRooted(name) && Path.GetFileName(name) == name;
}
