#!/usr/bin/env python3
"""The last part of tools/device/perf_compare.sh: engine against PyTorch, and issue 5's targets.

Reads what perf_compare.sh wrote into OUTDIR for each config: engine-CONFIG.json (`videomla bench
--json`), torch-CONFIG.json (tools/reference/wan_bench.py --json) and, when present,
streams-CONFIG.json (`videomla bench --streams 1 --json`: memory per stream and the streams that fit
in 80 GB). Prints the comparison table, then one line per target with the measured value and
whether it is met; a missing measurement says so instead of passing.

Usage: python3 tools/reference/perf_summary.py OUTDIR [CONFIG ...]   (default: wan1.3b-mha wan1.3b-mla)
"""
import json
import os
import sys

MHA, MLA = "wan1.3b-mha", "wan1.3b-mla"
# Issue 5, on one H100, sink 1 + window 6.
TARGET_FPS = 45.0
TARGET_VS_TORCH = 1.5
TARGET_FIRST_CHUNK_S = 0.35
TARGET_STREAMS = 8.0


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def comparison(out, cfgs):
    """The engine / PyTorch table; returns {config: (engine json, torch json)}."""
    runs = {c: (load(os.path.join(out, f"engine-{c}.json")), load(os.path.join(out, f"torch-{c}.json"))) for c in cfgs}
    print(f"\n{'config':<13} {'engine ms/pass':>14} {'ms/chunk':>9} {'FPS':>7} | {'torch ms/pass':>13} {'ms/chunk':>9} "
          f"{'FPS':>7} {'SDPA':>16} | {'engine/torch speed':>18}")
    for c in cfgs:
        e, t = runs[c]
        es = f"{e['ms_per_pass']:14.2f} {e['ms_per_chunk_dit']:9.1f} {e['fps_dit']:7.2f}" if e else f"{'failed':>14} {'':9} {'':7}"
        ts = (f"{t['ms_per_pass']:13.2f} {t['ms_per_chunk_dit']:9.1f} {t['fps_dit']:7.2f} {t['sdpa_backend']:>16}"
              if t else f"{'failed':>13} {'':9} {'':7} {'':16}")
        ratio = f"{t['ms_per_chunk_dit'] / e['ms_per_chunk_dit']:17.2f}x" if e and t else f"{'n/a':>18}"
        print(f"{c:<13} {es} | {ts} | {ratio}")
    return runs


def targets(out, runs):
    """Issue 5's targets as (name, measured text, met: True/False/None for not measured)."""
    rows = []
    for c in (MHA, MLA):
        e, t = runs.get(c, (None, None))
        rows.append((f"{c}: >= {TARGET_FPS:.0f} FPS DiT", f"{e['fps_dit']:.1f} FPS" if e else "not measured",
                     e["fps_dit"] >= TARGET_FPS if e else None))
        ratio = t["ms_per_chunk_dit"] / e["ms_per_chunk_dit"] if e and t else None
        rows.append((f"{c}: >= {TARGET_VS_TORCH}x PyTorch eager", f"{ratio:.2f}x" if ratio else "not measured",
                     ratio >= TARGET_VS_TORCH if ratio else None))
        first = e.get("first_chunk_s") if e else None
        rows.append((f"{c}: first chunk <= {TARGET_FIRST_CHUNK_S} s",
                     f"{first:.3f} s" if first is not None else "not measured",
                     first <= TARGET_FIRST_CHUNK_S if first is not None else None))
    e_mha, e_mla = runs.get(MHA, (None,))[0], runs.get(MLA, (None,))[0]
    if e_mha and e_mla:
        speed = e_mla["fps_dit"] / e_mha["fps_dit"]
        cache = e_mla["mha_cache_bytes"] / e_mla["cache_bytes"] if e_mla.get("cache_bytes") else 0.0
        rows.append(("MLA FPS >= MHA FPS, at 13.7x less cache", f"{speed:.2f}x, cache {cache:.2f}x smaller",
                     speed >= 1.0 and cache >= 13.7 - 0.05))
    else:
        rows.append(("MLA FPS >= MHA FPS, at 13.7x less cache", "not measured", None))
    s_mha, s_mla = (load(os.path.join(out, f"streams-{c}.json")) for c in (MHA, MLA))
    if s_mha and s_mla and s_mha.get("projected_streams"):
        n_mha, n_mla = s_mha["projected_streams"], s_mla["projected_streams"]
        gb = s_mla.get("budget_bytes", 80e9) / 1e9
        ratio = n_mla / n_mha
        rows.append((f"MLA fits >= {TARGET_STREAMS:.0f}x the streams of MHA",
                     f"{n_mla} vs {n_mha} streams in {gb:.0f} GB: {ratio:.1f}x", ratio >= TARGET_STREAMS))
    else:
        rows.append((f"MLA fits >= {TARGET_STREAMS:.0f}x the streams of MHA", "not measured", None))
    return rows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__)
        return 2
    out, cfgs = argv[0], argv[1:] or [MHA, MLA]
    runs = comparison(out, cfgs)
    fps = {c: e["fps_dit"] for c, (e, _) in runs.items() if e}
    if MHA in fps and MLA in fps:
        print(f"engine MLA / MHA speed: {fps[MLA] / fps[MHA]:.2f}x (FPS ratio; >= 1 means MLA at least as fast)")
    rows = targets(out, runs)
    print("\nissue 5 targets (docs/BENCHMARKS.md explains every miss with a profile):")
    for name, value, met in rows:
        verdict = "met" if met else ("MISSED" if met is False else "not measured")
        print(f"  {name:<44} {value:<36} {verdict}")
    met = sum(1 for _, _, m in rows if m)
    print(f"targets met: {met} of {len(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
