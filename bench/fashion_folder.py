"""Writes Fashion-MNIST as a 3-channel image folder (torchvision's ImageFolder layout: train/
and test/, one subfolder per class, PNG files), for trying pare on an RGB image folder with a
set that installs offline. Each 28x28 image is padded to 32x32 and tinted with a color drawn
per image (seeded), so the three channels differ.

Usage: python bench/fashion_folder.py OUT_DIR [--train 10000] [--test 2000] [--data DIR]
numpy and pillow come from pip, in bench/.venv only.
"""

import argparse
import gzip
import os

import numpy as np
from PIL import Image

CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def write(out, split, images, labels, rng):
    for c in CLASSES:
        os.makedirs(os.path.join(out, split, c), exist_ok=True)
    for k, (img, label) in enumerate(zip(images, labels)):
        tint = rng.uniform(0.4, 1.0, size=3)
        padded = np.pad(img, 2).astype(np.float32)
        rgb = (padded[:, :, None] * tint[None, None, :]).round().astype(np.uint8)
        Image.fromarray(rgb, "RGB").save(os.path.join(out, split, CLASSES[label], f"{k:05d}.png"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=10000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--data", default=os.environ.get("PARE_DATA", "/usr/share/datasets/fashion-mnist"))
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    for split, stem, n in (("train", "train", a.train), ("test", "t10k", a.test)):
        images = read_idx(os.path.join(a.data, f"{stem}-images-idx3-ubyte.gz"))[:n]
        labels = read_idx(os.path.join(a.data, f"{stem}-labels-idx1-ubyte.gz"))[:n]
        write(a.out, split, images, labels, rng)
    print(f"{a.out}: {a.train} training and {a.test} test images, 3x32x32 PNG, {len(CLASSES)} classes")


if __name__ == "__main__":
    main()
