"""Probe network: reads a chunk of video frames and predicts the scene attributes of world.LABELS.
Trained on world renders (ground truth); its accuracy on generated videos measures prompt adherence,
its embedding gives a Frechet distance between generated and real chunks."""
import math
import os
import random
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from world import LABELS

ATTRS = list(LABELS)


def chunk_labels(scene, f0, n):
    """Attribute class ids of frames [f0, f0+n) of a scene (state at the middle frame)."""
    mid = f0 + n // 2
    s0 = scene["subjects"][0]
    ev = scene["event"]
    colour = ev["colour"] if ev["type"] == "colour" and mid >= ev["frame"] else s0["colour"]
    camera = scene["camera"] if mid >= scene["camera_frame"] else "static"
    vals = {"subject": s0["kind"], "colour": colour, "motion": s0["motion"], "setting": scene["setting"],
            "time": scene["time"], "camera": camera, "particles": scene["particles"]}
    return {a: LABELS[a].index(vals[a]) for a in ATTRS}


def label_tensor(scenes, f0, n, device):
    rows = [chunk_labels(s, f0, n) for s in scenes]
    return {a: torch.tensor([r[a] for r in rows], device=device) for a in ATTRS}


class Probe(nn.Module):
    """Per-frame conv net at full resolution (frame + frame difference), pooled per frame into a coarse
    2x2 layout (where: sky/ground, zoom direction) plus a global max (what: small subjects anywhere in the
    frame), then over time (mean, max, last-first, mean absolute change)."""

    def __init__(self, size=128, width=32, emb=256):
        super().__init__()
        self.size, self.width = size, width
        w = width
        layers, c = [], 6
        for co, stride in ((w, 2), (2 * w, 2), (4 * w, 2), (4 * w, 1), (8 * w, 2)):
            layers += [nn.Conv2d(c, co, 3, stride=stride, padding=1), nn.GroupNorm(8, co), nn.SiLU()]
            c = co
        self.frames = nn.Sequential(*layers)
        self.proj = nn.Sequential(nn.Linear(5 * c, emb), nn.SiLU())
        self.mix = nn.Sequential(nn.Linear(4 * emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.heads = nn.ModuleDict({a: nn.Linear(emb, len(LABELS[a])) for a in ATTRS})

    def forward(self, clip):
        """clip [B, T, 3, H, W] in [0, 1] -> (logits per attribute, embedding [B, emb])."""
        B, T = clip.shape[:2]
        x = clip.flatten(0, 1)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        x = x.view(B, T, 3, self.size, self.size)
        d = torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], 1)
        m = self.frames(torch.cat([x, d * 4.0], 2).flatten(0, 1) * 2 - 1)
        pooled = torch.cat([F.adaptive_avg_pool2d(m, 2).flatten(1), m.amax((2, 3))], 1)
        f = self.proj(pooled).view(B, T, -1)
        feat = torch.cat([f.mean(1), f.amax(1), f[:, -1] - f[:, 0], (f[:, 1:] - f[:, :-1]).abs().mean(1)], -1)
        e = self.mix(feat)
        return {a: h(e) for a, h in self.heads.items()}, e


def lr_at(step, steps, peak=1e-3, warmup=100, floor=0.03):
    """Linear warm-up, then cosine decay to floor*peak at `steps`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, steps - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


def soften(video, gen, p=0.5, sigma=(0.5, 1.8), noise=0.02):
    """Decoder-like softening of a batch of clips [B, T, 3, H, W], so that the probe reads attributes
    from decoded video as well as from crisp renders: each clip with probability p gets a Gaussian blur
    of a random width (sigma in pixels) and a little pixel noise. Colours and layout are unchanged."""
    B = video.shape[0]
    pick = torch.rand(B, generator=gen) < p
    if not pick.any():
        return video
    out = video.clone()
    r = int(math.ceil(3 * sigma[1]))
    x = torch.arange(-r, r + 1, dtype=video.dtype, device=video.device)
    for b in pick.nonzero().flatten().tolist():
        s = sigma[0] + (sigma[1] - sigma[0]) * torch.rand(1, generator=gen).item()
        k = torch.exp(-0.5 * (x / s) ** 2)
        k = (k / k.sum()).view(1, 1, -1)
        f = video[b].flatten(0, 1).unsqueeze(1)  # [T*3, 1, H, W]
        f = F.pad(f, (r, r, r, r), mode="replicate")
        f = F.conv2d(F.conv2d(f, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
        out[b] = f.view_as(video[b])
    idx = pick.nonzero().flatten().to(video.device)
    out[idx] = (out[idx] + noise * torch.randn_like(out[idx])).clamp(0, 1)  # on the device: cheap
    return out


def load_probe(path, size=128, device="cpu"):
    """(probe, steps trained) from a probe checkpoint; its width is stored in it (files written before
    the width was kept are of the default width, 32)."""
    ck = torch.load(path, map_location=device, weights_only=False)
    probe = Probe(size=size, width=ck.get("width", 32)).to(device)
    probe.load_state_dict(ck["probe"])
    return probe, ck["step"]


def train_probe(world, path, steps, batch, device, max_minutes, chunk_frames=12, max_start_chunk=4, log=print,
                width=None):
    """Trains (or resumes) the probe on world renders, half of them softened (soften); returns
    (probe.eval(), finished), the steps trained in probe.steps. Checkpoint at `path`. `width`: of a new probe (default 32); a resumed
    probe keeps the width it was started with (a different `width` is an error)."""
    size = min(128, world.size)
    if os.path.exists(path):
        probe, step = load_probe(path, size, device)
        if width is not None and probe.width != width:
            raise SystemExit(f"probe: {path} has width {probe.width}, asked for {width} "
                             f"(use another folder for a probe of another width)")
    else:
        probe, step = Probe(size=size, width=width or 32).to(device), 0
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-3, weight_decay=1e-4)
    t0 = time.time()
    rng = random.Random(step)
    gen = torch.Generator().manual_seed(step)
    while step < steps and time.time() - t0 < max_minutes * 60:
        f0 = chunk_frames * rng.randint(0, max_start_chunk)
        video, scenes = world.batch(10_000_000 + step, batch, chunk_frames, device, frame0=f0)
        video = soften(video, gen)
        labels = label_tensor(scenes, f0, chunk_frames, device)
        logits, _ = probe(video)
        loss = sum(F.cross_entropy(logits[a], labels[a]) for a in ATTRS)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, warmup=min(100, steps // 10))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(probe.parameters(), 2.0)
        opt.step()
        step += 1
        if step % 100 == 0 or step == 1:
            acc = {a: (logits[a].argmax(-1) == labels[a]).float().mean().item() for a in ATTRS}
            log(f"probe {step} loss {loss.item():.3f} " + " ".join(f"{a} {v:.2f}" for a, v in acc.items()))
    tmp = path + ".tmp"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)  # a new probe folder
    # small: Adam restarts per segment
    torch.save({"probe": probe.state_dict(), "step": step, "width": probe.width}, tmp)
    os.replace(tmp, path)
    probe.steps = step
    return probe.eval(), step >= steps
