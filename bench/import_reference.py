"""The reference for `trainer import`'s benchmark, and the checkpoint it reads.

    python bench/import_reference.py make OUT.pyth [--arch 8x8|4x16]
        a full-size SlowFast R50 checkpoint (8x8 by default) as PySlowFast writes one:
        {"epoch", "model_state" (PySlowFast names), "optimizer_state" (SGD
        with a momentum buffer per parameter), "cfg"}, from pytorchvideo's
        create_slowfast (34,566,488 parameters) renamed by the parity
        fixtures' map.

    python bench/import_reference.py convert IN.pyth OUT.safetensors
        what a user does today: torch.load (weights_only) and
        safetensors' save_file of the model state.
"""

import collections
import os
import sys

import torch


# Fusion conv of each architecture: temporal kernel and stride (alpha).
FUSION = {"8x8": (7, 4), "4x16": (5, 8)}


def make(out, arch="8x8"):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "trainer", "tests", "fixtures"))
    from generate import rename_map
    from pytorchvideo.models.slowfast import create_slowfast

    torch.manual_seed(0)
    kernel, alpha = FUSION[arch]
    model = create_slowfast(
        model_num_class=400,
        slowfast_fusion_conv_kernel_size=(kernel, 1, 1),
        slowfast_fusion_conv_stride=(alpha, 1, 1),
    )
    names = rename_map(model)
    state = collections.OrderedDict((names[k], v) for k, v in model.state_dict().items())
    params = [p for p in model.parameters()]
    optimizer = {
        "state": {i: {"momentum_buffer": torch.randn_like(p) * 1e-3} for i, p in enumerate(params)},
        "param_groups": [{"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False, "params": list(range(len(params)))}],
    }
    torch.save({"epoch": 196, "model_state": state, "optimizer_state": optimizer, "cfg": "MODEL:\n  ARCH: slowfast\n"}, out)
    print(f"{out}: {os.path.getsize(out)} bytes")


def convert(src, out):
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    state = torch.load(src, map_location="cpu", weights_only=True)["model_state"]
    save_file({k: v.contiguous() for k, v in state.items()}, out)


if __name__ == "__main__":
    if sys.argv[1:2] == ["make"] and len(sys.argv) == 3:
        make(sys.argv[2])
    elif sys.argv[1:2] == ["make"] and len(sys.argv) == 5 and sys.argv[3] == "--arch" and sys.argv[4] in FUSION:
        make(sys.argv[2], sys.argv[4])
    elif sys.argv[1:2] == ["convert"]:
        convert(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
