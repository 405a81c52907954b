"""Generation and metrics for the quality report."""
import bisect
import contextlib

import torch

from vmla_ref import stream as vs
from vmla_ref.model import Tokenizer
from world import LABELS, prompt_schedule, render, subject_on_screen, subject_radius

from .probe import ATTRS, label_tensor


def _autocast(device):
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def encode_prompts(model, vocabulary, prompts, device):
    tok = Tokenizer(vocabulary, model.cfg["text_len"])
    L = model.cfg["text_len"]
    ids = torch.zeros(len(prompts), L, dtype=torch.long, device=device)
    lens = torch.zeros(len(prompts), dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        e = tok.encode(p)["ids"]
        ids[i, :len(e)] = torch.tensor(e, dtype=torch.long, device=device)
        lens[i] = len(e)
    return model.cross_kv(model.encode_text(ids, lens))


def sampler_step(kind, x, v, s, nxt, g):
    """One step of a model's sampler from sigma s to sigma nxt (0 at the last step), given the velocity
    v at x -> (next x, clean estimate x0). renoise (the students): x0 = x - s v, noised again to nxt
    with fresh noise from generator g; euler (flow models): x + (nxt - s) v, which is its own estimate."""
    if kind == "renoise":
        x0 = x - s * v
        if nxt > 0:
            return (1 - nxt) * x0 + nxt * torch.randn(x.shape, device=x.device, generator=g), x0
        return x0, x0
    x = x + (nxt - s) * v
    return x, x


@torch.no_grad()
def generate(model, vocabulary, scenes, n_chunks, device, seed=0, switch=True, recache=True, guidance=1.0):
    """Batched streaming generation (the Streamer's algorithm, batched, torch noise).
    Prompt 2 of a scene takes over at its event chunk when `switch`. -> frames [B, T, 3, H, W].
    guidance != 1: classifier-free guidance, v_u + guidance * (v - v_u), v_u the velocity under the empty
    prompt with a cache of its own (the score the students are distilled from: train.py --cfg-scale);
    an evaluation of undistilled flow models only, the engine samples without it."""
    cfg = model.cfg
    st, sm = cfg["stream"], cfg["sampler"]
    B = len(scenes)
    F_ = st["chunk_frames"]
    C = cfg["in_channels"]
    h = cfg["video"]["height"] // cfg["video"]["spatial_stride"]
    w = cfg["video"]["width"] // cfg["video"]["spatial_stride"]
    chunk_video = F_ * cfg["video"]["temporal_stride"]
    sched = torch.tensor([prompt_schedule(s, n_chunks, chunk_video) for s in scenes], device=device).bool()
    if not switch:
        sched[:] = False
    g = torch.Generator(device=device).manual_seed(seed)
    sig = vs.sigmas(sm["timesteps"], sm["shift"])
    cache = vs.Cache(st["sink_frames"], st["window_frames"])
    latents, frames, dec_state = [], [], None
    with _autocast(device):
        c1 = encode_prompts(model, vocabulary, [s["prompt"] for s in scenes], device)
        c2 = encode_prompts(model, vocabulary, [s["prompt2"] for s in scenes], device)
        guided = guidance != 1.0
        if guided:  # the empty prompt never switches, so its cache is never re-encoded
            cross_u = encode_prompts(model, vocabulary, [""] * B, device)
            cache_u = vs.Cache(st["sink_frames"], st["window_frames"])
        for k in range(n_chunks):
            m = sched[:, k].view(-1, 1, 1, 1)
            cross = [(torch.where(m, a2, a1), torch.where(m, b2, b1)) for (a1, b1), (a2, b2) in zip(c1, c2)]
            if k > 0 and recache:
                vs._recache(model, cache, torch.cat(latents, 1), cross, sm["context_t"], None,
                            sched[:, k] & ~sched[:, k - 1])
            ctx, n_ctx = cache.context(), cache.n_frames()
            x = torch.randn(B, F_, C, h, w, device=device, generator=g)
            for i, s in enumerate(sig):
                t = torch.full((B,), 1000.0 * s, device=device)
                v = model.dit_pass(x, t, cross, ctx, n_ctx)[0].float()
                if guided:
                    v_u = model.dit_pass(x, t, cross_u, cache_u.context(), cache_u.n_frames())[0].float()
                    v = v_u + guidance * (v - v_u)
                nxt = sig[i + 1] if i + 1 < len(sig) else 0.0
                x, x0 = sampler_step(sm["kind"], x, v, s, nxt, g)
            t_ctx = torch.full((B,), float(sm["context_t"]), device=device)
            cache.append(model.dit_pass(x0, t_ctx, cross, ctx, n_ctx)[1], F_)
            if guided:
                cache_u.append(model.dit_pass(x0, t_ctx, cross_u, cache_u.context(), cache_u.n_frames())[1], F_)
            latents.append(x0)
            y, dec_state = model.decoder(x0, dec_state)
            frames.append(y.float().clamp(0, 1))
    return torch.cat(frames, 1)


@torch.no_grad()
def probe_chunks(probe, video, scenes, chunk_video):
    """Per chunk: (accuracy dict attr -> [B] bool tensor, embeddings [B, E], readings dict attr -> [B]
    class index)."""
    out = []
    for k in range(video.shape[1] // chunk_video):
        clip = video[:, k * chunk_video:(k + 1) * chunk_video]
        logits, emb = probe(clip)
        labels = label_tensor(scenes, k * chunk_video, chunk_video, video.device)
        read = {a: logits[a].argmax(-1) for a in ATTRS}
        out.append(({a: read[a] == labels[a] for a in ATTRS}, emb.float(), read))
    return out


def adherence(chunks):
    """Mean probe accuracy per attribute over all chunks and videos of probe_chunks' output."""
    return {a: float(torch.stack([c[0][a] for c in chunks]).float().mean()) for a in ATTRS}


def clip_hits(chunks):
    """Per attribute, each video's probe hits chunk by chunk ([video][chunk] of 0/1) from probe_chunks'
    output: what paired_interval resamples."""
    return {a: torch.stack([c[0][a].cpu() for c in chunks], 1).int().tolist() for a in ATTRS}


def paired_interval(hits_a, hits_b, n=2000, level=0.95, seed=0):
    """Interval of the relative difference of two models' accuracy, mean(a) / mean(b) - 1, over
    bootstrap resamples of the videos. Both were judged on the same videos with the same noise, so a
    resample keeps each video's pair together and what differs between the videos cancels; what is
    left is how far the difference depends on which videos were drawn. Training noise (another seed
    of the same recipe) is not in it."""
    a = torch.tensor(hits_a, dtype=torch.float64).mean(1)  # per video (every video has as many chunks)
    b = torch.tensor(hits_b, dtype=torch.float64).mean(1)
    idx = torch.randint(len(a), (n, len(a)), generator=torch.Generator().manual_seed(seed))
    rel = a[idx].mean(1) / b[idx].mean(1).clamp(min=1e-9) - 1
    lo, hi = torch.quantile(rel, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)).tolist()
    return lo, hi


def readings(chunks, scenes, chunk_video, attr):
    """Every clip's reading of `attr` over probe_chunks' output, in chunk order: (video, chunk, true
    class name, read class name)."""
    for k, (_, _, read) in enumerate(chunks):
        labels = label_tensor(scenes, k * chunk_video, chunk_video, "cpu")[attr]
        for b, (got, lab) in enumerate(zip(read[attr].tolist(), labels.tolist())):
            yield b, k, LABELS[attr][lab], LABELS[attr][got]


def readings_by_class(chunks, scenes, chunk_video, attr):
    """How the probe read `attr` over probe_chunks' output, per true class: {true name: {read name:
    clips}} (a confusion table of the classes that occur); adherence_by_class and misreadings read it."""
    return tally(readings(chunks, scenes, chunk_video, attr))


def tally(clip_readings):
    """The confusion table {true name: {read name: clips}} of readings' tuples (from any clips)."""
    out = {}
    for _, _, true, got in clip_readings:
        row = out.setdefault(true, {})
        row[got] = row.get(got, 0) + 1
    return out


def adherence_by_class(table, attr):
    """Probe accuracy per true class of a readings_by_class table: {class name: [hits, clips]}, in the
    order of LABELS[attr]."""
    return {name: [table[name].get(name, 0), sum(table[name].values())] for name in LABELS[attr] if name in table}


def misreadings(table):
    """The wrong readings of a readings_by_class table: {"true>read": clips}, most frequent first (which
    subject a model draws instead of the prompted one)."""
    out = {f"{t}>{r}": n for t, row in table.items() for r, n in row.items() if r != t}
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def shown_chunks(scenes, n_chunks, chunk_video, fps=16):
    """Per chunk, [B] bool: the scene's main subject is in the picture (subject_on_screen) in at least
    half of the chunk's frames. Where it is not, the real clip does not show the prompt's subject
    either, so no probe can read it there."""
    on = subject_on_screen(scenes, n_chunks * chunk_video, fps).float()
    return [on[:, k * chunk_video:(k + 1) * chunk_video].mean(1) >= 0.5 for k in range(n_chunks)]


# radii in pixels (subject_radius, 128 x 128) that part the clips by the subject's drawn size: the
# world's small / normal / big subjects are 10 / 14 / 18 pixels, a zoom-in multiplies them by up to 1.8
SIZE_EDGES = (12.0, 16.0, 22.0)


def size_bins(edges=SIZE_EDGES):
    """The names of the bins of subject_by_size, smallest first."""
    return ([f"< {edges[0]:g} px"] + [f"{a:g}-{b:g} px" for a, b in zip(edges, edges[1:])]
            + [f">= {edges[-1]:g} px"])


def subject_by_size(hits, scenes, chunk_video, fps=16, size=128, edges=SIZE_EDGES):
    """Subject hits by the drawn size of the subject: {bin: [hits, clips]} (size_bins' names) over the
    clips whose real render shows the subject (shown_chunks), each in the bin of its subject's mean
    radius in pixels over the chunk (subject_radius). hits: [video][chunk] of 0/1 (clip_hits'
    "subject"), from the clips of `scenes`. How much of the subject a model or an autoencoder keeps
    as the subject spans fewer latent cells."""
    names = size_bins(edges)
    out = {n: [0, 0] for n in names}
    if not scenes:
        return out
    n_chunks = len(hits[0])
    shown = shown_chunks(scenes, n_chunks, chunk_video, fps)
    rad = subject_radius(scenes, n_chunks * chunk_video, size, fps).view(len(scenes), n_chunks, chunk_video).mean(2)
    for v in range(len(scenes)):
        for c in range(n_chunks):
            if bool(shown[c][v]):
                cell = out[names[bisect.bisect_right(edges, float(rad[v, c]))]]
                cell[0] += int(hits[v][c])
                cell[1] += 1
    return out


def hits_where(chunks, masks, attr):
    """Hits of `attr` over probe_chunks' output, counting only the clips where masks (per chunk) is true."""
    return sum(int((acc[attr].cpu() & m).sum()) for (acc, *_), m in zip(chunks, masks))


def frechet(a, b):
    """Frechet distance between two sets of embeddings [N, E] (float64, eigh-based sqrtm)."""
    a, b = a.double(), b.double()
    mu = (a.mean(0) - b.mean(0)).pow(2).sum()
    ca, cb = torch.cov(a.T), torch.cov(b.T)

    def sqrtm(m):
        e, v = torch.linalg.eigh((m + m.T) / 2)
        return (v * e.clamp(min=0).sqrt()) @ v.T

    sa = sqrtm(ca)
    return float(mu + torch.trace(ca) + torch.trace(cb) - 2 * torch.trace(sqrtm(sa @ cb @ sa)))


def temporal(video, chunk_video):
    """(mean |frame diff| inside chunks, at chunk boundaries)."""
    d = (video[:, 1:] - video[:, :-1]).abs().mean((0, 2, 3, 4))
    idx = torch.arange(1, video.shape[1], device=video.device)
    boundary = (idx % chunk_video) == 0
    return float(d[~boundary].mean()), float(d[boundary].mean()) if boundary.any() else float("nan")


def rank99(w):
    """(99%-energy rank, singular values) of a matrix."""
    s = torch.linalg.svdvals(w.double())
    e = s.pow(2)
    c = torch.cumsum(e, 0) / e.sum()
    return int((c < 0.99).sum().item()) + 1, s


def attention_ranks(state, cfg):
    """Per layer: MHA -> 99%-energy rank of [diag(norm_k) W_k; W_v] and the energy kept at rank d_c;
    MLA -> 99%-energy rank of [W_uk W_dkv; W_uv W_dkv]."""
    rows = []
    d_c = cfg.get("mla", {}).get("kv_latent", 40)
    for n in range(cfg["layers"]):
        p = f"blocks.{n}.self_attn."
        if cfg["attention"] == "mha":
            wk = state[p + "k.weight"].float()
            if p + "norm_k.weight" in state:
                wk = wk * state[p + "norm_k.weight"].float()[:, None]
            w = torch.cat([wk, state[p + "v.weight"].float()])
            r, s = rank99(w)
            e = s.pow(2)
            rows.append({"layer": n, "rank99": r, "energy_at_dc": float(e[:d_c].sum() / e.sum()), "full": w.shape[1]})
        else:
            down = state[p + "kv_down.weight"].float()
            w = torch.cat([state[p + "k_up.weight"].float() @ down, state[p + "v_up.weight"].float() @ down])
            r, s = rank99(w)
            rows.append({"layer": n, "rank99": r, "d_c": down.shape[0]})
    return rows


WORLD_SEED = 12345  # the evaluation's world (probe training, evaluation clips, autoencoder round trip)


def eval_scenes(world, n_videos, n_frames):
    """The evaluation's videos: the first n_videos scenes without a mid-clip event from a fixed stretch
    of the world (tools/eval/run.py's adherence clips; misread_sheet.py and ae_ceiling.py draw them again)."""
    return [s for s in world.scenes(50_000, 4 * n_videos, n_frames) if s["event"]["type"] == "none"][:n_videos]


def real_video(scenes, n_frames, size, device):
    return render(scenes, n_frames, size, 16, device)


def roundtrip(encoder, decoder, video):
    """Clips [B, T, 3, H, W] through the autoencoder and back, in [0, 1] (what a DiT's latents can show)."""
    z, _ = encoder(video)
    return decoder(z)[0].clamp(0, 1)
