#!/usr/bin/env python3
"""Makes tests/reference/lenet5_golden.safetensors: a Caffe LeNet-5 trained briefly in PyTorch on
Fashion-MNIST, saved with safetensors.torch.save_file under its state_dict names, plus a batch of
8 normalized test images ("golden.input") and PyTorch's logits for them ("golden.logits").
tests/golden.rs loads the weights into pare and checks the logits agree within 1e-4.

Run (needs torch, safetensors, numpy; data from the Debian package dataset-fashion-mnist):
  python3 crates/pare/tests/reference/lenet5_golden.py
"""
import torch
from golden_common import save_golden, train_set
from models import LeNet5  # noqa: E402 (bench/, put on the path by golden_common)

torch.manual_seed(0)
xt, yt, mean, std = train_set()
model = LeNet5()
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
for i in range(0, 300 * 128, 128):  # 300 steps: trained, so the logits are not near zero
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(xt[i : i + 128]), yt[i : i + 128]).backward()
    opt.step()
save_golden(model, "lenet5_golden.safetensors", mean, std)
