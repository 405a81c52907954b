#!/usr/bin/env bash
# Launches the studio under Xvfb on the default model, drives it for a few chunks (generate, rewind,
# re-roll, prompt switch, export) and saves screenshots to docs/images/.
# Usage: tools/screenshots.sh [build dir (default: build)] [output dir (default: docs/images)]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=${2:-docs/images}
cmake --build "$build" --target studio_tour default_model
mkdir -p "$out"
xvfb-run -a -s "-screen 0 1600x1000x24" "$build/tests/ui/studio_tour" "$out"
