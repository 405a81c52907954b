#!/usr/bin/env python3
"""Training pipeline of the embedded tiny model, in resumable segments.

    python3 tools/train.py --stage ae        --ckpt-dir CK --max-minutes 9
    python3 tools/train.py --stage teacher   --ckpt-dir CK --max-minutes 9     (MHA, from scratch or --init-from)
    python3 tools/train.py --stage convert   --ckpt-dir CK --init spectral    (MHA -> MLA, or --init random)
    python3 tools/train.py --stage finetune  --ckpt-dir CK --max-minutes 9     (MLA)
    python3 tools/train.py --stage student   --ckpt-dir CK --arch mla --max-minutes 9
    python3 tools/train.py --stage student   --ckpt-dir CK --arch mha --max-minutes 9

Every stage resumes from CK/<stage>.pt, saves every --save-minutes and stops cleanly before
--max-minutes; rerun the same command until it prints "STATUS ... done". Stages read the previous
stages' checkpoints from the same folder. bf16 autocast on CUDA; --micro runs a tiny configuration
on the CPU (tests).

Several GPUs: teacher, finetune and student also run data-parallel, one process a GPU:

    torchrun --nproc_per_node 4 tools/train.py --stage teacher --ckpt-dir CK --max-minutes 9

--batch is then per process (4 processes of 64 clips: 256 a step); each process draws its own
clips, gradients are averaged before every step, and rank 0 prints and writes the checkpoints,
which are the same as a one-process run's and resume either way.

Stages:
- ae: TAEHV-style encoder/decoder (4x time, 8x space, 16 channels) on world clips; reconstruction
  plus a latent-scale regulariser (latents ~ unit variance: the DiT uses them unscaled) and noise
  augmentation of the decoder input.
- teacher: text encoder + causal MHA DiT, flow matching with chunked teacher forcing on the
  streaming cache layout (sink + FIFO window, window-local positions, prompt switches, re-cache).
  --fg-weight W weighs the latent cells that hold a subject (1 + W): subjects cover a few percent
  of the cells, and an unweighted loss learns the scene long before the subject.
- convert: MHA -> MLA. spectral: truncated SVD of [W_k(nope); W_v] and of W_q, the rope branch
  from the teacher's highest-frequency rope channels, norms calibrated on data; random: fresh MLA
  attention. Everything else is copied.
- finetune: the MLA model, flow matching plus distillation of the teacher's velocity.
- student: few-step renoise generator trained on its own rollouts with the cache (Self-Forcing),
  with distribution matching (DMD: frozen teacher as real score with CFG, a trained fake score).
"""
import argparse
import contextlib
import copy
import json
import math
import os
import random
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)

from vmla_ref import model as vm  # noqa: E402
from vmla_ref import stream as vs  # noqa: E402
from vmla_ref.init import file_config, init_state, load as load_model_file  # noqa: E402
from world import World, prompt_schedule  # noqa: E402

VOCAB = os.path.join(ROOT, "resources", "vocab", "tiny-words.txt")
STAGES = ["ae", "teacher", "convert", "finetune", "student"]
# Steps, batch (clips), chunks per clip (4: the window fills and evicts), lr. Measured on one H200
# (torch 2.11, bf16): ae ~50 ms/step, teacher ~0.3 s/step, finetune ~0.4 s/step, student ~1-2 s/step,
# so each default is 1-4 segments of 9 minutes.
DEFAULTS = {
    "ae": dict(steps=8000, batch=12, chunks=2, lr=5e-4),
    "teacher": dict(steps=6000, batch=64, chunks=4, lr=3e-4),
    "finetune": dict(steps=3000, batch=64, chunks=4, lr=1e-4),
    "student": dict(steps=600, batch=32, chunks=4, lr=2e-5),
}


# --------------------------------------------------------------------------------------------
# Configuration, checkpoints, helpers


def micro_config(cfg):
    """A tiny variant of a config for CPU tests (same structure, 32x32 video)."""
    cfg = copy.deepcopy(cfg)
    cfg.update(dim=64, ffn_dim=128, layers=2, heads=2, head_dim=32, freq_dim=32, text_dim=32)
    if cfg["attention"] == "mla":
        cfg["mla"] = {"kv_latent": 16, "q_latent": 32, "nope_dim": 24, "rope_dim": 8}
    cfg["rope"] = {"theta": 10000.0, "axis_dims": [12, 10, 10], "mla_pairs": [2, 1, 1]}
    cfg["video"].update(width=32, height=32)
    cfg["stream"] = {"chunk_frames": 3, "sink_frames": 1, "window_frames": 2}
    cfg["text_encoder"].update(dim=32, layers=1, heads=2, ffn_dim=64)
    cfg["decoder"].update(channels=[16, 8, 8, 8], blocks_per_stage=1)
    cfg["encoder"].update(channels=8, blocks_per_stage=1)
    return cfg


def load_cfg(args, attention):
    """The model configuration of a stage: resources/configs, at micro size with --micro, with the DiT
    depth and patch size of the teacher in the checkpoint folder, else of --layers and --patch (every
    model of a chain has its teacher's shape), and with the latent channels of the folder's
    autoencoder, else of --latent-channels (every DiT of a chain works on its autoencoder's latents)."""
    name = "tiny.json" if attention == "mla" else "tiny-mha.json"
    cfg = vm.load_config(os.path.join(ROOT, "resources", "configs", name))
    if args.micro:
        cfg = micro_config(cfg)
    cfg = file_config(cfg, vocabulary())
    tpath = ckpt_path(args, "teacher")
    have = torch.load(tpath, map_location="cpu", **_WO)["cfg"] if os.path.exists(tpath) else None
    if have and args.layers and args.layers != have["layers"]:
        raise SystemExit(f"--layers {args.layers}: the teacher in {args.ckpt_dir} has {have['layers']} layers; to grow a "
                         f"teacher, start one in a new folder with --init-from {tpath} --layers {args.layers}")
    patch = [1, args.patch, args.patch] if args.patch else None
    have_patch = have.get("patch", cfg["patch"]) if have else None
    if have and patch and patch != have_patch:
        raise SystemExit(f"--patch {args.patch}: the teacher in {args.ckpt_dir} has patches of "
                         f"{have_patch[1]}x{have_patch[2]} latent pixels; a teacher of other patches "
                         f"starts in a new folder (--init-from {tpath} --patch {args.patch})")
    if have and args.ffn_dim and args.ffn_dim != have["ffn_dim"] and args.stage != "student":
        raise SystemExit(f"--ffn-dim {args.ffn_dim}: the teacher in {args.ckpt_dir} has feed-forward layers of "
                         f"{have['ffn_dim']}; a wider teacher starts in a new folder (--init-from {tpath} "
                         f"--ffn-dim {args.ffn_dim})")
    apath = ckpt_path(args, "ae")
    ae_lc = torch.load(apath, map_location="cpu", **_WO)["cfg"]["video"]["latent_channels"] if os.path.exists(apath) else None
    if ae_lc and args.latent_channels and args.latent_channels != ae_lc:
        raise SystemExit(f"--latent-channels {args.latent_channels}: the autoencoder in {args.ckpt_dir} has latents of "
                         f"{ae_lc} channels; an autoencoder of other latents starts in a new folder")
    cfg = with_latent_channels(cfg, ae_lc or args.latent_channels or cfg["video"]["latent_channels"])
    cfg["layers"] = have["layers"] if have else args.layers or cfg["layers"]
    cfg["ffn_dim"] = have["ffn_dim"] if have else args.ffn_dim or cfg["ffn_dim"]
    cfg["patch"] = have_patch or patch or cfg["patch"]
    lh, lw, _, _ = vm.latent_grid(cfg)
    if lh % cfg["patch"][1] or lw % cfg["patch"][2]:
        raise SystemExit(f"--patch {cfg['patch'][1]}: the latent frame ({lh}x{lw}) is not a whole number of patches")
    return cfg


