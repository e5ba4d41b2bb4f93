"""What the golden scripts share: Fashion-MNIST normalized as pare normalizes it, and the
golden file's layout (the state_dict under its own names, "golden.input", "golden.logits")."""
import gzip
import os
import struct
import sys

import numpy as np
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "..", "bench"))
DATA = os.environ.get("PARE_DATA", "/usr/share/datasets/fashion-mnist")


def read_idx(name):
    raw = gzip.decompress(open(os.path.join(DATA, name), "rb").read())
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def train_set():
    """Training images `[N, 1, 28, 28]` normalized by their own mean and std, labels, mean, std."""
    x = read_idx("train-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    y = read_idx("train-labels-idx1-ubyte.gz").astype(np.int64)
    mean, std = float(x.mean()), float(x.std())
    return torch.from_numpy((x - mean) / std).unsqueeze(1), torch.from_numpy(y), mean, std


def save_golden(model, file, mean, std, count=8):
    """Eval-mode logits of the first `count` test images, saved with the model's weights."""
    model.eval()
    test = read_idx("t10k-images-idx3-ubyte.gz")[:count].astype(np.float32) / 255.0
    inp = torch.from_numpy((test - mean) / std).unsqueeze(1).contiguous()
    with torch.no_grad():
        logits = model(inp)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    tensors["golden.input"] = inp
    tensors["golden.logits"] = logits.contiguous()
    save_file(tensors, os.path.join(HERE, file), metadata={"mean": str(mean), "std": str(std)})
    print(f"wrote {file}; logits[0] =", logits[0].tolist())
