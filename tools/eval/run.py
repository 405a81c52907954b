#!/usr/bin/env python3
"""Quality evaluation of the tiny models -> docs/QUALITY.md.

    python3 tools/eval/run.py --ckpt-dir CK --max-minutes 9
        [--models resources/models/vmla-tiny.safetensors,resources/models/vmla-tiny-mha.safetensors]

Trains (or resumes) the probe in CK/probe.pt first; when the probe is not finished the run stops
after saving it (rerun). Then, per model: prompt adherence (probe accuracy per attribute against the
prompt's scene), temporal consistency (frame differences inside chunks and across chunk
boundaries), drift over a long rollout, Frechet distance of probe embeddings to real clips, and
adherence after a prompt switch with and without re-cache; plus the 99%-energy rank analysis of the
attention operators of every checkpoint found in CK (teacher, convert_*, finetune*, student_*). Each
result file keeps every clip's hits ("hits"), from which the target section gives the MLA model's
difference to its MHA twin a 95% interval over resamples of the videos.
"""
import argparse
import datetime
import glob
import json
import os
import sys
import time

import torch

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)

from eval import metrics as M  # noqa: E402
from eval.probe import ATTRS, train_probe  # noqa: E402
from vmla_ref import init as vinit  # noqa: E402
from world import World  # noqa: E402

DEFAULT_MODELS = [os.path.join(ROOT, "resources", "models", n)
                  for n in ("vmla-tiny.safetensors", "vmla-tiny-mha.safetensors")]


def pct(x):
    return f"{100.0 * x:.1f}"


def parse_models(spec):
    """'label=path,path2' -> [(label, path)]; a path alone is labelled by its file name."""
    out = []
    for item in filter(None, spec.split(",")):
        label, _, path = item.rpartition("=")
        out.append((label or os.path.splitext(os.path.basename(path))[0], path))
    return out


# The prompt-switch evaluation's modes (--switch-modes): the generation arguments of each.
SWITCH_MODES = {"recache": dict(switch=True, recache=True), "no_recache": dict(switch=True, recache=False),
                "no_switch": dict(switch=False)}


def parse_timesteps(text):
    """--timesteps: strictly decreasing values in (0, 1000], the first 1000 (a rollout starts from noise)."""
    try:
        ts = [float(t) for t in text.split(",")]
    except ValueError:
        raise SystemExit(f"eval: --timesteps {text}: not a comma-separated list of numbers")
    if ts[0] != 1000 or any(b >= a for a, b in zip(ts, ts[1:])) or ts[-1] <= 0:
        raise SystemExit(f"eval: --timesteps {text}: must start at 1000 and decrease, staying above 0")
    return ts


def counts_table(title, results, key):
    """A report section of results[i][key] = {"generated": {class: [hits, clips]}, "real": ...}: a row per
    model and the real renders' row (the ceiling), accuracy and clips per class ("-" where none)."""
    names = list(results[0][key]["real"])
    rows = [(r["name"], r[key]["generated"]) for r in results] + [("real renders (ceiling)", results[0][key]["real"])]
    return ["", f"## {title}", "", "| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)] + [
        f"| {label} | " + " | ".join(f"{pct(by[n][0] / by[n][1])} ({by[n][1]})" if by.get(n, [0, 0])[1] else "-"
                                     for n in names) + " |" for label, by in rows]