def resize_blocks(state, old_layers, new_layers):
    """A DiT state dict of old_layers blocks made into one of new_layers.

    Deeper: the same function. The old blocks spread evenly (block i to i * new // old), each new
    block a copy of the block before it with its three output projections (self-attention,
    cross-attention, feed-forward) zeroed, so it adds nothing until training moves them (progressive
    stacking, function-preserving). Shallower: the blocks at evenly spread depths are kept, the first
    and the last always (5 -> 4 drops the middle one); training has to make up for the rest."""
    if new_layers < 1:
        raise SystemExit(f"a DiT needs at least one block, not {new_layers}")
    if new_layers < old_layers:
        keep = [round(n * (old_layers - 1) / max(1, new_layers - 1)) for n in range(new_layers)]
        source, at = keep, {i: n for n, i in enumerate(keep)}
    else:
        at = {i: i * new_layers // old_layers for i in range(old_layers)}
        source = [max(i for i in range(old_layers) if at[i] <= n) for n in range(new_layers)]
    zeroed = ("self_attn.o.", "cross_attn.o.", "ffn.2.")
    out = {k: v for k, v in state.items() if not k.startswith("blocks.")}
    for n, i in enumerate(source):
        for k, v in state.items():
            if k.startswith(f"blocks.{i}."):
                rest = k[len(f"blocks.{i}."):]
                fresh = at[i] != n and rest.startswith(zeroed)
                out[f"blocks.{n}.{rest}"] = torch.zeros_like(v) if fresh else v.clone()
    return out


def widen_ffn(state, old_ffn, new_ffn, seed=0):
    """A DiT state dict with feed-forward layers of old_ffn hidden units made into one of new_ffn >=
    old_ffn. The old units keep their weights; each new unit gets input weights drawn like the old
    ones (a normal of their spread, per block) and a zero bias and output weight, so the widened
    network computes the same function and training grows the new units from there (Net2Net's
    zero-initialised variant). Only the DiT blocks' FFNs are widened (not the text encoder's)."""
    if new_ffn < old_ffn:
        raise SystemExit(f"--ffn-dim {new_ffn}: feed-forward layers can grow ({old_ffn} -> more), not shrink")
    g = torch.Generator().manual_seed(seed)
    out = dict(state)
    extra = new_ffn - old_ffn
    for k, w in state.items():
        if k.startswith("blocks.") and k.endswith(".ffn.0.weight"):  # [ffn, dim]
            fresh = torch.randn(extra, w.shape[1], generator=g, dtype=torch.float32) * float(w.float().std())
            out[k] = torch.cat([w, fresh.to(w.dtype)], 0)
            b = k[:-len("weight")] + "bias"
            out[b] = torch.cat([state[b], torch.zeros(extra, dtype=state[b].dtype)])
            w2 = k.replace(".ffn.0.weight", ".ffn.2.weight")  # [dim, ffn]
            out[w2] = torch.cat([state[w2], torch.zeros(state[w2].shape[0], extra, dtype=state[w2].dtype)], 1)
    return out


def repatch(state, old_patch, new_patch, out_channels):
    """A DiT state dict of patches old_patch (ph, pw latent pixels) made into one of new_patch, which
    must divide it: each new patch takes the place of r x r old sub-pixels. The patch embedding of a
    new patch is the sum of the old one's weights over the sub-pixels it stands for, so a latent that
    is flat over those sub-pixels embeds as before; the head's output for a new patch is the mean of
    the old head's outputs over them. The DiT blocks keep their weights; RoPE positions now count
    smaller patches, which training has to adapt to."""
    (ph, pw), (qh, qw) = old_patch, new_patch
    if ph % qh or pw % qw:
        raise SystemExit(f"cannot make patches of {ph}x{pw} into {qh}x{qw}: the new size must divide the old")
    rh, rw = ph // qh, pw // qw
    out = dict(state)
    w = state["patch_embedding.weight"]  # [dim, C, 1, ph, pw]
    out["patch_embedding.weight"] = w.reshape(*w.shape[:3], qh, rh, qw, rw).sum((4, 6))
    hw, hb = state["head.head.weight"], state["head.head.bias"]  # rows (i, j, c) of ph x pw x out
    out["head.head.weight"] = hw.reshape(qh, rh, qw, rw, out_channels, -1).mean((1, 3)).reshape(-1, hw.shape[1])
    out["head.head.bias"] = hb.reshape(qh, rh, qw, rw, out_channels).mean((1, 3)).reshape(-1)
    return out


def model_file_weights(path):
    """(configuration, DiT and text-encoder state dict, autoencoder state dicts) of a shipped model
    file (tools/export.py), its int8 weights dequantized: a shipped model as a training start."""
    try:
        model, _, _ = load_model_file(path)
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"{path}: not a readable model file ({e})")
    sd = model.state_dict()
    dit = {k: v for k, v in sd.items() if not k.startswith(("decoder.", "encoder."))}
    ae = {part: {k[len(part) + 1:]: v for k, v in sd.items() if k.startswith(part + ".")}
          for part in ("encoder", "decoder")}
    return model.cfg, dit, ae


def vocabulary():
    return vm.read_vocabulary(VOCAB)


def ckpt_path(args, name):
    return os.path.join(args.ckpt_dir, f"{name}.pt")


_WO = {"weights_only": False}  # our own files; torch >= 2.6 defaults to weights_only=True
SHARD_BYTES = 15 * 2**20  # the device tool returns files of at most 16 MiB


def save_ckpt(path, obj, compact=True):
    """Writes obj (a dict whose dict values of tensors are state dicts) as `path` plus shards
    `path[:-3].s{i}.pt` of at most SHARD_BYTES. compact: floating tensors stored as bf16. Under
    torchrun only rank 0 writes (every process holds the same weights)."""
    if PAR.rank > 0:
        return
    meta, tensors = {}, []
    for k, v in obj.items():
        if isinstance(v, dict) and v and all(torch.is_tensor(t) for t in v.values()):
            meta[k] = "__tensors__"
            for n, t in v.items():
                t = t.detach().cpu()
                if compact and t.is_floating_point():
                    t = t.to(torch.bfloat16)
                tensors.append((k, n, t))
        else:
            meta[k] = v
    shards, cur, size = [], {}, 0
    for k, n, t in tensors:
        b = t.numel() * t.element_size()
        if cur and size + b > SHARD_BYTES:
            shards.append(cur)
            cur, size = {}, 0
        cur[(k, n)] = t
        size += b
    if cur:
        shards.append(cur)
    base = path[:-3]
    names = []
    for i, sh in enumerate(shards):
        name = f"{base}.s{i}.pt"
        torch.save(sh, name + ".tmp")
        os.replace(name + ".tmp", name)
        names.append(os.path.basename(name))
    i = len(shards)
    while os.path.exists(f"{base}.s{i}.pt"):  # stale shards of a larger earlier save
        os.remove(f"{base}.s{i}.pt")
        i += 1
    meta["__shards__"] = names
    torch.save(meta, path + ".tmp")
    os.replace(path + ".tmp", path)


def load_ckpt(path, device="cpu"):
    """Reads a checkpoint written by save_ckpt; tensors come back as float32 (or their integer type)."""
    if not os.path.exists(path):
        return None
    meta = torch.load(path, map_location="cpu", **_WO)
    obj = {k: ({} if v == "__tensors__" else v) for k, v in meta.items() if k != "__shards__"}
    for name in meta.get("__shards__", []):
        for (k, n), t in torch.load(os.path.join(os.path.dirname(path), name), map_location="cpu", **_WO).items():
            obj[k][n] = (t.float() if t.is_floating_point() else t).to(device)
    return obj


def ckpt_files(ckpt_dir, name):
    """The files of checkpoint `name` (main file, shards, rank report) present in ckpt_dir."""
    import glob
    base = os.path.join(ckpt_dir, name)
    files = [base + ".pt"] if os.path.exists(base + ".pt") else []
    files += sorted(glob.glob(base + ".s*.pt"))
    files += glob.glob(os.path.join(ckpt_dir, f"ranks_{name}*.json"))
    return files


def needs(args):
    """Checkpoints that a segment of the stage reads (its own first)."""
    own = f"student_{args.arch}" if args.stage == "student" else args.stage
    have = lambda n: os.path.exists(os.path.join(args.ckpt_dir, n + ".pt"))  # noqa: E731
    if args.stage == "ae":
        return own, []
    if args.stage == "teacher":
        return own, ["ae", "teacher"]
    if args.stage == "convert":
        return own, ["ae", "teacher"] + (["student_mha"] if args.source == "student" else [])
    if args.stage == "finetune":
        return own, ["ae", "teacher"] + ([] if have("finetune") else ["convert"])
    first = [] if have(own) else ([args.start] if args.arch == "mla" else [])
    return own, ["teacher"] + first


def pack(args):
    """Copies what a segment of the stage needs into args.pack (the folder to carry to the GPU)."""
    import shutil
    own, inputs = needs(args)
    if os.path.isdir(args.pack):
        shutil.rmtree(args.pack)
    os.makedirs(args.pack)
    total = 0
    for n in [own] + inputs:
        for f in ckpt_files(args.ckpt_dir, n):
            if f.endswith(".json"):
                continue
            shutil.copy2(f, args.pack)
            total += os.path.getsize(f)
    print(f"packed {args.pack}: {total / 2**20:.1f} MiB for stage {own} (inputs {', '.join(inputs) or '-'})")
    if total > 56 * 2**20:
        print("warning: over 56 MiB; the device tool carries 64 MiB including the repository", flush=True)


def copy_out(args):
    """Copies the stage's own checkpoint files into args.out (returned by the device tool)."""
    import shutil
    own, _ = needs(args)
    os.makedirs(args.out, exist_ok=True)
    for f in ckpt_files(args.ckpt_dir, own):
        shutil.copy2(f, args.out)


def save_ranks(args, name, model):
    """Writes CK/ranks_<name>.json (99%-energy ranks of the attention operators) for the report."""
    if PAR.rank > 0:
        return
    from eval.metrics import attention_ranks
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    cfg = dict(model.cfg, mla=model.cfg.get("mla", {"kv_latent": load_cfg(args, "mla")["mla"]["kv_latent"]}))
    with open(os.path.join(args.ckpt_dir, f"ranks_{name}.json"), "w") as f:
        json.dump({"name": name, "attention": cfg["attention"], "dim": cfg["dim"], "d_c": cfg["mla"]["kv_latent"],
                   "layers": attention_ranks(sd, cfg)}, f)


def weights(ck):
    """A checkpoint's weights for later stages: its EMA when finished, else the raw weights."""
    return ck["ema"] if "ema" in ck else ck["model"]


def require(args, name):
    ck = load_ckpt(ckpt_path(args, name))
    if ck is None:
        sys.exit(f"missing checkpoint {ckpt_path(args, name)}: run stage '{name.split('_')[0]}' first")
    if not ck.get("done", False):
        print(f"note: {name}.pt is not finished (step {ck['step']}); using it anyway", flush=True)
    return ck


def autocast(device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def setup_device(args):
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and PAR.world > 1:
        dev = torch.device("cuda", PAR.local)
        torch.cuda.set_device(dev)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        major, minor = (int(x) for x in torch.__version__.split(".")[:2])
        vm.USE_SDPA = (major, minor) >= (2, 1)  # `scale=` argument
    return dev


def lr_at(step, total, base, warmup=300):
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


@torch.no_grad()
def ema_update(ema, model, decay):
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach().to(e.dtype), 1.0 - decay)


class Clock:
    """Stops a stage before --max-minutes and saves every --save-minutes."""

    def __init__(self, args):
        self.t0 = time.time()
        self.limit = args.max_minutes * 60.0
        self.save_every = args.save_minutes * 60.0
        self.last_save = self.t0
        self.step_time = 0.0

    def tick(self, dt):
        self.step_time = dt if self.step_time == 0 else 0.9 * self.step_time + 0.1 * dt

    def out_of_time(self, save_cost=5.0):
        return time.time() - self.t0 + 2 * self.step_time + save_cost > self.limit

    def should_save(self):
        if time.time() - self.last_save > self.save_every:
            self.last_save = time.time()
            return True
        return False

    def decisions(self):
        """(save now, stop now), the same in every process of a data-parallel run."""
        return PAR.agree(self.should_save(), self.out_of_time())


def status(stage, step, total, done, extra=""):
    state = "done" if done else "incomplete: rerun the same command to resume"
    print(f"STATUS stage={stage} step={step}/{total} {state} {extra}", flush=True)


