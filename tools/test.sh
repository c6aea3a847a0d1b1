#!/usr/bin/env bash
# README command 2 (and what CI runs): install what is missing, build, run every test with
# CTest; then build again with AddressSanitizer + UndefinedBehaviorSanitizer and run the tests
# there too. TULPAR_TEST_SANITIZE=0 skips the sanitizer pass.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe=1

echo "== build (RelWithDebInfo, CUDA backend when nvcc is present)"
tools/build.sh build
echo "== tests"
(cd build && ctest --output-on-failure --timeout 1200)

if [ "${TULPAR_TEST_SANITIZE:-1}" != "0" ]; then
    echo "== build (ASan + UBSan)"
    tools/build.sh build-asan -DTULPAR_SANITIZE=ON -DTULPAR_CUDA=OFF
    # Open MPI and HDF5 keep some allocations until exit; only our own leaks should fail.
    export LSAN_OPTIONS="suppressions=$PWD/tests/sanitizer/lsan.supp:print_suppressions=0"
    # Full unwinding on malloc so that allocations made inside dlopen'ed MPI components still show
    # the MPI library frames the suppressions match.
    export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:fast_unwind_on_malloc=0:malloc_context_size=30"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    echo "== tests under sanitizers"
    (cd build-asan && ctest --output-on-failure --timeout 2400)
fi
echo "== all tests passed"
