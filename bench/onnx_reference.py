"""What the Python references of `slowfast bench` share: their arguments,
the model's clip shapes read from its `slowfast.*` metadata (as the Rust
runtime reads them), random inputs, the timing loop and the JSON line with
the fields of the Rust side. Imported by onnxruntime_python.py and
openvino_python.py, which differ only in the engine they set up.
"""

import argparse
import json
import statistics
import time

import numpy as np
import onnx


def arguments(description):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    if args.iters < 1 or args.batch < 1:
        ap.error("--iters and --batch must be at least 1")
    return args


def input_shapes(model, batch):
    """`{"slow": [N, 3, Ts, S, S], "fast": [N, 3, Tf, S, S]}` of the model."""
    meta = {p.key: p.value for p in onnx.load(model, load_external_data=False).metadata_props}
    try:
        size = int(meta["slowfast.crop_size"])
        slow_t = int(meta["slowfast.slow_frames"])
        fast_t = int(meta["slowfast.fast_frames"])
    except KeyError as e:
        raise SystemExit(f"{model}: metadata key {e} is missing; export the model with `trainer export`")
    return {"slow": [batch, 3, slow_t, size, size], "fast": [batch, 3, fast_t, size, size]}


def random_inputs(shapes):
    rng = np.random.default_rng(0)
    return {name: rng.uniform(-2, 2, shape).astype(np.float32) for name, shape in shapes.items()}


def time_and_report(run, implementation, args):
    """Times `run()` (after `--warmup` untimed calls) and prints the JSON line."""
    times = []
    for i in range(args.warmup + args.iters):
        t = time.perf_counter()
        run()
        if i >= args.warmup:
            times.append((time.perf_counter() - t) * 1e3)
    print(json.dumps({
        "bench": "clip_latency",
        "implementation": implementation,
        "median_ms": statistics.median(times),
        "mean_ms": statistics.fmean(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "iters": len(times),
        "threads": args.threads,
        "batch": args.batch,
    }))
