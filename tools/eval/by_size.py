#!/usr/bin/env python3
"""Subject accuracy by the subject's drawn size, from result files already written: the readings per
video and chunk ("hits") of tools/eval/run.py (a model's generated clips) and of ae_ceiling.py (real
renders and the autoencoder's round trip), binned by the main subject's mean radius in pixels over
each clip (metrics.subject_by_size; only the clips whose real render shows the subject). Nothing is
generated or rendered: the evaluation's scenes are drawn again from the world's seed.

    /usr/bin/python3 tools/eval/by_size.py CK/eval/ae_ceiling.json CK/eval/eval_vmla-tiny.json ... [--kind fish]

Prints a markdown table, a row per reading (clips per bin in the first row). Files written before
the tools reported the size are binned from their "hits"; newer ones carry "subject_by_size" itself.
"""
import argparse
import json
import os
import sys

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOOLS)

from eval import metrics as M  # noqa: E402
from world import LABELS, World  # noqa: E402


def rows_of(res, scenes, chunk_video, fps, size, kind=None):
    """[(label, {bin: [hits, clips]})] of one result file: a model's generated clips (run.py), or the
    real renders and the round trip (ae_ceiling.py). kind: only the videos prompted with that subject."""
    hits = res.get("hits") or {}
    keep = [i for i, s in enumerate(scenes) if kind is None or s["subjects"][0]["kind"] == kind]
    stored = {} if kind else res.get("subject_by_size") or {}

    def bins(side, h):
        return stored.get(side) or M.subject_by_size([h[i] for i in keep], [scenes[i] for i in keep], chunk_video, fps, size)

    if "subject" in hits:  # run.py: the generated clips
        return [(res.get("name", "model"), bins("generated", hits["subject"]))]
    out = []
    for side, label in (("real", "real renders"), ("roundtrip", f"round trip, {res.get('label', 'autoencoder')}")):
        if side in hits:
            out.append((label, bins(side, hits[side]["subject"])))
    if not out:
        raise SystemExit(f"by_size: {res.get('name') or res.get('label')}: no readings per clip ('hits') in the file")
    return out


def table(rows):
    names = list(rows[0][1])
    clips = [rows[0][1][n][1] for n in names]
    lines = ["| subject radius | " + " | ".join(names) + " | all |", "|---" * (len(names) + 2) + "|",
             "| clips | " + " | ".join(map(str, clips)) + f" | {sum(clips)} |"]
    for label, by in rows:
        if [by[n][1] for n in names] != clips:
            raise SystemExit(f"by_size: {label} was judged on other clips than {rows[0][0]}")
        cells = [f"{100 * by[n][0] / by[n][1]:.1f}" if by[n][1] else "-" for n in names]
        total = f"{100 * sum(by[n][0] for n in names) / sum(clips):.1f}" if sum(clips) else "-"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {total} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="result files of tools/eval/run.py or ae_ceiling.py")
    ap.add_argument("--chunk-video", type=int, default=12, help="video frames a chunk (the tiny models: 3 x 4)")
    ap.add_argument("--fps", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--kind", choices=LABELS["subject"], default=None,
                    help="only the videos whose prompt names this subject")
    a = ap.parse_args(argv)
    results = []
    for path in a.files:
        with open(path) as f:
            results.append(json.load(f))
    shapes = {(r["n_videos"], r["chunks"]) for r in results}
    if len(shapes) != 1:
        raise SystemExit(f"by_size: the files were judged on different videos (videos, chunks): {sorted(shapes)}")
    n_videos, chunks = shapes.pop()
    scenes = M.eval_scenes(World(seed=M.WORLD_SEED, size=a.size), n_videos, chunks * a.chunk_video)
    rows = [row for r in results for row in rows_of(r, scenes, a.chunk_video, a.fps, a.size, a.kind)]
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
