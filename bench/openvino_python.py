"""Python OpenVINO latency for a SlowFast ONNX model (CPU plugin).

The reference for `slowfast bench --backends openvino`: the same library
our OpenVINO backend loads, from its own Python package, on the same file:

    ~/.cache/slowfast/pyref/bin/python bench/openvino_python.py --model m.onnx --threads 2 --batch 1

Settings match the runtime's OpenVINO engine: the model read from the ONNX
file, reshaped to a static [batch, 3, T, S, S] per pathway, compiled for the
CPU with INFERENCE_NUM_THREADS = --threads, PERFORMANCE_HINT LATENCY and
INFERENCE_PRECISION_HINT f32. Prints one JSON line with the fields of the
Rust side.
"""

import argparse
import json
import statistics
import time

import numpy as np
import onnx
import openvino as ov


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

    shapes = {"slow": [args.batch, 3, slow_t, size, size], "fast": [args.batch, 3, fast_t, size, size]}
    core = ov.Core()
    model = core.read_model(args.model)
    model.reshape(shapes)
    compiled = core.compile_model(model, "CPU", {
        "INFERENCE_NUM_THREADS": args.threads,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
    })
    request = compiled.create_infer_request()
    rng = np.random.default_rng(0)
    feeds = {name: rng.uniform(-2, 2, shape).astype(np.float32) for name, shape in shapes.items()}
    times = []
    for i in range(args.warmup + args.iters):
        t = time.perf_counter()
        request.infer(feeds)
        if i >= args.warmup:
            times.append((time.perf_counter() - t) * 1e3)
    print(json.dumps({
        "bench": "clip_latency",
        "implementation": f"Python OpenVINO {ov.get_version().split('-')[0]}",
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