def eval_model(path, probe, world, args, dev, log, label=None):
    model, vocab, meta = vinit.load(path)
    model = model.to(dev).eval()
    cfg = model.cfg
    if args.timesteps:
        cfg["sampler"]["timesteps"] = parse_timesteps(args.timesteps)
    cv = cfg["stream"]["chunk_frames"] * cfg["video"]["temporal_stride"]
    size = cfg["video"]["width"]
    res = {"name": label or os.path.basename(path), "file": os.path.basename(path), "attention": cfg["attention"],
           "trained": meta.get("trained"), "description": meta.get("description", ""),
           "cache_values_per_token": (cfg["mla"]["kv_latent"] + cfg["mla"]["rope_dim"]) if cfg["attention"] == "mla"
           else 2 * cfg["heads"] * cfg["head_dim"],
           "sampler": f"{cfg['sampler']['kind']} x{len(cfg['sampler']['timesteps'])}"
                      + (f" at {','.join(f'{t:g}' for t in cfg['sampler']['timesteps'])}" if args.timesteps else "")
                      + (f", guidance {args.guidance:g}" if args.guidance != 1.0 else ""), "guidance": args.guidance}
    # adherence, temporal consistency, distribution distance (scenes without events)
    scenes = M.eval_scenes(world, args.n_videos, args.chunks * cv)
    t0 = time.time()
    gen = M.generate(model, vocab, scenes, args.chunks, dev, seed=1, guidance=args.guidance)
    res["gen_seconds"] = time.time() - t0
    real = M.real_video(scenes, args.chunks * cv, size, dev)
    pg, pr = M.probe_chunks(probe, gen, scenes, cv), M.probe_chunks(probe, real, scenes, cv)
    res["adherence"], res["adherence_real"] = M.adherence(pg), M.adherence(pr)
    res["hits"] = M.clip_hits(pg)  # per video and chunk: the paired intervals of the target section
    # the subject's attributes again, on the clips whose real render shows the subject
    shown = M.shown_chunks(scenes, args.chunks, cv, cfg["video"]["fps"])
    res["in_picture"] = {"clips": sum(int(m.sum()) for m in shown)}
    for side, chunks in (("generated", pg), ("real", pr)):
        res["in_picture"][side] = {a: M.hits_where(chunks, shown, a) for a in IN_PICTURE}
    table = {"generated": M.readings_by_class(pg, scenes, cv, "subject"),
             "real": M.readings_by_class(pr, scenes, cv, "subject")}
    res["subject_by_kind"] = {side: M.adherence_by_class(t, "subject") for side, t in table.items()}
    res["subject_misread"] = {side: M.misreadings(t) for side, t in table.items()}
    res["subject_by_size"] = {side: M.subject_by_size(hits, scenes, cv, cfg["video"]["fps"], size) for side, hits in
                              (("generated", res["hits"]["subject"]), ("real", M.clip_hits(pr)["subject"]))}
    eg, er = torch.cat([c[1] for c in pg]), torch.cat([c[1] for c in pr])
    res["fd"] = M.frechet(eg, er)
    res["fd_real_split"] = M.frechet(er[: len(er) // 2], er[len(er) // 2:])
    res["temporal"] = M.temporal(gen, cv)
    res["temporal_real"] = M.temporal(real, cv)
    # drift over a long rollout
    long_scenes = scenes[: max(2, args.n_videos // 4)]
    gl = M.generate(model, vocab, long_scenes, args.long_chunks, dev, seed=2, guidance=args.guidance)
    pl = M.probe_chunks(probe, gl, long_scenes, cv)
    core = ("subject", "colour", "setting")
    per_chunk = [float(torch.stack([c[0][a].float() for a in core]).mean()) for c in pl]
    # issue 3's protocol: the last 10 s of a 60 s rollout against the first 10 s (at most a quarter
    # of the rollout each when it is shorter)
    chunk_s = cv / cfg["video"]["fps"]
    q = max(1, min(round(10.0 / chunk_s), len(per_chunk) // 4))
    res["drift"] = {"first": sum(per_chunk[:q]) / q, "last": sum(per_chunk[-q:]) / q, "per_chunk": per_chunk,
                    "window_chunks": q, "rollout_seconds": len(per_chunk) * chunk_s}
    lum = gl.mean((2, 3, 4))
    res["drift"]["luma_first"] = float(lum[:, :q * cv].mean())
    res["drift"]["luma_last"] = float(lum[:, -q * cv:].mean())
    # adherence after a prompt switch (colour events), with and without re-cache
    n_ev = args.switch_videos or args.n_videos
    ev = [s for s in world.scenes(80_000, 8 * n_ev, args.chunks * cv) if s["event"]["type"] == "colour"][:n_ev]
    res["switch"], res["switch_events"] = {}, {}  # events per column: the same for every mode
    for mode in args.switch_modes.split(","):
        kw = SWITCH_MODES[mode]
        g = M.generate(model, vocab, ev, args.chunks, dev, seed=3, guidance=args.guidance, **kw)
        pc = M.probe_chunks(probe, g, ev, cv)
        accs = {}
        for off in range(3):
            hits = []
            for b, s in enumerate(ev):
                k = s["event"]["frame"] // cv + off
                if k < len(pc):
                    hits.append(float(pc[k][0]["colour"][b]))
            accs[off] = sum(hits) / max(1, len(hits))
            res["switch_events"][off] = len(hits)
        res["switch"][mode] = accs
    log(f"evaluated {res['name']}")
    return res


def rank_section(ckpt_dir):
    """Rows from the ranks_<checkpoint>.json files that the training stages write."""
    lines = []
    for f in sorted(glob.glob(os.path.join(ckpt_dir, "ranks_*.json"))):
        with open(f) as fh:
            r = json.load(fh)
        rows = r["layers"]
        ranks = ", ".join(str(x["rank99"]) for x in rows)
        if r["attention"] == "mha":
            e = ", ".join(pct(x["energy_at_dc"]) for x in rows)
            lines.append(f"| {r['name']} | MHA [W_k; W_v] {2 * r['dim']}x{r['dim']} | {ranks} | energy kept at rank "
                         f"{r['d_c']}: {e} % |")
        else:
            mean = sum(x["rank99"] for x in rows) / len(rows)
            lines.append(f"| {r['name']} | MLA [W_uk W_dkv; W_uv W_dkv], d_c {r['d_c']} | {ranks} | "
                         f"{mean / r['d_c']:.2f} x d_c |")
    return lines


def load_results(rdir, models):
    """The eval_<label>.json files of rdir, in the order of --models (then the rest by name)."""
    order = [label for label, _ in parse_models(models)]
    found = {os.path.basename(f)[5:-5]: f for f in glob.glob(os.path.join(rdir, "eval_*.json"))}
    out = []
    for label in order + sorted(set(found) - set(order)):
        if label in found:
            with open(found[label]) as fh:
                r = json.load(fh)
            r["switch"] = {m: {int(k): v for k, v in accs.items()} for m, accs in r["switch"].items()}
            out.append(r)
    return out


IN_PICTURE = ("subject", "colour", "motion")  # attributes of the subject, unreadable where it is not shown


def in_picture(r, side, attr):
    """Accuracy of `attr` over the clips whose real render shows the subject (side: generated|real)."""
    return r["in_picture"][side][attr] / max(r["in_picture"]["clips"], 1)


def key_metrics(r):
    """The numbers the targets talk about, higher is better except drift."""
    d = r["drift"]
    sw = r["switch"].get("recache", {})
    m = {f"{a} accuracy": r["adherence"][a] for a in ("subject", "colour", "motion", "setting")}
    if "in_picture" in r:  # older result files lack it
        for a in IN_PICTURE:
            m[f"{a} accuracy, subject in the picture"] = in_picture(r, "generated", a)
    m["drift (relative loss of adherence)"] = max(0.0, (d["first"] - d["last"]) / max(d["first"], 1e-9))
    if 1 in sw:  # absent when the run left the re-cached switch out (--switch-modes)
        m["switch adherence, 2nd chunk"] = float(sw[1])
    return m


def target_section(results, shipped):
    """Targets of the shipped MLA model and its distance to the MHA twin."""
    names = shipped.split(",")
    by = {r["name"]: r for r in results}
    if len(names) != 2 or not all(n in by for n in names):
        return []
    mla, mha = by[names[0]], by[names[1]]
    km, kh = key_metrics(mla), key_metrics(mha)
    goal = {"subject accuracy": (">=", 0.85), "colour accuracy": (">=", 0.85), "motion accuracy": (">=", 0.75),
            "setting accuracy": (">=", 0.75), "drift (relative loss of adherence)": ("<=", 0.10),
            "switch adherence, 2nd chunk": (">=", 0.75)}
    for a in IN_PICTURE:  # the same threshold on the clips that show the subject
        goal[f"{a} accuracy, subject in the picture"] = goal[f"{a} accuracy"]
    L = ["## Targets of the shipped model", "",
         f"Shipped MLA model: `{mla['name']}`; its MHA twin: `{mha['name']}`. Cache per token and layer: "
         f"{mla['cache_values_per_token']} vs {mha['cache_values_per_token']} values "
         f"({mha['cache_values_per_token'] / mla['cache_values_per_token']:.1f}x smaller).", "",
         "MLA vs MHA: the relative difference and, where both result files hold per-clip hits, its 95% interval "
         "over bootstrap resamples of the videos (paired: both models judged on the same videos and noise; "
         "another training seed can move a model further).", "",
         "| metric | target | MLA | met | MHA twin | MLA vs MHA (target: within 5%) |", "|---|---|---|---|---|---|"]
    for k, (op, t) in goal.items():
        if k not in km or k not in kh:
            continue
        a, b = km[k], kh[k]
        met = a >= t if op == ">=" else a <= t
        if k.startswith("drift"):
            rel = f"{100 * (a - b):+.1f} points"
            ok = a - b <= 0.05
        else:
            rel = f"{100 * (a - b) / max(b, 1e-9):+.1f} %"
            ok = a >= 0.95 * b
            attr = k.split(" ")[0]
            if k == f"{attr} accuracy" and "hits" in mla and "hits" in mha:  # older result files lack hits
                lo, hi = M.paired_interval(mla["hits"][attr], mha["hits"][attr])
                rel += f", 95% {100 * lo:+.1f} to {100 * hi:+.1f}"
        L.append(f"| {k} | {op} {t:g} | {pct(a)} % | {'yes' if met else 'no'} | {pct(b)} % | {rel} "
                 f"({'yes' if ok else 'no'}) |")
    L.append("")
    return L


def write_report(path, results, ranks, args):
    r0 = results[0] if results else {}
    L = ["# Quality of the tiny models", "",
         f"Generated by `tools/eval/run.py` ({r0.get('date', datetime.date.today())}, {r0.get('device', '?')}; "
         f"{r0.get('n_videos', args.n_videos)} videos of {r0.get('chunks', args.chunks)} chunks per model; drift "
         f"over {r0.get('long_chunks', args.long_chunks)} chunks; probe of width {r0.get('probe_width', 32)} "
         f"trained {r0.get('probe_steps', '?')} steps). Numbers are from the procedural world (`tools/world`); the "
         "probe is a small network trained on ground-truth renders, so its accuracy on real renders is the ceiling.",
         ""]
    if results:
        def shown(r, which):  # the subject's attributes on the clips whose real render shows it
            if "in_picture" not in r:
                return ""
            return " / ".join(pct(in_picture(r, which, a)) for a in IN_PICTURE) + f" ({r['in_picture']['clips']})"

        L += ["## Prompt adherence (probe accuracy, %)", "",
              f"\"In the picture\": {', '.join(IN_PICTURE)} counting only the clips (in brackets) whose real "
              "render shows the subject in at least half of its frames; in the others it has drifted, risen or "
              "fallen out of the frame or been cropped by the zoom, and the probe can only guess.", "",
              "| model | " + " | ".join(ATTRS) + f" | in the picture: {' / '.join(IN_PICTURE)} |",
              "|---|" + "---|" * (len(ATTRS) + 1)]
        for r in results:
            L.append(f"| {r['name']} ({r['sampler']}) | " + " | ".join(pct(r["adherence"][a]) for a in ATTRS)
                     + f" | {shown(r, 'generated')} |")
        L.append("| real renders (ceiling) | " + " | ".join(pct(results[0]["adherence_real"][a]) for a in ATTRS)
                 + f" | {shown(results[0], 'real')} |")
        for f in sorted(glob.glob(os.path.join(getattr(args, "results_dir", None) or args.ckpt_dir, "ae_ceiling*.json"))):
            with open(f) as fh:  # tools/eval/ae_ceiling.py: real renders through the autoencoder
                ae = json.load(fh)
            L.append(f"| real renders after the autoencoder round trip ({ae.get('label', ae['model'])}, "
                     f"PSNR {ae['psnr']:.1f} dB) | " + " | ".join(pct(ae["roundtrip"][a]) for a in ATTRS) + " | |")
        kinds = [r for r in results if "subject_by_kind" in r]  # older result files lack it
        if kinds:
            L += counts_table("Subject accuracy by kind (probe accuracy, %; clips in brackets)", kinds,
                              "subject_by_kind")
            misread = [r for r in results if "subject_misread" in r]
            if misread:
                L += ["", "Most frequent misreadings of the subject (prompted > read, clips):", ""]
                rows = [(r["name"], r["subject_misread"]["generated"]) for r in misread]
                rows.append(("real renders", misread[0]["subject_misread"]["real"]))
                for label, mis in rows:
                    top = ", ".join(f"{k.replace('>', ' as ')} {n}" for k, n in list(mis.items())[:6])
                    L.append(f"- {label}: {top or 'none'}")
        sized = [r for r in results if "subject_by_size" in r]  # older result files lack it
        if sized:
            L += counts_table("Subject accuracy by drawn size (probe accuracy, %; clips that show the subject, by "
                              "the subject's radius in pixels; clips in brackets)", sized, "subject_by_size")
        L += ["", "## Temporal consistency, distribution distance, drift", "",
              "| model | frame diff inside chunks | at chunk boundaries | boundary/inside | Frechet distance "
              "(probe) | drift: adherence first/last 10 s (quarter if shorter) | luma first/last |", "|---|---|---|---|---|---|---|"]
        for r in results:
            i, b = r["temporal"]
            d = r["drift"]
            L.append(f"| {r['name']} | {i:.4f} | {b:.4f} | {b / max(i, 1e-9):.2f} | {r['fd']:.2f} | "
                     f"{pct(d['first'])} / {pct(d['last'])} | {d['luma_first']:.3f} / {d['luma_last']:.3f} |")
        i, b = results[0]["temporal_real"]
        L.append(f"| real renders | {i:.4f} | {b:.4f} | {b / max(i, 1e-9):.2f} | {results[0]['fd_real_split']:.2f} "
                 "(split halves) | | |")
        L += ["", "## Adherence after a prompt switch (colour events; probe accuracy of the new colour, %)", "",
              "| model | mode | switch chunk | +1 | +2 |", "|---|---|---|---|---|"]
        for r in results:
            n = r.get("switch_events")  # events per column (older result files lack it)
            events = f" ({n['0']} / {n['1']} / {n['2']} events)" if n else ""
            for mode, accs in r["switch"].items():
                L.append(f"| {r['name']}{events} | {mode} | {pct(accs[0])} | {pct(accs[1])} | {pct(accs[2])} |")
        L += ["", "Generation time (batched, this machine): " +
              ", ".join(f"{r['name']} {r['gen_seconds']:.1f} s" for r in results), ""]
        L += target_section(results, getattr(args, "shipped", "student-mla,student-mha"))
    if ranks:
        L += ["## 99%-energy rank of the attention operators", "",
              "Per layer. VideoMLA reports that the stacked dense [W_K; W_V] is far from low rank while the "
              "trained MLA operator fills its latent budget (about 0.98 x d_c) from SVD or random init.", "",
              "| checkpoint | operator | rank99 per layer | note |", "|---|---|---|---|"] + ranks + [""]
    with open(path, "w") as f:
        f.write("\n".join(L))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt-dir", required=True)
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "QUALITY.md"))
    ap.add_argument("--probe-steps", type=int, default=3000)
    ap.add_argument("--probe-batch", type=int, default=32)
    ap.add_argument("--probe-width", type=int, default=None,
                    help="channels of a new probe's first convolution, the others scale with it (default 32); "
                         "a trained probe keeps its own")
    ap.add_argument("--n-videos", type=int, default=32)
    ap.add_argument("--chunks", type=int, default=5)
    ap.add_argument("--long-chunks", type=int, default=80, help="drift rollout (80 chunks of 0.75 s: 60 s)")
    ap.add_argument("--switch-videos", type=int, default=None,
                    help="videos with a colour switch (default --n-videos; more events narrow the switch rows)")
    ap.add_argument("--switch-modes", default=",".join(SWITCH_MODES),
                    help=f"switch modes to evaluate, of {','.join(SWITCH_MODES)}")
    ap.add_argument("--guidance", type=float, default=1.0,
                    help="classifier-free guidance scale of the generation (1: none, as the engine samples); "
                         "for undistilled flow models: their guided samples are what the students learn from")
    ap.add_argument("--timesteps", default=None,
                    help="comma-separated sampler timesteps that replace the models' own (e.g. 1000,700,400,100; "
                         "the shift stays the model's): how a few-step student samples on another grid")
    ap.add_argument("--max-minutes", type=float, default=9.0)
    ap.add_argument("--device", default=None)
    ap.add_argument("--size", type=int, default=128, help="world frame size (the models' video size)")
    ap.add_argument("--results-dir", default=None,
                    help="where each model's eval_<label>.json goes (default: --ckpt-dir); the report is "
                         "built from every eval_*.json there, so models can be evaluated by parallel runs")
    ap.add_argument("--shipped", default="student-mla,student-mha",
                    help="labels of the shipped MLA model and its MHA twin (the targets section)")
    ap.add_argument("--report-only", action="store_true",
                    help="no evaluation: write the report from the eval_*.json and ranks_*.json files")
    a = ap.parse_args(argv)
    rdir = a.results_dir or a.ckpt_dir
    if a.timesteps:
        parse_timesteps(a.timesteps)  # a bad list fails before the probe trains
    unknown = set(a.switch_modes.split(",")) - set(SWITCH_MODES)
    if unknown:
        raise SystemExit(f"eval: unknown --switch-modes {', '.join(sorted(unknown))} "
                         f"(of {', '.join(SWITCH_MODES)})")
    if a.report_only:
        write_report(a.out, load_results(rdir, a.models), rank_section(a.ckpt_dir), a)
        print(f"STATUS eval: wrote {a.out}", flush=True)
        return
    dev = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    world = World(seed=M.WORLD_SEED, size=a.size)
    probe, done = train_probe(world, os.path.join(a.ckpt_dir, "probe.pt"), a.probe_steps, a.probe_batch, dev,
                              a.max_minutes * 0.6, log=lambda s: print(s, flush=True), width=a.probe_width)
    if not done:
        print("STATUS eval: probe incomplete: rerun the same command to resume", flush=True)
        return
    os.makedirs(rdir, exist_ok=True)
    for label, p in parse_models(a.models):
        if not os.path.exists(p):
            raise SystemExit(f"eval: no model file {p}")
        r = eval_model(p, probe, world, a, dev, print, label)
        r.update(probe_steps=probe.steps, probe_width=probe.width, n_videos=a.n_videos, chunks=a.chunks,
                 long_chunks=a.long_chunks,
                 date=str(datetime.date.today()), device=torch.cuda.get_device_name(dev) if dev.type == "cuda"
                 else "cpu")
        with open(os.path.join(rdir, f"eval_{label}.json"), "w") as f:
            json.dump(r, f, indent=1)
    write_report(a.out, load_results(rdir, a.models), rank_section(a.ckpt_dir), a)
    print(f"STATUS eval: wrote {a.out}", flush=True)


if __name__ == "__main__":
    main()
