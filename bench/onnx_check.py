"""Runs ONNX files written by `pare export` in onnxruntime (CPU) and compares them with pare.

check: each FILE.onnx with the test case `pare export --test-data DIR` wrote beside it (DIR's
test_data_set_0/input_0.pb and output_K.pb): onnx.checker on the file, then onnxruntime's
outputs against pare's, as the largest absolute difference over each output's largest value.

time: median milliseconds of each file in onnxruntime at one batch size (random inputs of the
file's shape), the files' runs interleaved, with the ratio to the first.

eval: FILE.onnx on the Fashion-MNIST test set (IDX files of DATA_DIR, pixels in [0, 1]: the
file normalizes them itself) in onnxruntime: accuracy, and with --predictions (from `pare eval
--predictions`) the share of images where onnxruntime's class equals pare's.

Prints one JSON object. onnx and onnxruntime come from pip, in bench/.venv only.

Usage:
  python bench/onnx_check.py check FILE.onnx:DIR [FILE.onnx:DIR ...] [--tol 1e-5]
  python bench/onnx_check.py time FILE.onnx [FILE.onnx ...] [--batch 64] [--reps 30] [--threads 2]
  python bench/onnx_check.py eval FILE.onnx [--data DATA_DIR] [--predictions FILE]
"""

import argparse
import gzip
import json
import os
import statistics
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def session(path, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def read_tensor(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def check(pairs, tol, threads):
    results = []
    for pair in pairs:
        model_path, test_dir = pair.split(":", 1)
        onnx.checker.check_model(onnx.load(model_path), full_check=True)
        sess = session(model_path, threads)
        case = os.path.join(test_dir, "test_data_set_0")
        x = read_tensor(os.path.join(case, "input_0.pb"))
        outs = sess.run(None, {sess.get_inputs()[0].name: x})
        worst = 0.0
        per_output = {}
        for k, got in enumerate(outs):
            want = read_tensor(os.path.join(case, f"output_{k}.pb"))
            if got.shape != want.shape:
                raise SystemExit(f"{model_path}: output {k} has shape {got.shape}, pare's {want.shape}")
            scale = max(1.0, float(np.abs(want).max()))
            diff = float(np.abs(got - want).max()) / scale
            per_output[sess.get_outputs()[k].name] = diff
            worst = max(worst, diff)
        agree = None
        if outs[0].ndim == 2:
            want0 = read_tensor(os.path.join(case, "output_0.pb"))
            agree = float((outs[0].argmax(1) == want0.argmax(1)).mean())
        results.append(
            {"file": model_path, "batch": int(x.shape[0]), "max_rel_diff": worst, "outputs": per_output,
             "argmax_agree": agree, "ok": worst <= tol}
        )
    return results


BLOCK = 10


def timing(paths, batch, reps, threads):
    # The files take turns, BLOCK timed runs each, so a slower or faster stretch of a shared
    # machine falls on all of them alike; one session lives at a time (two sessions' thread
    # pools on the same cores slow each other: a finished session's threads spin for a while).
    times = [[] for _ in paths]
    for _ in range(0, reps, BLOCK):
        for path, t in zip(paths, times):
            sess = session(path, threads)
            inp = sess.get_inputs()[0]
            shape = [batch] + [int(d) for d in inp.shape[1:]]
            feed = {inp.name: np.random.default_rng(0).random(shape, dtype=np.float32)}
            for _ in range(3):
                sess.run(None, feed)
            for _ in range(BLOCK):
                start = time.perf_counter()
                sess.run(None, feed)
                t.append((time.perf_counter() - start) * 1e3)
            del sess
    rows = [
        {"file": path, "batch": batch, "median_ms": statistics.median(ts)}
        for path, ts in zip(paths, times)
    ]
    for r in rows:
        r["ratio_to_first"] = rows[0]["median_ms"] / r["median_ms"]
    return rows


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def evaluate(path, data_dir, predictions, threads, batch=1000):
    def find(stem):
        for name in (stem, stem + ".gz"):
            p = os.path.join(data_dir, name)
            if os.path.exists(p):
                return p
        raise SystemExit(f"{data_dir}: no {stem}[.gz]")

    images = read_idx(find("t10k-images-idx3-ubyte")).astype(np.float32) / 255.0
    labels = read_idx(find("t10k-labels-idx1-ubyte")).astype(np.int64)
    sess = session(path, threads)
    name = sess.get_inputs()[0].name
    x = images.reshape(len(images), 1, images.shape[1], images.shape[2])
    got = np.concatenate([sess.run(None, {name: x[i : i + batch]})[0].argmax(1) for i in range(0, len(x), batch)])
    res = {"file": path, "images": int(len(x)), "accuracy": float((got == labels).mean())}
    if predictions:
        theirs = np.loadtxt(predictions, dtype=np.int64)
        if theirs.shape != got.shape:
            raise SystemExit(f"{predictions}: {theirs.shape[0]} predictions for {got.shape[0]} images")
        res["agree_with_pare"] = float((got == theirs).mean())
        res["pare_accuracy"] = float((theirs == labels).mean())
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["check", "time", "eval"])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", default=os.environ.get("PARE_DATA", "/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--predictions")
    a = ap.parse_args()
    if a.mode == "eval":
        res = [evaluate(f, a.data, a.predictions, a.threads) for f in a.files]
        print(json.dumps({"onnxruntime": ort.__version__, "results": res}, indent=1))
        return
    if a.mode == "check":
        res = check(a.files, a.tol, a.threads)
        print(json.dumps({"onnxruntime": ort.__version__, "results": res}, indent=1))
        if not all(r["ok"] for r in res):
            sys.exit(1)
    else:
        res = timing(a.files, a.batch, a.reps, a.threads)
        print(json.dumps({"onnxruntime": ort.__version__, "results": res}, indent=1))


if __name__ == "__main__":
    main()
