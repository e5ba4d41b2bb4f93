"""The zoo models of pare written in PyTorch, with the same layer names (state_dict keys) and
layouts. Used by the benchmark peer and by the scripts that make test reference values."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def mlp(hidden, dropout=0.0, inputs=784, classes=10):
    layers = [("flatten", nn.Flatten())]
    n = inputs
    for i, h in enumerate(hidden, 1):
        layers += [(f"fc{i}", nn.Linear(n, h)), (f"relu{i}", nn.ReLU())]
        if dropout > 0:
            layers.append((f"drop{i}", nn.Dropout(dropout)))
        n = h
    layers.append((f"fc{len(hidden) + 1}", nn.Linear(n, classes)))
    return nn.Sequential(__import__("collections").OrderedDict(layers))


class LeNet5(nn.Module):
    """Caffe's LeNet-5 (Deep Compression): no ReLU after the convolutions, as in Caffe."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, classes)

    def forward(self, x):
        x = self.pool2(self.conv2(self.pool1(self.conv1(x))))
        return self.fc2(nn.functional.relu(self.fc1(x.flatten(1))))


class Vgg(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        ch, i = 1, 0
        for stage, out in enumerate([32, 64, 128], 1):
            for _ in range(2):
                i += 1
                setattr(self, f"conv{i}", nn.Conv2d(ch, out, 3, padding=1, bias=False))
                setattr(self, f"bn{i}", nn.BatchNorm2d(out))
                ch = out
        self.fc1 = nn.Linear(128 * 3 * 3, 256, bias=False)
        self.bn_fc1 = nn.BatchNorm1d(256)
        self.fc2 = nn.Linear(256, classes)

    def forward(self, x):
        for i in range(1, 7):
            x = nn.functional.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
            if i % 2 == 0:
                x = nn.functional.max_pool2d(x, 2)
        x = nn.functional.relu(self.bn_fc1(self.fc1(x.flatten(1))))
        return self.fc2(x)


class Block(nn.Module):
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
        y = self.bn2(self.conv2(nn.functional.relu(self.bn1(self.conv1(x)))))
        return nn.functional.relu(y + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet (6n+2) with 1x1-conv projection shortcuts (option B), 1 input channel."""

    def __init__(self, depth=20, classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        ch = 16
        for s, out in enumerate([16, 32, 64], 1):
            blocks = []
            for b in range(n):
                stride = 2 if s > 1 and b == 0 else 1
                blocks.append(Block(ch, out, stride))
                ch = out
            setattr(self, f"layer{s}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = nn.functional.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean((2, 3)))


class MobileNet(nn.Module):
    def __init__(self, width=1.0, classes=10):
        super().__init__()
        w = lambda n: max(1, round(n * width))  # noqa: E731
        ch = w(32)
        self.conv1 = nn.Conv2d(1, ch, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        blocks = []
        for out, stride in [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1)]:
            out = w(out)
            blocks.append(nn.ModuleDict({
                "dw": nn.Conv2d(ch, ch, 3, stride, 1, groups=ch, bias=False),
                "dw_bn": nn.BatchNorm2d(ch),
                "pw": nn.Conv2d(ch, out, 1, bias=False),
                "pw_bn": nn.BatchNorm2d(out),
            }))
            ch = out
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(ch, classes)

    def forward(self, x):
        x = nn.functional.relu(self.bn1(self.conv1(x)))
        for b in self.blocks:
            x = nn.functional.relu(b["dw_bn"](b["dw"](x)))
            x = nn.functional.relu(b["pw_bn"](b["pw"](x)))
        return self.fc(x.mean((2, 3)))


class Fire(nn.Module):
    def __init__(self, inp, squeeze, expand):
        super().__init__()
        self.squeeze = nn.Conv2d(inp, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(x)), F.relu(self.expand3x3(x))], 1)


class SqueezeNet(nn.Module):
    """SqueezeNet for 28x28: 3x3 stem of 64, max-pool, Fire 16/64 x2, max-pool, Fire 32/128 x2,
    torchvision's classifier (1x1 conv, ReLU, global average pool) and initialization."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 3, padding=1)
        self.fire2 = Fire(64, 16, 64)
        self.fire3 = Fire(128, 16, 64)
        self.fire4 = Fire(128, 32, 128)
        self.fire5 = Fire(256, 32, 128)
        self.classifier = nn.Conv2d(256, classes, 1)
        # torchvision's initialization (pare's ZooModel::init does the same): without BatchNorm
        # the default init shrinks the signal until the classifier's ReLU passes nothing.
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d):
                if name == "classifier":
                    nn.init.normal_(m.weight, 0.0, 0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(self.fire3(self.fire2(x)), 2)
        x = self.fire5(self.fire4(x))
        return F.relu(self.classifier(x)).mean((2, 3))


class ShuffleUnit(nn.Module):
    def __init__(self, inp, out, groups, first, group_first_conv):
        super().__init__()
        mid = out // 4
        self.first = first
        self.groups = groups
        branch_out = out - inp if first else out
        self.gconv1 = nn.Conv2d(inp, mid, 1, groups=groups if group_first_conv else 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.dwconv = nn.Conv2d(mid, mid, 3, 2 if first else 1, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.gconv2 = nn.Conv2d(mid, branch_out, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(branch_out)

    def forward(self, x):
        y = F.relu(self.bn1(self.gconv1(x)))
        n, c, h, w = y.shape
        y = y.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)
        y = self.bn3(self.gconv2(self.bn2(self.dwconv(y))))
        if self.first:
            return F.relu(torch.cat([y, F.avg_pool2d(x, 3, 2, 1)], 1))
        return F.relu(y + x)


class ShuffleNet(nn.Module):
    """ShuffleNet v1, 3 groups, for 28x28: stem 24, stages of 60/120/240 channels with 2/4/2
    units (the first of each with stride 2), global average pool, fc."""

    def __init__(self, classes=10, groups=3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 24, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        ch = 24
        for s, (out, units) in enumerate([(60, 2), (120, 4), (240, 2)]):
            stage = []
            for u in range(units):
                stage.append(ShuffleUnit(ch, out, groups, u == 0, not (s == 0 and u == 0)))
                ch = out
            setattr(self, f"stage{s + 2}", nn.Sequential(*stage))
        self.fc = nn.Linear(ch, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.stage4(self.stage3(self.stage2(x)))
        return self.fc(x.mean((2, 3)))


class SepConv(nn.Module):
    """Xception's separable convolution + BN: 3x3 depthwise, then 1x1, both unbiased."""

    def __init__(self, inp, out):
        super().__init__()
        self.dw = nn.Conv2d(inp, inp, 3, 1, 1, groups=inp, bias=False)
        self.pw = nn.Conv2d(inp, out, 1, bias=False)
        self.bn = nn.BatchNorm2d(out)

    def forward(self, x):
        return self.bn(self.pw(self.dw(x)))


class EntryBlock(nn.Module):
    def __init__(self, inp, out, relu_first):
        super().__init__()
        self.relu_first = relu_first
        self.sep1 = SepConv(inp, out)
        self.sep2 = SepConv(out, out)
        self.skip = nn.Conv2d(inp, out, 1, 2, bias=False)
        self.skip_bn = nn.BatchNorm2d(out)

    def forward(self, x):
        y = F.relu(x) if self.relu_first else x
        y = self.sep2(F.relu(self.sep1(y)))
        return F.max_pool2d(y, 3, 2, 1) + self.skip_bn(self.skip(x))


class MiddleBlock(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.sep1 = SepConv(ch, ch)
        self.sep2 = SepConv(ch, ch)
        self.sep3 = SepConv(ch, ch)

    def forward(self, x):
        return x + self.sep3(F.relu(self.sep2(F.relu(self.sep1(F.relu(x))))))


class Xception(nn.Module):
    """Xception for 28x28: stem 16 and 32 (stride 2), entry blocks to 64 and 128 (stride 2
    each), two middle blocks at 128, ReLU, global average pool, fc."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.block1 = EntryBlock(32, 64, False)
        self.block2 = EntryBlock(64, 128, True)
        self.middle1 = MiddleBlock(128)
        self.middle2 = MiddleBlock(128)
        self.fc = nn.Linear(128, classes)

    def forward(self, x):
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        x = self.middle2(self.middle1(self.block2(self.block1(x))))
        return self.fc(F.relu(x).mean((2, 3)))


class VitBlock(nn.Module):
    """Pre-norm transformer block: LayerNorm, self-attention, LayerNorm, GELU MLP."""

    def __init__(self, d, h, f):
        super().__init__()
        self.n1 = nn.LayerNorm(d)
        self.att = nn.MultiheadAttention(d, h, batch_first=True)
        self.n2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, f)
        self.fc2 = nn.Linear(f, d)

    def forward(self, x):
        y = self.n1(x)
        x = x + self.att(y, y, y, need_weights=False)[0]
        return x + self.fc2(F.gelu(self.fc1(self.n2(x))))


class Vit(nn.Module):
    """The zoo's tiny ViT, as shared/reference/vit_reference.py defines it: 7x7 patches (16
    tokens) + class token, dim 64, 4 heads, 4 blocks, MLP 128, learned positions."""

    def __init__(self, d=64, h=4, layers=4, f=128, classes=10):
        super().__init__()
        self.patch = nn.Conv2d(1, d, 7, 7)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.randn(1, 17, d) * 0.02)
        self.blocks = nn.Sequential(*[VitBlock(d, h, f) for _ in range(layers)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


def build(name):
    name = name.lower().replace("-", "")
    if name == "lenet300":
        return mlp([300, 100])
    if name == "lenet5":
        return LeNet5()
    if name.startswith("mlp"):
        # mlp:1200,1200[:dropout]
        parts = name.split(":")
        hidden = [int(h) for h in parts[1].split(",")] if len(parts) > 1 else [800, 800]
        return mlp(hidden, float(parts[2]) if len(parts) > 2 else 0.0)
    if name == "vgg":
        return Vgg()
    if name.startswith("resnet"):
        return ResNet(int(name[6:] or 20))
    if name == "mobilenet":
        return MobileNet()
    if name == "vit":
        return Vit()
    if name == "squeezenet":
        return SqueezeNet()
    if name == "shufflenet":
        return ShuffleNet()
    if name == "xception":
        return Xception()
    if name.startswith("mobilenet:"):
        return MobileNet(float(name.split(":")[1]))
    raise SystemExit(f"unknown model {name}")
