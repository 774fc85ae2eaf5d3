"""PyTorch eager reference latency for SlowFast inference (CPU, batch 1 or --batch).

Run (after `bash scripts/setup-pyref.sh`):

    ~/.cache/slowfast/pyref/bin/python bench/pytorch_eager.py --arch 8x8 --size 224 --threads 2

Builds the full-size pytorchvideo 0.1.5 `create_slowfast` (Kinetics-400 head,
random weights, eval mode) and times `softmax(model([slow, fast]))` (what
PySlowFast returns in eval) under torch.inference_mode(). Prints one JSON line.

Architectures (fast pathway 32 frames, beta_inv 8, fusion channel ratio 2):
    8x8   R50,  alpha 4, fusion kernel 7, slow 8 frames
    4x16  R50,  alpha 8, fusion kernel 5, slow 4 frames
    r101  R101, alpha 4, fusion kernel 5, slow 8 frames (all res4 blocks with
          temporal kernel 3, as PySlowFast SLOWFAST_8x8_R101_101_101)
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from pytorchvideo.models.slowfast import create_slowfast

ARCHS = {
    # depth, alpha, fusion kernel
    "8x8": (50, 4, 7),
    "4x16": (50, 8, 5),
    "r101": (101, 4, 5),
}
FAST_FRAMES = 32


def build(arch, size):
    depth, alpha, fusion_kernel = ARCHS[arch]
    t_slow = FAST_FRAMES // alpha
    s = size // 32  # final spatial size (total stride 32)
    model = create_slowfast(
        model_depth=depth,
        model_num_class=400,
        slowfast_fusion_conv_kernel_size=(fusion_kernel, 1, 1),
        slowfast_fusion_conv_stride=(alpha, 1, 1),
        head_pool_kernel_sizes=((t_slow, s, s), (FAST_FRAMES, s, s)),
    )
    return model.eval(), t_slow


def timings(times_ms):
    """Median, mean, min and max of a list of milliseconds, rounded."""
    return {
        "median_ms": round(statistics.median(times_ms), 3),
        "mean_ms": round(statistics.fmean(times_ms), 3),
        "min_ms": round(min(times_ms), 3),
        "max_ms": round(max(times_ms), 3),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), default="8x8")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    if args.size % 32:
        ap.error("--size must be a multiple of 32")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, t_slow = build(args.arch, args.size)
    fast = torch.randn(args.batch, 3, FAST_FRAMES, args.size, args.size)
    slow = fast[:, :, torch.linspace(0, FAST_FRAMES - 1, t_slow).long()].contiguous()

    times = []
    with torch.inference_mode():
        for i in range(args.warmup + args.iters):
            t0 = time.perf_counter()
            probs = F.softmax(model([slow, fast]), dim=1)
            dt = time.perf_counter() - t0
            if i >= args.warmup:
                times.append(dt * 1e3)
    assert probs.shape == (args.batch, 400) and torch.isfinite(probs).all()

    print(json.dumps({
        "impl": "pytorch-eager",
        "torch": torch.__version__,
        "arch": args.arch,
        "size": args.size,
        "threads": args.threads,
        "batch": args.batch,
        "iters": args.iters,
        **timings(times),
    }))


if __name__ == "__main__":
    main()
