#!/usr/bin/env bash
# Installs the dependencies, builds everything (CUDA backend included when nvcc is present) with
# warnings as errors, and runs all tests: unit, GPU (skipped without a device), end to end, UI under
# Xvfb, the Python reference tests, and the file parsers under AddressSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh --with-python
jobs=$(nproc)
cmake -S . -B build-ci -G Ninja -DCMAKE_BUILD_TYPE=Release -DVMLA_WERROR=ON
cmake --build build-ci -j"$jobs"
status=0
(cd build-ci && ctest --output-on-failure -j"$jobs" --timeout 1200) || status=$?
if [[ -x tests/run_asan.sh ]]; then
  bash tests/run_asan.sh || status=$?
fi
exit $status
