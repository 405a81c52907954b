"""VMLA-DiT reference in PyTorch (docs/MODEL.md sections 2, 3, 6, 7).

Written as explicit math so that it runs on torch 1.13 (CPU, CI) and torch 2.x (GPU training).
State-dict names are the model file's tensor names. Shapes in comments are PyTorch order.

Batched: latents are [B, F, C, H, W]; the streaming cache and window-local positions live in
stream.py, which calls `VMLA.dit_pass` with the cached context of each layer.
"""
import copy
import json
import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

# Attention backend for training on torch >= 2.0 (off for the reference and fixtures).
USE_SDPA = False


# --------------------------------------------------------------------------------------------
# Configuration

def load_config(src):
    """A config dict from a path, a JSON string or a dict (copied), with defaults filled in."""
    if isinstance(src, dict):
        cfg = copy.deepcopy(src)
    elif isinstance(src, str) and src.lstrip().startswith("{"):
        cfg = json.loads(src)
    else:
        with open(src) as f:
            cfg = json.load(f)
    cfg.setdefault("qk_norm", True)
    cfg.setdefault("cross_attn_norm", True)
    cfg.setdefault("patch", [1, 2, 2])
    cfg.setdefault("eps", 1e-6)
    cfg.setdefault("attention", "mha")
    if cfg["patch"][0] != 1:
        raise ValueError("only patch[0] = 1 is supported")
    if sum(cfg["rope"]["axis_dims"]) != cfg["head_dim"]:
        raise ValueError("rope.axis_dims must sum to head_dim")
    if cfg["attention"] == "mla" and 2 * sum(cfg["rope"]["mla_pairs"]) != cfg["mla"]["rope_dim"]:
        raise ValueError("2 * sum(rope.mla_pairs) must equal mla.rope_dim")
    return cfg


def latent_grid(cfg):
    """(latent H, latent W, token rows, token cols)."""
    v = cfg["video"]
    lh, lw = v["height"] // v["spatial_stride"], v["width"] // v["spatial_stride"]
    return lh, lw, lh // cfg["patch"][1], lw // cfg["patch"][2]


def tokens_per_frame(cfg):
    _, _, gh, gw = latent_grid(cfg)
    return gh * gw


# --------------------------------------------------------------------------------------------
# Small ops

