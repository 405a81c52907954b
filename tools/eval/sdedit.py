#!/usr/bin/env python3
"""Where a model loses what the prompt asks for: real clips noised part of the way and denoised by
the model (SDEdit). The first chunk of each evaluation video is rendered, encoded by the model
file's own encoder, noised to sigma s (x_s = (1 - s) x_0 + s * noise), then denoised by the model's
sampler from s down (its own schedule's sigmas below s, the model's prompt as the condition, no
cache: the first chunk of a video has none), decoded and read by the probe. s = 0 is the
autoencoder's round trip; s = 1 is plain generation of a first chunk. Where the accuracy of an
attribute falls as s grows says at which noise levels the model cannot restore it: a subject lost
only near s = 1 is lost when the layout forms, one lost from s = 0.5 on is lost when the model
refines what it is given.

    /usr/bin/python3 tools/eval/sdedit.py --model TEACHER.safetensors --probe P/probe.pt \
        --guidance 3 --out sdedit_teacher.json
    /usr/bin/python3 tools/eval/sdedit.py --model resources/models/vmla-tiny.safetensors --probe P/probe.pt

Runs on the CPU in a few minutes for 48 videos (flow models sample 20 euler steps from s = 1, students
their 4 renoise steps). The same noise for every model and level (seed --seed), so two models'
columns pair clip by clip.
"""
import argparse
import json
import os
import sys

import torch

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOOLS)

from eval import metrics as M  # noqa: E402
from eval.probe import ATTRS, load_probe  # noqa: E402
from vmla_ref import init as vinit  # noqa: E402
from vmla_ref import stream as vs  # noqa: E402
from world import World  # noqa: E402

LEVELS = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0)


def schedule_below(sig, s):
    """The sigmas a denoising from s takes: s, then the model's own sigmas under s."""
    return [s] + [float(x) for x in sig if float(x) < s - 1e-6]


@torch.no_grad()
def denoise(model, x, s, cross, cross_u, guidance, seed):
    """x_s -> x_0 with the model's sampler from sigma s (no cache: a first chunk)."""
    sm = model.cfg["sampler"]
    steps = schedule_below(vs.sigmas(sm["timesteps"], sm["shift"]), s)
    g = torch.Generator().manual_seed(seed + 1)
    B = x.shape[0]
    x0 = x
    for i, si in enumerate(steps):
        if si <= 0:
            break
        t = torch.full((B,), 1000.0 * si)
        v = model.dit_pass(x, t, cross, None, 0)[0].float()
        if guidance != 1.0:
            v_u = model.dit_pass(x, t, cross_u, None, 0)[0].float()
            v = v_u + guidance * (v - v_u)
        nxt = steps[i + 1] if i + 1 < len(steps) else 0.0
        x, x0 = M.sampler_step(sm["kind"], x, v, si, nxt, g)
    return x0


@torch.no_grad()
def run(model_path, probe_path, n_videos=48, levels=LEVELS, guidance=1.0, seed=0, batch=16, log=print):
    model, vocab, _ = vinit.load(model_path)
    model.eval()
    if model.encoder is None or model.decoder is None:
        raise SystemExit(f"sdedit: {model_path} holds no encoder or no decoder")
    cfg = model.cfg
    cv = cfg["stream"]["chunk_frames"] * cfg["video"]["temporal_stride"]
    size = cfg["video"]["width"]
    probe = load_probe(probe_path, size)[0].eval()
    world = World(seed=M.WORLD_SEED, size=size)
    scenes = M.eval_scenes(world, n_videos, cv)
    hits = {s: {a: [] for a in ATTRS} for s in levels}
    err = {s: [] for s in levels}
    for b0 in range(0, len(scenes), batch):
        sc = scenes[b0:b0 + batch]
        real = M.real_video(sc, cv, size, "cpu")
        z, _ = model.encoder(real)
        cross = M.encode_prompts(model, vocab, [s["prompt"] for s in sc], "cpu")
        cross_u = M.encode_prompts(model, vocab, [""] * len(sc), "cpu") if guidance != 1.0 else None
        noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed * 100003 + b0))
        for s in levels:
            x = z if s == 0 else denoise(model, (1 - s) * z + s * noise, s, cross, cross_u, guidance, seed + b0)
            err[s].append(float(((x - z) ** 2).sum() / (z ** 2).sum()) ** 0.5)
            y, _ = model.decoder(x)
            pc = M.probe_chunks(probe, y.float().clamp(0, 1), sc, cv)
            for a in ATTRS:
                hits[s][a] += pc[0][0][a].int().tolist()
        log(f"sdedit: {min(b0 + batch, len(scenes))}/{len(scenes)} videos")
    rows = [{"sigma": s, "latent_error": sum(err[s]) / len(err[s]),
             **{a: sum(hits[s][a]) / len(hits[s][a]) for a in ATTRS}} for s in levels]
    return {"model": os.path.basename(model_path), "config_name": model.cfg.get("name"), "n_videos": len(scenes),
            "guidance": guidance, "seed": seed, "sampler": cfg["sampler"]["kind"], "rows": rows,
            "hits": {str(s): hits[s] for s in levels}}


def table(results):
    """Markdown: one row per level, subject / colour / motion of each model."""
    head = "| sigma | " + " | ".join(f"{r['label']}: subject / colour / motion" for r in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]
    for i, row in enumerate(results[0]["rows"]):
        cells = []
        for r in results:
            x = r["rows"][i]
            cells.append(f"{100 * x['subject']:.1f} / {100 * x['colour']:.1f} / {100 * x['motion']:.1f}")
        lines.append(f"| {row['sigma']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True,
                    help="a model file; repeat for several (LABEL=PATH names its column)")
    ap.add_argument("--probe", required=True)
    ap.add_argument("--out", default=None, help="JSON of every model's rows and per-clip hits")
    ap.add_argument("--n-videos", type=int, default=48)
    ap.add_argument("--levels", default=",".join(f"{s:g}" for s in LEVELS))
    ap.add_argument("--guidance", type=float, default=1.0,
                    help="classifier-free guidance of flow models (what their students learn from: 3)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        levels = tuple(float(x) for x in a.levels.split(","))
    except ValueError:
        raise SystemExit(f"sdedit: --levels {a.levels}: expected numbers between 0 and 1 separated by commas")
    if any(not 0 <= s <= 1 for s in levels):
        raise SystemExit(f"sdedit: --levels {a.levels}: every level is a sigma between 0 and 1")
    torch.manual_seed(a.seed)
    results = []
    for spec in a.model:
        label, _, path = spec.rpartition("=")
        if not os.path.isfile(path):
            raise SystemExit(f"sdedit: no model file {path}")
        r = run(path, a.probe, a.n_videos, levels, a.guidance, a.seed)
        r["label"] = label or os.path.basename(path)
        results.append(r)
    print(table(results))
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
