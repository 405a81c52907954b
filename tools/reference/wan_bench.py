#!/usr/bin/env python3
"""PyTorch eager reference for `videomla bench wan1.3b-mha|wan1.3b-mla`: the same streaming chunk loop.

Wan-1.3B geometry (docs/MODEL.md): 832x480 -> 60x104 latent -> 1560 tokens per latent frame, chunks of
3 latent frames (12 video frames), sink 1 + window 6 frames, 30 layers, 12 heads x 128, bf16 weights
(random, seeded: speed does not depend on trained values), fp32 residual stream and modulation like the
engine. Per chunk: 4 renoise passes that read the cache, then one cache pass at t = 0 that appends the
clean chunk's entries (MHA: k after norm_k and v, unrotated; MLA: c_kv and k_r) and stops after the last
layer's cache write. Context = sink + window frames (oldest first) + the chunk, window-local positions.
MLA runs the expanded path (per-head K/V from the latent cache, 96 + 32 dims), which is what the engine's
`--attn auto` picks at this scale.

Attention is torch.nn.functional.scaled_dot_product_attention with the fastest backend measured on the
self-attention shape at start (flash, cuDNN, memory-efficient). Times with CUDA events after warm-up
chunks that fill the window. The last line is a one-line summary; --json writes the numbers.

Usage: python3 tools/reference/wan_bench.py wan1.3b-mha [--chunks 3] [--layers 30] [--json out.json]
"""
import argparse
import json
import math
import statistics
import sys

import torch
import torch.nn.functional as F

BF16 = torch.bfloat16

COMMON = dict(dim=1536, ffn_dim=8960, layers=30, heads=12, head_dim=128, in_channels=16, out_channels=16,
              patch=(2, 2), freq_dim=256, text_dim=4096, text_len=512, eps=1e-6, theta=10000.0,
              axis_dims=(44, 42, 42), latent_h=60, latent_w=104, chunk_frames=3, sink_frames=1,
              window_frames=6, timesteps=(1000, 750, 500, 250), shift=5.0, temporal_stride=4)
CONFIGS = {
    "wan1.3b-mha": dict(COMMON, attention="mha"),
    "wan1.3b-mla": dict(COMMON, attention="mla", kv_latent=192, q_latent=768, nope_dim=96, rope_dim=32,
                        mla_pairs=(6, 5, 5)),
}


class Weights:
    """Random bf16 weights in the engine's layout (Linear weights [out, in]); vectors in fp32."""

    def __init__(self, c, dev, seed=42):
        g = torch.Generator(device=dev)
        g.manual_seed(seed)
        self.g, self.dev = g, dev

    def lin(self, n_in, n_out, bias=True):
        w = (torch.randn(n_out, n_in, device=self.dev, generator=self.g) / math.sqrt(n_in)).to(BF16)
        b = (torch.randn(n_out, device=self.dev, generator=self.g) * 0.02).to(BF16) if bias else None
        return (w, b)

    def vec(self, n, base=0.0, scale=0.02):
        return base + torch.randn(n, device=self.dev, generator=self.g) * scale


def lin(x, wb):
    return F.linear(x, wb[0], wb[1])


def rope_pairs(c, mla):
    """Per rotated pair: axis (0 t, 1 h, 2 w) and frequency, as docs/MODEL.md section 3."""
    axes, freqs = [], []
    for a in range(3):
        dense = c["axis_dims"][a]
        n = c["mla_pairs"][a] if mla else dense // 2
        for j in range(n):
            axes.append(a)
            freqs.append(c["theta"] ** (-2.0 * j / dense))
    return axes, freqs


