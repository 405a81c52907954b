#!/usr/bin/env python3
"""Where a conversion from MHA to MLA loses the attention: for every DiT block of an MHA model (the
teacher, or the MHA student with --source student), the relative error of its self-attention output
on the model's own inputs (the first chunk of a teacher-forcing batch, no cache) when one part of
the MLA form is imposed at a time, and under the whole spectral and calibrated conversions of
tools/train.py (convert_block, calibrate_block and refine_block, fitted on the inputs of other
batches). A few minutes on the CPU.

    /usr/bin/python3 tools/eval/conversion.py --ckpt-dir CK [--source student] [--json OUT.json]

CK holds the checkpoints of a chain (ae.pt and teacher.pt, and student_mha.pt for --source student).
The rows:
  partial rope     rope on the MLA's rope channels only (the highest frequencies), the rest unrotated
  shared key mean  one rope key for all heads, their mean (what the spectral init builds)
  shared key rank1 one rope key, complex rank one with per-head factors moved into the queries
                   (what the calibrated init builds)
  kv latent        keys (non-rope channels) and values through a rank-d_c latent, the best on these
                   activations (their truncated SVD); "values only" and "keys only" beside it
  q latent         queries through a rank-d_q latent (the same way)
  spectral / calibrated  the whole conversion, fitted as convert fits it on another batch
  calibrated, refined    and refined as convert --init calibrated refines it (refine_block) on the
                         first chunks of a third batch
"""
import argparse
import copy
import json
import math
import os
import random
import sys

import torch

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOOLS)

import train  # noqa: E402
from vmla_ref import model as vm  # noqa: E402


def _attend(q, k, v):
    """q, k, v [B, T, H, D] -> [B, T, H, D]."""
    o = vm.attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), 1.0 / math.sqrt(q.shape[-1]))
    return o.transpose(1, 2)


def _low_rank(t, rank):
    """The best rank-`rank` approximation of the rows of t [..., n] (truncated SVD, train._svd_split)."""
    up, down, _ = train._svd_split(t.reshape(-1, t.shape[-1]), rank)
    return (up @ down).to(t.dtype).view(t.shape)


def _rank1_shared(q, k, rope_idx):
    """q, k [B, T, H, D] with the rope key shared as calibrate_block shares it (train.shared_rope_key):
    the shared key in every head's rope channels, the heads' factors moved into their queries."""
    B, T, H, _ = k.shape
    R = len(rope_idx)
    qr, shared = train.shared_rope_key(q[..., rope_idx].reshape(-1, H, R).double(),
                                       k[..., rope_idx].reshape(-1, H, R).double())
    q, k = q.clone(), k.clone()
    q[..., rope_idx] = qr.view(B, T, H, R).to(q.dtype)
    k[..., rope_idx] = shared.view(B, T, 1, R).expand(B, T, H, R).to(k.dtype)
    return q, k


