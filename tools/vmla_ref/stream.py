"""Streaming generation (docs/MODEL.md sections 4 and 5): the sink + FIFO cache with window-local
positions, the renoise and euler samplers, prompt switches with optional re-cache, the decoder state
carried across chunks, and the two training rollouts built on the same cache (teacher forcing and
Self-Forcing style self-rollouts).
"""
import torch

from . import noise as noise_mod
from .model import Tokenizer

# --------------------------------------------------------------------------------------------
# Sampler schedule


def warp_sigma(t, shift):
    """sigma(t) = s*u / (1 + (s-1)*u), u = t/1000 (python floats)."""
    u = float(t) / 1000.0
    return shift * u / (1.0 + (shift - 1.0) * u)


def sigmas(timesteps, shift):
    return [warp_sigma(t, shift) for t in timesteps]


def uniform_timesteps(n):
    """Session option `steps = N`: t_i = 1000 * (1 - i/N)."""
    return [1000.0 * (1.0 - i / n) for i in range(n)]


# --------------------------------------------------------------------------------------------
# Cache


class Cache:
    """Per-layer cache entries, kept per latent frame: `sink` (never evicted) then `ring` (FIFO of at
    most window_frames, oldest first). Each frame is a list over layers of {name: [B, Tf, d]}.
    `sink_ids` / `ring_ids` hold the video frame index of each entry (for tests and snapshots)."""

    def __init__(self, sink_frames, window_frames):
        self.sink_frames, self.window_frames = sink_frames, window_frames
        self.sink, self.ring, self.sink_ids, self.ring_ids = [], [], [], []
        self.next_id = 0

    def n_frames(self):
        return len(self.sink) + len(self.ring)

    def frame_ids(self):
        return self.sink_ids + self.ring_ids

    @staticmethod
    def _cat(frames):
        if not frames:
            return None
        return [{k: torch.cat([f[l][k] for f in frames], dim=1) for k in frames[0][l]} for l in range(len(frames[0]))]

    def context(self, sink_only=False):
        """Per-layer entries of sink + ring (oldest first), [B, n_frames*Tf, d], or None if empty."""
        return self._cat(self.sink if sink_only else self.sink + self.ring)

    @staticmethod
    def split(entries, n_frames):
        """entries per layer {k: [B, n_frames*Tf, d]} -> list of n_frames per-frame entries."""
        out = []
        for i in range(n_frames):
            frame = []
            for layer in entries:
                frame.append({k: v.view(v.shape[0], n_frames, -1, v.shape[-1])[:, i] for k, v in layer.items()})
            out.append(frame)
        return out

    def append(self, entries, n_frames):
        """Appends a cache pass's entries: the first frames of a video fill the sink, the rest enter
        the ring, which evicts its oldest frames beyond window_frames."""
        for frame in self.split(entries, n_frames):
            if len(self.sink) < self.sink_frames:
                self.sink.append(frame)
                self.sink_ids.append(self.next_id)
            else:
                self.ring.append(frame)
                self.ring_ids.append(self.next_id)
                if len(self.ring) > self.window_frames:
                    self.ring.pop(0)
                    self.ring_ids.pop(0)
            self.next_id += 1

    def replace_ring(self, entries, mask=None):
        """Rewrites the ring's entries (re-cache); mask [B] bool keeps the old entries where False."""
        new = self.split(entries, len(self.ring))
        if mask is not None:
            m = mask.view(-1, 1, 1)
            new = [[{k: torch.where(m, nl[k], ol[k]) for k in nl} for nl, ol in zip(nf, of)]
                   for nf, of in zip(new, self.ring)]
        self.ring = new

    def copy(self):
        c = Cache(self.sink_frames, self.window_frames)
        c.sink, c.ring = list(self.sink), list(self.ring)
        c.sink_ids, c.ring_ids, c.next_id = list(self.sink_ids), list(self.ring_ids), self.next_id
        return c

    def detach(self):
        for frames in (self.sink, self.ring):
            for i, fr in enumerate(frames):
                frames[i] = [{k: v.detach() for k, v in layer.items()} for layer in fr]


def _dup(ctx, n):
    """Per-layer context repeated n times along the batch."""
    if ctx is None:
        return None
    return [{k: torch.cat([v] * n, dim=0) for k, v in layer.items()} for layer in ctx]


# --------------------------------------------------------------------------------------------
# Inference rollout (the reference for the engine's Session)