class Parallel:
    """Data parallelism under torchrun (one process a GPU; teacher, finetune and student): each
    process draws its own batches, gradients are averaged before every optimizer step, the clock's
    decisions (save, stop) are taken together, and only rank 0 prints and writes. --batch is per
    process, so N processes train on N times the batch. Without torchrun: one process, no-ops."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local = int(os.environ.get("LOCAL_RANK", "0"))

    def start(self, dev):
        if self.world > 1:
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
            if self.rank > 0:  # one log: rank 0's
                sys.stdout = open(os.devnull, "w")

    def stop(self):
        if self.world > 1:
            dist.destroy_process_group()

    def average(self, params):
        """Averages the gradients of params over the processes (a missing gradient counts as zero)."""
        if self.world == 1:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        flat /= self.world
        i = 0
        for p in params:
            p.grad.copy_(flat[i:i + p.numel()].view_as(p))
            i += p.numel()

    def agree(self, *flags):
        """Each flag true if it is true in any process, so that every process saves and stops together."""
        if self.world == 1:
            return flags
        t = torch.tensor([float(f) for f in flags], device=self.device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in t.tolist())

    def mean(self, *values):
        """Means over the processes of scalar tensors (the logged losses)."""
        if self.world == 1:  # detached: a loss that needs its graph still logs without a warning
            return tuple(float(v.detach()) if torch.is_tensor(v) else float(v) for v in values)
        t = torch.stack([v.detach().float().reshape(()) for v in values]).to(self.device())
        dist.all_reduce(t)
        return tuple((t / self.world).tolist())

    def broadcast(self, module):
        """Rank 0's weights (and buffers) into every process's copy of module."""
        if self.world > 1:
            for t in module.state_dict().values():
                dist.broadcast(t, 0)

    def device(self):
        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


PAR = Parallel()


# --------------------------------------------------------------------------------------------
# Data: world clips, latents, prompts


class Data:
    def __init__(self, args, cfg, device):
        v = cfg["video"]
        self.world = World(seed=args.seed, size=v["width"], fps=v["fps"], event_prob=0.35,
                           chunk_video_frames=cfg["stream"]["chunk_frames"] * v["temporal_stride"])
        self.cfg, self.device = cfg, device
        self.tok = vm.Tokenizer(vocabulary(), cfg["text_len"])
        self.chunk_video = cfg["stream"]["chunk_frames"] * v["temporal_stride"]

    def clips(self, step, batch, n_chunks, render=True):
        n_frames = n_chunks * self.chunk_video
        if render:
            video, scenes = self.world.batch(step, batch, n_frames, self.device)
        else:
            video, scenes = None, self.world.scenes(step * batch, batch, n_frames)
        return video, scenes

    def ids(self, prompts):
        L = self.cfg["text_len"]
        ids = torch.zeros(len(prompts), L, dtype=torch.long)
        lens = torch.zeros(len(prompts), dtype=torch.long)
        for i, p in enumerate(prompts):
            e = self.tok.encode(p)["ids"]
            ids[i, :len(e)] = torch.tensor(e, dtype=torch.long)
            lens[i] = len(e)
        return ids.to(self.device), lens.to(self.device)


class LatentPool:
    """Encoded clips kept on the device; every step replaces `fresh` random entries with new
    renders and draws a batch, so rendering costs a fraction of a batch per step. With masks, each
    clip also keeps where its subjects are on the latent grid (latent_mask), for a subject-weighted loss."""

    def __init__(self, data, enc, dev, size, n_chunks, fresh, seed, masks=False):
        self.data, self.enc, self.dev, self.K, self.fresh = data, enc, dev, n_chunks, fresh
        self.next_clip = 10_000_000 * (seed + 1)
        self.g = torch.Generator().manual_seed(seed)
        self.with_masks = masks
        self.x0, self.m, self.scenes = None, None, []
        for a in range(0, size, 64):
            x, m, sc = self._render(min(64, size - a))
            self.x0 = x if self.x0 is None else torch.cat([self.x0, x])
            if masks:
                self.m = m if self.m is None else torch.cat([self.m, m])
            self.scenes += sc

    def _render(self, n):
        v = self.data.cfg["video"]
        n_frames = self.K * self.data.chunk_video
        scenes = [self.data.world.scene(self.next_clip + i, n_frames) for i in range(n)]
        self.next_clip += n
        from world import render
        video = render(scenes, n_frames, v["width"], v["fps"], self.dev)
        x = encode_video(self.enc, video, self.dev)
        m = latent_mask(subject_mask(video, scenes, self.data.world, 0), x.shape) if self.with_masks else None
        return x, m, scenes

    def sample(self, batch):
        """(x0 [batch, T, C, h, w], scenes, subject mask [batch, T, 1, h, w] or None)."""
        if self.fresh:
            x, m, sc = self._render(self.fresh)
            idx = torch.randperm(len(self.scenes), generator=self.g)[:self.fresh]
            self.x0[idx.to(self.dev)] = x
            if self.with_masks:
                self.m[idx.to(self.dev)] = m
            for j, i in enumerate(idx.tolist()):
                self.scenes[i] = sc[j]
        idx = torch.randperm(len(self.scenes), generator=self.g)[:batch]
        d = idx.to(self.dev)
        return self.x0[d], [self.scenes[i] for i in idx.tolist()], (self.m[d] if self.with_masks else None)


def prompt_plan(data, scenes, n_chunks, drop=0.0, recache_prob=0.5, rng=None):
    """(prompts1, prompts2, switch mask [K, B] of chunks using prompt 2, recache list [K] of [B])."""
    rng = rng or random
    p1, p2, sched = [], [], []
    for s in scenes:
        empty = rng.random() < drop
        p1.append("" if empty else s["prompt"])
        p2.append("" if empty else s["prompt2"])
        sched.append(prompt_schedule(s, n_chunks, data.chunk_video))
    use2 = torch.tensor(sched, dtype=torch.bool, device=data.device).T  # [K, B]
    rc = [torch.zeros(len(scenes), dtype=torch.bool, device=data.device)]
    for k in range(1, n_chunks):
        switched = use2[k] & ~use2[k - 1]
        coin = torch.tensor([rng.random() < recache_prob for _ in scenes], device=data.device)
        rc.append(switched & coin)
    return p1, p2, use2, rc


def cross_per_chunk(model, data, p1, p2, use2):
    """Per-chunk cross-attention K/V (prompt 1 or 2 per sample)."""
    ids1, l1 = data.ids(p1)
    ids2, l2 = data.ids(p2)
    train_text = any(p.requires_grad for p in model.text_encoder.parameters())
    with torch.set_grad_enabled(train_text and torch.is_grad_enabled()):
        t1, t2 = model.encode_text(ids1, l1), model.encode_text(ids2, l2)
    c1, c2 = model.cross_kv(t1), model.cross_kv(t2)
    out = []
    for k in range(use2.shape[0]):
        m = use2[k].view(-1, 1, 1, 1)
        out.append([(torch.where(m, a2, a1), torch.where(m, b2, b1)) for (a1, b1), (a2, b2) in zip(c1, c2)])
    return out


def sample_sigma(shape, device, shift=3.0):
    u = torch.sigmoid(torch.randn(shape, device=device))
    return shift * u / (1 + (shift - 1) * u)


def build_ae(cfg):
    lv = cfg["video"]["latent_channels"]
    return vm.Encoder(cfg["encoder"], lv), vm.Decoder(cfg["decoder"], lv)


def widen_ae(cfg, width):
    """The autoencoder of cfg with every channel count scaled by `width` (the DiT is unchanged)."""
    cfg = copy.deepcopy(cfg)
    cfg["decoder"]["channels"] = [max(1, round(c * width)) for c in cfg["decoder"]["channels"]]
    cfg["encoder"]["channels"] = max(1, round(cfg["encoder"]["channels"] * width))
    return cfg


def with_latent_channels(cfg, channels):
    """cfg with latents of `channels` channels: the autoencoder's and the DiT's input and output."""
    cfg = copy.deepcopy(cfg)
    cfg["video"]["latent_channels"] = cfg["in_channels"] = cfg["out_channels"] = int(channels)
    return cfg


def with_ae_of(cfg, ae_ck):
    """cfg with the encoder and decoder settings and the latent channels of an ae checkpoint (a
    widened one keeps its shape)."""
    if not ae_ck or "cfg" not in ae_ck:
        return cfg
    cfg = with_latent_channels(cfg, ae_ck["cfg"]["video"]["latent_channels"])
    cfg["encoder"], cfg["decoder"] = ae_ck["cfg"]["encoder"], ae_ck["cfg"]["decoder"]
    return cfg


def ae_from_ckpt(ck, cfg=None):
    """(encoder, decoder) of an ae checkpoint, in the checkpoint's own shape (cfg: the rest of the
    configuration; default the checkpoint's), with its weights, in eval mode."""
    enc, dec = build_ae(with_ae_of(cfg or ck["cfg"], ck))
    enc.load_state_dict(ck["encoder"])
    dec.load_state_dict(ck["decoder"])
    return enc.eval(), dec.eval()


def load_encoder(args, cfg, device):
    enc, _ = ae_from_ckpt(require(args, "ae"), cfg)
    return enc.to(device).requires_grad_(False)


@torch.no_grad()
def encode_video(enc, video, device):
    with autocast(device):
        z, _ = enc(video)
    return z.float()


# --------------------------------------------------------------------------------------------
# Stage: autoencoder


def subject_mask(video, scenes, world, frame0):
    """[B, N, 1, H, W] 1.0 where a subject is (or casts its shadow), found by rendering the same clips
    without subjects; dilated by 2 pixels for the edges."""
    from world import render
    bare = render([dict(s, subjects=[]) for s in scenes], video.shape[1], world.size, world.fps, video.device, frame0)
    mask = ((video - bare).abs().sum(2, keepdim=True) > 0.03).float()
    B, N = mask.shape[:2]
    return F.max_pool2d(mask.flatten(0, 1), 5, stride=1, padding=2).view(B, N, 1, *mask.shape[-2:])


def subject_weight(video, scenes, world, frame0, fg_weight):
    """Per-pixel loss weight [B, N, 1, H, W]: 1 + fg_weight on subject pixels (subject_mask)."""
    return 1.0 + fg_weight * subject_mask(video, scenes, world, frame0)


