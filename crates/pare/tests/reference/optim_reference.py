#!/usr/bin/env python3
"""Reference values for tests/train.rs: the parameter after 5 steps of each torch optimizer on a
fixed gradient sequence g_t = [0.1 t, -0.2, 0.3 (-1)^t], starting from p = [1, -2, 3], lr 0.1.
Run: python3 crates/pare/tests/reference/optim_reference.py > crates/pare/tests/reference/optim_reference.json
"""
import json

import torch

CONFIGS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1),
    "sgd_momentum_wd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
    "sgd_nesterov": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    "sgd_dampening": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.5),
    "adam": lambda p: torch.optim.Adam(p, lr=0.1),
    "adam_wd": lambda p: torch.optim.Adam(p, lr=0.1, weight_decay=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.01),
}
out = {}
for name, make in CONFIGS.items():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = make([p])
    for t in range(1, 6):
        p.grad = torch.tensor([0.1 * t, -0.2, 0.3 * (-1) ** t])
        opt.step()
    out[name] = p.detach().tolist()
print(json.dumps(out, indent=1))
