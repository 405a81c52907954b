#!/usr/bin/env python3
"""Writes the shipped tiny models from training checkpoints.

    python3 tools/export.py --ckpt-dir CK                      # student checkpoints (default)
    python3 tools/export.py --ckpt-dir CK --source finetune    # undistilled: euler sampler
    python3 tools/export.py --ckpt-dir CK --dit-from resources/models/vmla-tiny.safetensors
                                                               # a model file's DiT with CK's autoencoder

Outputs resources/models/vmla-tiny.safetensors (MLA) and resources/models/vmla-tiny-mha.safetensors
(the MHA twin), metadata {config, vocabulary, format vmla-dit/1, trained true, description}. Weights:
the DiT blocks' linear weights int8 with float16 scales per 32 values (docs/MODEL.md section 8), the
rest bf16 (`--weights bf16|f16|f32` writes every tensor in that dtype). The DiT and text encoder come
from the chosen stage's EMA weights, the decoder and encoder from ae.pt.

int8 values are rounded by GPTQ (`--int8-rounding gptq`, the default): each linear layer's rounding
errors are compensated within its rows so that its outputs on calibration inputs stay closest to the
bf16 model's. The calibration inputs are the model's own streaming rollouts of
`--calibration-videos` world scenes (3 chunks each, prompt switches included; a stretch of the world
apart from the evaluation's). `--int8-rounding nearest` rounds each value to the nearest step.
Rounding to nearest loses most where a model was trained on from an int8 file: the trained weights
sit near the old grid and rounding puts many back on it, undoing the small steps the model is most
sensitive to (docs/QUALITY.md, fifteenth session).
"""
import argparse
import os
import sys

import torch

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)

from vmla_ref import init as vinit  # noqa: E402
from vmla_ref import model as vm  # noqa: E402
from vmla_ref import st  # noqa: E402
from vmla_ref.stream import uniform_timesteps  # noqa: E402
from train import load_ckpt, model_file_weights, with_ae_of  # noqa: E402

MAX_BYTES = 24_000_000  # each shipped file (issue 3), and both under the working tree's budget
SOURCES = {"mla": {"student": "student_mla", "finetune": "finetune", "teacher": None},
           "mha": {"student": "student_mha", "finetune": "teacher", "teacher": "teacher"}}


def build(ckpt_dir, arch, source, dit_from=None):
    """The model of `arch` from the checkpoints of the stage `source` in ckpt_dir, or with dit_from (a
    model file of that attention) from that file's DiT and text encoder; the autoencoder from
    ckpt_dir's ae.pt either way (dit_from: a shipped model redrawn by a retrained decoder)."""
    name = SOURCES[arch][source]
    if dit_from:
        had, w, _ = model_file_weights(dit_from)
        if had.get("attention") != arch:
            raise SystemExit(f"--dit-from {dit_from} is an {had.get('attention')} model, not {arch}")
        ck, name = {"cfg": had, "ema": w}, os.path.basename(dit_from)
    elif name is None:
        raise SystemExit(f"no {arch} model for source {source}")
    else:
        ck = load_ckpt(os.path.join(ckpt_dir, f"{name}.pt"))
    ae = load_ckpt(os.path.join(ckpt_dir, "ae.pt"))
    if ck is None or ae is None:
        raise SystemExit(f"missing {name}.pt or ae.pt in {ckpt_dir}")
    cfg = with_ae_of(ck["cfg"], ae)
    if source != "student":  # undistilled flow model: many small euler steps
        cfg["sampler"] = {"kind": "euler", "timesteps": [round(t, 3) for t in uniform_timesteps(20)],
                          "shift": 3.0, "context_t": 0}
    model = vm.VMLA(cfg)
    sd = dict(ck["ema"] if "ema" in ck else ck["model"])
    sd.update({f"decoder.{k}": v for k, v in ae["decoder"].items()})
    sd.update({f"encoder.{k}": v for k, v in ae["encoder"].items()})
    model.load_state_dict(sd)
    ae_info = f"ae step {ae['step']}"
    if ae.get("from"):  # taken from a model file (ae --init-from), perhaps trained on (--decoder-only or whole)
        ae_info = (f"the {'decoder' if ae.get('decoder_only') else 'autoencoder'} of an earlier {ae['from']}"
                   + (f", trained {ae['step']} steps more" if ae["step"] else ""))
    dit_info = f"the DiT of {name}" if dit_from else f"{name} step {ck['step']}{'' if ck.get('done') else ' (unfinished)'}"
    if not dit_from and ck.get("from"):  # a student started from a model file or checkpoint of its own
        dit_info += f" started from {ck['from']}"
    info = f"{dit_info}, {ae_info}"
    return model, info


