#!/usr/bin/env python3
"""What the autoencoder lets through: probe accuracy on real world clips after an encode/decode
round trip through a model file's encoder and decoder, next to the accuracy on the clips themselves.
The DiT generates latents, so this is the ceiling of prompt adherence for every model sharing the
autoencoder. Runs on the GPU when there is one (--device), on the CPU in a few minutes.

    /usr/bin/python3 tools/eval/ae_ceiling.py --model resources/models/vmla-tiny.safetensors \
        --probe CK/probe.pt --out CK/eval/ae_ceiling.json
    /usr/bin/python3 tools/eval/ae_ceiling.py --ae-ckpt CK/ae.pt --probe CK/probe.pt --out ...

--n-videos 256 --chunks 5 reads the clips of tools/eval/run.py's standard evaluation at that size (the
same scenes), so the ceiling compares with a model's readings; per chunk too (`*_per_chunk`).

With --ae-ckpt the autoencoder comes from a training checkpoint of tools/train.py --stage ae (its
own shape, e.g. a widened one), with no model file needed.

No autoencoder of the family lets the weather through (rain, snow and fireflies are single-pixel
noise under 8 x 8 pixel latent cells), and the probe reads clips with weather. So the same clips are
also rendered without their weather (`real_without_weather`, the scenes' other attributes and their
labels kept), and the subject is counted apart on the videos with and without weather
(`subject_by_weather`): how much of the round trip's loss is the weather it drops.
"""
import argparse
import json
import math
import os
import sys

import torch

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOOLS)

from eval import metrics as M  # noqa: E402
from eval.probe import ATTRS, load_probe  # noqa: E402
from vmla_ref import init as vinit  # noqa: E402
from world import World  # noqa: E402

BATCH = 16


@torch.no_grad()
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a model file (its encoder and decoder)")
    src.add_argument("--ae-ckpt", help="an ae checkpoint of tools/train.py (ae.pt with its shards)")
    ap.add_argument("--probe", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-videos", type=int, default=32)
    ap.add_argument("--chunks", type=int, default=2)
    ap.add_argument("--label", default=None, help="name of the autoencoder in the report")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    if a.model:
        model, _, _ = vinit.load(a.model)
        model.eval()
        cfg = model.cfg
        encoder, decoder = model.encoder, model.decoder
    else:
        import train
        ck = train.load_ckpt(a.ae_ckpt)
        if not ck or ck.get("stage") != "ae":
            raise SystemExit(f"ae_ceiling: {a.ae_ckpt} is not an ae checkpoint")
        cfg = ck["cfg"]
        encoder, decoder = train.ae_from_ckpt(ck)
    cv = cfg["stream"]["chunk_frames"] * cfg["video"]["temporal_stride"]
    size = cfg["video"]["width"]
    encoder, decoder = encoder.to(dev), decoder.to(dev)
    probe = load_probe(a.probe, size)[0].eval().to(dev)
    world = World(seed=M.WORLD_SEED, size=size)
    scenes = M.eval_scenes(world, a.n_videos, a.chunks * cv)
    # a few videos at a time (256 videos of 5 chunks at once would take 64 GB)
    parts, se, n = {"real": [], "roundtrip": [], "real_without_weather": []}, 0.0, 0
    reads = {"real": [], "roundtrip": []}  # the subject read per clip, for the table per kind
    for b0 in range(0, len(scenes), BATCH):
        sc = scenes[b0:b0 + BATCH]
        real = M.real_video(sc, a.chunks * cv, size, dev)
        rec = M.roundtrip(encoder, decoder, real)
        se, n = se + float(((rec - real) ** 2).sum()), n + real.numel()
        clear, wx = real.clone(), [i for i, s in enumerate(sc) if s["particles"] != "none"]
        if wx:  # only the videos with weather render differently without it
            clear[wx] = M.real_video([dict(sc[i], particles="none") for i in wx], a.chunks * cv, size, dev)
        for name, video in (("real", real), ("roundtrip", rec), ("real_without_weather", clear)):
            chunks = M.probe_chunks(probe, video, sc, cv)
            parts[name].append([c[0] for c in chunks])
            if name in reads:
                reads[name] += M.readings(chunks, sc, cv, "subject")
    source = os.path.basename(a.model or a.ae_ckpt)
    res = {"model": source, "label": a.label or source, "decoder_channels": cfg["decoder"]["channels"],
           "n_videos": len(scenes), "chunks": a.chunks, "psnr": float(-10 * math.log10(se / n))}
    weather = torch.tensor([s["particles"] != "none" for s in scenes])
    res["subject_by_weather"] = {"videos": {"with": int(weather.sum()), "without": int((~weather).sum())}}
    res["hits"] = {}  # per video and chunk, as run.py's
    for name, batches in parts.items():
        chunks = [({k: torch.cat([b[c][k] for b in batches]) for k in ATTRS},) for c in range(a.chunks)]
        res[name] = M.adherence(chunks)
        if name in reads:
            res["hits"][name] = M.clip_hits(chunks)
        hits = torch.stack([c[0]["subject"].cpu() for c in chunks], 1).float()  # [video, chunk]
        res["subject_by_weather"][name] = {w: float(hits[m].mean()) if m.any() else None
                                           for w, m in (("with", weather), ("without", ~weather))}
        # chunk by chunk: later chunks show fewer subjects (they drift, rise or fall out of the
        # frame), so a ceiling is compared with readings of the same chunks
        res[name + "_per_chunk"] = [M.adherence([c]) for c in chunks]
    # per prompted kind, as tools/eval/run.py reports a model's (subject_by_kind: [hits, clips]), so that
    # what the autoencoder loses of each kind compares with what a model on it loses
    res["subject_by_kind"] = {name: M.adherence_by_class(M.tally(r), "subject") for name, r in reads.items()}
    # by the subject's drawn size: what the round trip keeps of a subject that spans fewer latent cells
    res["subject_by_size"] = {name: M.subject_by_size(res["hits"][name]["subject"], scenes, cv,
                                                      cfg["video"]["fps"], size) for name in reads}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
