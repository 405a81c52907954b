#!/usr/bin/env bash
# Engine vs PyTorch eager on the same card, same chunk loop (issue 5). Runs on an NVIDIA H100/H200
# machine (no Qt, no FFmpeg there): builds the engine (UI off, FFmpeg off, sm_90), runs
#   videomla bench wan1.3b-mha|wan1.3b-mla --backend cuda
#   python3 tools/reference/wan_bench.py wan1.3b-mha|wan1.3b-mla
# and prints a table with the ratios last.
# Usage (repository root): bash tools/device/perf_compare.sh [OUTDIR]
# Environment: BUILD_DIR (default build-dev), VIDEOMLA (a prebuilt videomla: skips the build),
# CHUNKS (timed chunks, default 3), CONFIGS (default "wan1.3b-mha wan1.3b-mla"), BENCH_ARGS (extra
# arguments for both benches, e.g. "--layers 2").
set -uo pipefail
out=${1:-${OUT:-/tmp/vmla-perf}}
mkdir -p "$out"
build=${BUILD_DIR:-build-dev}
chunks=${CHUNKS:-3}
configs=${CONFIGS:-"wan1.3b-mha wan1.3b-mla"}
extra=${BENCH_ARGS:-}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
B=${VIDEOMLA:-}
if [ -z "$B" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVMLA_BUILD_UI=OFF -DVMLA_WITH_FFMPEG=OFF \
    -DCMAKE_CUDA_ARCHITECTURES=90 > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
  cmake --build "$build" -j"$(nproc)" --target videomla > "$out/build.log" 2>&1 \
    || { grep -E "error|FAILED" "$out/build.log" | head -30; exit 1; }
  B=./$build/app/videomla
fi
for cfg in $configs; do
  # shellcheck disable=SC2086
  "$B" bench "$cfg" --backend cuda --chunks "$chunks" $extra --json "$out/engine-$cfg.json" \
    > "$out/engine-$cfg.log" 2>&1 || { echo "engine bench $cfg failed:"; tail -5 "$out/engine-$cfg.log"; }
  tail -n 1 "$out/engine-$cfg.log"
  layers=$(echo "$extra" | sed -n 's/.*--layers[ =]\([0-9]*\).*/\1/p')
  PYTHONUNBUFFERED=1 python3 tools/reference/wan_bench.py "$cfg" --chunks "$chunks" ${layers:+--layers "$layers"} \
    --json "$out/torch-$cfg.json" > "$out/torch-$cfg.log" 2>&1 || { echo "pytorch $cfg failed:"; tail -5 "$out/torch-$cfg.log"; }
  tail -n 1 "$out/torch-$cfg.log"
done
python3 - "$out" $configs <<'EOF'
import json, os, sys
out, cfgs = sys.argv[1], sys.argv[2:]
def load(p):
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
rows, fps = [], {}
print(f"\n{'config':<13} {'engine ms/pass':>14} {'ms/chunk':>9} {'FPS':>7} | {'torch ms/pass':>13} {'ms/chunk':>9} {'FPS':>7} {'SDPA':>16} | {'engine/torch speed':>18}")
for c in cfgs:
    e, t = load(os.path.join(out, f"engine-{c}.json")), load(os.path.join(out, f"torch-{c}.json"))
    es = f"{e['ms_per_pass']:14.2f} {e['ms_per_chunk_dit']:9.1f} {e['fps_dit']:7.2f}" if e else f"{'failed':>14} {'':9} {'':7}"
    ts = (f"{t['ms_per_pass']:13.2f} {t['ms_per_chunk_dit']:9.1f} {t['fps_dit']:7.2f} {t['sdpa_backend']:>16}"
          if t else f"{'failed':>13} {'':9} {'':7} {'':16}")
    ratio = f"{t['ms_per_chunk_dit'] / e['ms_per_chunk_dit']:17.2f}x" if e and t else f"{'n/a':>18}"
    if e:
        fps[c] = e["fps_dit"]
    print(f"{c:<13} {es} | {ts} | {ratio}")
if "wan1.3b-mha" in fps and "wan1.3b-mla" in fps:
    print(f"engine MLA / MHA speed: {fps['wan1.3b-mla'] / fps['wan1.3b-mha']:.2f}x (FPS ratio; >= 1 means MLA at least as fast)")
EOF
