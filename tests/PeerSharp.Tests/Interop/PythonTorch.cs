using System.Diagnostics;

namespace PeerSharp.Tests.Interop;

/// <summary>Debian's PyTorch (python3-torch, which .ci/run installs), for the interoperability tests.</summary>
static class PythonTorch
{
    /// <summary>Debian's interpreter: a python3 earlier on PATH (pyenv, a venv) may lack the system's torch.</summary>
    public const string Python = "/usr/bin/python3";

    static readonly Lazy<string?> Missing = new(() =>
    {
        if (!File.Exists(Python)) return $"{Python} is not installed";
        var (code, _, error) = Run("-c", "import torch");
        return code == 0 ? null : $"{Python} cannot import torch ({error.Trim().Split('\n')[^1]})";
    });

    /// <summary>Why PyTorch cannot run here, or null when it can.</summary>
    public static string? Unavailable => Missing.Value;

    /// <summary>The reference script beside the tests.</summary>
    public static string Script => Path.Combine(AppContext.BaseDirectory, "Interop", "peer_torch.py");

    /// <summary>Runs Debian's python3 with the arguments; exit code, standard output and standard error.</summary>
    public static (int Code, string Output, string Error) Run(params string[] arguments)
    {
        var start = new ProcessStartInfo(Python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        return (process.ExitCode, output.Result, error.Result);
    }
}

/// <summary>A fact that needs PyTorch: skipped, saying why and how to get it, where Debian's python3-torch is missing.</summary>
public sealed class PythonTorchFactAttribute : FactAttribute
{
    /// <summary>Skips the test when PyTorch cannot run.</summary>
    public PythonTorchFactAttribute()
    {
        if (PythonTorch.Unavailable is { } reason)
            Skip = $"PyTorch interoperability not tested: {reason}; `apt-get install python3-torch` (as .ci/run does) enables it";
    }
}
