#!/usr/bin/python3
"""Writes the parity fixtures of the C++ engine to tests/fixtures/ (see tests/fixtures/README.md).

    /usr/bin/python3 tools/make_fixtures.py [--out tests/fixtures]

Everything is deterministic: weights come from the Philox generator (vmla_ref/init.py, profile
"strong"), noise from the Philox noise of docs/MODEL.md section 5, and the rollouts are computed in
float64 from the float32 weights, then rounded to float32.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmla_ref import init as vinit  # noqa: E402
from vmla_ref import model as vmodel  # noqa: E402
from vmla_ref import st, stream  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = os.path.join(ROOT, "resources", "vocab", "tiny-words.txt")

# Shrunk tiny config. The video is 48x32 (latent 6x4, token grid 2 rows x 3 columns) so that a
# row/column or H/W mix-up shows; window 2 < chunk 3 so the ring evicts from chunk 1 on.
FIXTURE_CONFIG = {
    "name": "vmla-fixture",
    "dim": 48, "ffn_dim": 96, "layers": 2, "heads": 2, "head_dim": 24,
    "in_channels": 16, "out_channels": 16, "patch": [1, 2, 2],
    "freq_dim": 32, "text_dim": 32, "text_len": 16, "eps": 1e-6,
    "qk_norm": True, "cross_attn_norm": True,
    "attention": "mla",
    "mla": {"kv_latent": 16, "q_latent": 32, "nope_dim": 16, "rope_dim": 8},
    "rope": {"theta": 10000.0, "axis_dims": [10, 8, 6], "mla_pairs": [2, 1, 1]},
    "video": {"width": 48, "height": 32, "fps": 16, "temporal_stride": 4, "spatial_stride": 8, "latent_channels": 16},
    "stream": {"chunk_frames": 3, "sink_frames": 1, "window_frames": 2},
    "sampler": {"kind": "renoise", "timesteps": [1000, 750, 500, 250], "shift": 5.0, "context_t": 0},
    "text_encoder": {"vocab_size": 0, "dim": 32, "layers": 1, "heads": 2, "ffn_dim": 64, "eps": 1e-5},
    "decoder": {"channels": [16, 8, 8, 8], "blocks_per_stage": 1, "time_upscale": [False, True, True],
                "space_upscale": [True, True, True]},
    "encoder": {"channels": 8, "blocks_per_stage": 1, "time_downscale": [True, True, False]},
}
MODEL_SEEDS = {"mla": 1, "mha": 2}
ROLLOUT_SEED = 1234
PROMPTS = ["a red ball bouncing on the beach at sunset", "a blue fish swimming in the sea at night"]
# (chunk index, prompt index, re-cache on the switch)
SCHEDULE = [(0, 0, False), (1, 0, False), (2, 1, True)]


def fixture_config(attention):
    cfg = json.loads(json.dumps(FIXTURE_CONFIG))
    cfg["attention"] = attention
    cfg["name"] = f"vmla-fixture-{attention}"
    if attention == "mha":
        del cfg["mla"]
    return cfg


def make_model(attention, vocab):
    return vinit.random_model(fixture_config(attention), vocab, MODEL_SEEDS[attention], profile="strong")


def _cache_tensors(prefix, cache):
    """Ordered cache contents (sink, then ring oldest first) per layer: prefix.l{n}.{name}."""
    out = {}
    ctx = cache.context()
    for n, layer in enumerate(ctx):
        for k, v in layer.items():
            out[f"{prefix}.l{n}.{k}"] = v[0]
    return out


def rollout(model, vocab, path, with_frames=True):
    """The 3-chunk rollout of the fixtures. Returns (tensors, metadata)."""
    m = model.double()
    s = stream.Streamer(m, ROLLOUT_SEED, vocab, path=path, decode=with_frames, dtype=torch.float64)
    tensors = {}
    for j, p in enumerate(PROMPTS):
        tok, text = s.encode_prompt(p)
        if tok["unknown"]:
            raise ValueError(f"fixture prompt has unknown words: {tok['unknown']}")
        tensors[f"text{j}.ids"] = np.asarray(tok["ids"], dtype=np.int32)
        tensors[f"text{j}.encoded"] = text[0]
    current = None
    for chunk, pj, recache in SCHEDULE:
        if pj != current:
            s.set_prompt(PROMPTS[pj], recache=recache and current is not None)
            if recache and current is not None:
                tensors.update(_cache_tensors("recache", s.cache))
            current = pj
        out = s.step_chunk()
        for k in ("noise0", "v0", "x0", "frames"):
            if k in out:
                tensors[f"chunk{chunk}.{k}"] = out[k]
        tensors.update(_cache_tensors(f"chunk{chunk}.cache", s.cache))
    tensors = {k: (v.detach().cpu().numpy() if torch.is_tensor(v) else v) for k, v in tensors.items()}
    tensors = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in tensors.items()}
    meta = {
        "format": "vmla-rollout/1",
        "prompts": json.dumps(PROMPTS),
        "schedule": json.dumps([{"chunk": c, "prompt": p, "recache": r} for c, p, r in SCHEDULE]),
        "seed": str(ROLLOUT_SEED),
        "sampler": json.dumps(m.cfg["sampler"]),
        "attention": m.cfg["attention"],
        "attention_path": path or "mha",
        "compute_dtype": "float64 (weights are the model file's float32 values; results rounded to float32)",
        "frames": "raw decoder output, unclamped" if with_frames else "omitted (decoder covered by the MLA rollout)",
    }
    return tensors, meta


def write_all(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    vocab = vmodel.read_vocabulary(VOCAB)
    written = []
    for att in ("mla", "mha"):
        model = make_model(att, vocab)
        mpath = os.path.join(out_dir, f"ref_{att}_model.safetensors")
        vinit.export(model, vocab, mpath, dtype="F32", trained=False,
                     description=f"random {att.upper()} parity fixture (tools/make_fixtures.py), profile strong, "
                                 f"seed {MODEL_SEEDS[att]}")
        # The rollout uses exactly the stored float32 weights.
        model, _, _ = vinit.load(mpath)
        tensors, meta = rollout(model, vocab, "absorbed" if att == "mla" else None, with_frames=(att == "mla"))
        meta["model"] = os.path.basename(mpath)
        rpath = os.path.join(out_dir, f"ref_{att}_rollout.safetensors")
        st.save(rpath, tensors, meta)
        written += [mpath, rpath]
    return written


SHIPPED_MODEL = os.path.join(ROOT, "resources", "models", "vmla-tiny.safetensors")
SHIPPED_FRAMES = [0, 5, 11]  # frames of the last chunk kept (float16) to keep the fixture small


def write_shipped(out_dir, model_path=SHIPPED_MODEL):
    """The same 3-chunk rollout with the shipped default model (its int8 and bf16 weights
    dequantized to float32, computed in float64). To stay small, only frames SHIPPED_FRAMES of the last chunk (float16) and
    the caches of the first and last layer after the last chunk are stored; the model file's SHA-256
    is recorded so that a new model without new fixtures fails loudly."""
    import hashlib
    os.makedirs(out_dir, exist_ok=True)
    with open(model_path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    model, vocab, _ = vinit.load(model_path)
    model = model.float()
    tensors, meta = rollout(model, vocab, "absorbed", with_frames=True)
    last = f"chunk{len(SCHEDULE) - 1}."
    for c in range(len(SCHEDULE) - 1):
        tensors.pop(f"chunk{c}.frames")
    tensors[last + "frames"] = tensors[last + "frames"][SHIPPED_FRAMES].astype(np.float16)
    tensors[last + "frame_index"] = np.asarray(SHIPPED_FRAMES, dtype=np.int32)
    # caches: the first and the last layer after the last chunk
    L = model.cfg["layers"]
    keep = tuple(f"{last}cache.l{n}." for n in (0, L - 1))
    for k in [k for k in tensors if ".cache.l" in k or k.startswith("recache.")]:
        if not k.startswith(keep):
            tensors.pop(k)
    meta.update(model=os.path.basename(model_path), model_sha256=sha,
                frames=f"raw decoder output of frames {SHIPPED_FRAMES} of the last chunk, float16")
    path = os.path.join(out_dir, "shipped_mla_rollout.safetensors")
    st.save(path, tensors, meta)
    return [path]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures"))
    ap.add_argument("--shipped", action="store_true",
                    help="only the rollout of the shipped default model (after a new model is exported)")
    a = ap.parse_args()
    for p in (write_shipped(a.out) if a.shipped else write_all(a.out)):
        print(f"{os.path.getsize(p):9d}  {p}")


if __name__ == "__main__":
    main()
