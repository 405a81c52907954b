#!/usr/bin/env bash
# One evaluation job of the quality report, for tools/device/train_jobs.sh: exports a model from the
# training checkpoints, waits until the probe is trained (the file PROBE_DIR/probe.done, written by
# the probe job), then evaluates the model into PROBE_DIR/eval/eval_<LABEL>.json. PROBE_DIR (default
# .ckpt/dev) holds the probe: one folder per probe, so that two probes can judge the same models.
# Usage: bash tools/device/quality_job.sh LABEL CKPT_DIR ARCH SOURCE [EVAL ARGS...]
#   ARCH mla|mha, SOURCE student|finetune|teacher (tools/export.py), WEIGHTS=int8 (default, as shipped)
#   or bf16|f16|f32 in the environment; the probe job is
#   python3 tools/eval/run.py --ckpt-dir .ckpt/dev --models "" --out /tmp/q.md && touch .ckpt/dev/probe.done
set -euo pipefail
label=$1 ck=$2 arch=$3 source=$4
shift 4
pd=${PROBE_DIR:-.ckpt/dev}
mkdir -p /tmp/quality
dir=$(mktemp -d "/tmp/quality/$label.XXXX")  # the same model may be judged by two probes at once
python3 tools/export.py --ckpt-dir "$ck" --arch "$arch" --source "$source" --out-dir "$dir" --weights "${WEIGHTS:-int8}"
file=$(ls "$dir"/*.safetensors)
deadline=$(( $(date +%s) + 540 ))
until [ -f "$pd/probe.done" ]; do
  [ "$(date +%s)" -lt $deadline ] || { echo "quality_job: probe not trained in time"; exit 1; }
  sleep 3
done
# a private copy of the finished probe (--probe-steps 0: use it as it is, no training, no writes)
mkdir -p "$dir/ck"
cp "$pd/probe.pt" "$dir/ck/"
python3 tools/eval/run.py --ckpt-dir "$dir/ck" --results-dir "$pd/eval" --out "$dir/report.md" \
  --probe-steps 0 --models "$label=$file" "$@"