class Streamer:
    """Chunk-by-chunk generation of one video (batch 1), exactly as docs/MODEL.md specifies.

    Runs in the model's dtype (float64 for the fixtures' reference numbers); the noise is the Philox
    noise of section 5.
    """

    def __init__(self, model, seed, vocabulary=None, path=None, timesteps=None, sampler=None,
                 sink_frames=None, window_frames=None, decode=True, dtype=None, device=None):
        self.model = model
        self.cfg = cfg = model.cfg
        self.seed = int(seed)
        self.path = path
        s = cfg["sampler"]
        self.sampler = sampler or s["kind"]
        self.timesteps = list(timesteps if timesteps is not None else s["timesteps"])
        self.shift, self.context_t = float(s["shift"]), float(s["context_t"])
        st = cfg["stream"]
        self.chunk_frames = st["chunk_frames"]
        self.cache = Cache(st["sink_frames"] if sink_frames is None else sink_frames,
                           st["window_frames"] if window_frames is None else window_frames)
        self.latents = {}  # video frame index -> clean latent [1, C, H, W] (sink and window only)
        self.decode, self.dec_state = decode, None
        p = next(model.parameters())
        self.dtype, self.device = dtype or p.dtype, device or p.device
        self.tokenizer = Tokenizer(vocabulary, cfg["text_len"]) if vocabulary else None
        self.chunk = 0
        self.prompt, self.cross, self.text = None, None, None

    # ---- text
    def encode_prompt(self, prompt):
        tok = self.tokenizer.encode(prompt)
        L = self.cfg["text_len"]
        ids = torch.zeros(1, L, dtype=torch.long, device=self.device)
        ids[0, :len(tok["ids"])] = torch.tensor(tok["ids"], dtype=torch.long)
        lengths = torch.tensor([len(tok["ids"])], device=self.device)
        with torch.no_grad():
            text = self.model.encode_text(ids, lengths)
        return tok, text

    def set_prompt(self, prompt, recache=False, text=None):
        """Switches the prompt: rebuilds the cross-attention K/V; with recache, rewrites the window's
        cache entries by one pass at t = context_t whose context is the sink only."""
        if text is None:
            tok, text = self.encode_prompt(prompt)
        else:
            tok = None
        self.prompt, self.text = prompt, text.to(self.dtype)
        with torch.no_grad():
            self.cross = self.model.cross_kv(self.text)
        if recache and self.cache.ring:
            self.recache()
        return tok

    def recache(self):
        ids = self.cache.ring_ids
        x = torch.stack([self.latents[i] for i in ids], dim=1)  # [1, W, C, H, W]
        with torch.no_grad():
            _, entries = self.model.dit_pass(x, self.context_t, self.cross, self.cache.context(sink_only=True),
                                             len(self.cache.sink), self.path)
        self.cache.replace_ring(entries)

    # ---- noise
    def noise(self, chunk, step, shape):
        return torch.from_numpy(noise_mod.gaussian(shape, self.seed, chunk, step)).to(self.device, self.dtype)[None]

    # ---- one chunk
    def step_chunk(self):
        """Generates the next chunk. Returns dict(noise0, v0, x0, frames) (frames None without
        decoder), tensors without the batch dimension."""
        cfg = self.cfg
        C = cfg["in_channels"]
        H = cfg["video"]["height"] // cfg["video"]["spatial_stride"]
        W = cfg["video"]["width"] // cfg["video"]["spatial_stride"]
        shape = (self.chunk_frames, C, H, W)
        ctx, n_ctx = self.cache.context(), self.cache.n_frames()
        sig = sigmas(self.timesteps, self.shift)
        out = {}
        with torch.no_grad():
            x = self.noise(self.chunk, 0, shape)
            out["noise0"] = x[0]
            for i, s in enumerate(sig):
                v, _ = self.model.dit_pass(x, 1000.0 * s, self.cross, ctx, n_ctx, self.path)
                if i == 0:
                    out["v0"] = v[0]
                last = i == len(sig) - 1
                if self.sampler == "renoise":
                    x0 = x - s * v
                    if not last:
                        x = (1.0 - sig[i + 1]) * x0 + sig[i + 1] * self.noise(self.chunk, i + 1, shape)
                elif self.sampler == "euler":
                    x = x + ((0.0 if last else sig[i + 1]) - s) * v
                    x0 = x
                else:
                    raise ValueError(self.sampler)
            _, entries = self.model.dit_pass(x0, self.context_t, self.cross, ctx, n_ctx, self.path)
            first = self.cache.next_id
            self.cache.append(entries, self.chunk_frames)
            for f in range(self.chunk_frames):
                self.latents[first + f] = x0[:, f]
            keep = set(self.cache.frame_ids())
            self.latents = {k: v for k, v in self.latents.items() if k in keep}
            out["x0"] = x0[0]
            if self.decode and hasattr(self.model, "decoder"):
                frames, self.dec_state = self.model.decoder(x0, self.dec_state)
                out["frames"] = frames[0]
        self.chunk += 1
        return out

    # ---- snapshots (chunk boundaries)
    def snapshot(self):
        return {"cache": self.cache.copy(), "latents": dict(self.latents), "dec_state": self.dec_state,
                "chunk": self.chunk, "prompt": self.prompt, "text": self.text, "cross": self.cross}

    def restore(self, snap):
        self.cache = snap["cache"].copy()
        self.latents = dict(snap["latents"])
        self.dec_state, self.chunk = snap["dec_state"], snap["chunk"]
        self.prompt, self.text, self.cross = snap["prompt"], snap["text"], snap["cross"]


