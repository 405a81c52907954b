#!/usr/bin/env python3
"""Frame-level difference of two model files' rollouts in the engine (same prompt, seed, backend).

    python3 tools/eval/compare_frames.py --videomla build/app/videomla A.safetensors B.safetensors
        [--chunks 20] [--seed 7] [--prompt "..."] [--backend cpu]

Used for the int8 weight storage of the shipped models (docs/QUALITY.md): A = the shipped int8 file,
B = the same checkpoint exported with `tools/export.py --weights bf16`. Prints PSNR and the
normalised difference per chunk (frames as 8-bit PNGs, read back through ffmpeg).
"""
import argparse
import os
import subprocess
import tempfile

import numpy as np


def frames(videomla, model, args, out):
    subprocess.run([videomla, "generate", "-p", args.prompt, "-n", str(args.chunks), "--seed", str(args.seed),
                    "-b", args.backend, "-m", model, "-o", out, "--png", "-q"], check=True)
    raw = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", os.path.join(out, "frame_%05d.png"), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).astype(np.float32) / 255.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--videomla", default="build/app/videomla")
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--prompt", default="a red ball bouncing on the beach at sunset")
    ap.add_argument("--backend", default="cpu")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        a = frames(args.videomla, args.a, args, os.path.join(d, "a"))
        b = frames(args.videomla, args.b, args, os.path.join(d, "b"))
    if a.size != b.size or a.size % args.chunks:
        raise SystemExit(f"the rollouts differ in length ({a.size} vs {b.size} values)")
    worst = np.inf
    for c, (x, y) in enumerate(zip(np.split(a, args.chunks), np.split(b, args.chunks))):
        mse = float(np.mean((x - y) ** 2))
        psnr = 10 * np.log10(1.0 / max(mse, 1e-12))
        worst = min(worst, psnr)
        print(f"chunk {c:3d}  PSNR {psnr:5.1f} dB  normalised difference {np.linalg.norm(x - y) / np.linalg.norm(y):.4f}")
    print(f"lowest PSNR over {args.chunks} chunks: {worst:.1f} dB")


if __name__ == "__main__":
    main()