def latent_mask(mask, shape):
    """A pixel mask [B, N, 1, H, W] taken to the latent grid `shape` [B, T, C, h, w]: a latent cell is
    marked when any pixel of the frames and the area it encodes is."""
    B, N, _, H, W = mask.shape
    T, h, w = shape[1], shape[3], shape[4]
    m = mask.view(B, T, N // T, 1, h, H // h, w, W // w)
    return m.amax((2, 5, 7))


def weighted_mse(a, b, weight):
    """MSE with a per-position weight broadcast over channels (None: plain MSE); normalised by the
    weight's sum, so the loss keeps the scale of a plain MSE."""
    if weight is None:
        return F.mse_loss(a, b)
    return (weight * (a - b) ** 2).sum() / (weight.expand_as(a).sum())


class PatchDisc(torch.nn.Module):
    """A PatchGAN of frames (pix2pix's discriminator): strided convolutions down to one real/fake logit
    per patch of about 46 x 46 pixels (8 x 8 pixels apart). It judges whether shapes are sharp where a
    squared error is content with their average: the blur that loses small subjects."""

    def __init__(self, width=64):
        super().__init__()
        nn, w = torch.nn, width
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.GroupNorm(8, 2 * w), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.GroupNorm(8, 4 * w), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * w, 1, 3, 1, 1))

    def forward(self, video):  # [B, N, 3, H, W] in [0, 1] -> logits [B, N, 1, H/8, W/8]
        B, N = video.shape[:2]
        y = self.net(video.flatten(0, 1) * 2 - 1)
        return y.view(B, N, *y.shape[1:])


def gan_terms(disc, rec, weight, last, loss_rec, gan_weight, ramp):
    """The decoder's adversarial term (hinge), weighted as in VQGAN: gan_weight times the ratio of the
    reconstruction's to the adversarial term's gradient norms at the decoder's last layer `last`, so
    gan_weight is the share of the last layer's gradient the discriminator gets whatever the scale of
    its logits. With a subject weight, the patches that hold subjects count that much more."""
    logits = disc(rec)
    if weight is None:
        g = -logits.float().mean()
    else:
        B, N, _, h, w = logits.shape
        wp = F.adaptive_avg_pool2d(weight.flatten(0, 1).float(), (h, w)).view(B, N, 1, h, w)
        g = -(logits.float() * wp).sum() / wp.sum()
    g_rec = torch.autograd.grad(loss_rec, last, retain_graph=True)[0].norm()
    g_gan = torch.autograd.grad(g, last, retain_graph=True)[0].norm()
    lam = (g_rec / (g_gan + 1e-6)).clamp(0, 1e4).detach()
    return g, gan_weight * ramp * lam


def disc_step(disc, opt_d, rec, video):
    """One hinge-loss update of the discriminator on real frames and the decoder's (detached) ones."""
    with autocast(video.device):
        lr_ = disc(video).float()
        lf = disc(rec.detach()).float()
    loss = F.relu(1 - lr_).mean() + F.relu(1 + lf).mean()
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()  # the loss and the shares of real and decoded frames told apart (tensors: no sync)
    return loss.detach(), (lr_ > 0).float().mean(), (lf < 0).float().mean()


def import_ae(args, base, announce=True):
    """ae --init-from FILE: the encoder and decoder of a shipped model file as a finished ae.pt, so a
    new chain can start from the shipped models (their training checkpoints are not kept)."""
    if not args.init_from.endswith(".safetensors"):
        raise SystemExit(f"ae: --init-from {args.init_from} is not a model file (.safetensors)")
    had, _, ae = model_file_weights(args.init_from)
    if not ae["encoder"] or not ae["decoder"]:
        raise SystemExit(f"ae: {args.init_from} holds no encoder (a file exported without it)")
    if args.latent_channels and args.latent_channels != had["video"]["latent_channels"]:
        raise SystemExit(f"ae: --latent-channels {args.latent_channels}, but the autoencoder of {args.init_from} has "
                         f"latents of {had['video']['latent_channels']} channels")
    cfg = with_ae_of(base, {"cfg": had})
    enc, dec = build_ae(cfg)
    try:
        enc.load_state_dict(ae["encoder"]), dec.load_state_dict(ae["decoder"])
    except RuntimeError as e:
        raise SystemExit(f"ae: the autoencoder of {args.init_from} does not fit its configuration: {e}")
    save_ckpt(ckpt_path(args, "ae"), {"stage": "ae", "step": 0, "done": True, "from": os.path.basename(args.init_from),
                                      "encoder": enc.state_dict(), "decoder": dec.state_dict(), "cfg": cfg},
              compact=False)
    if announce:
        status("ae", 0, 0, True)


