"""PySlowFast's Kinetics training loader, per clip, timed on one thread.

Run (after `bash scripts/setup-pyref.sh`), normally from `trainer bench-loader`:

    ~/.cache/slowfast/pyref/bin/python bench/pyav_loader.py --clips 40 data/videos/*

What one clip costs, as PySlowFast's `Kinetics.__getitem__` does it in
training (`DECODING_BACKEND: pyav`, no multi-threaded decode): open the
container, seek to a random 32x2-frame window at 30 fps and decode it
(`decoder.pyav_decode`), `frame.to_rgb().to_ndarray()`, `temporal_sampling`,
`tensor_normalize`, `random_short_side_scale_jitter` (256-320),
`random_crop` (224), `horizontal_flip`, `pack_pathway_output` (alpha 4).
The steps are written out here after PySlowFast's code so the reference
needs nothing but torch, numpy and PyAV. Prints one JSON line.
"""

import argparse
import json
import math
import random
import time

import av
import numpy as np
import torch

NUM_FRAMES, SAMPLING_RATE, TARGET_FPS = 32, 2, 30
MIN_SCALE, MAX_SCALE, CROP = 256, 320, 224
MEAN, STD, ALPHA = [0.45] * 3, [0.225] * 3, 4


def start_end(video_size, clip_size, fraction=None):
    delta = max(video_size - clip_size, 0)
    start = random.uniform(0, delta) if fraction is None else fraction * delta
    return start, start + clip_size - 1


def decode_window(container, start_pts, end_pts, stream):
    # Seek a little before the window to the previous key frame, decode
    # until past its end (decoder.pyav_decode_stream, buffer_size 0).
    container.seek(max(start_pts - 1024, 0), any_frame=False, backward=True, stream=stream)
    frames = {}
    for frame in container.decode(video=0):
        if frame.pts < start_pts:
            continue
        frames[frame.pts] = frame
        if frame.pts > end_pts:
            break
    return [frames[p] for p in sorted(frames)]


def load_clip(path, fraction=None):
    container = av.open(path)
    stream = container.streams.video[0]
    fps = float(stream.average_rate)
    clip_size = SAMPLING_RATE * NUM_FRAMES / TARGET_FPS * fps
    if stream.duration is None:
        frames = list(container.decode(video=0))
        decode_all = True
    else:
        start, end = start_end(stream.frames, clip_size, fraction)
        timebase = stream.duration / stream.frames
        frames = decode_window(container, int(start * timebase), int(end * timebase), stream)
        decode_all = False
    container.close()
    frames = torch.as_tensor(np.stack([f.to_rgb().to_ndarray() for f in frames]))
    if decode_all:
        start, end = start_end(frames.shape[0], clip_size, fraction)
    else:
        start, end = 0, clip_size - 1
    index = torch.clamp(torch.linspace(start, end, NUM_FRAMES), 0, frames.shape[0] - 1).long()
    frames = torch.index_select(frames, 0, index)

    frames = (frames.float() / 255.0 - torch.tensor(MEAN)) / torch.tensor(STD)
    frames = frames.permute(3, 0, 1, 2)

    size = int(round(np.random.uniform(MIN_SCALE, MAX_SCALE)))
    h, w = frames.shape[2], frames.shape[3]
    if not ((w <= h and w == size) or (h <= w and h == size)):
        if w < h:
            nh, nw = int(math.floor(float(h) / w * size)), size
        else:
            nh, nw = size, int(math.floor(float(w) / h * size))
        frames = torch.nn.functional.interpolate(frames, size=(nh, nw), mode="bilinear", align_corners=False)
    h, w = frames.shape[2], frames.shape[3]
    y = np.random.randint(0, h - CROP) if h > CROP else 0
    x = np.random.randint(0, w - CROP) if w > CROP else 0
    frames = frames[:, :, y:y + CROP, x:x + CROP]
    if np.random.uniform() < 0.5:
        frames = frames.flip(-1)

    slow = torch.index_select(frames, 1, torch.linspace(0, frames.shape[1] - 1, frames.shape[1] // ALPHA).long())
    return [slow, frames]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--plan", help="JSON list of [video, start fraction]: the clips to time, in order "
                    "(`trainer bench-loader` passes the ones it decoded); without it, --clips random clips of the videos cycled")
    args = ap.parse_args()
    torch.set_num_threads(1)
    random.seed(0)
    np.random.seed(0)
    for i in range(args.warmup):
        load_clip(args.videos[i % len(args.videos)])
    if args.plan:
        with open(args.plan) as f:
            plan = [(path, float(fraction)) for path, fraction in json.load(f)]
    else:
        plan = [(args.videos[i % len(args.videos)], None) for i in range(args.clips)]
    t0 = time.perf_counter()
    for path, fraction in plan:
        slow, fast = load_clip(path, fraction)
        assert fast.shape == (3, NUM_FRAMES, CROP, CROP) and slow.shape == (3, NUM_FRAMES // ALPHA, CROP, CROP)
    dt = time.perf_counter() - t0
    print(json.dumps({
        "implementation": "PySlowFast loader (PyAV + torch)",
        "av": av.__version__,
        "torch": torch.__version__,
        "clips": len(plan),
        "clips_per_s": len(plan) / dt,
    }))


if __name__ == "__main__":
    main()