def hi(x):
    """float32 for half types, unchanged otherwise (float64 stays float64)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def rms_norm(x, weight, eps):
    xf = hi(x)
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return y.to(x.dtype) * weight


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


def layer_norm(x, eps, weight=None, bias=None):
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


class GELUTanh(nn.Module):
    def forward(self, x):
        return gelu_tanh(x)


def attention(q, k, v, scale, key_mask=None):
    """q [B, H, Tq, D], k [B, Hk, Tk, D], v [B, Hk, Tk, Dv] with Hk in (1, H) -> [B, H, Tq, Dv].
    key_mask: optional bool [B, Tk], True = attend."""
    if USE_SDPA and hasattr(F, "scaled_dot_product_attention") and key_mask is None:
        if k.shape[1] != q.shape[1]:
            k = k.expand(-1, q.shape[1], -1, -1)
            v = v.expand(-1, q.shape[1], -1, -1)
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    if key_mask is not None:
        s = s.masked_fill(~key_mask[:, None, None, :], torch.finfo(s.dtype).min)
    p = torch.softmax(hi(s), dim=-1).to(v.dtype)
    return torch.matmul(p, v)


def sinusoid(t, freq_dim):
    """t [...] (model time 0..1000) -> [..., freq_dim] = [cos(t w_k) | sin(t w_k)], float64."""
    half = freq_dim // 2
    w = torch.pow(torch.tensor(10000.0, dtype=torch.float64),
                  -torch.arange(half, dtype=torch.float64) / half).to(t.device)
    a = t.to(torch.float64)[..., None] * w
    return torch.cat([torch.cos(a), torch.sin(a)], dim=-1)


# --------------------------------------------------------------------------------------------
# RoPE: pairs of adjacent elements (2i, 2i+1) rotated as complex numbers by pos * freq.

def rope_freqs(theta, axis_dims, pairs):
    """Per-pair frequencies [sum(pairs)] float64: pair j of axis a has theta^(-2j/axis_dims[a])."""
    out = []
    for d, n in zip(axis_dims, pairs):
        j = torch.arange(n, dtype=torch.float64)
        out.append(torch.pow(torch.tensor(float(theta), dtype=torch.float64), -2.0 * j / d))
    return out


def rope_table(pos, freqs, pairs):
    """pos [N, 3] (t, h, w) integer -> (cos, sin) [N, P] float64."""
    pos = pos.to(torch.float64)
    angles = [pos[:, a:a + 1] * freqs[a][None, :].to(pos.device) for a in range(3) if pairs[a] > 0]
    ang = torch.cat(angles, dim=1)
    return torch.cos(ang), torch.sin(ang)


def apply_rope(x, cos, sin):
    """x [B, N, ..., 2P] (tokens on dim 1), cos/sin [N, P] -> rotated x (same dtype)."""
    shp = x.shape
    P = cos.shape[1]
    x2 = x.reshape(*shp[:-1], P, 2)
    a, b = x2[..., 0], x2[..., 1]
    view = (1, shp[1]) + (1,) * (x.dim() - 3) + (P,)
    c = cos.to(x.dtype).view(view)
    s = sin.to(x.dtype).view(view)
    return torch.stack([a * c - b * s, a * s + b * c], dim=-1).reshape(shp)


def token_positions(n_frames, gh, gw, device=None):
    """[n_frames*gh*gw, 3] positions (t, h, w) in frame, row, column order."""
    t = torch.arange(n_frames, device=device).view(-1, 1, 1).expand(n_frames, gh, gw)
    h = torch.arange(gh, device=device).view(1, -1, 1).expand(n_frames, gh, gw)
    w = torch.arange(gw, device=device).view(1, 1, -1).expand(n_frames, gh, gw)
    return torch.stack([t, h, w], dim=-1).reshape(-1, 3)


# --------------------------------------------------------------------------------------------
# DiT attention

class MHASelfAttention(nn.Module):
    """Wan self-attention: entries cached per token are k (after norm_k, unrotated) and v."""

    def __init__(self, cfg):
        super().__init__()
        dim, eps = cfg["dim"], cfg["eps"]
        self.heads, self.head_dim = cfg["heads"], cfg["head_dim"]
        assert self.heads * self.head_dim == dim
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps) if cfg["qk_norm"] else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if cfg["qk_norm"] else nn.Identity()

    def entries(self, x):
        return {"k": self.norm_k(self.k(x)), "v": self.v(x)}

    def forward(self, x, rope_q, rope_k, ctx=None, path=None):
        """x [B, T, dim]; rope_q (cos, sin) for the T chunk tokens, rope_k for ctx + chunk tokens;
        ctx: cached entries {k, v} [B, Tc, dim] or None. Returns (out [B, T, dim], entries)."""
        B, T, _ = x.shape
        H, D = self.heads, self.head_dim
        q = self.norm_q(self.q(x))
        new = self.entries(x)
        k, v = new["k"], new["v"]
        if ctx is not None:
            k = torch.cat([ctx["k"], k], dim=1)
            v = torch.cat([ctx["v"], v], dim=1)
        q = apply_rope(q.view(B, T, H, D), *rope_q)
        k = apply_rope(k.view(B, k.shape[1], H, D), *rope_k)
        v = v.view(B, v.shape[1], H, D)
        o = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), 1.0 / math.sqrt(D))
        return self.o(o.transpose(1, 2).reshape(B, T, H * D)), new


class MLASelfAttention(nn.Module):
    """VideoMLA self-attention: entries cached per token are c_kv [d_c] and unrotated k_r [rope]."""

    def __init__(self, cfg):
        super().__init__()
        dim, eps = cfg["dim"], cfg["eps"]
        m = cfg["mla"]
        self.heads, self.head_dim = cfg["heads"], cfg["head_dim"]
        self.d_c, self.d_q, self.nope, self.rope = m["kv_latent"], m["q_latent"], m["nope_dim"], m["rope_dim"]
        H = self.heads
        self.q_down = nn.Linear(dim, self.d_q, bias=False)
        self.q_norm = RMSNorm(self.d_q, eps)
        self.q_up = nn.Linear(self.d_q, H * self.nope, bias=False)
        self.q_rope = nn.Linear(self.d_q, H * self.rope, bias=False)
        self.kv_down = nn.Linear(dim, self.d_c, bias=False)
        self.kv_norm = RMSNorm(self.d_c, eps)
        self.k_up = nn.Linear(self.d_c, H * self.nope, bias=False)
        self.v_up = nn.Linear(self.d_c, H * self.head_dim, bias=False)
        self.k_rope = nn.Linear(dim, self.rope, bias=False)
        self.o = nn.Linear(H * self.head_dim, dim)
        self.path = "absorbed"

    def entries(self, x):
        return {"c_kv": self.kv_norm(self.kv_down(x)), "k_r": self.k_rope(x)}

    def forward(self, x, rope_q, rope_k, ctx=None, path=None):
        B, T, _ = x.shape
        H, N, R, D, C = self.heads, self.nope, self.rope, self.head_dim, self.d_c
        path = path or self.path
        c_q = self.q_norm(self.q_down(x))
        q_nope = self.q_up(c_q).view(B, T, H, N)
        q_r = apply_rope(self.q_rope(c_q).view(B, T, H, R), *rope_q)
        new = self.entries(x)
        c_kv, k_r = new["c_kv"], new["k_r"]
        if ctx is not None:
            c_kv = torch.cat([ctx["c_kv"], c_kv], dim=1)
            k_r = torch.cat([ctx["k_r"], k_r], dim=1)
        Tk = c_kv.shape[1]
        k_r = apply_rope(k_r, *rope_k)  # [B, Tk, R], shared by all heads
        scale = 1.0 / math.sqrt(N + R)
        if path == "expanded":
            k_nope = self.k_up(c_kv).view(B, Tk, H, N)
            k = torch.cat([k_nope, k_r[:, :, None, :].expand(B, Tk, H, R)], dim=-1)
            v = self.v_up(c_kv).view(B, Tk, H, D)
            q = torch.cat([q_nope, q_r], dim=-1)
            o = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale)  # [B, H, T, D]
        elif path == "absorbed":
            w_uk = self.k_up.weight.view(H, N, C)
            q_lat = torch.einsum("bthn,hnc->bthc", q_nope, w_uk)
            q = torch.cat([q_lat, q_r], dim=-1).transpose(1, 2)  # [B, H, T, C+R]
            k = torch.cat([c_kv, k_r], dim=-1)[:, None]  # [B, 1, Tk, C+R]
            lat = attention(q, k, c_kv[:, None], scale)  # [B, H, T, C]
            w_uv = self.v_up.weight.view(H, D, C)
            o = torch.einsum("bhtc,hdc->bhtd", lat, w_uv)
        else:
            raise ValueError(f"unknown MLA path {path!r}")
        return self.o(o.transpose(1, 2).reshape(B, T, H * D)), new


class CrossAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        dim, eps = cfg["dim"], cfg["eps"]
        self.heads, self.head_dim = cfg["heads"], cfg["head_dim"]
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps) if cfg["qk_norm"] else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if cfg["qk_norm"] else nn.Identity()

    def kv(self, context):
        """context [B, L, dim] -> (k, v) [B, H, L, head_dim], computed once per prompt."""
        B, L, _ = context.shape
        k = self.norm_k(self.k(context)).view(B, L, self.heads, self.head_dim).transpose(1, 2)
        v = self.v(context).view(B, L, self.heads, self.head_dim).transpose(1, 2)
        return k, v

    def forward(self, x, kv):
        B, T, _ = x.shape
        q = self.norm_q(self.q(x)).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        o = attention(q, kv[0], kv[1], 1.0 / math.sqrt(self.head_dim))
        return self.o(o.transpose(1, 2).reshape(B, T, -1))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        dim = cfg["dim"]
        self.eps = cfg["eps"]
        self.modulation = nn.Parameter(torch.zeros(1, 6, dim))
        self.self_attn = MLASelfAttention(cfg) if cfg["attention"] == "mla" else MHASelfAttention(cfg)
        self.norm3 = nn.LayerNorm(dim, eps=cfg["eps"]) if cfg["cross_attn_norm"] else nn.Identity()
        self.cross_attn = CrossAttention(cfg)
        self.ffn = nn.Sequential(nn.Linear(dim, cfg["ffn_dim"]), GELUTanh(), nn.Linear(cfg["ffn_dim"], dim))

    def forward(self, x, e0, cross_kv, rope_q, rope_k, ctx=None, path=None):
        """x [B, F, Tf, dim]; e0 [B, F, 6, dim]. Returns (x, cache entries of this pass)."""
        B, Fr, Tf, dim = x.shape
        mod = (hi(self.modulation).unsqueeze(0) + hi(e0)).unsqueeze(3)  # [B, F, 6, 1, dim]
        sh1, sc1, g1, sh2, sc2, g2 = mod.unbind(2)
        y = layer_norm(hi(x), self.eps) * (1 + sc1) + sh1
        a, new = self.self_attn(y.to(x.dtype).reshape(B, Fr * Tf, dim), rope_q, rope_k, ctx, path)
        x = x + g1 * a.view(B, Fr, Tf, dim)
        c = self.cross_attn(self.norm3(x).reshape(B, Fr * Tf, dim), cross_kv)
        x = x + c.view(B, Fr, Tf, dim)
        y = layer_norm(hi(x), self.eps) * (1 + sc2) + sh2
        x = x + g2 * self.ffn(y.to(x.dtype))
        return x, new


class Head(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        dim = cfg["dim"]
        self.eps = cfg["eps"]
        self.modulation = nn.Parameter(torch.zeros(1, 2, dim))
        self.head = nn.Linear(dim, cfg["patch"][1] * cfg["patch"][2] * cfg["out_channels"])

    def forward(self, x, e):
        """x [B, F, Tf, dim], e [B, F, dim]."""
        mod = (hi(self.modulation).unsqueeze(0) + hi(e).unsqueeze(2)).unsqueeze(3)  # [B, F, 2, 1, dim]
        shift, scale = mod.unbind(2)
        return self.head((layer_norm(hi(x), self.eps) * (1 + scale) + shift).to(x.dtype))


# --------------------------------------------------------------------------------------------
# Text: tokenizer and tiny encoder (section 6)

_WORD = re.compile(r"[a-z0-9']+")


def ascii_lower(s):
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in s)


def read_vocabulary(path):
    with open(path) as f:
        words = [w.strip() for w in f]
    return [w for w in words if w]


class Tokenizer:
    """Word-level: ASCII lower-case, words = maximal runs of [a-z0-9'] (every other character,
    non-ASCII included, separates), unknown words -> <unk> (1), at most max_len ids."""

    def __init__(self, vocabulary, max_len):
        if vocabulary[:2] != ["<pad>", "<unk>"]:
            raise ValueError("vocabulary must start with <pad>, <unk>")
        self.vocabulary = list(vocabulary)
        self.index = {w: i for i, w in enumerate(self.vocabulary)}
        self.max_len = max_len

    def words(self, prompt):
        return _WORD.findall(ascii_lower(prompt))

    def encode(self, prompt):
        """-> dict(ids [list of int, <= max_len], unknown [unique, in order], dropped [words])."""
        words = self.words(prompt)
        ids, unknown = [], []
        for w in words[: self.max_len]:
            i = self.index.get(w)
            if i is None or i < 2:
                i = 1
                if w not in unknown:
                    unknown.append(w)
            ids.append(i)
        return {"ids": ids, "unknown": unknown, "dropped": words[self.max_len:]}

    def unknown_words(self, prompt):
        return [w for w in self.words(prompt) if self.index.get(w, 1) < 2]


class TextAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, x, key_mask=None):
        B, L, dim = x.shape
        H = self.heads
        q, k, v = self.qkv(x).view(B, L, 3, H, dim // H).permute(2, 0, 3, 1, 4)
        o = attention(q, k, v, 1.0 / math.sqrt(dim // H), key_mask)
        return self.o(o.transpose(1, 2).reshape(B, L, dim))


class TextBlock(nn.Module):
    def __init__(self, dim, heads, ffn_dim, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = TextAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), GELUTanh(), nn.Linear(ffn_dim, dim))

    def forward(self, x, key_mask=None):
        x = x + self.attn(self.norm1(x), key_mask)
        return x + self.ffn(self.norm2(x))


class TextEncoder(nn.Module):
    def __init__(self, tcfg, text_len):
        super().__init__()
        dim = tcfg["dim"]
        self.text_len = text_len
        self.token_embedding = nn.Embedding(tcfg["vocab_size"], dim)
        self.position_embedding = nn.Embedding(text_len, dim)
        self.blocks = nn.ModuleList(TextBlock(dim, tcfg["heads"], tcfg["ffn_dim"], tcfg.get("eps", 1e-5))
                                    for _ in range(tcfg["layers"]))
        self.norm = nn.LayerNorm(dim, eps=tcfg.get("eps", 1e-5))

    def forward(self, ids, lengths):
        """ids [B, text_len] (int, padded), lengths [B] -> [B, text_len, dim], rows >= length zero.
        The key mask makes a batch equal to encoding each prompt's real tokens alone."""
        B, L = ids.shape
        pos = torch.arange(L, device=ids.device)
        valid = pos[None, :] < lengths[:, None]
        x = self.token_embedding(ids) + self.position_embedding(pos)[None]
        for blk in self.blocks:
            x = blk(x, valid)
        return self.norm(x) * valid[..., None].to(x.dtype)


