#!/usr/bin/env bash
# Installs the dependencies, builds everything (CUDA backend included when nvcc is present) with
# warnings as errors, and runs all tests: the file parsers and engine under AddressSanitizer/UBSan
# first, then the ctest suite (unit, GPU (skipped without a device), end to end, UI under Xvfb, the
# Python reference), whose summary line closes the output.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh --with-python
jobs=$(nproc)
status=0
bash tests/run_asan.sh || status=$?
cmake -S . -B build-ci -G Ninja -DCMAKE_BUILD_TYPE=Release -DVMLA_WERROR=ON
cmake --build build-ci -j"$jobs"
(cd build-ci && ctest --output-on-failure -j"$jobs" --timeout 1200) || status=$?
exit $status
