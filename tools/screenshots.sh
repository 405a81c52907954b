#!/usr/bin/env bash
# Launches the studio under Xvfb on the default model, drives it for a few chunks (generate, rewind,
# re-roll, prompt switch, export) and saves screenshots to docs/images/.
# Usage: tools/screenshots.sh [build dir (default: build)] [output dir (default: docs/images)]
# Needs a build with the UI (-DVMLA_BUILD_UI=ON) and xvfb-run.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=${2:-docs/images}
# studio_tour depends on the untrained default_model target where the build has one (no trained
# model in resources/models).
cmake --build "$build" --target studio_tour
# The trained default model, unless VMLA_MODEL names another.
if [[ -z "${VMLA_MODEL:-}" && -f resources/models/vmla-tiny.safetensors ]]; then
  export VMLA_MODEL=$PWD/resources/models/vmla-tiny.safetensors
fi
mkdir -p "$out"
xvfb-run -a -s "-screen 0 1600x1000x24" "$build/tests/ui/studio_tour" "$out"