# --------------------------------------------------------------------------------------------
# Tiny autoencoder (section 7). Frames are [B, N, C, H, W]; state = one memory per MemBlock.

class MemBlock(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(2 * n_in, n_out, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(n_out, n_out, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(n_out, n_out, 3, padding=1))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else None

    def forward(self, x, mem):
        """x [B, N, C, H, W], mem [B, C, H, W] (input one frame earlier) or None (zeros)."""
        B, N = x.shape[:2]
        if mem is None:
            mem = torch.zeros_like(x[:, 0])
        prev = torch.cat([mem[:, None], x[:, :-1]], dim=1)
        flat = x.flatten(0, 1)
        y = self.conv(torch.cat([flat, prev.flatten(0, 1)], dim=1))
        y = torch.relu(y + (self.skip(flat) if self.skip is not None else flat))
        return y.view(B, N, *y.shape[1:]), x[:, -1]


def _conv2d_frames(conv, x):
    B, N = x.shape[:2]
    y = conv(x.flatten(0, 1))
    return y.view(B, N, *y.shape[1:])


class DecoderStage(nn.Module):
    def __init__(self, c_in, c_out, blocks, time_up, space_up):
        super().__init__()
        self.blocks = nn.ModuleList(MemBlock(c_in, c_in) for _ in range(blocks))
        self.space_up = space_up
        self.tgrow = nn.Conv2d(c_in, 2 * c_in, 1, bias=False) if time_up else None
        self.conv_out = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)


class Decoder(nn.Module):
    def __init__(self, dcfg, latent_channels):
        super().__init__()
        ch = dcfg["channels"]
        self.conv_in = nn.Conv2d(latent_channels, ch[0], 3, padding=1)
        self.stages = nn.ModuleList(
            DecoderStage(ch[s], ch[s + 1], dcfg["blocks_per_stage"], dcfg["time_upscale"][s], dcfg["space_upscale"][s])
            for s in range(3))
        self.conv_final = nn.Conv2d(ch[3], 3, 3, padding=1)

    def forward(self, z, state=None):
        """z [B, N, C, h, w] -> (frames [B, N*tu, 3, H, W] in ~[0, 1], unclamped; new state)."""
        state = list(state) if state is not None else None
        new_state = []
        x = _conv2d_frames(self.conv_in, 3.0 * torch.tanh(z / 3.0)).relu()
        i = 0
        for st in self.stages:
            for blk in st.blocks:
                x, m = blk(x, state[i] if state is not None else None)
                new_state.append(m)
                i += 1
            if st.space_up:
                B, N = x.shape[:2]
                x = F.interpolate(x.flatten(0, 1), scale_factor=2, mode="nearest")
                x = x.view(B, N, *x.shape[1:])
            if st.tgrow is not None:
                B, N, C, H, W = x.shape
                x = _conv2d_frames(st.tgrow, x).view(B, N, 2, C, H, W).reshape(B, 2 * N, C, H, W)
            x = _conv2d_frames(st.conv_out, x)
        return _conv2d_frames(self.conv_final, x.relu()), new_state


class EncoderStage(nn.Module):
    def __init__(self, c, blocks, time_down):
        super().__init__()
        self.tpool = nn.Conv2d(2 * c, c, 1, bias=False) if time_down else None
        self.conv_down = nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False)
        self.blocks = nn.ModuleList(MemBlock(c, c) for _ in range(blocks))


