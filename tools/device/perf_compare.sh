#!/usr/bin/env bash
# Engine vs PyTorch eager on the same card, same chunk loop (issue 5). Runs on an NVIDIA H100/H200
# machine (no Qt, no FFmpeg there): builds the engine (UI off, FFmpeg off, sm_90), runs
#   videomla bench wan1.3b-mha|wan1.3b-mla --backend cuda
#   python3 tools/reference/wan_bench.py wan1.3b-mha|wan1.3b-mla
#   videomla bench wan1.3b-mha|wan1.3b-mla --streams 1   (memory per stream, streams in 80 GB)
# and prints the table with the ratios, then issue 5's targets, met or missed (perf_summary.py).
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
# memory per stream and how many 832x480 streams fit in 80 GB (the streams target); STREAMS=0 skips
if [ "${STREAMS:-1}" != 0 ]; then
  for cfg in $configs; do
    "$B" bench "$cfg" --backend cuda --streams 1 --chunks 1 --json "$out/streams-$cfg.json" > "$out/streams-$cfg.log" 2>&1 \
      || { echo "streams $cfg failed:"; tail -3 "$out/streams-$cfg.log"; }
  done
fi
python3 tools/reference/perf_summary.py "$out" $configs
