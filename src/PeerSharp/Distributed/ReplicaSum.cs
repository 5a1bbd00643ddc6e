using TorchSharp;
using static TorchSharp.torch;

namespace PeerSharp.Distributed;

/// <summary>
/// A differentiable sum over the ranks: forward y = Σ_r x_r (all-reduce), backward ∂x_r = Σ_r' ∂y_r' (all-reduce
/// again), since y feeds the loss of every rank. What batch statistics shared across ranks are built from
/// (the query BatchNorm of a data-parallel run, DESIGN.md "Distributed training"). Every rank must run the same
/// forwards and backwards in the same order: the collectives pair up by order.
/// </summary>
public static class ReplicaSum
{
    /// <summary>Σ over the ranks of <paramref name="x"/> (float32, any shape), differentiable.</summary>
    public static Tensor Apply(Tensor x, ICommunicator communicator) =>
        communicator.Size == 1 ? x : SumFunction.apply(x.contiguous(), communicator);

    /// <summary>The autograd node; a singleton (TorchSharp keeps one), so the communicator travels in the context.</summary>
    sealed class SumFunction : autograd.SingleTensorFunction<SumFunction>
    {
        public override string Name => "ReplicaSum";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var (x, communicator) = ((Tensor)vars[0], (ICommunicator)vars[1]);
            ctx.save_data("communicator", communicator);
            var y = x.clone();
            communicator.AllReduceSum(y);
            return y;
        }

        // A failure here ends the process (it runs inside libtorch's engine); mpirun then stops the other ranks.
        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            try
            {
                var communicator = (ICommunicator)ctx.get_data("communicator");
                var dx = gradOutput.contiguous().clone();
                communicator.AllReduceSum(dx);
                return [dx, null!];
            }
            catch (Exception e)
            {
                Console.Error.WriteLine($"fatal: replica sum backward failed: {e.Message}");
                throw;
            }
        }
    }
}
