#!/usr/bin/env bash
# End-to-end: videomla generate (mp4 and PNG), info, bench tiny (and --streams), init, convert and their errors,
# and the start-up warm-up (forced on the CPU with VMLA_WARMUP=1).
set -uo pipefail
VMLA=$1
WORK=$2
rm -rf "$WORK"; mkdir -p "$WORK"; cd "$WORK"
fails=0; passes=0
ok()   { passes=$((passes+1)); echo "PASS: $1"; }
bad()  { fails=$((fails+1)); echo "FAIL: $1"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }

# generate 2 chunks to an MP4 and check it with ffprobe
"$VMLA" generate -p "a red ball bouncing on the beach at sunset" --chunks 2 --seed 3 -o two.mp4 -q > gen.log 2>&1
check "generate mp4 exit code" test $? -eq 0
frames=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 two.mp4)
check "mp4 has 24 frames (got $frames)" test "$frames" = "24"
size=$(ffprobe -v error -select_streams v:0 -show_entries stream=width,height,codec_name,pix_fmt -of csv=p=0 two.mp4)
check "mp4 is h264 128x128 yuv420p (got $size)" test "$size" = "h264,128,128,yuv420p"
dur=$(ffprobe -v error -show_entries format=duration -of csv=p=0 two.mp4)
check "mp4 lasts 1.5 s (got $dur)" python3 -c "import sys; sys.exit(abs(float('$dur') - 1.5) > 1e-3)"
check "mp4 carries generation parameters" bash -c "ffprobe -v error -show_entries format_tags -of json two.mp4 | grep -q vmla_params"

# PNG frames, and determinism: the same seed gives the same frames
"$VMLA" generate -p "a red ball bouncing on the beach at sunset" --chunks 2 --seed 3 -o frames --png -q > png.log 2>&1
check "generate png exit code" test $? -eq 0
check "24 PNG frames" test "$(ls frames/*.png | wc -l)" -eq 24
"$VMLA" generate -p "a red ball bouncing on the beach at sunset" --chunks 2 --seed 3 -o frames2 --png -q > /dev/null 2>&1
check "same seed, same frames" diff -rq frames frames2
VMLA_WARMUP=1 "$VMLA" generate -p "a red ball bouncing on the beach at sunset" --chunks 2 --seed 3 -o frames3 --png > warm-gen.log 2>&1
check "generate after a warm-up: the same frames" diff -rq frames frames3
check "generate reports the warm-up" grep -q "^warm-up on cpu: [0-9.]* s$" warm-gen.log

# --seconds rounds up to whole chunks
"$VMLA" generate -p "a blue fish" --seconds 1 -o one.mp4 -q > /dev/null 2>&1
frames=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 one.mp4)
check "--seconds 1 gives 2 chunks = 24 frames (got $frames)" test "$frames" = "24"

# a prompt schedule with a re-cached switch
printf '# schedule\n0: a red ball bouncing\n1: a blue fish swimming in the sea\n' > sched.txt
"$VMLA" generate --prompts sched.txt --chunks 2 --recache -o sched.mp4 -q > /dev/null 2>&1
check "prompt schedule" test -s sched.mp4

# info and bench
"$VMLA" info > info.log 2>&1
check "info exit code" test $? -eq 0
check "info reports the MLA cache saving" grep -q "92.7% less" info.log
"$VMLA" info --config wan1.3b-mla > wan.log 2>&1
check "info --config wan1.3b-mla: 224 vs 3072" grep -q "224 values per layer (MHA layout: 3072)" wan.log
"$VMLA" bench tiny --backend cpu --chunks 2 --warmup 1 > bench.log 2>&1
check "bench tiny exit code" test $? -eq 0
check "bench prints a one-line summary last" bash -c "tail -n 1 bench.log | grep -q '^bench vmla-tiny on cpu:'"
check "bench: no start-up warm-up on the cpu" grep -q "no warm-up (no gain on cpu)" bench.log
check "bench: the first chunk in parts" grep -Eq '^first chunk: session [0-9.]+ ms, prompt [0-9.]+ ms, DiT [0-9.]+ ms \(5 passes\), decoder [0-9.]+ ms, other -?[0-9.]+ ms$' bench.log
VMLA_WARMUP=1 "$VMLA" bench tiny --backend cpu --chunks 1 --warmup 0 --steps 1 --json warm.json > warm.log 2>&1
check "bench with a warm-up: setup line and JSON" bash -c "grep -q 'warm-up [0-9.]* s (2 chunks))' warm.log && python3 -c \"import json, sys; j = json.load(open('warm.json')); sys.exit(not (j['warmup_s'] > 0 and j['first_chunk_ms']['dit_passes'] == 2))\""
# concurrent streams: per-stream and shared memory, the projection, the MLA/MHA cache ratio
"$VMLA" bench tiny --streams 2 --backend cpu --chunks 1 --steps 1 --json streams.json > streams.log 2>&1
check "bench --streams exit code" test $? -eq 0
check "bench --streams summary line" bash -c "tail -n 1 streams.log | grep -Eq '^streams vmla-tiny on cpu: per stream [0-9.]+ [KMG]iB \(cache [0-9.]+ [KM]iB, 56/768 of MHA per token per layer\), shared [0-9.]+ [KMG]iB -> [0-9]+ streams in 80 GB; 2 streams [0-9.]+ ms/chunk [0-9.]+ FPS$'"
check "bench --streams JSON has the projection" grep -q '"projected_streams"' streams.json
"$VMLA" bench tiny --streams 0 --backend cpu > streams-err.log 2>&1; rc=$?
check "bench --streams 0 is a usage error (exit 2, got $rc)" test $rc -eq 2

