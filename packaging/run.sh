#!/usr/bin/env bash
# Installs the dependencies, builds, and starts VideoMLA Studio on the embedded default model.
# Without the studio (e.g. -DVMLA_BUILD_UI=OFF) it generates a clip with the CLI instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
if [[ -x build/app/studio/videomla-studio ]]; then
  exec build/app/studio/videomla-studio "$@"
fi
build/app/videomla generate -p "a red ball bouncing on the beach at sunset, camera pans left" --seconds 3 -o out.mp4
echo "wrote out.mp4"
