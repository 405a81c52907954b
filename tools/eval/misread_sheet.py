#!/usr/bin/env python3
"""Contact sheet of evaluation clips whose subject the probe misreads as one kind (default: bird),
next to the real renders of the same prompts: what a model draws instead of the prompted subject.

    python3 tools/eval/misread_sheet.py --model resources/models/vmla-tiny.safetensors --probe P/probe.pt \\
        --out docs/images/subject-misread.png [--as bird] [--rows 6] [--n-videos 48] [--chunks 5]

The videos are tools/eval/run.py's (the same world, scenes, noise seed and generation), so the clips
are those its misreadings count. Rows: the misread clips in chunk order, one per video, a prompted
kind not yet shown first; each row the first, middle and last frame of the chunk, generated, then
real. Prints the chosen clips (video, chunk, prompted kind, prompt).

--roundtrip: the clips are the real renders encoded and decoded by the file's autoencoder instead of
generated, and only those whose real render the probe reads right (what the autoencoder loses);
`--as any` takes every misreading; the losses are also counted per prompted kind.

    python3 tools/eval/misread_sheet.py --model resources/models/vmla-tiny.safetensors --probe P/probe.pt \
        --roundtrip --as any --out docs/images/roundtrip-misread.png
"""
import argparse
import os
from collections import Counter
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


def misread(read, read_as, real_read=None):
    """The clips to show, from M.readings tuples (video, chunk, true, read) of the shown clips: those
    read as `read_as` (any: as any other kind) instead of the prompted kind, as (video, chunk, true);
    with real_read, the readings of the real renders, only the clips whose real render is read right
    (what a round trip loses, not what the probe misses anyway)."""
    right = None if real_read is None else {(b, k) for b, k, true, got in real_read if got == true}
    return [(b, k, true) for b, k, true, got in read
            if got != true and read_as in ("any", got) and (right is None or (b, k) in right)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--probe", required=True, help="a probe checkpoint (tools/eval/run.py's probe.pt)")
    ap.add_argument("--out", required=True, help="the sheet, PNG")
    ap.add_argument("--as", dest="read_as", default="bird", choices=LABELS["subject"] + ["any"],
                    help="the kind the probe reads instead of the prompted one (any: every misreading)")
    ap.add_argument("--roundtrip", action="store_true",
                    help="the real clips through the file's encoder and decoder, in place of generated ones")
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
    real = M.real_video(scenes, a.chunks * cv, size, dev)
    if a.roundtrip:
        if model.encoder is None:
            raise SystemExit(f"misread_sheet: {a.model} holds no encoder (exported without it): no round trip")
        with torch.no_grad():
            gen = torch.cat([M.roundtrip(model.encoder, model.decoder, real[i:i + 8])
                             for i in range(0, len(scenes), 8)]).cpu()
    else:
        gen = M.generate(model, vocab, scenes, a.chunks, dev, seed=1).cpu()
    read = list(M.readings(M.probe_chunks(probe, gen.to(dev), scenes, cv), scenes, cv, "subject"))
    got_of = {(b, k): got for b, k, _, got in read}
    real_read = None
    if a.roundtrip:  # what the autoencoder loses: clips whose real render is read right
        real_read = list(M.readings(M.probe_chunks(probe, real, scenes, cv), scenes, cv, "subject"))
    clips = misread(read, a.read_as, real_read)
    real = real.cpu()
    if a.roundtrip:
        print("lost in the round trip, per prompted kind:", dict(Counter(c[2] for c in clips).most_common()))
    chosen = pick(clips, a.rows)
    what = "round trip" if a.roundtrip else "clip"
    if not chosen:
        kind = "another kind" if a.read_as == "any" else "a " + a.read_as
        raise SystemExit(f"misread_sheet: no {what} of {a.model} is read as {kind}")
    frame = lambda v, b, f: v[b, f].permute(1, 2, 0).float().numpy()  # noqa: E731
    gap = np.ones((size, 6, 3), np.float32)
    rows = []
    for b, k, kind in chosen:
        at = [k * cv, k * cv + cv // 2, k * cv + cv - 1]
        rows.append(np.concatenate([frame(gen, b, f) for f in at] + [gap] + [frame(real, b, f) for f in at], 1))
        rows.append(np.ones((4, rows[-1].shape[1], 3), np.float32))
        print(f"video {b} chunk {k}: {kind} read as {got_of[(b, k)]}: {scenes[b].get('prompt', '')}")
    write_png(a.out, np.concatenate(rows[:-1], 0))
    print(f"misread_sheet: {len(clips)} {what}s read as {a.read_as if a.read_as != 'any' else 'another kind'}; "
          f"wrote {a.out} ({len(chosen)} rows)")


if __name__ == "__main__":
    main()