# --------------------------------------------------------------------------------------------
# Training rollouts (batched; same cache, positions and passes as the Streamer)


def _chunk_cross(cross, k):
    """cross is per-block (k, v) pairs, or a list over chunks of such lists."""
    return cross[k] if isinstance(cross[0], list) else cross


def _recache(model, cache, frames, cross, context_t, path, mask):
    """Training-time re-cache: frames [B, n, ...] indexed by cache frame id; mask [B] bool."""
    if not cache.ring or mask is None or not bool(mask.any()):
        return
    x = frames[:, cache.ring_ids]
    B = x.shape[0]
    tt = torch.full((B,), float(context_t), device=x.device, dtype=torch.float64)
    _, entries = model.dit_pass(x, tt, cross, cache.context(sink_only=True), len(cache.sink), path)
    cache.replace_ring(entries, mask)


def teacher_forcing(model, clean, noisy, t, cross, chunk_frames, sink_frames, window_frames,
                    context_t=0.0, path=None, recache=None, detach_cache=False):
    """Chunked teacher forcing. clean, noisy: [B, K*chunk_frames, C, H, W]; t: [B, K] model time
    of each noisy chunk; cross: per-block (k, v) or a list of them per chunk (prompt switches);
    recache: optional list over chunks of [B] bool (re-cache the window when chunk k starts).
    For every chunk k one pass runs [clean_k ; noisy_k] (batch 2B) against the cache built from
    the clean chunks before it (at context_t, window-local positions), then the clean half's
    entries enter the cache. Returns v for the noisy frames [B, K*chunk_frames, ...]."""
    B, N = clean.shape[:2]
    K = N // chunk_frames
    cache = Cache(sink_frames, window_frames)
    vs = []
    for k in range(K):
        sl = slice(k * chunk_frames, (k + 1) * chunk_frames)
        cross_k = _chunk_cross(cross, k)
        if recache is not None and k > 0:
            _recache(model, cache, clean, cross_k, context_t, path, recache[k])
        ctx, n_ctx = cache.context(), cache.n_frames()
        tk = t[:, k].to(torch.float64)
        if k == K - 1:  # the last clean chunk's entries are never read
            v, _ = model.dit_pass(noisy[:, sl], tk, cross_k, ctx, n_ctx, path)
            vs.append(v)
            break
        x = torch.cat([clean[:, sl], noisy[:, sl]], dim=0)
        tt = torch.cat([torch.full_like(tk, float(context_t)), tk], dim=0)
        cross2 = [(torch.cat([a, a], 0), torch.cat([b, b], 0)) for a, b in cross_k]
        v, entries = model.dit_pass(x, tt, cross2, _dup(ctx, 2), n_ctx, path)
        vs.append(v[B:])
        cache.append([{n: e[:B] for n, e in layer.items()} for layer in entries], chunk_frames)
        if detach_cache:
            cache.detach()
    return torch.cat(vs, dim=1)


def self_rollout(model, cross, shape, n_chunks, timesteps, shift, chunk_frames, sink_frames, window_frames,
                 context_t=0.0, path=None, exit_step=None, generator=None, grad=True, recache=None):
    """Self-Forcing style rollout of the renoise sampler on the model's own cache.

    shape: (B, C, H, W) of one latent frame; cross and recache as in teacher_forcing. For every
    chunk the sampler runs steps 0..exit_step (gradients only through the exit step's prediction),
    its x0 is the chunk's output, and a cache pass without gradient appends the detached output.
    Returns ([B, n_chunks*chunk_frames, C, H, W], exit_step)."""
    B, C, H, W = shape
    sig = sigmas(timesteps, shift)
    if exit_step is None:
        exit_step = int(torch.randint(len(sig), (1,), generator=generator).item())
    dev = next(model.parameters()).device
    cache = Cache(sink_frames, window_frames)
    outs = []
    for k in range(n_chunks):
        cross_k = _chunk_cross(cross, k)
        if recache is not None and k > 0:
            with torch.no_grad():
                _recache(model, cache, torch.cat(outs, 1).detach(), cross_k, context_t, path, recache[k])
        ctx, n_ctx = cache.context(), cache.n_frames()
        x = torch.randn(B, chunk_frames, C, H, W, device=dev, generator=generator)
        for i in range(exit_step + 1):
            with torch.set_grad_enabled(grad and i == exit_step):
                v, _ = model.dit_pass(x, torch.full((B,), 1000.0 * sig[i], device=dev), cross_k, ctx, n_ctx, path)
                x0 = x - sig[i] * v
            if i < exit_step:
                x = ((1.0 - sig[i + 1]) * x0 + sig[i + 1] * torch.randn(x.shape, device=dev, generator=generator)).detach()
        outs.append(x0)
        with torch.no_grad():
            _, entries = model.dit_pass(x0.detach(), torch.full((B,), float(context_t), device=dev), cross_k, ctx,
                                        n_ctx, path)
        cache.append(entries, chunk_frames)
    return torch.cat(outs, dim=1), exit_step
