using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PeerSharp.Layers;

/// <summary>
/// Step 1 of product-key retrieval, shared by PEER and PKM: the h query networks stacked in one linear map
/// [h·d_key, d_model], then BatchNorm over the h·d_key query features (Lample et al. 2019). Its parts are
/// registered on the owning layer under PEER.md's contract names, "query" and "query_norm", so the layer's
/// state dict stays flat.
/// </summary>
public sealed class ProductKeyQueries
{
    readonly Linear _query;             // [h·d_key, d_model]
    readonly BatchNorm1d? _queryNorm;   // over the h·d_key query features
    readonly int _headCount, _keyDim;

    /// <summary>Creates the query networks (and BatchNorm) and registers them on <paramref name="owner"/>.</summary>
    public ProductKeyQueries(nn.Module owner, int modelDim, int headCount, int keyDim, bool batchNorm)
    {
        (_headCount, _keyDim) = (headCount, keyDim);
        _query = nn.Linear(modelDim, headCount * keyDim, hasBias: false);
        owner.register_module("query", _query);
        if (batchNorm)
        {
            _queryNorm = nn.BatchNorm1d(headCount * keyDim, eps: 1e-5, momentum: 0.1);
            owner.register_module("query_norm", _queryNorm);
        }
    }

    /// <summary>One query per head, q = BN(W_q x); head j reads features [j·d_key, (j+1)·d_key). x: [M, d_model] → [M, h, d_key].</summary>
    public Tensor Compute(Tensor x)
    {
        using var scope = NewDisposeScope();
        var features = _query.forward(x);                                            // [M, h·d_key]
        if (_queryNorm is not null) features = _queryNorm.forward(features);
        return scope.MoveToOuter(features.view(-1, _headCount, _keyDim));            // [M, h, d_key]
    }

    /// <summary>
    /// Fresh sub-key sets C, C' [2, n, d_key/2]. Queries leave the BatchNorm with unit variance per feature, so
    /// sub-keys of variance 2/d_key give sub-key scores of unit variance.
    /// </summary>
    public static Parameter NewSubKeys(int subKeyCount, int keyDim) =>
        new(randn(2, subKeyCount, keyDim / 2) * Math.Sqrt(2.0 / keyDim));
}