@torch.no_grad()
def block_errors(blk, blk_mla_spec, blk_mla_cal, blk_mla_refined, cfg_mla, call, rope_mla):
    """{row: relative error} of one block's self-attention output (see the module's doc)."""
    a = blk.self_attn
    x, rope_q, rope_k = call
    B, T, _ = x.shape
    H, hd = cfg_mla["heads"], cfg_mla["head_dim"]
    m = cfg_mla["mla"]
    rope_idx, nope_idx = train.rope_channel_split(cfg_mla)
    q = a.norm_q(a.q(x)).view(B, T, H, hd)
    k = a.norm_k(a.k(x)).view(B, T, H, hd)
    v = a.v(x).view(B, T, H, hd)
    rot = lambda t, r: vm.apply_rope(t, *r)  # noqa: E731
    ref = _attend(rot(q, rope_q), rot(k, rope_k), v)
    w_o = a.o.weight
    ref_o = ref.reshape(B, T, H * hd) @ w_o.T  # errors are measured after the output projection, bias aside

    def err(o):
        return float(((o - ref).reshape(B, T, H * hd) @ w_o.T).norm() / ref_o.norm())

    def partial(t, r):  # rope on the rope channels only
        out = t.clone()
        out[..., rope_idx] = rot(t, r)[..., rope_idx]
        return out

    k_mean = k.clone()
    k_mean[..., rope_idx] = k[..., rope_idx].mean(2, keepdim=True)
    q1, k1 = _rank1_shared(q, k, rope_idx)
    kv = _low_rank(torch.cat([k[..., nope_idx].reshape(B, T, -1), v.reshape(B, T, -1)], -1), m["kv_latent"])
    k_lat = k.clone()
    k_lat[..., nope_idx] = kv[..., :H * len(nope_idx)].reshape(B, T, H, -1)
    v_lat = kv[..., H * len(nope_idx):].reshape(B, T, H, hd)
    out = {
        "partial rope": err(_attend(partial(q, rope_q), partial(k, rope_k), v)),
        "shared key mean": err(_attend(rot(q, rope_q), rot(k_mean, rope_k), v)),
        "shared key rank1": err(_attend(rot(q1, rope_q), rot(k1, rope_k), v)),
        "kv latent": err(_attend(rot(q, rope_q), rot(k_lat, rope_k), v_lat)),
        "values only": err(_attend(rot(q, rope_q), rot(k, rope_k), _low_rank(v, m["kv_latent"]))),
        "keys only": err(_attend(rot(q, rope_q), rot(k_lat, rope_k), v)),
        "q latent": err(_attend(rot(_low_rank(q, m["q_latent"]), rope_q), rot(k, rope_k), v)),
    }
    whole = (("spectral", blk_mla_spec), ("calibrated", blk_mla_cal), ("calibrated, refined", blk_mla_refined))
    for name, b in whole:
        o, _ = b.self_attn(x, *rope_mla, None)
        out[name] = float((o - a.o.bias - ref_o).norm() / ref_o.norm())
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt-dir", required=True)
    ap.add_argument("--source", choices=["teacher", "student"], default="teacher")
    ap.add_argument("--clips", type=int, default=16, help="clips of the teacher-forcing batch (x 2 chunks)")
    ap.add_argument("--refine-steps", type=int, default=200, help="refine_block steps (as convert --refine-steps)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--micro", action="store_true", help="micro configuration (tests)")
    ap.add_argument("--json", default=None, help="also write the table here")
    a = ap.parse_args(argv)
    args = train.parse(["--stage", "convert", "--ckpt-dir", a.ckpt_dir, "--device", a.device, "--source", a.source]
                       + (["--micro"] if a.micro else []))
    dev = torch.device(a.device)
    torch.manual_seed(args.seed)
    random.seed(args.seed)  # the prompt plans of the batches
    name = "teacher" if a.source == "teacher" else "student_mha"
    ck = train.require(args, name)
    cfg_mla = train.load_cfg(args, "mla")
    src = train.make_dit(ck["cfg"], dev)
    src.load_state_dict(train.weights(ck))
    src.eval()
    data = train.Data(args, cfg_mla, dev)
    enc = train.load_encoder(args, cfg_mla, dev)
    # the conversions are fitted on one batch (as convert fits them) and judged on another's first chunk
    rows, _ = train.attention_samples(args, src, ck["cfg"], data, enc, dev, a.clips)
    _, calls = train.attention_samples(args, src, ck["cfg"], data, enc, dev, a.clips, step=10**6 + 2)
    _, refine_calls = train.attention_samples(args, src, ck["cfg"], data, enc, dev, a.clips, step=10**6 + 3)
    mla = train.make_dit(cfg_mla, dev).eval()
    _, _, gh, gw = vm.latent_grid(cfg_mla)
    frames = cfg_mla["stream"]["chunk_frames"]
    rope_mla = mla.rope_tables(0, frames, gh, gw, dev)
    table = []
    for i, blk in enumerate(src.blocks):
        fit = rows[i]
        spec, cal = copy.deepcopy(mla.blocks[i]), copy.deepcopy(mla.blocks[i])
        train.convert_block(blk, spec, cfg_mla, fit[torch.randperm(fit.shape[0], device=fit.device)[:8192]])
        train.calibrate_block(blk, cal, cfg_mla, fit)
        refined = copy.deepcopy(cal)
        train.refine_block(blk, refined, refine_calls[i], rope_mla, a.refine_steps)
        table.append(block_errors(blk, spec, cal, refined, cfg_mla, calls[i], rope_mla))
    names = list(table[0])
    print(f"self-attention output error against the MHA one, {name} step {ck['step']} ({a.ckpt_dir}), relative:")
    print("| approximation | " + " | ".join(f"block {i}" for i in range(len(table))) + " |")
    print("|---|" + "---|" * len(table))
    for n in names:
        print(f"| {n} | " + " | ".join(f"{t[n]:.3f}" for t in table) + " |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"source": name, "step": ck["step"], "blocks": table}, f, indent=1)
    return table


if __name__ == "__main__":
    main()
