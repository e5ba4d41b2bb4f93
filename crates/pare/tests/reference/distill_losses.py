"""Reference values for pare's distillation loss terms, computed with PyTorch as the papers'
public code defines them. Writes distill_losses.json next to this file.

    python crates/pare/tests/reference/distill_losses.py
"""
import json
import os

import torch
import torch.nn.functional as F

torch.manual_seed(0)
B, C, H, W = 4, 3, 3, 3
x = torch.randn(B, C, H, W)          # the student's activation (the test's model taps its input)
t_same = torch.randn(B, C, H, W)     # a teacher activation of the same shape
t_wide = torch.randn(B, 5, H, W)     # a teacher with more channels (AT, RKD, SP allow it)


def at(a, p):
    return F.normalize(a.abs().pow(p).mean(1).view(a.size(0), -1))


def at_loss(s, t, p=2.0):
    return (at(s, p) - at(t, p)).pow(2).mean()


def pdist(e, eps=1e-12):
    sq = e.pow(2).sum(dim=1)
    prod = e @ e.t()
    res = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * prod).clamp(min=eps).sqrt().clone()
    res[range(len(e)), range(len(e))] = 0
    return res


def rkd_distance(s, t):
    t_d = pdist(t)
    t_d = t_d / t_d[t_d > 0].mean()
    d = pdist(s)
    d = d / d[d > 0].mean()
    return F.smooth_l1_loss(d, t_d)


def rkd_angle(s, t):
    def angles(e):
        ed = e.unsqueeze(0) - e.unsqueeze(1)
        n = F.normalize(ed, p=2, dim=2)
        return torch.bmm(n, n.transpose(1, 2)).view(-1)
    return F.smooth_l1_loss(angles(s), angles(t))


def sp_loss(s, t):
    b = s.size(0)
    gs = F.normalize(s.view(b, -1) @ s.view(b, -1).t())
    gt = F.normalize(t.view(b, -1) @ t.view(b, -1).t())
    return (gs - gt).pow(2).sum() / (b * b)


flat = lambda a: a.reshape(a.size(0), -1)
out = {
    "shape": [B, C, H, W],
    "x": x.flatten().tolist(),
    "t_same": t_same.flatten().tolist(),
    "t_wide": t_wide.flatten().tolist(),
    "mse": F.mse_loss(x, t_same).item(),
    "at_p2": at_loss(x, t_wide).item(),
    "at_p1": at_loss(x, t_wide, 1.0).item(),
    "rkd_distance": rkd_distance(flat(x), flat(t_wide)).item(),
    "rkd_angle": rkd_angle(flat(x), flat(t_wide)).item(),
    "sp": sp_loss(x, t_wide).item(),
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distill_losses.json")
with open(path, "w") as f:
    json.dump(out, f)
print({k: v for k, v in out.items() if not isinstance(v, list)})
