"""PyTorch reference time of one SlowFast training step on CPU.

Run (after `bash scripts/setup-pyref.sh`), normally from `trainer bench-train`:

    ~/.cache/slowfast/pyref/bin/python bench/pytorch_train_step.py --arch 8x8 --batch 2 --size 112

One step as PySlowFast's `train_epoch` takes it on CPU: the pytorchvideo
0.1.5 network (Kinetics-400 head) in train mode, cross-entropy, zero_grad,
backward, and `torch.optim.SGD` (lr 0.01, momentum 0.9, Nesterov) with
PySlowFast's parameter groups: weight decay 1e-4 on convolution and linear
weights, none on BatchNorm or other 1-D parameters. Prints one JSON line.
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F

from pytorch_eager import ARCHS, FAST_FRAMES, build, timings


def param_groups(model):
    bn, no_decay, decay = [], [], []
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if isinstance(module, torch.nn.modules.batchnorm._NormBase):
                bn.append(p)
            elif p.ndim <= 1:
                no_decay.append(p)
            else:
                decay.append(p)
    return [
        {"params": decay, "weight_decay": 1e-4},
        {"params": bn, "weight_decay": 0.0},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def train_steps(model, opt, slow, fast, labels, warmup, iters):
    """Milliseconds of each step after `warmup`: forward, loss, backward, SGD."""
    times = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model([slow, fast]), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        value = loss.item()
        dt = time.perf_counter() - t0
        assert value == value, "loss is NaN"
        if i >= warmup:
            times.append(dt * 1e3)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), default="8x8")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    if args.size % 32:
        ap.error("--size must be a multiple of 32")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, t_slow = build(args.arch, args.size)
    model.train()
    opt = torch.optim.SGD(param_groups(model), lr=0.01, momentum=0.9, nesterov=True)
    fast = torch.randn(args.batch, 3, FAST_FRAMES, args.size, args.size)
    slow = torch.randn(args.batch, 3, t_slow, args.size, args.size)
    labels = torch.randint(400, (args.batch,))

    times = train_steps(model, opt, slow, fast, labels, args.warmup, args.iters)

    print(json.dumps({
        "impl": "pytorch-train-step",
        "torch": torch.__version__,
        "arch": args.arch,
        "batch": args.batch,
        "size": args.size,
        "threads": args.threads,
        "iters": args.iters,
        **timings(times),
    }))


if __name__ == "__main__":
    main()
