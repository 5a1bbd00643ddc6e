"""PEER in plain PyTorch, from the documented state-dict names alone (docs/DESIGN.md "Parameter contract").

The interoperability tests run it with Debian's python3-torch:
  peer_torch.py forward CHECKPOINT.safetensors PREFIX INPUT.safetensors OUTPUT.safetensors HEADS TOPK
      reads the PEER layer stored under PREFIX (e.g. "blocks.1.ffn.") in a PeerSharp checkpoint, runs it in
      evaluation mode on the tensor "x" of INPUT and writes "y"
  peer_torch.py write LAYER.safetensors D_MODEL N_SUB HEADS TOPK D_KEY SEED
      writes a random PEER layer under the contract's names (as PyTorch code would), plus "x" and the "y" this
      reference computes, for PeerSharp to load and compare
It uses no PeerSharp code and no safetensors package: the format is an 8-byte little-endian header length, a
JSON header, then the raw little-endian tensors.
"""
import json
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64}
NAMES = {v: k for k, v in DTYPES.items()}


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    base = 8 + length
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        raw = bytearray(data[base + begin:base + end])
        tensors[name] = torch.frombuffer(raw, dtype=DTYPES[entry["dtype"]]).reshape(entry["shape"]).clone() if end > begin \
            else torch.zeros(entry["shape"], dtype=DTYPES[entry["dtype"]])
    return tensors


def save(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        raw = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def peer_forward(p, x, heads, topk):
    """The paper's five steps, evaluation mode (BatchNorm with its running statistics), GELU experts."""
    features = x @ p["query.weight"].t()                                             # [M, h·d_key]
    if "query_norm.weight" in p:
        features = (features - p["query_norm.running_mean"]) / torch.sqrt(p["query_norm.running_var"] + 1e-5) \
            * p["query_norm.weight"] + p["query_norm.bias"]
    keys = p["keys"]                                                                   # [2, n, d_key/2]
    n, half = keys.shape[1], keys.shape[2]
    q = features.view(x.shape[0], heads, 2 * half)                                     # [M, h, d_key]
    s1 = q[..., :half] @ keys[0].t()                                                   # [M, h, n]
    s2 = q[..., half:] @ keys[1].t()
    b1, a = s1.topk(topk, dim=-1)
    b2, b = s2.topk(topk, dim=-1)
    candidates = (b1.unsqueeze(-1) + b2.unsqueeze(-2)).flatten(-2)                    # [M, h, k²]
    scores, position = candidates.topk(topk, dim=-1)
    ids = a.gather(-1, position // topk) * n + b.gather(-1, position % topk)          # id = a·n + b
    gates = scores.softmax(-1)                                                         # [M, h, k]
    u = p["down.weight"][ids]                                                          # [M, h, k, d]
    v = p["up.weight"][ids]
    activation = torch.nn.functional.gelu((u * x[:, None, None, :]).sum(-1))          # [M, h, k]
    return ((gates * activation).unsqueeze(-1) * v).sum(dim=(1, 2))                    # [M, d]


def main():
    torch.set_default_dtype(torch.float64)
    if sys.argv[1] == "forward":
        _, _, checkpoint, prefix, inputs, output, heads, topk = sys.argv
        state = load(checkpoint)
        layer = {k[len(prefix):]: v.double() for k, v in state.items() if k.startswith(prefix)}
        x = load(inputs)["x"].double()
        save(output, {"y": peer_forward(layer, x, int(heads), int(topk)).float()})
    elif sys.argv[1] == "write":
        _, _, path, d, n, heads, topk, dk, seed = sys.argv
        d, n, heads, topk, dk = int(d), int(n), int(heads), int(topk), int(dk)
        g = torch.Generator().manual_seed(int(seed))
        features = heads * dk
        layer = {
            "query.weight": torch.randn(features, d, generator=g) / d ** 0.5,
            "query_norm.weight": 0.5 + torch.rand(features, generator=g),
            "query_norm.bias": 0.1 * torch.randn(features, generator=g),
            "query_norm.running_mean": 0.1 * torch.randn(features, generator=g),
            "query_norm.running_var": 0.5 + torch.rand(features, generator=g),
            "keys": torch.randn(2, n, dk // 2, generator=g) * (2.0 / dk) ** 0.5,
            "down.weight": torch.randn(n * n, d, generator=g) / d ** 0.5,
            "up.weight": torch.randn(n * n, d, generator=g) * 0.1,
        }
        layer = {k: v.float() for k, v in layer.items()}
        x = torch.randn(7, d, generator=g).float()
        y = peer_forward({k: v.double() for k, v in layer.items()}, x.double(), heads, topk).float()
        save(path, {**layer, "query_norm.num_batches_tracked": torch.tensor(3, dtype=torch.int64), "x": x, "y": y})
    else:
        raise SystemExit(f"unknown command {sys.argv[1]}")


if __name__ == "__main__":
    main()
