#!/usr/bin/env python3
"""PyTorch's side of the ViT protocol (shared/reference/vit_reference.py): the zoo's tiny ViT
(models.Vit) trained on Fashion-MNIST with AdamW lr 1e-3, weight decay 0.05, a per-step cosine
schedule, batch 128, no augmentation, pixels normalized by the training set's mean and std, on
the CPU with 2 threads. Prints one JSON line per epoch: seconds and test accuracy.

  bench/.venv/bin/python bench/vit_train.py EPOCHS [SEED]
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import Vit  # noqa: E402
from torch_train import read_idx  # noqa: E402

epochs = int(sys.argv[1])
torch.manual_seed(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
torch.set_num_threads(2)
data = os.environ.get("PARE_DATA", "/usr/share/datasets/fashion-mnist")
load = lambda name: torch.tensor(read_idx(os.path.join(data, name)).copy())  # noqa: E731
xtr = load("train-images-idx3-ubyte.gz").float().div(255).unsqueeze(1)
ytr = load("train-labels-idx1-ubyte.gz").long()
xte = load("t10k-images-idx3-ubyte.gz").float().div(255).unsqueeze(1)
yte = load("t10k-labels-idx1-ubyte.gz").long()
mean, std = xtr.mean(), xtr.std()
xtr, xte = (xtr - mean) / std, (xte - mean) / std
model = Vit()
opt = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=0.05)
steps = epochs * ((len(xtr) + 127) // 128)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
for e in range(epochs):
    start = time.time()
    model.train()
    perm = torch.randperm(len(xtr))
    for i in range(0, len(xtr), 128):
        b = perm[i : i + 128]
        loss = F.cross_entropy(model(xtr[b]), ytr[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    seconds = time.time() - start
    model.eval()
    with torch.no_grad():
        correct = sum((model(xte[i : i + 1000]).argmax(1) == yte[i : i + 1000]).sum().item() for i in range(0, 10000, 1000))
    print(json.dumps({"epoch": e + 1, "seconds": round(seconds, 2), "test_accuracy": correct / 10000}), flush=True)