def stage_ae(args, dev):
    ck = load_ckpt(ckpt_path(args, "ae"), dev)
    base = load_cfg(args, "mla")
    if args.init_from and ck is None:  # a shipped model's autoencoder, taken as finished
        if not args.decoder_only:
            return import_ae(args, base)
        import_ae(args, base, announce=False)  # ... or as the start of a decoder fine-tune
        ck = load_ckpt(ckpt_path(args, "ae"), dev)
    # --decoder-only: the encoder stays frozen, so the latent space, and every DiT trained on it, is
    # kept; only how latents are drawn back into pixels is trained (with --fg-weight, the subjects)
    frozen = bool(args.decoder_only or (ck and ck.get("decoder_only")))
    if ck and frozen != bool(ck.get("decoder_only")) and not (ck.get("from") and ck["step"] == 0):
        raise SystemExit(f"ae: the autoencoder in {args.ckpt_dir} is "
                         f"{'a decoder-only fine-tune' if ck.get('decoder_only') else 'trained whole'}; resume it "
                         f"{'with' if ck.get('decoder_only') else 'without'} --decoder-only, or use another --ckpt-dir")
    wanted = widen_ae(base, args.ae_width) if args.ae_width != 1.0 else base
    cfg = with_ae_of(base, ck) if ck else wanted  # a resumed autoencoder keeps its shape
    if ck and args.ae_width != 1.0 and cfg["decoder"] != wanted["decoder"]:
        raise SystemExit(f"ae: the checkpoint in {args.ckpt_dir} has decoder channels {cfg['decoder']['channels']}, "
                         f"not those of --ae-width {args.ae_width}: use another --ckpt-dir")
    d = DEFAULTS["ae"]
    steps, batch = args.steps or d["steps"], args.batch or d["batch"]
    enc, dec = build_ae(cfg)
    enc, dec = enc.to(dev), dec.to(dev)
    if frozen:
        enc.requires_grad_(False)
    params = list(dec.parameters()) if frozen else list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr or d["lr"], weight_decay=0.0, betas=(0.9, 0.99))
    disc = opt_d = None
    if args.gan_weight > 0:
        disc = PatchDisc().to(dev)
        opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.9))
        last = dec.conv_final.weight  # the decoder's output convolution
    step = 0
    if ck:
        enc.load_state_dict(ck["encoder"]), dec.load_state_dict(ck["decoder"])
        if "opt" in ck:
            opt.load_state_dict(ck["opt"])
        step = ck["step"]
        if step >= steps:
            return status("ae", step, steps, True)
        if disc is not None and "disc" in ck:
            disc.load_state_dict(ck["disc"])
            if "opt_d" in ck:
                opt_d.load_state_dict(ck["opt_d"])
    if ck and ck.get("gan_weight") and disc is None:
        raise SystemExit(f"ae: the autoencoder in {args.ckpt_dir} is trained with a discriminator (--gan-weight "
                         f"{ck['gan_weight']}); resume it with --gan-weight, or use another --ckpt-dir")
    gan_from = ck.get("gan_from", step) if ck and "disc" in ck else step  # where the discriminator started
    data = Data(args, cfg, dev)
    clock = Clock(args)
    n_frames = 16 if not args.micro else 8

    def save(done=False):
        state = {"stage": "ae", "step": step, "done": done, "encoder": enc.state_dict(),
                 "decoder": dec.state_dict(), "cfg": cfg, "decoder_only": frozen}
        if ck and ck.get("from"):
            state["from"] = ck["from"]
        if disc is not None:
            state.update(disc=disc.state_dict(), gan_from=gan_from, gan_weight=args.gan_weight)
        if not done:
            state["opt"] = opt.state_dict()
            if disc is not None:
                state["opt_d"] = opt_d.state_dict()
        save_ckpt(ckpt_path(args, "ae"), state, compact=False)

    while step < steps:
        t0 = time.time()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, args.lr or d["lr"])
        f0 = n_frames * random.Random(step).randint(0, 3)  # later clip phases: events, zooms, pans
        video, scenes = data.world.batch(step, batch, n_frames, dev, frame0=f0)
        weight = subject_weight(video, scenes, data.world, f0, args.fg_weight) if args.fg_weight > 0 else None
        with autocast(dev):
            with torch.no_grad() if frozen else contextlib.nullcontext():
                z, _ = enc(video)
            z = z.float()
            sigma = 0.2 * torch.rand(z.shape[0], 1, 1, 1, 1, device=dev)
            rec, _ = dec(z + sigma * torch.randn_like(z))
        rec = rec.float()
        if weight is None:
            loss_rec = F.mse_loss(rec, video) + 0.5 * F.l1_loss(rec, video)
        else:  # subjects are 1-2% of the pixels: without weight the round trip loses them
            err = (rec - video) ** 2 + 0.5 * (rec - video).abs()
            loss_rec = (weight * err).sum() / (weight.sum() * 3)
        loss = loss_rec
        if disc is not None:
            # the discriminator learns alone for its first --gan-start steps, then its term ramps in over 200
            ramp = min(1.0, max(0.0, (step - gan_from - args.gan_start + 1) / 200))
            d_loss, d_real, d_fake = disc_step(disc, opt_d, rec, video)
            if ramp > 0:
                disc.requires_grad_(False)
                with autocast(dev):
                    g, w_gan = gan_terms(disc, rec, weight, last, loss_rec, args.gan_weight, ramp)
                disc.requires_grad_(True)
                loss = loss + w_gan * g
        if not frozen:  # the latent-scale regulariser moves the encoder only
            zc = z.transpose(1, 2).flatten(2)  # [B, C, ...]
            loss = loss + 0.02 * ((zc.mean((0, 2)) ** 2).mean() + ((zc.var((0, 2)) - 1.0) ** 2).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        clock.tick(time.time() - t0)
        if step % args.log_every == 0 or step == 1:
            psnr = -10 * math.log10(max(F.mse_loss(rec.clamp(0, 1), video).item(), 1e-10))
            fg = ""
            if weight is not None:
                m = (weight > 1).float()
                mse_fg = (((rec.clamp(0, 1) - video) ** 2) * m).sum() / (3 * m.sum()).clamp(min=1)
                fg = f" subject psnr {-10 * math.log10(max(mse_fg.item(), 1e-10)):.2f} ({100 * m.mean().item():.1f}% px)"
            gan = ""
            if disc is not None:
                told = f"real {100 * d_real.item():.0f}% fake {100 * d_fake.item():.0f}% told"
                gan = f" disc {d_loss.item():.3f} ({told})"
                if ramp > 0:
                    gan += f" gan {g.item():.3f} x {w_gan.item():.2e}"
            print(f"ae {step} loss {loss.item():.4f} psnr {psnr:.2f}{fg}{gan} z_std {z.std().item():.3f} "
                  f"{clock.step_time * 1000:.0f} ms/step", flush=True)
        save_now, stop = clock.decisions()
        if save_now:
            save()
        if stop:
            break
    save(done=step >= steps)
    status("ae", step, steps, step >= steps)


# --------------------------------------------------------------------------------------------
# Stages: teacher (MHA) and finetune (MLA): flow matching with chunked teacher forcing


def make_dit(cfg, dev):
    m = vm.VMLA(cfg, with_decoder=False, with_encoder=False)
    init_state(m, seed=1, profile="train")
    return m.to(dev)


def fm_batch(args, data, enc, dev, step, batch, n_chunks, cfg, pool=None):
    """Latents, noise, sigmas, prompt plan and loss weight (None: uniform) of one teacher-forcing batch."""
    weight = None
    if pool is not None:
        x0, scenes, mask = pool.sample(batch)
        if mask is not None:
            weight = 1.0 + args.fg_weight * mask
    else:
        video, scenes = data.clips(step * PAR.world + PAR.rank, batch, n_chunks)
        x0 = encode_video(enc, video, dev)
    noise = torch.randn_like(x0)
    K, F_ = n_chunks, cfg["stream"]["chunk_frames"]
    sig = sample_sigma((batch, K), dev)
    s = sig.repeat_interleave(F_, 1).view(batch, K * F_, 1, 1, 1)
    xt = (1 - s) * x0 + s * noise
    plan = prompt_plan(data, scenes, K, drop=0.1)
    return x0, noise, xt, sig, plan, weight


def tf_velocity(model, cfg, x0, xt, sig, cross, recache):
    st = cfg["stream"]
    return vs.teacher_forcing(model, x0, xt, 1000.0 * sig, cross, st["chunk_frames"], st["sink_frames"],
                              st["window_frames"], cfg["sampler"]["context_t"], recache=recache)


def teacher_start(path, cfg):
    """The weights a teacher of configuration cfg starts from with --init-from PATH: another teacher
    checkpoint or a shipped MHA model file (its DiT and text encoder), made as deep as cfg
    (resize_blocks), of its patch size (repatch) and as wide in the feed-forward layers (widen_ffn)."""
    if path.endswith(".safetensors"):
        had, w, _ = model_file_weights(path)
        if had.get("attention") != "mha":
            raise SystemExit(f"teacher: --init-from {path} is an {had.get('attention')} model; a teacher is MHA")
    else:
        init = load_ckpt(path)
        if init is None or init.get("stage") != "teacher":
            raise SystemExit(f"teacher: --init-from {path} is not a teacher checkpoint or a model file")
        had, w = init["cfg"], weights(init)
    if had["in_channels"] != cfg["in_channels"]:
        raise SystemExit(f"teacher: --init-from {path} works on latents of {had['in_channels']} channels, this "
                         f"folder's autoencoder on {cfg['in_channels']}: a teacher of new latents starts from scratch")
    if had["layers"] != cfg["layers"]:
        w = resize_blocks(w, had["layers"], cfg["layers"])
        verb = "grown" if cfg["layers"] > had["layers"] else "shrunk"
        print(f"teacher: {verb} from {had['layers']} to {cfg['layers']} blocks", flush=True)
    old, new = had.get("patch", [1, 2, 2])[1:], cfg["patch"][1:]
    if old != new:
        w = repatch(w, old, new, cfg["out_channels"])
        print(f"teacher: patches of {old[0]}x{old[1]} made into {new[0]}x{new[1]} latent pixels", flush=True)
    if had["ffn_dim"] != cfg["ffn_dim"]:
        w = widen_ffn(w, had["ffn_dim"], cfg["ffn_dim"])
        print(f"teacher: feed-forward layers widened from {had['ffn_dim']} to {cfg['ffn_dim']} hidden units "
              f"(the new ones start silent)", flush=True)
    return w


def student_start(path, arch, base):
    """(configuration, DiT and text-encoder weights) of a student that starts apart from its teacher:
    --student-from PATH, a student checkpoint (student_<arch>.pt) or a shipped model file of the same
    attention, of any depth, patch or width. It keeps its own shape; its sampler and stream come from
    `base` (the student recipe's). The latents must be the teacher's (same video and channels)."""
    if path.endswith(".safetensors"):
        had, w, _ = model_file_weights(path)
    else:
        init = load_ckpt(path)
        if init is None or init.get("stage") != f"student_{arch}":
            raise SystemExit(f"student: --student-from {path} is not a student_{arch} checkpoint or a model file")
        had, w = init["cfg"], weights(init)
    if had.get("attention") != arch:
        raise SystemExit(f"student: --student-from {path} is an {had.get('attention')} model, not {arch}")
    for key in ("video", "in_channels", "out_channels"):
        if had[key] != base[key]:
            raise SystemExit(f"student: --student-from {path} has {key} {had[key]}, the teacher's latents {base[key]}")
    cfg = copy.deepcopy(had)
    cfg["sampler"], cfg["stream"], cfg["name"] = copy.deepcopy(base["sampler"]), copy.deepcopy(base["stream"]), base["name"]
    return cfg, w


def stage_flow(args, dev, stage):
    """teacher: MHA from scratch; finetune: MLA from convert.pt, distilling the teacher."""
    d = DEFAULTS[stage]
    steps, batch, K = args.steps or d["steps"], args.batch or d["batch"], args.chunks or d["chunks"]
    base_lr = args.lr or d["lr"]
    attention = "mha" if stage == "teacher" else "mla"
    cfg = load_cfg(args, attention)
    model = make_dit(cfg, dev)
    teacher = None
    ck = load_ckpt(ckpt_path(args, stage), dev)
    conversion = ck.get("init") if ck else None  # finetune: spectral or random, from convert.pt
    if stage == "teacher" and ck is None and args.init_from:
        try:  # steps, schedule and EMA begin afresh
            model.load_state_dict(teacher_start(args.init_from, cfg))
        except RuntimeError as e:
            raise SystemExit(f"teacher: the weights of {args.init_from} do not fit this teacher's configuration: {e}")
    if stage == "finetune":
        if ck is None:
            cck = require(args, "convert")
            model.load_state_dict(weights(cck))
            conversion = cck.get("init")
        tck = require(args, "teacher")
        teacher = make_dit(tck["cfg"], dev)
        teacher.load_state_dict(weights(tck))
        teacher.eval().requires_grad_(False)
        model.text_encoder.requires_grad_(False)  # the teacher's text encoder is shared by all models
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=base_lr, weight_decay=0.01, betas=(0.9, 0.99))
    ema = copy.deepcopy(model).requires_grad_(False)
    step = start = 0
    if ck:  # the optimizer restarts each segment (compact checkpoints); finetune's EMA too
        model.load_state_dict(ck["model"] if "model" in ck else ck["ema"])
        ema.load_state_dict(ck["ema"] if "ema" in ck else ck["model"])
        step = start = ck["step"]
        if step >= steps:
            return status(stage, step, steps, True)
    PAR.broadcast(model)  # a fresh initialisation differs by process
    PAR.broadcast(ema)
    enc = load_encoder(args, cfg, dev)
    data = Data(args, cfg, dev)
    clock = Clock(args)
    if args.profile:
        return profile_flow(args, dev, model, enc, data, cfg, batch, K)
    pool = LatentPool(data, enc, dev, max(batch, args.pool), K, max(1, batch // 4) if args.pool else 0,
                      args.seed * 1009 + step + 1_000_003 * PAR.rank, masks=args.fg_weight > 0)

    def save(done=False):
        # teacher: raw + EMA while training (46 MB), EMA when done; finetune: raw while training,
        # its EMA (restarted each segment) when done, so that a segment's files stay under ~50 MB
        state = {"stage": stage, "step": step, "done": done, "cfg": cfg}
        if conversion:
            state["init"] = conversion
        if done or stage == "teacher":
            state["ema"] = ema.state_dict()
        if not done:
            state["model"] = model.state_dict()
        save_ckpt(ckpt_path(args, stage), state)
        if done:  # finetune_spectral / finetune_random: two fine-tunes' rank rows stay apart
            save_ranks(args, f"{stage}_{conversion}" if conversion else stage, ema)

    while step < steps:
        t0 = time.time()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, base_lr) * min(1.0, (step - start + 1) / 100)  # re-warm Adam
        x0, noise, xt, sig, (p1, p2, use2, rc), wt = fm_batch(args, data, enc, dev, step, batch, K, cfg, pool)
        with autocast(dev):
            cross = cross_per_chunk(model, data, p1, p2, use2)
            v = tf_velocity(model, cfg, x0, xt, sig, cross, rc).float()
            loss = weighted_mse(v, noise - x0, wt)
            loss_d = torch.zeros((), device=dev)
            if teacher is not None and args.distill > 0:
                with torch.no_grad():
                    tcross = cross_per_chunk(teacher, data, p1, p2, use2)
                    vt = tf_velocity(teacher, tck["cfg"], x0, xt, sig, tcross, rc).float()
                loss_d = weighted_mse(v, vt, wt)
            total = loss + args.distill * loss_d
        opt.zero_grad(set_to_none=True)
        total.backward()
        PAR.average(trainable)
        gn = torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        ema_update(ema, model, (0.999 if stage == "teacher" else 0.995) if step - start > 200 else 0.99)
        step += 1
        clock.tick(time.time() - t0)
        if step % args.log_every == 0 or step == 1:
            lf, ld = PAR.mean(loss, loss_d)
            mem = f" {torch.cuda.max_memory_allocated(dev) / 2**30:.1f} GiB" if dev.type == "cuda" else ""
            print(f"{stage} {step} fm {lf:.4f} distill {ld:.4f} gn {float(gn):.2f} "
                  f"lr {opt.param_groups[0]['lr']:.2e} {clock.step_time * 1000:.0f} ms/step{mem}", flush=True)
        save_now, stop = clock.decisions()
        if save_now:
            save()
        if stop:
            break
    save(done=step >= steps)
    status(stage, step, steps, step >= steps)


