#!/usr/bin/env python3
"""The PyTorch peer of `pare bench train`: trains the same model on the same data with the same
batch size and optimizer (SGD lr 0.01, momentum 0.9, batch 128 unless told otherwise) on the CPU
with a fixed number of threads, and prints seconds per epoch as JSON.

Install torch with pip only to benchmark (bench/compare.sh does); tests never need it.
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import build  # noqa: E402


def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=os.environ.get("PARE_DATA", "/usr/share/datasets/fashion-mnist"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x = read_idx(os.path.join(a.data, "train-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
    y = read_idx(os.path.join(a.data, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    mean, std = x.mean(), x.std()
    x = torch.from_numpy((x - mean) / std).unsqueeze(1)
    y = torch.from_numpy(y)
    model = build(a.model)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for _ in range(a.epochs):
        model.train()
        perm = torch.randperm(len(y))
        t0 = time.perf_counter()
        for i in range(0, len(y), a.batch_size):
            idx = perm[i : i + a.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    xt = read_idx(os.path.join(a.data, "t10k-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
    yt = torch.from_numpy(read_idx(os.path.join(a.data, "t10k-labels-idx1-ubyte.gz")).astype(np.int64))
    xt = torch.from_numpy((xt - mean) / std).unsqueeze(1)
    model.eval()
    with torch.no_grad():
        acc = sum((model(xt[i : i + 1000]).argmax(1) == yt[i : i + 1000]).sum().item() for i in range(0, len(yt), 1000)) / len(yt)
    print(json.dumps({"model": a.model, "threads": a.threads, "batch_size": a.batch_size,
                      "seconds_per_epoch": times, "mean_seconds_per_epoch": sum(times) / len(times),
                      "test_accuracy": acc}))


if __name__ == "__main__":
    main()
