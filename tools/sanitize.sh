#!/usr/bin/env bash
# Builds fastopt with AddressSanitizer + UndefinedBehaviorSanitizer in its own virtual environment
# and runs the tests under them, halting on the first error:
#   1. every size from 0 to 200 elements, for every optimizer, at every SIMD level this CPU has
#      (tests/test_sizes.py, once per FASTOPT_SIMD) - reads or writes past a tail show up here;
#   2. the whole suite (--all), except the 17 GiB end-to-end test (test_large.py's SGD on 2^31+17
#      elements: ASan's shadow memory would not fit).
# Python itself is not instrumented, so the sanitizer runtimes are preloaded and leak detection is
# off (CPython keeps objects alive until exit by design).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.asan-venv
if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
pip install --quiet ".[test]" -Ccmake.define.FASTOPT_SANITIZE=ON -Cbuild-dir=build/asan

runtimes="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
export LD_PRELOAD="$runtimes"
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export FASTOPT_SANITIZED=1  # tests/test_leaks.py skips: ASan's quarantine keeps freed memory

levels=$(python -c "import fastopt; print(' '.join(fastopt.available_simd_levels()))")
for level in $levels; do
  echo "== sanitizers: sizes 0..200, every optimizer, SIMD level $level"
  FASTOPT_SIMD=$level python -m pytest -q -p no:cacheprovider tests/test_sizes.py
done
if [[ ${1:-} == --all ]]; then
  echo "== sanitizers: the whole suite"
  python -m pytest -q -p no:cacheprovider -k "not end_to_end"
fi
