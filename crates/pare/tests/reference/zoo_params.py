#!/usr/bin/env python3
"""Prints the parameter count of every zoo model written in PyTorch (bench/models.py).
Its output is tests/reference/zoo_params.json, which tests/zoo.rs compares pare's counts with.
Run: python3 crates/pare/tests/reference/zoo_params.py > crates/pare/tests/reference/zoo_params.json
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "bench"))
from models import build  # noqa: E402

NAMES = ["lenet300", "lenet5", "mlp:1200,1200:0.5", "mlp:800,800", "mlp:30,30", "vgg",
         "resnet8", "resnet14", "resnet20", "resnet32", "resnet56", "mobilenet", "mobilenet:0.5", "vit",
         "squeezenet", "shufflenet", "xception"]
print(json.dumps({n: sum(p.numel() for p in build(n).parameters()) for n in NAMES}, indent=1))
