#!/usr/bin/env bash
# One training call on a lent GPU machine: runs several training/evaluation jobs concurrently on the
# one GPU (the tiny model leaves most of an H100 idle, so independent stages share it), then returns
# every checkpoint file that changed through $OUT, as a tar split into 15 MiB pieces (the device tool
# returns at most 8 files of 16 MiB), plus one combined log.
#
# Usage (repository root, on the device):
#   bash tools/device/train_jobs.sh 'python3 tools/train.py --stage teacher --ckpt-dir .ckpt/dev --max-minutes 8.5' \
#                                   'python3 tools/eval/run.py --ckpt-dir .ckpt/dev --models "" --out /tmp/q.md'
# Checkpoints live in .ckpt/dev (git-ignored, so a warm machine keeps them between calls); files
# carried in .ckpt/carry are copied over them first (a fresh machine gets what the call needs).
# Back here:  cat FILES_AT/ck.tar.* | tar -x -C .ckpt/dev   (TAR_GZIP=1: cat FILES_AT/ck.tgz.* | tar -xz ...)
# Carried checkpoints may be gzipped (bf16 weights shrink by about 20%): they are unpacked first.
set -uo pipefail
out=${OUT:-/tmp/vmla-train-out}
mkdir -p "$out" .ckpt/dev
if [ -d .ckpt/carry ]; then
  (cd .ckpt/carry && tar -cf - .) | tar -xf - -C .ckpt/dev
  rm -rf .ckpt/carry  # a warm machine keeps ignored folders: a later call must not re-apply old files
  find .ckpt/dev -name '*.gz' -exec gunzip -f {} +  # carried checkpoints may be gzipped (-20%)
fi
marker=$(mktemp)
sleep 1
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$out/jobs.log"
pids=()
i=0
for job in "$@"; do
  echo "== job $i: $job" >> "$out/jobs.log"
  bash -c "$job" > "/tmp/job.$i.log" 2>&1 &
  pids+=($!)
  i=$((i + 1))
done
rcs=()
for p in "${pids[@]}"; do
  wait "$p"
  rcs+=($?)
done
nvidia-smi --query-gpu=memory.used --format=csv,noheader >> "$out/jobs.log"
for ((j = 0; j < i; j++)); do
  echo "== job $j exit ${rcs[$j]}" >> "$out/jobs.log"
  # the step logs are long: keep the first lines, the last lines and every STATUS line
  { head -n 5 "/tmp/job.$j.log"; echo "..."; tail -n 25 "/tmp/job.$j.log"; } >> "$out/jobs.log"
done
# RETURN_EXCLUDE: a regular expression of changed files not to return (intermediate checkpoints)
(cd .ckpt/dev && find . -type f -newer "$marker" | grep -Ev "${RETURN_EXCLUDE:-^$}" | sort) > /tmp/returned.txt
# TAR_GZIP=1: gzip -1 the tar (bf16 weights shrink by about 20%), pieces ck.tgz.* instead of ck.tar.*;
# files go in sorted order, so a return cut at the 64 MiB limit still unpacks its first files
if [ "${TAR_GZIP:-0}" = 1 ]; then
  (cd .ckpt/dev && tar -T /tmp/returned.txt -cf - | gzip -1) | split -b 15M - "$out/ck.tgz."
else
  (cd .ckpt/dev && tar -T /tmp/returned.txt -cf -) | split -b 15M - "$out/ck.tar."
fi
echo "== returned: $(tr '\n' ' ' < /tmp/returned.txt)"
for ((j = 0; j < i; j++)); do
  echo "== job $j (exit ${rcs[$j]}):"
  grep -E "STATUS|Error|error" "/tmp/job.$j.log" | tail -n 5
  grep -E "ms/step|probe" "/tmp/job.$j.log" | tail -n 2
done
