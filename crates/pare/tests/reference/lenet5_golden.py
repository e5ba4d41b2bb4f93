#!/usr/bin/env python3
"""Makes tests/reference/lenet5_golden.safetensors: a Caffe LeNet-5 trained briefly in PyTorch on
Fashion-MNIST, saved with safetensors.torch.save_file under its state_dict names, plus a batch of
8 normalized test images ("golden.input") and PyTorch's logits for them ("golden.logits").
tests/golden.rs loads the weights into pare and checks the logits agree within 1e-4.

Run (needs torch, safetensors, numpy; data from the Debian package dataset-fashion-mnist):
  python3 crates/pare/tests/reference/lenet5_golden.py
"""
import gzip
import os
import struct
import sys

import numpy as np
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "..", "bench"))
from models import LeNet5  # noqa: E402

DATA = os.environ.get("PARE_DATA", "/usr/share/datasets/fashion-mnist")


def read_idx(name):
    raw = gzip.decompress(open(os.path.join(DATA, name), "rb").read())
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


torch.manual_seed(0)
x = read_idx("train-images-idx3-ubyte.gz").astype(np.float32) / 255.0
y = read_idx("train-labels-idx1-ubyte.gz").astype(np.int64)
mean, std = float(x.mean()), float(x.std())
xt = torch.from_numpy((x - mean) / std).unsqueeze(1)
yt = torch.from_numpy(y)
model = LeNet5()
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
for i in range(0, 300 * 128, 128):  # 300 steps: trained, so the logits are not near zero
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(xt[i : i + 128]), yt[i : i + 128]).backward()
    opt.step()
model.eval()
test = read_idx("t10k-images-idx3-ubyte.gz")[:8].astype(np.float32) / 255.0
inp = torch.from_numpy((test - mean) / std).unsqueeze(1).contiguous()
with torch.no_grad():
    logits = model(inp)
tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
tensors["golden.input"] = inp
tensors["golden.logits"] = logits.contiguous()
save_file(tensors, os.path.join(HERE, "lenet5_golden.safetensors"), metadata={"mean": str(mean), "std": str(std)})
print("wrote lenet5_golden.safetensors; logits[0] =", logits[0].tolist())
