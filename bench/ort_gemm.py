"""Times one [M, K] x [K, N] product in onnxruntime on the CPU: f32 MatMul, the same model after
onnxruntime's own dynamic int8 quantization (`quantize_dynamic`: DynamicQuantizeLinear on the
input, MatMulInteger, scales applied after; the input's quantization is part of the time, as in
pare's int8 layer), and MatMulInteger alone on an input already in u8. Prints one JSON object.

Usage: python bench/ort_gemm.py M K N [--threads 2] [--reps 50]
"""

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic


def f32_model(k, n, w):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "gemm", [x], [y], [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def integer_model(k, n, wq):
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, ["m", k])
    y = helper.make_tensor_value_info("y", TensorProto.INT32, ["m", n])
    node = helper.make_node("MatMulInteger", ["x", "w", "xz", "wz"], ["y"])
    inits = [
        numpy_helper.from_array(wq, "w"),
        numpy_helper.from_array(np.array(3, dtype=np.uint8), "xz"),
        numpy_helper.from_array(np.array(0, dtype=np.int8), "wz"),
    ]
    graph = helper.make_graph([node], "gemm_int", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def median_ms(session, feed, reps):
    for _ in range(3):
        session.run(None, feed)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("m", type=int)
    p.add_argument("k", type=int)
    p.add_argument("n", type=int)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=50)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    w = rng.standard_normal((a.k, a.n), dtype=np.float32) * 0.05
    x = rng.standard_normal((a.m, a.k), dtype=np.float32)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    opts.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory() as d:
        f32_path = os.path.join(d, "f32.onnx")
        int8_path = os.path.join(d, "int8.onnx")
        onnx.save(f32_model(a.k, a.n, w), f32_path)
        quantize_dynamic(f32_path, int8_path, weight_type=QuantType.QInt8)
        ops = sorted({n.op_type for n in onnx.load(int8_path).graph.node})
        f32 = ort.InferenceSession(f32_path, opts, providers=["CPUExecutionProvider"])
        dyn = ort.InferenceSession(int8_path, opts, providers=["CPUExecutionProvider"])
        wq = np.clip(np.round(w / (np.abs(w).max() / 127)), -127, 127).astype(np.int8)
        integer = ort.InferenceSession(
            integer_model(a.k, a.n, wq).SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        xq = rng.integers(0, 256, size=(a.m, a.k), dtype=np.uint8)
        out = {
            "m": a.m,
            "k": a.k,
            "n": a.n,
            "threads": a.threads,
            "onnxruntime": ort.__version__,
            "f32_ms": median_ms(f32, {"x": x}, a.reps),
            "dynamic_int8_ms": median_ms(dyn, {"x": x}, a.reps),
            "dynamic_int8_ops": ops,
            "matmulinteger_ms": median_ms(integer, {"x": xq}, a.reps),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
