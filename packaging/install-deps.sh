#!/usr/bin/env bash
# Installs every Debian 12 package VideoMLA Studio needs to build, run and test.
# Idempotent: packages already present are skipped by apt. Needs root (or sudo).
# Usage: packaging/install-deps.sh [--with-python]   (--with-python adds the CPU PyTorch used by tools/ tests)
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libopenblas-dev nlohmann-json3-dev libgtest-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev ffmpeg
  qt6-base-dev qt6-base-dev-tools libqt6opengl6-dev libgl-dev libegl-dev libxkbcommon-dev
  libgl1-mesa-dri libglx-mesa0 libegl-mesa0
  xvfb xauth x11-utils imagemagick
  python3 python3-numpy
)
if [[ "${1:-}" == "--with-python" ]]; then
  pkgs+=(python3-torch)
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all ${#pkgs[@]} packages already installed"
fi