# init + convert round trip
"$VMLA" init --config tiny-mha --dtype f32 -o mha.safetensors > /dev/null 2>&1
check "init tiny-mha" test -s mha.safetensors
"$VMLA" convert mha.safetensors --dtype bf16 -o mha-bf16.safetensors > /dev/null 2>&1
check "convert to bf16" test -s mha-bf16.safetensors
"$VMLA" generate -m mha-bf16.safetensors -p "a cube" --chunks 1 -o mha.mp4 -q > /dev/null 2>&1
check "generate with the converted MHA model" test -s mha.mp4

# the default model's int8 weights (docs/MODEL.md section 8): info counts the weights, not their
# scales; converting to f32 writes the dequantized values, which generate the same frames
model=$(awk '/^file / {print $2}' info.log)
"$VMLA" info --tensors "$model" > tensors.log 2>&1
if grep -q " I8 " tensors.log; then
  check "info: the storage dtypes of the parameters" grep -Eq "^stored as +[0-9.]+ [KM] BF16, [0-9.]+ [KM] I8 \(with group scales\)$" tensors.log
  "$VMLA" convert "$model" --dtype f32 -o deq.safetensors > /dev/null 2>&1
  check "convert int8 -> f32: no int8 tensors, no scales" bash -c "! '$VMLA' info --tensors deq.safetensors | grep -Eq ' I8 |_scale '"
  check "convert int8 -> f32: same parameter count" bash -c "test \"\$('$VMLA' info '$model' | grep ^parameters)\" = \"\$('$VMLA' info deq.safetensors | grep ^parameters)\""
  "$VMLA" generate -m deq.safetensors -p "a red ball bouncing on the beach at sunset" --chunks 2 --seed 3 -o frames4 --png -q > /dev/null 2>&1
  check "int8 model and its f32 conversion: the same frames" diff -rq frames frames4
  "$VMLA" convert deq.safetensors --dtype int8 -o req.safetensors > /dev/null 2>&1
  "$VMLA" info --tensors req.safetensors > req.log 2>&1
  check "convert f32 -> int8: the same tensors and dtypes as the shipped file" \
    diff <(grep -E '^  ' tensors.log) <(grep -E '^  ' req.log)
  "$VMLA" generate -m req.safetensors -p "a red ball bouncing on the beach at sunset" --chunks 2 --seed 3 -o frames5 --png -q > /dev/null 2>&1
  # tools/export.py rounds by GPTQ, keeping each group's largest value at +-127: rounding the f32
  # values to nearest again gives back the same int8 values and scales
  check "convert f32 -> int8 gives back the shipped file's values: the same frames" diff -rq frames frames5
fi

# errors: clear message, documented exit code, nothing left behind
"$VMLA" generate > err.log 2>&1; rc=$?
check "missing prompt is a usage error (exit 2, got $rc)" test $rc -eq 2
head -c 1000 mha.safetensors > trunc.safetensors
"$VMLA" generate -m trunc.safetensors -p "a cube" --chunks 1 -o t.mp4 > err.log 2>&1; rc=$?
check "truncated model file: exit 3 (got $rc)" test $rc -eq 3
check "truncated model: message names the file" grep -q "trunc.safetensors" err.log
check "no output after a failed load" test ! -e t.mp4
"$VMLA" generate -p "a cube" --chunks 1 -o /nonexistent-dir/x.mp4 > err.log 2>&1; rc=$?
check "unwritable output: exit 5 (got $rc)" test $rc -eq 5
"$VMLA" generate -p "a cube" --chunks 1 --backend tpu -o x.mp4 > err.log 2>&1; rc=$?
check "unknown backend: exit 4 (got $rc)" test $rc -eq 4
check "no partial files" bash -c "! ls *.partial *.tmp 2>/dev/null | grep -q ."

echo "$passes passed, $fails failed"
test $fails -eq 0
