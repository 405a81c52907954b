#!/usr/bin/env python3
"""Contact sheet of evaluation clips whose subject the probe misreads as one kind (default: bird),
next to the real renders of the same prompts: what a model draws instead of the prompted subject.

    python3 tools/eval/misread_sheet.py --model resources/models/vmla-tiny.safetensors --probe P/probe.pt \\
        --out docs/images/subject-misread.png [--as bird] [--rows 6] [--n-videos 48] [--chunks 5]

The videos are tools/eval/run.py's (the same world, scenes, noise seed and generation), so the clips
are those its misreadings count. Rows: the misread clips in chunk order, one per video, a prompted
kind not yet shown first; each row the first, middle and last frame of the chunk, generated, then
real. Prints the chosen clips (video, chunk, prompted kind, prompt).
"""
import argparse
import os
import sys

import numpy as np
import torch

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOOLS)

from eval import metrics as M  # noqa: E402
from eval.probe import load_probe  # noqa: E402
from vmla_ref import init as vinit  # noqa: E402
from world import LABELS, World  # noqa: E402
from world.png import write_png  # noqa: E402


def pick(clips, rows):
    """clips: (video, chunk, prompted kind) in chunk order -> at most `rows` of them, one per video,
    each new prompted kind before a repeated one."""
    chosen, videos, kinds = [], set(), set()
    for fresh in (True, False):
        for c in clips:
            if len(chosen) < rows and c[0] not in videos and (c[2] not in kinds or not fresh):
                chosen.append(c)
                videos.add(c[0])
                kinds.add(c[2])
    return chosen


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--probe", required=True, help="a probe checkpoint (tools/eval/run.py's probe.pt)")
    ap.add_argument("--out", required=True, help="the sheet, PNG")
    ap.add_argument("--as", dest="read_as", default="bird", choices=LABELS["subject"],
                    help="the kind the probe reads instead of the prompted one")
    ap.add_argument("--rows", type=int, default=6)
    ap.add_argument("--n-videos", type=int, default=48)
    ap.add_argument("--chunks", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    model, vocab, _ = vinit.load(a.model)
    model = model.to(dev).eval()
    cfg = model.cfg
    cv, size = cfg["stream"]["chunk_frames"] * cfg["video"]["temporal_stride"], cfg["video"]["width"]
    probe, _ = load_probe(a.probe, size, dev)
    scenes = M.eval_scenes(World(seed=M.WORLD_SEED, size=size), a.n_videos, a.chunks * cv)
    gen = M.generate(model, vocab, scenes, a.chunks, dev, seed=1).cpu()
    real = M.real_video(scenes, a.chunks * cv, size, dev).cpu()
    clips = [(b, k, true) for b, k, true, got in M.readings(M.probe_chunks(probe, gen.to(dev), scenes, cv), scenes,
                                                             cv, "subject") if got == a.read_as != true]
    chosen = pick(clips, a.rows)
    if not chosen:
        raise SystemExit(f"misread_sheet: no clip of {a.model} is read as a {a.read_as}")
    frame = lambda v, b, f: v[b, f].permute(1, 2, 0).float().numpy()  # noqa: E731
    gap = np.ones((size, 6, 3), np.float32)
    rows = []
    for b, k, kind in chosen:
        at = [k * cv, k * cv + cv // 2, k * cv + cv - 1]
        rows.append(np.concatenate([frame(gen, b, f) for f in at] + [gap] + [frame(real, b, f) for f in at], 1))
        rows.append(np.ones((4, rows[-1].shape[1], 3), np.float32))
        print(f"video {b} chunk {k}: {kind} read as {a.read_as}: {scenes[b].get('prompt', '')}")
    write_png(a.out, np.concatenate(rows[:-1], 0))
    print(f"misread_sheet: {len(clips)} clips read as {a.read_as}; wrote {a.out} ({len(chosen)} rows)")


if __name__ == "__main__":
    main()
