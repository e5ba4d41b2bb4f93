"""Runs ONNX files written by `pare export` in onnxruntime (CPU) and compares them with pare.

check: each FILE.onnx with the test case `pare export --test-data DIR` wrote beside it (DIR's
test_data_set_0/input_0.pb and output_K.pb): onnx.checker on the file, then onnxruntime's
outputs against pare's, as the largest absolute difference over each output's largest value.

time: median milliseconds of each file in onnxruntime at one batch size (random inputs of the
file's shape), every file in the same run, with the ratio to the first.

Prints one JSON object. onnx and onnxruntime come from pip, in bench/.venv only.

Usage:
  python bench/onnx_check.py check FILE.onnx:DIR [FILE.onnx:DIR ...] [--tol 1e-5]
  python bench/onnx_check.py time FILE.onnx [FILE.onnx ...] [--batch 64] [--reps 30] [--threads 2]
"""

import argparse
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


def timing(paths, batch, reps, threads):
    rows = []
    for path in paths:
        sess = session(path, threads)
        inp = sess.get_inputs()[0]
        shape = [batch] + [int(d) for d in inp.shape[1:]]
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        feed = {inp.name: x}
        for _ in range(3):
            sess.run(None, feed)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            sess.run(None, feed)
            times.append((time.perf_counter() - t) * 1e3)
        rows.append({"file": path, "batch": batch, "median_ms": statistics.median(times)})
    for r in rows:
        r["ratio_to_first"] = rows[0]["median_ms"] / r["median_ms"]
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["check", "time"])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
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
