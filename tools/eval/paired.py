#!/usr/bin/env python3
"""Paired comparisons of result files of tools/eval/run.py judged on the same videos: per attribute,
the relative difference of accuracy A / B - 1 and its 95% interval over bootstrap resamples of the
videos (metrics.paired_interval, as the targets section of the report). A markdown table, a row per
pair.

    /usr/bin/python3 tools/eval/paired.py --dir R/p3/eval --dir R2/p3/eval mla-W2:mla-C teacher-W4-g3:teacher-C-g3
    /usr/bin/python3 tools/eval/paired.py a/eval_x.json:b/eval_y.json --attrs subject,colour

A side of a pair is a result file, or a label whose eval_<label>.json is in the first --dir that has it.
"""
import argparse
import json
import os
import sys

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOOLS)

from eval import metrics as M  # noqa: E402


def find(side, dirs):
    if side.endswith(".json"):
        return side
    for d in dirs:
        path = os.path.join(d, f"eval_{side}.json")
        if os.path.exists(path):
            return path
    raise SystemExit(f"paired: no eval_{side}.json in {', '.join(dirs) or '(no --dir)'}")


def compare(a, b, attrs):
    """{attr: (relative difference, low, high)} of result a against result b."""
    if len(a["hits"]["subject"]) != len(b["hits"]["subject"]) or a.get("chunks") != b.get("chunks"):
        raise SystemExit(f"paired: {a['name']} and {b['name']} were judged on different videos")
    out = {}
    for k in attrs:
        ha, hb = a["hits"][k], b["hits"][k]
        ra = sum(map(sum, ha)) / sum(map(len, ha))
        rb = sum(map(sum, hb)) / sum(map(len, hb))
        lo, hi = M.paired_interval(ha, hb)
        out[k] = (ra / rb - 1, lo, hi)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs", nargs="+", help="A:B, each a result file or a label")
    ap.add_argument("--dir", action="append", default=[], help="where eval_<label>.json files are (repeatable)")
    ap.add_argument("--attrs", default="subject,colour,motion,setting,camera")
    a = ap.parse_args(argv)
    attrs = a.attrs.split(",")
    lines = ["| comparison | " + " | ".join(attrs) + " |", "|---" * (len(attrs) + 1) + "|"]
    rows = []
    for pair in a.pairs:
        if pair.count(":") != 1:
            raise SystemExit(f"paired: {pair}: a pair is A:B")
        res = []
        for side in pair.split(":"):
            with open(find(side, a.dir)) as f:
                res.append(json.load(f))
        unknown = [k for k in attrs if k not in res[0]["hits"] or k not in res[1]["hits"]]
        if unknown:
            raise SystemExit(f"paired: no readings of {', '.join(unknown)} in {pair}")
        c = compare(res[0], res[1], attrs)
        rows.append((pair, c))
        lines.append(f"| {pair.replace(':', ' against ')} | "
                     + " | ".join(f"{100 * d:+.1f}% ({100 * lo:+.1f} to {100 * hi:+.1f})" for d, lo, hi in c.values())
                     + " |")
    print("\n".join(lines))
    return rows


if __name__ == "__main__":
    main()
