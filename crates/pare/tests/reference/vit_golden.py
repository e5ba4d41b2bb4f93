#!/usr/bin/env python3
"""Makes tests/reference/vit_golden.safetensors: the zoo's tiny ViT (bench/models.py, as
shared/reference/vit_reference.py defines it) trained briefly in PyTorch on Fashion-MNIST with
AdamW, saved with safetensors.torch.save_file under its state_dict names (nn.MultiheadAttention's
in_proj_weight / out_proj.weight, bare cls and pos parameters), plus 8 normalized test images
("golden.input") and PyTorch's eval-mode logits for them ("golden.logits").
tests/golden.rs loads the weights into pare and checks both engines' logits agree within 1e-4.

Run (needs torch, safetensors, numpy; data from the Debian package dataset-fashion-mnist):
  python3 crates/pare/tests/reference/vit_golden.py
"""
import torch
from golden_common import save_golden, train_set
from models import Vit  # noqa: E402 (bench/, put on the path by golden_common)

torch.manual_seed(0)
torch.set_num_threads(2)
xt, yt, mean, std = train_set()
model = Vit()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
for i in range(0, 200 * 128, 128):  # 200 steps: trained, so attention is not uniform
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(xt[i : i + 128]), yt[i : i + 128]).backward()
    opt.step()
save_golden(model, "vit_golden.safetensors", mean, std)
