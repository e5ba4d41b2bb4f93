"""Exports four PyTorch CNNs with torch.onnx, as a user's own models would come to pare, and
records onnxruntime's outputs on a seeded batch beside each (ONNX's test-data layout), so pare's
import can be checked against onnxruntime on files it did not write:

- resnet18: ResNet-18 for 3x32x32 inputs (3x3 stem, four stages of two basic blocks, stride-2
  1x1 projection shortcuts, global average pool);
- mobilenetv2: MobileNetV2-style inverted residuals (1x1 expand, 3x3 depthwise, 1x1 project,
  ReLU6, residual where shapes match);
- senet: a ResNet-style net whose blocks end in squeeze-and-excitation (global pool, two 1x1
  convolutions, HardSigmoid, broadcast Mul) with HardSwish activations;
- ceilpool: ceil-mode max and average pools with partial last windows (SqueezeNet's stem).

Weights are seeded and BatchNorm statistics drawn away from their defaults, so every tensor of
the export is checked. `--width` scales every layer's channels (the suite's committed copies
use a small width; the benchmarks use 1.0).

Usage: python bench/torch_onnx_models.py OUT_DIR [--width 1.0] [--batch 4] [--opset 17]
torch, onnx and onnxruntime come from pip, in bench/.venv only.
"""

import argparse
import os

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn


def ch(c, width):
    return max(4, int(round(c * width)))


class Basic(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, width=1.0, classes=10):
        super().__init__()
        c = [ch(v, width) for v in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(3, c[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c[0])
        layers, cin = [], c[0]
        for i, cout in enumerate(c):
            for j in range(2):
                layers.append(Basic(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        x = nn.functional.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class Inverted(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        mid = cin * expand
        self.residual = stride == 1 and cin == cout
        self.block = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    def __init__(self, width=1.0, classes=10):
        super().__init__()
        stem = ch(32, width)
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU6())
        cfg = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
        blocks, cin = [], stem
        for t, c, n, s in cfg:
            cout = ch(c, width)
            for k in range(n):
                blocks.append(Inverted(cin, cout, s if k == 0 else 1, t))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        last = ch(1280, width)
        self.head = nn.Sequential(nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(last, classes)

    def forward(self, x):
        x = self.pool(self.head(self.blocks(self.stem(x))))
        return self.classifier(self.dropout(torch.flatten(x, 1)))


class SE(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, max(4, c // r), 1)
        self.fc2 = nn.Conv2d(max(4, c // r), c, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        s = self.gate(self.fc2(torch.relu(self.fc1(self.pool(x)))))
        return x * s


class SEBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act = nn.Hardswish()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.se = SE(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.act(self.bn1(self.conv1(x)))
        y = self.se(self.bn2(self.conv2(y)))
        return self.act(y + self.shortcut(x))


class SENet(nn.Module):
    def __init__(self, width=1.0, classes=10):
        super().__init__()
        c = [ch(v, width) for v in (32, 64, 128)]
        self.stem = nn.Sequential(nn.Conv2d(3, c[0], 3, 1, 1, bias=False), nn.BatchNorm2d(c[0]), nn.Hardswish())
        self.blocks = nn.Sequential(SEBlock(c[0], c[0], 1), SEBlock(c[0], c[1], 2), SEBlock(c[1], c[2], 2))
        self.fc = nn.Linear(c[2], classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(x.mean((2, 3)))


class CeilPoolNet(nn.Module):
    """SqueezeNet's ceil-mode max pool and two ceil-mode average pools (padding counted and
    not), each with a partial last window on 32x32 inputs (32 -> 16 -> 9 -> 5; floor mode
    would give 15 -> 8 -> 4)."""

    def __init__(self, width=1.0, classes=10):
        super().__init__()
        c = ch(64, width)
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, 1, 1), nn.ReLU())
        self.pools = nn.Sequential(
            nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=True),
            nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False),
        )
        self.conv = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.ReLU())
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        return self.fc(self.conv(self.pools(self.stem(x))).mean((2, 3)))


MODELS = {"resnet18": ResNet18, "mobilenetv2": MobileNetV2, "senet": SENet, "ceilpool": CeilPoolNet}


def randomize_batch_norms(model, gen):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def export(name, out, width, batch, opset, dynamo, keep_bn):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = MODELS[name](width).eval()
    randomize_batch_norms(model, gen)
    x = torch.rand(batch, 3, 32, 32, generator=gen)
    path = os.path.join(out, f"{name}.onnx")
    torch.onnx.export(
        model, (x,), path, input_names=["images"], output_names=["logits"], opset_version=opset,
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, dynamo=dynamo,
        # PRESERVE skips the eval-mode peephole that folds BatchNorm into the convolutions.
        **({"training": torch.onnx.TrainingMode.PRESERVE} if keep_bn else {}),
    )
    onnx.checker.check_model(onnx.load(path), full_check=True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"images": x.numpy()})
    with torch.no_grad():
        diff = float(np.abs(model(x).numpy() - y).max())
    case = os.path.join(out, f"{name}-test", "test_data_set_0")
    os.makedirs(case, exist_ok=True)
    for fname, arr, tname in (("input_0.pb", x.numpy(), "images"), ("output_0.pb", y, "logits")):
        with open(os.path.join(case, fname), "wb") as f:
            f.write(numpy_helper.from_array(arr, tname).SerializeToString())
    params = sum(p.numel() for p in model.parameters())
    print(f"{path}: {params} parameters, {os.path.getsize(path)} bytes; onnxruntime vs torch {diff:.2e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--dynamo", action="store_true", help="torch.export-based exporter (else TorchScript's)")
    ap.add_argument("--keep-bn", action="store_true", help="keep BatchNorm nodes (a model to train further)")
    ap.add_argument("--only", choices=list(MODELS), help="export this model only")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for name in [a.only] if a.only else MODELS:
        export(name, a.out, a.width, a.batch, a.opset, a.dynamo, a.keep_bn)


if __name__ == "__main__":
    main()
