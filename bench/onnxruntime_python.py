"""Python ONNX Runtime latency for a SlowFast ONNX model (CPU, batch 1 or --batch).

The reference point for `slowfast bench`, which runs it on the same file in
the same run:

    ~/.cache/slowfast/pyref/bin/python bench/onnxruntime_python.py --model m.onnx --threads 2

Input shapes come from the model's `slowfast.*` metadata (as the Rust
runtime reads them); session settings match the runtime's CPU engine:
ORT_ENABLE_ALL, `intra_op_num_threads` = --threads, CPU provider only.
Prints one JSON line with the same fields as the Rust side.
"""

import argparse
import json
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    if args.iters < 1 or args.batch < 1:
        ap.error("--iters and --batch must be at least 1")

    meta = {p.key: p.value for p in onnx.load(args.model, load_external_data=False).metadata_props}
    try:
        size = int(meta["slowfast.crop_size"])
        slow_t = int(meta["slowfast.slow_frames"])
        fast_t = int(meta["slowfast.fast_frames"])
    except KeyError as e:
        raise SystemExit(f"{args.model}: metadata key {e} is missing; export the model with `trainer export`")

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {
        "slow": rng.uniform(-2, 2, (args.batch, 3, slow_t, size, size)).astype(np.float32),
        "fast": rng.uniform(-2, 2, (args.batch, 3, fast_t, size, size)).astype(np.float32),
    }
    times = []
    for i in range(args.warmup + args.iters):
        t = time.perf_counter()
        sess.run(None, feeds)
        if i >= args.warmup:
            times.append((time.perf_counter() - t) * 1e3)
    print(json.dumps({
        "bench": "clip_latency",
        "implementation": f"Python onnxruntime {ort.__version__}",
        "median_ms": statistics.median(times),
        "mean_ms": statistics.fmean(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "iters": len(times),
        "threads": args.threads,
        "batch": args.batch,
    }))


if __name__ == "__main__":
    main()
