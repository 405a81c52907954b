#!/usr/bin/env bash
# A chain of training and evaluation steps that spans several device calls: every call runs the
# same command line, and each call goes on where the one before stopped.
#
# Usage: END=<epoch seconds> bash tools/device/chain.sh LOG 'NEED|COMMAND' ['NEED|COMMAND' ...]
#
# The steps run in order, each to completion once: a step finished when its command exits 0 and
# the last "STATUS ..." line it printed, if any (tools/train.py, tools/eval/run.py), does not say
# "incomplete".
# A finished step is recorded in LOG.done and skipped by later calls. The chain stops at a step that
# did not finish (it resumes there next call) or that would start with fewer than NEED seconds left
# before END (so that a short stage, such as a student of a few hundred steps, runs in one segment).
# {M} in a command becomes the minutes left before END, less a margin (for --max-minutes).
# Every step's output is appended to LOG. Exit status: 0 when every step has finished, 3 when the
# chain waits for a later call, 1 when a step failed (its command exited non-zero).
#
# Example, one arm of tools/README.md "Ten more students" (a grown teacher, its student, evaluation):
#   export END=$(( $(date +%s) + 540 ))
#   bash tools/device/chain.sh .ckpt/dev/logs/g7.log \
#     '0|python3 tools/train.py --stage teacher --ckpt-dir .ckpt/dev/g7 --init-from .ckpt/dev/teacher.pt --layers 7 --steps 1000 --max-minutes {M}' \
#     '360|python3 tools/train.py --stage student --arch mha --ckpt-dir .ckpt/dev/g7 --steps 200 --max-minutes {M}' \
#     '230|WEIGHTS=bf16 bash tools/device/quality_job.sh grown7-mha .ckpt/dev/g7 mha student'
set -uo pipefail
: "${END:?END (epoch seconds) must be set}"
log=$1
shift
mkdir -p "$(dirname "$log")"
touch "$log.done"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for step in "$@"; do
  need=${step%%|*}
  cmd=${step#*|}
  grep -qxF -- "$cmd" "$log.done" && continue
  left=$(( END - $(date +%s) ))
  if [ "$left" -lt "$need" ]; then
    echo "== waits: $left s left, $need s needed: $cmd" >> "$log"
    exit 3
  fi
  minutes=$(awk "BEGIN{printf \"%.2f\", ($END - $(date +%s)) / 60 - 0.3}")
  echo "== $(date -u +%H:%M:%S) $left s left: $cmd" >> "$log"
  bash -c "${cmd//\{M\}/$minutes}" > "$out" 2>&1
  rc=$?
  cat "$out" >> "$log"
  if [ "$rc" -ne 0 ]; then
    echo "== failed (exit $rc): $cmd" >> "$log"
    exit 1
  fi
  if grep '^STATUS' "$out" | tail -n 1 | grep -q incomplete; then
    exit 3  # the next call resumes it
  fi
  echo "$cmd" >> "$log.done"
done
exit 0
