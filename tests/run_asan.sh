#!/usr/bin/env bash
# Builds the model-file tests (safetensors reader/writer, name map) and the engine tests (sessions,
# snapshots, fixture parity) with AddressSanitizer and UBSan in build-asan/ and runs them; any test
# failure or sanitizer report exits non-zero.
#   tests/run_asan.sh            (from anywhere; JOBS=N to change build parallelism, default 2)
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build-asan}
JOBS=${JOBS:-2}
TESTS=(test_safetensors test_name_map test_engine test_fixture_parity)

generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi

cmake -S . -B "$BUILD_DIR" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DVMLA_ASAN=ON -DVMLA_BUILD_UI=OFF -DVMLA_WITH_CUDA=OFF -DVMLA_WITH_FFMPEG=OFF
cmake --build "$BUILD_DIR" -j"$JOBS" --target "${TESTS[@]}"

# halt_on_error + abort: a UBSan finding fails the run instead of only printing.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
for t in "${TESTS[@]}"; do
  echo "=== $t (ASan + UBSan)"
  if ! "$BUILD_DIR/tests/$t"; then
    echo "FAILED: $t" >&2
    status=1
  fi
done
exit $status