class Encoder(nn.Module):
    def __init__(self, ecfg, latent_channels):
        super().__init__()
        c = ecfg["channels"]
        self.conv_in = nn.Conv2d(3, c, 3, padding=1)
        self.stages = nn.ModuleList(EncoderStage(c, ecfg["blocks_per_stage"], ecfg["time_downscale"][s])
                                    for s in range(3))
        self.conv_out = nn.Conv2d(c, latent_channels, 3, padding=1)
        self.time_stride = 2 ** sum(bool(b) for b in ecfg["time_downscale"])

    def forward(self, frames, state=None):
        """frames [B, N, 3, H, W] in [0, 1], N a multiple of the time stride -> (z, new state)."""
        state = list(state) if state is not None else None
        new_state = []
        x = _conv2d_frames(self.conv_in, frames).relu()
        i = 0
        for st in self.stages:
            if st.tpool is not None:
                B, N, C, H, W = x.shape
                if N % 2:
                    raise ValueError("encoder input frames must be a multiple of the time stride")
                x = _conv2d_frames(st.tpool, x.reshape(B, N // 2, 2 * C, H, W))
            x = _conv2d_frames(st.conv_down, x)
            for blk in st.blocks:
                x, m = blk(x, state[i] if state is not None else None)
                new_state.append(m)
                i += 1
        return _conv2d_frames(self.conv_out, x), new_state


# --------------------------------------------------------------------------------------------
# The whole model file

class VMLA(nn.Module):
    """DiT (top-level names) + optional text_encoder, decoder, encoder submodules."""

    def __init__(self, cfg, with_text=True, with_decoder=True, with_encoder=True):
        super().__init__()
        cfg = load_config(cfg)
        self.cfg = cfg
        dim, C = cfg["dim"], cfg["in_channels"]
        ph, pw = cfg["patch"][1], cfg["patch"][2]
        self.patch_embedding = nn.Conv3d(C, dim, (1, ph, pw), stride=(1, ph, pw))
        self.text_embedding = nn.Sequential(nn.Linear(cfg["text_dim"], dim), GELUTanh(), nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(cfg["freq_dim"], dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg["layers"]))
        self.head = Head(cfg)
        r = cfg["rope"]
        if cfg["attention"] == "mla":
            self.rope_pairs = list(r["mla_pairs"])
        else:
            self.rope_pairs = [d // 2 for d in r["axis_dims"]]
        self._freqs = rope_freqs(r["theta"], r["axis_dims"], self.rope_pairs)
        lv = cfg["video"]["latent_channels"]
        if with_text and cfg.get("text_encoder"):
            self.text_encoder = TextEncoder(cfg["text_encoder"], cfg["text_len"])
        if with_decoder and cfg.get("decoder"):
            self.decoder = Decoder(cfg["decoder"], lv)
        if with_encoder and cfg.get("encoder"):
            self.encoder = Encoder(cfg["encoder"], lv)

    # ---- attention path for MLA models
    def set_attn_path(self, path):
        for b in self.blocks:
            if isinstance(b.self_attn, MLASelfAttention):
                b.self_attn.path = path

    # ---- text
    def encode_text(self, ids, lengths):
        return self.text_encoder(ids, lengths)

    def cross_kv(self, text):
        """text [B, text_len, text_dim] -> per-block cross-attention (k, v)."""
        context = self.text_embedding(text)
        return [b.cross_attn.kv(context) for b in self.blocks]

    # ---- (un)patchify
    def patchify(self, x):
        """[B, F, C, H, W] -> tokens [B, F, gh*gw, dim] after patch_embedding."""
        B, Fr, C, H, W = x.shape
        ph, pw = self.cfg["patch"][1], self.cfg["patch"][2]
        gh, gw = H // ph, W // pw
        t = x.reshape(B, Fr, C, gh, ph, gw, pw).permute(0, 1, 3, 5, 2, 4, 6).reshape(B, Fr, gh * gw, C * ph * pw)
        w = self.patch_embedding.weight.reshape(self.cfg["dim"], C * ph * pw)
        return F.linear(t, w, self.patch_embedding.bias)

    def unpatchify(self, y, H, W):
        """[B, F, gh*gw, ph*pw*out] -> [B, F, out, H, W]."""
        B, Fr = y.shape[:2]
        ph, pw, co = self.cfg["patch"][1], self.cfg["patch"][2], self.cfg["out_channels"]
        gh, gw = H // ph, W // pw
        return y.view(B, Fr, gh, gw, ph, pw, co).permute(0, 1, 6, 2, 4, 3, 5).reshape(B, Fr, co, H, W)

    def time_embed(self, t):
        """t [B, F] model time -> (e [B, F, dim], e0 [B, F, 6, dim])."""
        p = self.time_embedding[0].weight
        e = self.time_embedding(sinusoid(t, self.cfg["freq_dim"]).to(p.dtype))
        e0 = self.time_projection(e)
        return e, e0.view(*e0.shape[:-1], 6, self.cfg["dim"])

    def rope_tables(self, n_ctx_frames, n_frames, gh, gw, device):
        """(rope_q, rope_k): window-local temporal positions; context frames 0..n_ctx-1, the pass's
        own frames n_ctx..n_ctx+n_frames-1; h, w = token row and column."""
        pos = token_positions(n_ctx_frames + n_frames, gh, gw, device)
        cos, sin = rope_table(pos, self._freqs, self.rope_pairs)
        nq = n_frames * gh * gw
        return (cos[-nq:], sin[-nq:]), (cos, sin)

    def dit_pass(self, x, t, cross, ctx=None, n_ctx_frames=0, path=None):
        """One DiT pass over x [B, F, C, H, W] at model time t [B, F] (or [B] / scalar).

        cross: per-block cross (k, v) from `cross_kv`; ctx: per-block cached entries (dicts of
        [B, n_ctx_frames*gh*gw, ...]) or None. Returns (v [B, F, out, H, W], entries per block)."""
        B, Fr, C, H, W = x.shape
        t = torch.as_tensor(t, dtype=torch.float64, device=x.device)
        if t.dim() == 0:
            t = t.expand(B)
        if t.dim() == 1:
            t = t[:, None].expand(B, Fr)
        gh, gw = H // self.cfg["patch"][1], W // self.cfg["patch"][2]
        h = self.patchify(x)
        e, e0 = self.time_embed(t)
        rope_q, rope_k = self.rope_tables(n_ctx_frames, Fr, gh, gw, x.device)
        entries = []
        for i, blk in enumerate(self.blocks):
            h, new = blk(h, e0, cross[i], rope_q, rope_k, ctx[i] if ctx is not None else None, path)
            entries.append(new)
        return self.unpatchify(self.head(h, e), H, W), entries


def build(cfg, **kw):
    return VMLA(cfg, **kw)
