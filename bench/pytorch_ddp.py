"""PyTorch DDP reference for `trainer bench-dist`: the same SlowFast training
step as bench/pytorch_train_step.py, 1 thread per process, gradients
averaged by DistributedDataParallel over Gloo. Launched by torchrun:

    ~/.cache/slowfast/pyref/bin/python -m torch.distributed.run --nproc-per-node 2 \
        bench/pytorch_ddp.py --arch 8x8 --batch 2 --size 112

Rank 0 prints one JSON line: the median step, and the all-reduce of one flat
buffer as large as all the gradients.
"""

import argparse
import json
import time

import torch
import torch.distributed as dist

from pytorch_eager import ARCHS, FAST_FRAMES, build, timings
from pytorch_train_step import param_groups, train_steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), default="8x8")
    ap.add_argument("--batch", type=int, default=2, help="clips per process")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--allreduce-iters", type=int, default=10)
    args = ap.parse_args()

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model, t_slow = build(args.arch, args.size)
    model.train()
    numel = sum(p.numel() for p in model.parameters())

    flat = torch.ones(numel)
    ar = []
    for _ in range(args.allreduce_iters):
        t0 = time.perf_counter()
        dist.all_reduce(flat)
        ar.append((time.perf_counter() - t0) * 1e3)

    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(param_groups(ddp.module), lr=0.01, momentum=0.9, nesterov=True)
    fast = torch.randn(args.batch, 3, FAST_FRAMES, args.size, args.size)
    slow = torch.randn(args.batch, 3, t_slow, args.size, args.size)
    labels = torch.randint(400, (args.batch,))
    dist.barrier()
    times = train_steps(ddp, opt, slow, fast, labels, args.warmup, args.iters)
    if rank == 0:
        print(json.dumps({
            "impl": "pytorch-ddp-gloo",
            "torch": torch.__version__,
            "arch": args.arch,
            "batch_per_process": args.batch,
            "size": args.size,
            "parameters": numel,
            "allreduce_flat_ms": round(timings(ar)["median_ms"], 3),
            **timings(times),
        }))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