class Model:
    def __init__(self, c, dev):
        self.c, self.dev = c, dev
        D, H, hd = c["dim"], c["heads"], c["head_dim"]
        W = Weights(c, dev)
        C, ph, pw = c["in_channels"], *c["patch"]
        self.mla = c["attention"] == "mla"
        self.patch = W.lin(C * ph * pw, D)
        self.text0, self.text2 = W.lin(c["text_dim"], D), W.lin(D, D)
        self.time0, self.time2 = W.lin(c["freq_dim"], D), W.lin(D, D)
        self.time_proj = W.lin(D, 6 * D)
        self.blocks = []
        for _ in range(c["layers"]):
            b = {"modulation": W.vec(6 * D).view(6, D)}
            if self.mla:
                dc, dq, nope, rope = c["kv_latent"], c["q_latent"], c["nope_dim"], c["rope_dim"]
                b.update(q_down=W.lin(D, dq, False), q_norm=W.vec(dq, 1.0).to(BF16), q_up=W.lin(dq, H * nope, False),
                         q_rope=W.lin(dq, H * rope, False), kv_down=W.lin(D, dc, False),
                         kv_norm=W.vec(dc, 1.0).to(BF16), k_up=W.lin(dc, H * nope, False),
                         v_up=W.lin(dc, H * hd, False), k_rope=W.lin(D, rope, False))
            else:
                b.update(q=W.lin(D, D), k=W.lin(D, D), v=W.lin(D, D), norm_q=W.vec(D, 1.0).to(BF16),
                         norm_k=W.vec(D, 1.0).to(BF16))
            b.update(o=W.lin(D, D), norm3_w=W.vec(D, 1.0), norm3_b=W.vec(D), cq=W.lin(D, D), ck=W.lin(D, D),
                     cv=W.lin(D, D), co=W.lin(D, D), cnorm_q=W.vec(D, 1.0).to(BF16),
                     cnorm_k=W.vec(D, 1.0).to(BF16), ffn0=W.lin(D, c["ffn_dim"]), ffn2=W.lin(c["ffn_dim"], D))
            self.blocks.append(b)
        self.head_modulation = W.vec(2 * D).view(2, D)
        self.head = W.lin(D, ph * pw * c["out_channels"])
        axes, freqs = rope_pairs(c, self.mla)
        self.rope_axes = torch.tensor(axes, device=dev)
        self.rope_freqs = torch.tensor(freqs, device=dev, dtype=torch.float64)
        self.tpf = (c["latent_h"] // ph) * (c["latent_w"] // pw)
        self._rope_cache = {}

    # --- pieces ----------------------------------------------------------------------------------
    def cross_kv(self, text):
        c = self.c
        ctx = lin(F.gelu(lin(text, self.text0), approximate="tanh"), self.text2)
        kv = []
        for b in self.blocks:
            k = F.rms_norm(lin(ctx, b["ck"]), (c["dim"],), b["cnorm_k"], c["eps"])
            kv.append((k, lin(ctx, b["cv"])))
        return kv

    def rope_tables(self, n_frames):
        """cos, sin [n_frames*tpf, npairs] (fp32) for window-local positions 0..n_frames-1."""
        if n_frames not in self._rope_cache:
            c, tpf = self.c, self.tpf
            tw = c["latent_w"] // c["patch"][1]
            r = torch.arange(n_frames * tpf, device=self.dev)
            pos = torch.stack([r // tpf, (r % tpf) // tw, (r % tpf) % tw], 1).to(torch.float64)
            ang = pos[:, self.rope_axes] * self.rope_freqs
            self._rope_cache[n_frames] = (torch.cos(ang).float(), torch.sin(ang).float())
        return self._rope_cache[n_frames]

    @staticmethod
    def rope(x, cos, sin):
        """x [T, heads, 2*npairs] bf16, adjacent pairs rotated; cos/sin [T, npairs]."""
        xf = x.float().unflatten(-1, (-1, 2))
        a, b = xf[..., 0], xf[..., 1]
        cs, sn = cos[:, None, :], sin[:, None, :]
        return torch.stack([a * cs - b * sn, a * sn + b * cs], -1).flatten(-2).to(BF16)

    @staticmethod
    def sdpa(q, k, v, scale):
        """q [T, H, d], k [Tk, H, d], v [Tk, H, dv] -> [T, H*dv]."""
        o = F.scaled_dot_product_attention(q.transpose(0, 1)[None], k.transpose(0, 1)[None],
                                           v.transpose(0, 1)[None], scale=scale)
        return o[0].transpose(0, 1).flatten(1)

    def ln_mod(self, h, shift, scale, F_):
        D = self.c["dim"]
        hv = F.layer_norm(h.view(F_, self.tpf, D), (D,), eps=self.c["eps"])
        return (hv * (1 + scale[:, None]) + shift[:, None]).to(BF16).view(-1, D)

    # --- one DiT pass ----------------------------------------------------------------------------
    def forward(self, x, t, cache, cross, write):
        """x [F, C, H, W] fp32 latent, t model time (one for all frames). Returns v (None for a cache
        pass). `write`: append this pass's cache entries (cache pass)."""
        c = self.c
        D, H, hd, eps = c["dim"], c["heads"], c["head_dim"], c["eps"]
        F_, C, Hh, Ww = x.shape
        ph, pw = c["patch"]
        h_, w_ = Hh // ph, Ww // pw
        T = F_ * h_ * w_
        tok = x.view(F_, C, h_, ph, w_, pw).permute(0, 2, 4, 1, 3, 5).reshape(T, C * ph * pw).to(BF16)
        h = lin(tok, self.patch).float()
        half = c["freq_dim"] // 2
        w_k = torch.pow(10000.0, -torch.arange(half, device=self.dev, dtype=torch.float64) / half)
        tt = torch.full((F_,), float(t), device=self.dev, dtype=torch.float64)
        sinus = torch.cat([torch.cos(tt[:, None] * w_k), torch.sin(tt[:, None] * w_k)], 1).to(BF16)
        e = lin(F.silu(lin(sinus, self.time0)), self.time2).float()
        e0 = lin(F.silu(e).to(BF16), self.time_proj).float().view(F_, 6, D)
        n_ctx = cache.frames()
        cos, sin = self.rope_tables(n_ctx + F_)
        cos_q, sin_q = cos[n_ctx * self.tpf:], sin[n_ctx * self.tpf:]
        last = len(self.blocks) - 1
        fresh = []
        for n, b in enumerate(self.blocks):
            mod = b["modulation"][None] + e0  # [F, 6, D] fp32
            shift1, scale1, gate1, shift2, scale2, gate2 = mod.unbind(1)
            xn = self.ln_mod(h, shift1, scale1, F_)
            write_only = write and n == last
            if self.mla:
                dc, nope, rope = c["kv_latent"], c["nope_dim"], c["rope_dim"]
                ckv = F.rms_norm(lin(xn, b["kv_down"]), (dc,), b["kv_norm"], eps)
                kr = lin(xn, b["k_rope"])
                if write:
                    fresh.append((ckv, kr))
                if write_only:
                    break
                ckv_all, kr_all = cache.context(n, ckv, kr)
                kr_all = self.rope(kr_all[:, None, :], cos, sin)
                cq = F.rms_norm(lin(xn, b["q_down"]), (c["q_latent"],), b["q_norm"], eps)
                q_nope = lin(cq, b["q_up"]).view(T, H, nope)
                q_r = self.rope(lin(cq, b["q_rope"]).view(T, H, rope), cos_q, sin_q)
                Tk = ckv_all.shape[0]
                k_nope = lin(ckv_all, b["k_up"]).view(Tk, H, nope)
                v_all = lin(ckv_all, b["v_up"]).view(Tk, H, hd)
                k_full = torch.cat([k_nope, kr_all.expand(Tk, H, rope)], -1)
                q_full = torch.cat([q_nope, q_r], -1)
                o = self.sdpa(q_full, k_full, v_all, 1.0 / math.sqrt(nope + rope))
            else:
                k = F.rms_norm(lin(xn, b["k"]), (D,), b["norm_k"], eps)
                v = lin(xn, b["v"])
                if write:
                    fresh.append((k, v))
                if write_only:
                    break
                k_all, v_all = cache.context(n, k, v)
                Tk = k_all.shape[0]
                q = F.rms_norm(lin(xn, b["q"]), (D,), b["norm_q"], eps)
                q = self.rope(q.view(T, H, hd), cos_q, sin_q)
                k_all = self.rope(k_all.view(Tk, H, hd), cos, sin)
                o = self.sdpa(q, k_all, v_all.view(Tk, H, hd), 1.0 / math.sqrt(hd))
            y = lin(o, b["o"]).float()
            h = h + (gate1[:, None] * y.view(F_, self.tpf, D)).view(T, D)
            xn = F.layer_norm(h, (D,), b["norm3_w"], b["norm3_b"], eps).to(BF16)
            q = F.rms_norm(lin(xn, b["cq"]), (D,), b["cnorm_q"], eps).view(T, H, hd)
            ck, cv = cross[n]
            L = ck.shape[0]
            o = self.sdpa(q, ck.view(L, H, hd), cv.view(L, H, hd), 1.0 / math.sqrt(hd))
            h = h + lin(o, b["co"]).float()
            xn = self.ln_mod(h, shift2, scale2, F_)
            y = lin(F.gelu(lin(xn, b["ffn0"]), approximate="tanh"), b["ffn2"]).float()
            h = h + (gate2[:, None] * y.view(F_, self.tpf, D)).view(T, D)
        if write:
            cache.append(fresh, F_, self.tpf)
            return None
        hm = self.head_modulation[None] + e[:, None]  # [F, 2, D]
        xn = self.ln_mod(h, hm[:, 0], hm[:, 1], F_)
        out = lin(xn, self.head).float()  # [T, (p*pw+q)*C + c]
        Co = c["out_channels"]
        return out.view(F_, h_, w_, ph, pw, Co).permute(0, 5, 1, 3, 2, 4).reshape(F_, Co, Hh, Ww)


class Cache:
    """Per layer: sink frames (never evicted) then a FIFO window, each frame a pair of [tpf, width] tensors."""

    def __init__(self, layers, sink, window):
        self.sink = [[] for _ in range(layers)]
        self.window = [[] for _ in range(layers)]
        self.sink_frames, self.window_frames = sink, window

    def frames(self):
        return len(self.sink[0]) + len(self.window[0])

    def context(self, layer, a, b):
        frames = self.sink[layer] + self.window[layer]
        return (torch.cat([f[0] for f in frames] + [a]), torch.cat([f[1] for f in frames] + [b]))

    def append(self, fresh, n_frames, tpf):
        for layer, (a, b) in enumerate(fresh):
            for f in range(n_frames):
                entry = (a[f * tpf:(f + 1) * tpf].clone(), b[f * tpf:(f + 1) * tpf].clone())
                if len(self.sink[layer]) < self.sink_frames:
                    self.sink[layer].append(entry)
                else:
                    self.window[layer].append(entry)
                    if len(self.window[layer]) > self.window_frames:
                        self.window[layer].pop(0)


def sigmas(c):
    s = c["shift"]
    return [s * (t / 1000) / (1 + (s - 1) * (t / 1000)) for t in c["timesteps"]]


def pick_sdpa_backend(c, dev, log):
    """Times the self-attention shape at a full window on each available backend; returns the fastest."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    T = c["chunk_frames"] * 1560
    Tk = (c["sink_frames"] + c["window_frames"] + c["chunk_frames"]) * 1560
    H, d = c["heads"], 128
    q = torch.randn(1, H, T, d, device=dev, dtype=BF16)
    k = torch.randn(1, H, Tk, d, device=dev, dtype=BF16)
    v = torch.randn(1, H, Tk, d, device=dev, dtype=BF16)
    flop = 4.0 * T * Tk * H * d
    best, best_ms, results = None, float("inf"), {}
    for name in ("FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION"):
        be = getattr(SDPBackend, name, None)
        if be is None:
            continue
        try:
            with sdpa_kernel([be]):
                for _ in range(2):
                    F.scaled_dot_product_attention(q, k, v)
                torch.cuda.synchronize()
                ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
                ev[0].record()
                for _ in range(10):
                    F.scaled_dot_product_attention(q, k, v)
                ev[1].record()
                torch.cuda.synchronize()
                ms = ev[0].elapsed_time(ev[1]) / 10
        except RuntimeError as e:  # backend not available for this shape / build
            log(f"sdpa {name}: unavailable ({str(e).splitlines()[0][:80]})")
            continue
        results[name] = ms
        log(f"sdpa {name}: {ms:.3f} ms for {T}x{Tk} h{H} d{d} ({flop / ms / 1e9:.0f} TFLOP/s)")
        if ms < best_ms:
            best, best_ms = be, ms
    return best, results


def sdpa_context(best):
    """The measured-fastest backend first; the others stay allowed for shapes it does not take."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    rest = [getattr(SDPBackend, n) for n in ("FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION", "MATH")
            if hasattr(SDPBackend, n)]
    order = [best] + [b for b in rest if b != best]
    try:
        return sdpa_kernel(order, set_priority=True)
    except TypeError:  # torch < 2.6: no priority order
        return sdpa_kernel([best])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", choices=sorted(CONFIGS))
    ap.add_argument("--chunks", type=int, default=3, help="timed chunks (default 3)")
    ap.add_argument("--warmup", type=int, default=-1, help="warm-up chunks (default: enough to fill the window)")
    ap.add_argument("--layers", type=int, default=0, help="override the layer count")
    ap.add_argument("--json", help="also write the results as JSON")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("wan_bench.py: no CUDA device")
    c = dict(CONFIGS[a.config])
    if a.layers > 0:
        c["layers"] = a.layers
    dev = torch.device("cuda")
    torch.manual_seed(0)
    log = lambda s: print(s, flush=True)  # noqa: E731
    backend, sdpa_ms = pick_sdpa_backend(c, dev, log)
    if backend is None:
        sys.exit("wan_bench.py: no SDPA backend ran")
    model = Model(c, dev)
    cross = model.cross_kv(torch.randn(c["text_len"], c["text_dim"], device=dev).to(BF16))
    cache = Cache(c["layers"], c["sink_frames"], c["window_frames"])
    sig = sigmas(c)
    F_ = c["chunk_frames"]
    shape = (F_, c["in_channels"], c["latent_h"], c["latent_w"])
    ctx = c["sink_frames"] + c["window_frames"]
    warmup = a.warmup if a.warmup >= 0 else (ctx + F_ - 1) // F_
    pass_ms, chunk_ms = [], []
    with torch.inference_mode(), sdpa_context(backend):
        for chunk in range(warmup + a.chunks):
            timed = chunk >= warmup
            evs = [torch.cuda.Event(enable_timing=True) for _ in range(len(sig) + 2)]
            evs[0].record()
            x = torch.randn(shape, device=dev)
            x0 = None
            for i, s in enumerate(sig):
                v = model.forward(x, 1000.0 * s, cache, cross, write=False)
                x0 = x - s * v
                if i + 1 < len(sig):
                    x = (1 - sig[i + 1]) * x0 + sig[i + 1] * torch.randn(shape, device=dev)
                evs[i + 1].record()
            model.forward(x0, 0.0, cache, cross, write=True)
            evs[-1].record()
            torch.cuda.synchronize()
            if timed:
                pass_ms += [evs[i].elapsed_time(evs[i + 1]) for i in range(len(evs) - 1)]
                chunk_ms.append(evs[0].elapsed_time(evs[-1]))
    vf = F_ * c["temporal_stride"]
    med_pass, med_chunk = statistics.median(pass_ms), statistics.median(chunk_ms)
    fps = vf / (med_chunk / 1e3)
    res = dict(config=a.config, layers=c["layers"], device=torch.cuda.get_device_name(), torch=torch.__version__,
               sdpa_backend=backend.name, sdpa_ms=sdpa_ms, ms_per_pass=med_pass, ms_per_chunk_dit=med_chunk,
               fps_dit=fps, pass_ms=pass_ms, chunk_ms=chunk_ms, warmup=warmup,
               peak_memory_bytes=torch.cuda.max_memory_allocated())
    log(f"config            {a.config} ({c['layers']} layers, random bf16 weights), torch {torch.__version__}, "
        f"{torch.cuda.get_device_name()}, SDPA backend {backend.name}")
    log(f"ms per pass       {med_pass:.2f} (median of {len(pass_ms)}, window full)")
    log(f"ms per chunk      {med_chunk:.2f} (median of {len(chunk_ms)}, {len(sig)} passes + cache pass)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    log(f"pytorch {a.config}: {med_chunk:.1f} ms/chunk DiT, {fps:.1f} FPS DiT, {med_pass:.2f} ms/pass "
        f"(SDPA {backend.name})")


if __name__ == "__main__":
    main()