def profile_flow(args, dev, model, enc, data, cfg, batch, K, n=6):
    """Times the parts of a teacher-forcing step (render, encode, forward+backward) and exits."""
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    acc = {"render": 0.0, "encode": 0.0, "text": 0.0, "fwd_bwd": 0.0}
    for i in range(n + 2):
        sync()
        t0 = time.time()
        video, scenes = data.clips(i, batch, K)
        sync()
        t1 = time.time()
        x0 = encode_video(enc, video, dev)
        sync()
        t2 = time.time()
        noise = torch.randn_like(x0)
        sig = sample_sigma((batch, K), dev)
        s = sig.repeat_interleave(cfg["stream"]["chunk_frames"], 1).view(batch, -1, 1, 1, 1)
        xt = (1 - s) * x0 + s * noise
        p1, p2, use2, rc = prompt_plan(data, scenes, K, drop=0.1)
        with autocast(dev):
            cross = cross_per_chunk(model, data, p1, p2, use2)
            sync()
            t3 = time.time()
            v = tf_velocity(model, cfg, x0, xt, sig, cross, rc).float()
            loss = F.mse_loss(v, noise - x0)
        loss.backward()
        sync()
        t4 = time.time()
        if i >= 2:
            for k, dt in zip(acc, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                acc[k] += dt / n
    mem = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else 0.0
    print(f"PROFILE batch {batch} chunks {K}: " + " ".join(f"{k} {1000 * v:.0f} ms" for k, v in acc.items()) +
          f" | peak {mem:.1f} GiB", flush=True)


# --------------------------------------------------------------------------------------------
# Stage: convert MHA -> MLA


def rope_channel_split(cfg):
    """Per-head indices of the MHA head_dim channels that become the MLA rope part (the first
    mla_pairs[a] pairs of each axis: the highest frequencies) and the nope part (the rest)."""
    axis, pairs = cfg["rope"]["axis_dims"], cfg["rope"]["mla_pairs"]
    rope, start = [], 0
    for a in range(3):
        for j in range(pairs[a]):
            p = start + j
            rope += [2 * p, 2 * p + 1]
        start += axis[a] // 2
    nope = [i for i in range(cfg["head_dim"]) if i not in rope]
    return rope, nope


def _svd_split(w, rank):
    """w [out, in] ~ up @ down with up [out, rank], down [rank, in] (balanced sqrt(S))."""
    U, S, Vh = torch.linalg.svd(w.double(), full_matrices=False)
    r = S[:rank].sqrt()
    return (U[:, :rank] * r).float(), (r[:, None] * Vh[:rank]).float(), S


@torch.no_grad()
def convert_block(blk_mha, blk_mla, cfg, x):
    """Spectral init of one self-attention. x: sample inputs of the attention [T, dim]."""
    a, b = blk_mha.self_attn, blk_mla.self_attn
    H, hd = cfg["heads"], cfg["head_dim"]
    m = cfg["mla"]
    dc, dq, nope, R = m["kv_latent"], m["q_latent"], m["nope_dim"], m["rope_dim"]
    rope_idx, nope_idx = rope_channel_split(cfg)
    assert len(nope_idx) == nope and len(rope_idx) == R, "MLA split must match the dense head"

    def rows(w, idx):  # [H*hd, in] -> [H*len(idx), in] with idx per head
        return w.view(H, hd, -1)[:, idx].reshape(H * len(idx), -1)

    gq, gk = a.norm_q.weight[:, None], a.norm_k.weight[:, None]
    wq, wk, wv = a.q.weight * gq, a.k.weight * gk, a.v.weight
    # queries: [q_nope; q_rope] = up(down x)
    up, down, _ = _svd_split(torch.cat([rows(wq, nope_idx), rows(wq, rope_idx)]), dq)
    b.q_down.weight.copy_(down)
    b.q_up.weight.copy_(up[:H * nope])
    b.q_rope.weight.copy_(up[H * nope:])
    # keys/values: [k_nope; v] = up(down x); rope key shared: mean over heads
    up, down, _ = _svd_split(torch.cat([rows(wk, nope_idx), wv]), dc)
    b.kv_down.weight.copy_(down)
    b.k_up.weight.copy_(up[:H * nope])
    b.v_up.weight.copy_(up[H * nope:])
    b.k_rope.weight.copy_(wk.view(H, hd, -1)[:, rope_idx].mean(0))
    b.o.load_state_dict(a.o.state_dict())
    # norm calibration: MHA normalises q, k by their RMS over dim; MLA by the latent's RMS
    rms = lambda t: t.pow(2).mean(-1).sqrt()  # noqa: E731
    raw_q, raw_k, c_q, c_kv = a.q(x), a.k(x), x @ b.q_down.weight.T, x @ b.kv_down.weight.T
    g_q = (rms(c_q) / rms(raw_q)).mean()
    g_k = (rms(c_kv) / rms(raw_k)).mean()
    b.q_norm.weight.fill_(float(g_q))
    b.kv_norm.weight.fill_(float(g_k))
    b.v_up.weight.mul_(float(rms(c_kv).mean() / g_k))  # values were not normalised in MHA


def _lstsq(a, b, ridge=1e-4):
    """W [in, out] minimising |a W - b|^2 + ridge * mean(diag(a^T a)) * |W|^2 (float64)."""
    g = a.T @ a
    g = g + ridge * g.diagonal().mean() * torch.eye(g.shape[0], dtype=g.dtype, device=g.device)
    return torch.linalg.solve(g, a.T @ b)


def _rrr_down(x, t, rank):
    """Reduced-rank regression: the [rank, in] down-projection whose latent best predicts the targets
    t [N, out] linearly from x [N, in] (least squares, then the fitted values' top principal axes)."""
    w = _lstsq(x, t)
    _, _, vh = torch.linalg.svd(x @ w, full_matrices=False)
    return (w @ vh[:rank].T).T


def _unit_rms(c, eps=1e-6):
    return c * torch.rsqrt(c.pow(2).mean(-1, keepdim=True) + eps)


def shared_rope_key(q, k):
    """One rope key for all heads. q, k [N, heads, R]: the heads' rope queries and keys (float64).
    Per rope pair the heads' keys, as complex numbers [N, heads], are approximated at rank one,
    Z ~ w alpha^T (heads weighted by their queries' size): w is the shared key, and conj(alpha_h)
    moves into head h's query, exact for the logits because a complex factor commutes with the
    rotation: q . R(alpha w) = (conj(alpha) q) . R w. Returns (the queries so moved [N, heads, R],
    the shared key [N, R])."""
    q = q.clone()
    shared = torch.zeros(k.shape[0], k.shape[2], dtype=k.dtype, device=k.device)
    for j in range(0, k.shape[2], 2):
        z = torch.complex(k[:, :, j], k[:, :, j + 1])
        qz = torch.complex(q[:, :, j], q[:, :, j + 1])
        s = qz.abs().pow(2).mean(0).sqrt() + 1e-12
        u, sv, vh = torch.linalg.svd(z * s, full_matrices=False)
        w, alpha = sv[0] * u[:, 0], vh[0] / s
        qz = qz * alpha.conj()
        q[:, :, j], q[:, :, j + 1] = qz.real, qz.imag
        shared[:, j], shared[:, j + 1] = w.real, w.imag
    return q, shared


@torch.no_grad()
def calibrate_block(blk_mha, blk_mla, cfg, x):
    """Calibrated init of one self-attention from sample inputs x [N, dim]: the MLA attention fitted to
    what the MHA attention computes on them (its normalised queries and keys, its values) rather than
    to its weights. Latents by reduced-rank regression (the spectral truncation of the stacked
    projections, weighted by the inputs), up-projections refitted by least squares on the normalised
    latents (the MLA norms sit on the latents, the MHA norms on the full queries and keys; the MHA
    biases, dropped by the spectral init, are in the targets; the values' constant part goes to the
    output bias, exact because attention weights sum to one). The shared rope key: shared_rope_key,
    the heads' factors moved into the query rope projection."""
    a, b = blk_mha.self_attn, blk_mla.self_attn
    H, hd = cfg["heads"], cfg["head_dim"]
    m = cfg["mla"]
    dc, dq, N, R = m["kv_latent"], m["q_latent"], m["nope_dim"], m["rope_dim"]
    rope_idx, nope_idx = rope_channel_split(cfg)
    if x.shape[0] < 2 * max(dq, dc):
        raise ValueError(f"calibrate_block: {x.shape[0]} sample rows for latents of {dq} and {dc}: take more clips")
    xf = x.float()
    q = a.norm_q(a.q(xf)).double().view(-1, H, hd)
    k = a.norm_k(a.k(xf)).double().view(-1, H, hd)
    v = a.v(xf).double()
    x = x.double()
    qn, qr = q[:, :, nope_idx].reshape(-1, H * N), q[:, :, rope_idx]
    kn, kr = k[:, :, nope_idx].reshape(-1, H * N), k[:, :, rope_idx]
    qr, k_shared = shared_rope_key(qr, kr)
    qr = qr.reshape(-1, H * R)
    # queries
    down = _rrr_down(x, torch.cat([qn, qr], 1), dq)
    c_q = _unit_rms(x @ down.T)
    b.q_down.weight.copy_(down)
    b.q_norm.weight.fill_(1.0)
    b.q_up.weight.copy_(_lstsq(c_q, qn).T)
    b.q_rope.weight.copy_(_lstsq(c_q, qr).T)
    # keys and values: one latent, each part of the targets at unit scale
    down = _rrr_down(x, torch.cat([kn / kn.pow(2).mean().sqrt(), v / v.pow(2).mean().sqrt()], 1), dc)
    c_kv = _unit_rms(x @ down.T)
    b.kv_down.weight.copy_(down)
    b.kv_norm.weight.fill_(1.0)
    b.k_up.weight.copy_(_lstsq(c_kv, kn).T)
    wv = _lstsq(torch.cat([c_kv, torch.ones_like(c_kv[:, :1])], 1), v)
    b.v_up.weight.copy_(wv[:-1].T)
    b.o.load_state_dict(a.o.state_dict())
    b.o.bias.add_((a.o.weight.double() @ wv[-1]).to(b.o.bias.dtype))
    b.k_rope.weight.copy_(_lstsq(x, k_shared).T)


@torch.no_grad()
def attention_samples(args, model, cfg, data, enc, dev, clips, step=10**6):
    """Inputs of every self-attention of `model` over one teacher-forcing batch of `clips` clips x 2
    chunks (the world's clips of batch `step`): per block, all its input rows [N, dim] (float) and its
    first call, the first chunk with no cache: (x [B, T, dim], rope_q, rope_k)."""
    x0, noise, xt, sig, (p1, p2, use2, rc), _ = fm_batch(args, data, enc, dev, step, clips, 2, cfg)
    calls = {i: [] for i in range(len(model.blocks))}
    hooks = [blk.self_attn.register_forward_pre_hook(lambda mod, inp, i=i: calls[i].append(inp[:3]))
             for i, blk in enumerate(model.blocks)]
    try:
        tf_velocity(model, cfg, x0, xt, sig, cross_per_chunk(model, data, p1, p2, use2), None)
    finally:
        for h in hooks:
            h.remove()
    rows = [torch.cat([c[0].reshape(-1, c[0].shape[-1]) for c in calls[i]]).float() for i in range(len(model.blocks))]
    return rows, [calls[i][0] for i in range(len(model.blocks))]


def refine_block(blk_mha, blk_mla, call, rope_mla, steps, lr=1e-3):
    """Adam on one MLA self-attention (all its weights) so that its output matches the MHA one's on
    sample sequences: call = (x [B, T, dim], rope_q, rope_k) of the MHA attention (a first chunk, no
    cache), rope_mla the MLA model's tables for the same positions. Returns the relative error before
    and after (on the same sequences)."""
    a, b = blk_mha.self_attn, blk_mla.self_attn
    x = call[0].float()
    with torch.no_grad():
        ref = a(x, call[1], call[2], None)[0]
        scale = (ref - a.o.bias).pow(2).mean()  # the attention's part of the output, its bias aside
    req = [p.requires_grad for p in b.parameters()]
    b.requires_grad_(True)
    opt = torch.optim.Adam(b.parameters(), lr=lr)
    errs = []
    for step in range(steps + 1):
        with torch.enable_grad():
            loss = (b(x, *rope_mla, None)[0] - ref).pow(2).mean() / scale
            if step in (0, steps):
                errs.append(float(loss.detach().sqrt()))
            if step < steps:
                opt.zero_grad()
                loss.backward()
                opt.step()
    for p, r in zip(b.parameters(), req):
        p.requires_grad_(r)
    return errs


def stage_convert(args, dev):
    # the MHA model to convert: the teacher (then fine-tuned as a flow model), or with --source student
    # the finished MHA student (then distilled on as an MLA student, --start convert)
    src = "teacher" if args.source == "teacher" else "student_mha"
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    tck = require(args, src)
    cfg_mla = load_cfg(args, "mla")
    teacher = make_dit(tck["cfg"], dev)
    teacher.load_state_dict(weights(tck))
    mla = make_dit(cfg_mla, dev)
    sd = {k: v for k, v in teacher.state_dict().items() if ".self_attn." not in k}
    missing = mla.load_state_dict(sd, strict=False)
    assert all(".self_attn." in k for k in missing.missing_keys), missing
    enc = load_encoder(args, cfg_mla, dev)
    data = Data(args, cfg_mla, dev)
    if args.init != "random":
        # the calibrated init fits to the sample inputs and takes more of them
        rows, _ = attention_samples(args, teacher, tck["cfg"], data, enc, dev, 4 if args.init == "spectral" else 16)
        if args.init == "calibrated" and args.refine_steps:
            # the refinement's sequences: the first chunks of another batch
            _, calls = attention_samples(args, teacher, tck["cfg"], data, enc, dev, 16, step=10**6 + 3)
            _, _, gh, gw = vm.latent_grid(cfg_mla)
            rope_mla = mla.rope_tables(0, cfg_mla["stream"]["chunk_frames"], gh, gw, dev)
        for i, (bt, bm) in enumerate(zip(teacher.blocks, mla.blocks)):
            x = rows[i]
            if args.init == "spectral":
                x = x[torch.randperm(x.shape[0], device=x.device)[:8192]]
                convert_block(bt, bm, cfg_mla, x)
            else:
                calibrate_block(bt, bm, cfg_mla, x)
                if args.refine_steps:
                    e0, e1 = refine_block(bt, bm, calls[i], rope_mla, args.refine_steps)
                    print(f"convert: block {i} attention error on its refining sequences {e0:.3f} -> {e1:.3f} "
                          f"({args.refine_steps} steps)", flush=True)
    # how close the MLA model starts: its velocity against the source's on a fresh batch (the same
    # batch and noise whatever the init)
    torch.manual_seed(args.seed + 12345)
    random.seed(args.seed + 12345)
    x0, noise, xt, sig, (p1, p2, use2, rc), _ = fm_batch(args, data, enc, dev, 10**6 + 1, 4, 2, cfg_mla)
    with torch.no_grad():
        cross = cross_per_chunk(teacher, data, p1, p2, use2)
        v_src = tf_velocity(teacher, tck["cfg"], x0, xt, sig, cross, None).float()
        v_mla = tf_velocity(mla, cfg_mla, x0, xt, sig, cross, None).float()
    err = float((v_mla - v_src).norm() / v_src.norm())
    fm = [float(((v - (noise - x0)) ** 2).mean()) for v in (v_src, v_mla)]
    print(f"convert: MLA initialised ({args.init}) from {src} step {tck['step']}; velocity error against the "
          f"source {err:.3f} (relative, a fresh batch); flow-matching loss {fm[1]:.4f} (the source {fm[0]:.4f})",
          flush=True)
    save_ckpt(ckpt_path(args, "convert"), {"stage": "convert", "step": 0, "done": True, "init": args.init,
                                           "source": src, "velocity_error": err, "ema": mla.state_dict(),
                                           "cfg": cfg_mla})
    save_ranks(args, f"convert_{args.init}", mla)
    status("convert", 1, 1, True, f"init={args.init}")


# --------------------------------------------------------------------------------------------
# Stage: few-step student (Self-Forcing rollouts + DMD)


def stage_student(args, dev):
    d = DEFAULTS["student"]
    steps, batch, K = args.steps or d["steps"], args.batch or d["batch"], args.chunks or d["chunks"]
    name = f"student_{args.arch}"
    cfg = load_cfg(args, args.arch)
    tck = require(args, "teacher")
    real = make_dit(tck["cfg"], dev)
    real.load_state_dict(weights(tck))
    real.eval().requires_grad_(False)
    ck = load_ckpt(ckpt_path(args, name), dev)
    start_w = None
    # where a student apart from its teacher started (kept through resumes; the export names it)
    start_from = ck.get("from") if ck else os.path.basename(args.student_from) if args.student_from else None
    if args.ffn_dim and not (ck or args.student_from):
        raise SystemExit(f"student: --ffn-dim {args.ffn_dim} widens a student that starts apart from its teacher "
                         f"(--student-from); one from the teacher or the fine-tune has their width")
    if ck:
        cfg = ck["cfg"]  # a student started apart from its teacher keeps its own shape
        if args.ffn_dim and args.ffn_dim != cfg["ffn_dim"]:
            raise SystemExit(f"student: --ffn-dim {args.ffn_dim}: the {name} in {args.ckpt_dir} has feed-forward "
                             f"layers of {cfg['ffn_dim']}; a student of another width starts in a new folder")
    elif args.student_from:
        cfg, start_w = student_start(args.student_from, args.arch, cfg)
        if args.ffn_dim and args.ffn_dim != cfg["ffn_dim"]:
            # a wider student from a narrower file: the same function at the start (widen_ffn)
            start_w = widen_ffn(start_w, cfg["ffn_dim"], args.ffn_dim)
            print(f"{name}: feed-forward layers widened from {cfg['ffn_dim']} to {args.ffn_dim} hidden units "
                  f"(the new ones start silent)", flush=True)
            cfg["ffn_dim"] = args.ffn_dim
        print(f"{name}: starts from {args.student_from} ({cfg['layers']} blocks, feed-forward {cfg['ffn_dim']}, "
              f"patch {cfg['patch'][1]}x{cfg['patch'][2]}); the teacher has {tck['cfg']['layers']} blocks, "
              f"feed-forward {tck['cfg']['ffn_dim']}", flush=True)
    gen = make_dit(cfg, dev)
    if ck:
        gen.load_state_dict(weights(ck) if ck.get("done") else ck["model"])
    elif start_w is not None:
        gen.load_state_dict(start_w)
    else:
        gen.load_state_dict(weights(require(args, args.start)) if args.arch == "mla" else weights(tck))
    gen.text_encoder.requires_grad_(False)
    fake = copy.deepcopy(real).requires_grad_(True)
    fake.text_encoder.requires_grad_(False)
    # a segment of an unfinished student goes on with the EMA and fake score the last one saved, so
    # that a student longer than one segment trains as one run would (the optimizers' moments restart)
    resumed = bool(ck) and not ck.get("done") and "fake" in ck and "ema" in ck
    if resumed:
        fake.load_state_dict(ck["fake"])
    g_params = [p for p in gen.parameters() if p.requires_grad]
    f_params = [p for p in fake.parameters() if p.requires_grad]
    opt_g = torch.optim.AdamW(g_params, lr=args.lr or d["lr"], weight_decay=0.01, betas=(0.0, 0.999))
    opt_f = torch.optim.AdamW(f_params, lr=args.lr_fake, weight_decay=0.01, betas=(0.0, 0.999))
    ema = copy.deepcopy(gen).requires_grad_(False)
    if resumed:
        ema.load_state_dict(ck["ema"])
    step = start = ck["step"] if ck else 0
    if step >= steps:
        return status(name, step, steps, True)
    if resumed:
        print(f"{name}: resumed at step {step} (generator, EMA and fake score restored)", flush=True)
    data = Data(args, cfg, dev)
    clock = Clock(args)
    st, sm = cfg["stream"], cfg["sampler"]
    C = cfg["in_channels"]
    h, w = vm.latent_grid(cfg)[:2]
    rng = random.Random(args.seed * 7 + step + 7919 * PAR.rank)

    def rollout(prompts, grad):
        p1, p2, use2, rc = prompts
        cross = cross_per_chunk(gen, data, p1, p2, use2)
        return vs.self_rollout(gen, cross, (batch, C, h, w), K, sm["timesteps"], sm["shift"], st["chunk_frames"],
                               st["sink_frames"], st["window_frames"], sm["context_t"], grad=grad, recache=rc)[0]

    def noised(x):
        sig = 0.02 + 0.96 * torch.rand(batch, K, device=dev)
        s = sig.repeat_interleave(st["chunk_frames"], 1).view(batch, -1, 1, 1, 1)
        noise = torch.randn_like(x)
        return (1 - s) * x + s * noise, sig, s, noise

    def save(done=False):
        w = {"ema": ema.state_dict()} if done else {"model": gen.state_dict(), "ema": ema.state_dict(),
                                                      "fake": fake.state_dict()}
        state = {"stage": name, "step": step, "done": done, "cfg": cfg}
        if start_from:
            state["from"] = start_from
        save_ckpt(ckpt_path(args, name), dict(state, **w))
        if done:
            save_ranks(args, name, ema)

    while step < steps:
        t0 = time.time()
        _, scenes = data.clips(step * PAR.world + PAR.rank, batch, K, render=False)
        prompts = prompt_plan(data, scenes, K, drop=0.0, rng=rng)
        p1, p2, use2, rc = prompts
        # fake score: flow matching on the generator's current outputs (a copy of the teacher at the
        # start, so it first catches up for --fake-warmup updates; a resumed segment has its own)
        for _ in range(args.fake_steps + (args.fake_warmup if step == start and not resumed else 0)):
            with autocast(dev):
                with torch.no_grad():
                    x = rollout(prompts, grad=False).float()
                xt, sig, s, noise = noised(x)
                cross_f = cross_per_chunk(fake, data, p1, p2, use2)
                vf = tf_velocity(fake, tck["cfg"], x, xt, sig, cross_f, rc).float()
                loss_f = F.mse_loss(vf, noise - x)
            opt_f.zero_grad(set_to_none=True)
            loss_f.backward()
            PAR.average(f_params)
            torch.nn.utils.clip_grad_norm_(f_params, 1.0)
            opt_f.step()
        # generator: DMD gradient on its own rollout
        with autocast(dev):
            x = rollout(prompts, grad=True).float()
            with torch.no_grad():
                xt, sig, s, _ = noised(x.detach())
                cross_r = cross_per_chunk(real, data, p1, p2, use2)
                empty = [""] * batch
                cross_u = cross_per_chunk(real, data, empty, empty, use2)
                v_c = tf_velocity(real, tck["cfg"], x.detach(), xt, sig, cross_r, rc).float()
                v_u = tf_velocity(real, tck["cfg"], x.detach(), xt, sig, cross_u, None).float()
                v_real = v_u + args.cfg_scale * (v_c - v_u)
                cross_f = cross_per_chunk(fake, data, p1, p2, use2)
                v_fake = tf_velocity(fake, tck["cfg"], x.detach(), xt, sig, cross_f, rc).float()
                x_real, x_fake = xt - s * v_real, xt - s * v_fake
                norm = (x.detach() - x_real).abs().mean(dim=(1, 2, 3, 4), keepdim=True).clamp(min=1e-4)
                grad = (x_fake - x_real) / norm
            loss_g = 0.5 * F.mse_loss(x, (x - grad).detach())
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        PAR.average(g_params)
        gn = torch.nn.utils.clip_grad_norm_(g_params, 1.0)
        opt_g.step()
        ema_update(ema, gen, 0.99 if step - start > 50 or resumed else 0.9)
        step += 1
        clock.tick(time.time() - t0)
        if step % args.log_every == 0 or step == 1:
            lg, lf = PAR.mean(loss_g, loss_f)
            print(f"{name} {step} dmd {lg:.4f} fake {lf:.4f} gn {float(gn):.2f} "
                  f"x_std {x.std().item():.3f} {clock.step_time * 1000:.0f} ms/step", flush=True)
        save_now, stop = clock.decisions()
        if save_now:
            save()
        if stop:
            break
    save(done=step >= steps)
    status(name, step, steps, step >= steps)


# --------------------------------------------------------------------------------------------


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", required=True, choices=STAGES)
    ap.add_argument("--ckpt-dir", required=True)
    ap.add_argument("--max-minutes", type=float, default=9.0)
    ap.add_argument("--save-minutes", type=float, default=3.0)
    ap.add_argument("--steps", type=int, default=None, help="total steps of the stage (default per stage)")
    ap.add_argument("--batch", type=int, default=None, help="clips a step (under torchrun: per process)")
    ap.add_argument("--chunks", type=int, default=None, help="chunks per training clip")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--lr-fake", type=float, default=1e-4)
    ap.add_argument("--fake-steps", type=int, default=1, help="fake-score updates per generator update")
    ap.add_argument("--fake-warmup", type=int, default=40, help="fake-score updates at the start of a segment")
    ap.add_argument("--fg-weight", type=float, default=0.0,
                    help="ae: extra reconstruction weight on subject pixels (0: plain MSE + L1); teacher and "
                         "finetune: extra flow-matching weight on the latent cells that hold a subject")
    ap.add_argument("--init-from", default=None,
                    help="teacher: start from the weights of another teacher checkpoint or of a shipped MHA "
                         "model file (.safetensors) instead of a fresh initialisation; ae: take a shipped "
                         "model file's encoder and decoder as the finished autoencoder")
    ap.add_argument("--layers", type=int, default=None,
                    help="DiT blocks (default: the teacher's in --ckpt-dir, else the config's); with teacher "
                         "--init-from a shallower teacher, its blocks are spread out and the new ones start "
                         "as identities; from a deeper one, blocks at evenly spread depths are kept")
    ap.add_argument("--patch", type=int, default=None,
                    help="DiT patch size in latent pixels, square (default: the teacher's in --ckpt-dir, else the "
                         "config's 2); with teacher --init-from a teacher of larger patches, its patch embedding "
                         "and head are resized (see repatch)")
    ap.add_argument("--gan-weight", type=float, default=0.0,
                    help="ae: an adversarial term (a PatchGAN of frames, hinge loss) with this share of the "
                         "decoder's last-layer gradient (VQGAN's adaptive weight); 0: none")
    ap.add_argument("--gan-start", type=int, default=100,
                    help="ae: steps the discriminator learns alone before its term enters the decoder's loss")
    ap.add_argument("--decoder-only", action="store_true",
                    help="ae: train the decoder alone, the encoder frozen (the latent space, and so every DiT on it, "
                         "is kept); with --init-from a model file, its autoencoder is the start")
    ap.add_argument("--ffn-dim", type=int, default=None,
                    help="hidden units of the DiT's feed-forward layers (default: the teacher's in --ckpt-dir, else "
                         "the config's 1024); with teacher --init-from a narrower teacher or model file, its "
                         "layers are widened with silent new units (see widen_ffn); with student --student-from, "
                         "the student's start is widened the same way")
    ap.add_argument("--student-from", default=None,
                    help="student: start the generator from this student checkpoint or model file of the same "
                         "attention (its own depth, patch and width) instead of the teacher or the fine-tune: "
                         "a student apart from its teacher, e.g. the shipped width distilled from a wider teacher")
    ap.add_argument("--latent-channels", type=int, default=None,
                    help="ae from scratch: channels of the latent (resources/configs: 16); later stages take "
                         "their folder's autoencoder's")
    ap.add_argument("--ae-width", type=float, default=1.0,
                    help="ae: scale every channel count of the encoder and decoder of resources/configs "
                         "(since 2026-11-27 those hold the shipped, twice-wide shape; later stages and the "
                         "export follow the checkpoint's shape)")
    ap.add_argument("--cfg-scale", type=float, default=3.0)
    ap.add_argument("--distill", type=float, default=1.0, help="finetune: weight of the teacher-velocity loss")
    ap.add_argument("--init", choices=["spectral", "calibrated", "random"], default="spectral",
                    help="convert: spectral (truncated SVD of the projections), calibrated (fitted to what the "
                         "MHA attention computes on sample inputs, calibrate_block) or random")
    ap.add_argument("--refine-steps", type=int, default=200,
                    help="convert --init calibrated: Adam steps per block on the attention's output (refine_block)")
    ap.add_argument("--source", choices=["teacher", "student"], default="teacher",
                    help="convert: the MHA model to convert, the teacher (then fine-tuned) or the finished MHA "
                         "student in --ckpt-dir (then distilled on as an MLA student with --start convert)")
    ap.add_argument("--start", choices=["finetune", "convert"], default="finetune",
                    help="student --arch mla: the generator starts from the fine-tuned MLA model, or straight "
                         "from the conversion")
    ap.add_argument("--arch", choices=["mla", "mha"], default="mla")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--micro", action="store_true", help="tiny CPU configuration (tests)")
    ap.add_argument("--pack", default=None, help="only copy the files this stage needs into PACK, then exit")
    ap.add_argument("--out", default=None, help="after the segment, copy the stage's checkpoint files to OUT")
    ap.add_argument("--pool", type=int, default=512, help="teacher/finetune: encoded clips kept on the device "
                    "(a quarter batch is re-rendered per step); 0 renders every batch")
    ap.add_argument("--profile", action="store_true", help="teacher/finetune: time the parts of a step, then exit")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    if args.pack:
        return pack(args)
    os.makedirs(args.ckpt_dir, exist_ok=True)
    if PAR.world > 1 and args.stage not in ("teacher", "finetune", "student"):
        raise SystemExit(f"--stage {args.stage} runs in one process: start it without torchrun")
    torch.manual_seed(args.seed + 1_000_003 * PAR.rank)  # each process its own noise and sigmas
    dev = setup_device(args)
    PAR.start(dev)
    try:
        if args.stage == "ae":
            stage_ae(args, dev)
        elif args.stage in ("teacher", "finetune"):
            stage_flow(args, dev, args.stage)
        elif args.stage == "convert":
            stage_convert(args, dev)
        else:
            stage_student(args, dev)
    finally:
        PAR.stop()
    if args.out and PAR.rank == 0:
        copy_out(args)


if __name__ == "__main__":
    main()
