#!/usr/bin/env bash
# Runs on an NVIDIA H100/H200 machine (no Qt, no FFmpeg there): builds the engine without the UI,
# runs the CUDA op, whole-chunk and shared-workspace stream parity tests, then the benchmarks (Wan
# configs three times: as shipped; with VMLA_CUDA_SM90_ATTENTION=0, the mma.sync attention kernel
# instead of the wgmma one; with VMLA_FUSED_PROJECTIONS=0, separate self-attention projections
# instead of fused ones; MHA also with VMLA_CUDA_FUSED_NORM_ROPE=0, the queries normalised and
# rotated in two passes), the tiny bench once more with VMLA_CUDA_GRAPHS=1 and the Wan ones
# with VMLA_CUDA_GRAPHS=0 and =1 after 5 warm-up chunks (each pass replayed as a CUDA graph; the A/B
# of the graphs, off by default) and the concurrent-streams memory
# sweep of issue 5, and prints a short table last. VMLA_GPU_CHECK_BENCH=0 runs the parity tests only
# (about a minute: a check of the CUDA code beside other work on the machine).
# Usage (from the repository root): bash tools/device/gpu_check.sh [OUTDIR]
set -uo pipefail
out=${1:-${OUT:-/tmp/vmla-gpu}}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
cmake -S . -B build-dev -G Ninja -DCMAKE_BUILD_TYPE=Release -DVMLA_BUILD_UI=OFF -DVMLA_WITH_FFMPEG=OFF \
  -DCMAKE_CUDA_ARCHITECTURES=90 > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
cmake --build build-dev -j"$(nproc)" --target videomla test_cuda_ops test_cuda_model test_cuda_streams test_engine > "$out/build.log" 2>&1 \
  || { grep -E "error|FAILED" "$out/build.log" | head -30; exit 1; }
./build-dev/tests/test_cuda_ops --gtest_brief=1 > "$out/ops.log" 2>&1; ops=$?
./build-dev/tests/test_cuda_model > "$out/model.log" 2>&1; model=$?
./build-dev/tests/test_cuda_streams > "$out/streams.log" 2>&1; streams=$?
B=./build-dev/app/videomla
parity_summary() {
  echo "== op parity (exit $ops) =="; grep -E "FAILED|wgmma|tuned|rms_norm_rope Wan" "$out/ops.log" | head -20; tail -3 "$out/ops.log"
  echo "== chunk parity (exit $model) =="; grep -E "^\[parity\]|^\[fused projections\]|^\[graphs\].*(total|failure|median)|FAILED|PASSED" "$out/model.log"
  echo "== shared-workspace streams on CUDA (exit $streams) =="; grep -E "OK|FAILED|PASSED|SKIPPED" "$out/streams.log" | tail -3
}
if [ "${VMLA_GPU_CHECK_BENCH:-1}" = 0 ]; then
  parity_summary
  exit $(( ops | model | streams ))
fi
VMLA_CUDA_GRAPHS=0 $B bench tiny --backend cuda --chunks 8 --json "$out/tiny-cuda.json" > "$out/bench-tiny-cuda.log" 2>&1
# the same run with every pass replayed as a CUDA graph (the A/B of the graphs; tiny is launch-bound)
VMLA_CUDA_GRAPHS=1 $B bench tiny --backend cuda --chunks 8 --json "$out/tiny-cuda-graphs.json" \
  > "$out/bench-tiny-cuda-graphs.log" 2>&1
$B bench tiny --backend cpu --chunks 3 --json "$out/tiny-cpu.json" > "$out/bench-tiny-cpu.log" 2>&1
for cfg in wan1.3b-mla wan1.3b-mha; do
  $B bench $cfg --backend cuda --chunks 3 --warmup 1 --json "$out/$cfg.json" > "$out/bench-$cfg.log" 2>&1
  # the same run with the mma.sync attention kernel instead of the wgmma one (the A/B of the kernel)
  VMLA_CUDA_SM90_ATTENTION=0 $B bench $cfg --backend cuda --chunks 3 --warmup 1 --json "$out/$cfg-mma.json" \
    > "$out/bench-$cfg-mma-attention.log" 2>&1
  # the same run with separate self-attention projections (the A/B of the fused ones)
  VMLA_FUSED_PROJECTIONS=0 $B bench $cfg --backend cuda --chunks 3 --warmup 1 --json "$out/$cfg-separate.json" \
    > "$out/bench-$cfg-separate-projections.log" 2>&1
  # the A/B of the CUDA graphs: off, then on, with the window full and its slot layouts seen twice
  # (5 warm-up chunks), so that the timed passes are replays
  for g in 0 1; do
    VMLA_CUDA_GRAPHS=$g $B bench $cfg --backend cuda --chunks 3 --warmup 5 --json "$out/$cfg-graphs$g.json" \
      > "$out/bench-$cfg-graphs$g.log" 2>&1
  done
done
# MHA: the queries normalised and rotated in two passes (the A/B of the one-pass rms_norm_rope kernel)
VMLA_CUDA_FUSED_NORM_ROPE=0 $B bench wan1.3b-mha --backend cuda --chunks 3 --warmup 1 \
  --json "$out/wan1.3b-mha-norm-rope-two-passes.json" > "$out/bench-wan1.3b-mha-norm-rope-two-passes.log" 2>&1
# concurrent streams: per-stream memory and how many fit in 80 GB (issue 5); VMLA_GPU_CHECK_STREAMS=0 skips
if [ "${VMLA_GPU_CHECK_STREAMS:-1}" != 0 ]; then
  $B bench wan1.3b-mla --backend cuda --streams 1,4,16 --chunks 1 --json "$out/streams-w6-mla.json" > "$out/streams-w6-mla.log" 2>&1
  $B bench wan1.3b-mha --backend cuda --streams 1,4,16 --chunks 1 --json "$out/streams-w6-mha.json" > "$out/streams-w6-mha.log" 2>&1
  $B bench wan1.3b-mla --backend cuda --window 21 --streams 1,4,16 --chunks 1 > "$out/streams-w21-mla.log" 2>&1
  $B bench wan1.3b-mha --backend cuda --window 21 --streams 1,4,8 --chunks 1 > "$out/streams-w21-mha.log" 2>&1
fi
parity_summary
echo "== benchmarks =="
for f in "$out"/bench-*.log "$out"/streams-*.log; do [ -f "$f" ] && echo "$(basename "$f" .log): $(tail -n 1 "$f")"; done
echo "== CUDA graphs (VMLA_CUDA_GRAPHS=1 runs) =="
grep -h "^graphs " "$out"/bench-tiny-cuda-graphs.log "$out"/bench-*-graphs1.log
