#!/usr/bin/env bash
# Runs on an NVIDIA H100/H200 machine (no Qt, no X server): the preview's CUDA-OpenGL interop
# (ui/gl_interop) on a headless EGL context. Builds the engine without the UI, runs
# tests/gpu/test_gl_interop and prints a short result last.
#
# The GL loader libraries are not installed there. Once, on a machine with apt, in the repository
# root (.gl/ is git-ignored):
#   mkdir -p .gl /tmp/amd64/partial; o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#   apt-get $o update; (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
# and carry .gl to the GPU machine. This script unpacks them into / itself.
# Usage (from the repository root): bash tools/device/gl_check.sh [OUTDIR]
set -uo pipefail
out=${1:-${OUT:-/tmp/vmla-gl}}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

if ! ls .gl/*.deb > /dev/null 2>&1; then
  echo "gl_check: no .gl/*.deb here: download them first (see the top of this script) and carry .gl"
  exit 1
fi
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
# The NVIDIA EGL vendor file sits with the driver, outside glvnd's search path, on these machines.
if ! compgen -G "/usr/share/glvnd/egl_vendor.d/*nvidia*.json" > /dev/null &&
   ! compgen -G "/etc/glvnd/egl_vendor.d/*nvidia*.json" > /dev/null &&
   [ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ] &&
   [ -f /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ]; then
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
{
  echo "__EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-(unset)}"
  ls /usr/share/glvnd/egl_vendor.d /etc/glvnd/egl_vendor.d /usr/local/nvidia/share/glvnd/egl_vendor.d 2>&1
  ldconfig -p | grep -E "libEGL|libOpenGL|libGLdispatch|libnvidia-eglcore|libcuda\.so"
} > "$out/gl-env.txt" 2>&1

cmake -S . -B build-dev -G Ninja -DCMAKE_BUILD_TYPE=Release -DVMLA_BUILD_UI=OFF -DVMLA_WITH_FFMPEG=OFF \
  -DCMAKE_CUDA_ARCHITECTURES=90 > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
cmake --build build-dev -j"$(nproc)" --target test_gl_interop > "$out/build.log" 2>&1 \
  || { grep -E "error|FAILED" "$out/build.log" | head -30; exit 1; }
./build-dev/tests/test_gl_interop > "$out/gl_interop.log" 2>&1; rc=$?

echo "== GL environment =="; cat "$out/gl-env.txt"
echo "== test_gl_interop (exit $rc) =="
grep -E "^\[gl-interop\]|vmla:|Failure|Expected|Which is|error|SKIPPED|FAILED|PASSED|OK \]" "$out/gl_interop.log"
if [ $rc -ne 0 ]; then echo "gl_check: FAILED (full log: $out/gl_interop.log)"
elif grep -q "SKIPPED \] [1-9]" "$out/gl_interop.log"; then echo "gl_check: SKIPPED (see the reason above)"
else echo "gl_check: PASSED"; fi
exit $rc