CALIBRATION_START = 700_000  # the world's scenes from here calibrate GPTQ (the evaluation's start at 50_000)
CALIBRATION_CHUNKS = 3


@torch.no_grad()
def calibration_hessians(model, vocab, n_videos, device):
    """For every int8 candidate weight (the DiT blocks' linear layers): sum of x x^T (float64) over
    the inputs x the layer sees in the model's streaming rollouts of n_videos world scenes with their
    sampler, cache passes and prompt switches (tools/eval/metrics.generate)."""
    from eval import metrics as M
    from world import World
    model = model.to(device).eval()
    hess, hooks = {}, []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and vinit.int8_candidate(name + ".weight", mod.weight.detach().cpu()):
            def hook(mod, inp, key=name + ".weight"):
                x = inp[0].detach().reshape(-1, inp[0].shape[-1]).double()
                hess[key] = hess.get(key, 0) + x.T @ x
            hooks.append(mod.register_forward_pre_hook(hook))
    cfg = model.cfg
    frames = CALIBRATION_CHUNKS * cfg["stream"]["chunk_frames"] * cfg["video"]["temporal_stride"]
    world = World(seed=M.WORLD_SEED, size=cfg["video"]["width"])
    scenes = world.scenes(CALIBRATION_START, n_videos, frames)
    try:
        for b in range(0, n_videos, 16):
            M.generate(model, vocab, scenes[b:b + 16], CALIBRATION_CHUNKS, device, seed=b)
    finally:
        for h in hooks:
            h.remove()
    return {k: v.cpu().numpy() for k, v in hess.items()}


def export(ckpt_dir, out_dir, source="student", archs=("mla", "mha"), weights="int8", dit_from=None,
           rounding="gptq", calibration_videos=16, device="cpu"):
    vocab = vm.read_vocabulary(os.path.join(ROOT, "resources", "vocab", "tiny-words.txt"))
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for arch in archs:
        model, info = build(ckpt_dir, arch, source, dit_from)
        fname = "vmla-tiny.safetensors" if arch == "mla" else "vmla-tiny-mha.safetensors"
        path = os.path.join(out_dir, fname)
        n = sum(p.numel() for p in model.parameters())
        desc = (f"VideoMLA Studio tiny default model ({arch.upper()}), trained in-house on the procedural world "
                f"(tools/world); {n / 1e6:.2f} M parameters; from {info}")
        hessians = None
        if weights == "int8" and rounding == "gptq":
            hessians = calibration_hessians(model, vocab, calibration_videos, torch.device(device))
            model = model.cpu()
            desc += f"; int8 rounded by GPTQ on {calibration_videos} calibration rollouts"
        vinit.export(model, vocab, path, dtype="BF16" if weights == "int8" else weights.upper(), trained=True,
                     description=desc, int8=weights == "int8", hessians=hessians)
        size = os.path.getsize(path)
        print(f"{path}: {size / 2**20:.2f} MiB, {n / 1e6:.2f} M parameters ({info}), weights {weights}", flush=True)
        if weights == "int8" and size > MAX_BYTES:
            raise SystemExit(f"{path} is {size} bytes, over the {MAX_BYTES} byte budget")
        written.append(path)
    return written


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt-dir", required=True)
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "resources", "models"))
    ap.add_argument("--source", choices=["student", "finetune", "teacher"], default="student")
    ap.add_argument("--arch", choices=["both", "mla", "mha"], default="both")
    ap.add_argument("--weights", choices=["int8", "bf16", "f16", "f32"], default="int8")
    ap.add_argument("--dit-from", default=None,
                    help="take the DiT and text encoder from this model file (one --arch, its attention) "
                         "instead of a checkpoint; the autoencoder still comes from --ckpt-dir")
    ap.add_argument("--int8-rounding", choices=["gptq", "nearest"], default="gptq",
                    help="int8 values rounded by GPTQ on calibration rollouts (default) or to nearest")
    ap.add_argument("--calibration-videos", type=int, default=16, help="GPTQ: world scenes rolled out")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="where the calibration rollouts run")
    a = ap.parse_args(argv)
    if a.calibration_videos < 1:
        raise SystemExit("--calibration-videos must be at least 1")
    archs = ("mla", "mha") if a.arch == "both" else (a.arch,)
    if a.dit_from and len(archs) != 1:
        raise SystemExit("--dit-from takes one model file: give --arch mla or --arch mha")
    export(a.ckpt_dir, a.out_dir, a.source, archs, a.weights, a.dit_from, a.int8_rounding,
           a.calibration_videos, a.device)


if __name__ == "__main__":
    main()
