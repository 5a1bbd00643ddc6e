using static TorchSharp.torch;

namespace PeerSharp.Kernels;

/// <summary>Runs the body of a custom autograd backward, naming the kernel if it fails.</summary>
static class BackwardGuard
{
    /// <summary>
    /// libtorch cannot carry a managed exception back to the caller of backward() and the process ends: print
    /// which kernel failed and why before that happens.
    /// </summary>
    public static List<Tensor> Run(string kernel, Func<List<Tensor>> backward)
    {
        try
        {
            return backward();
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"fatal: {kernel} backward failed: {e}");
            throw;
        }
    }
}
