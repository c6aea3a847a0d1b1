#!/usr/bin/env bash
# The one prepared GPU check (issue 5), in two halves:
#
#   tests/gpu/device_check.sh package   HERE (nvcc, no GPU): a CUDA-enabled Release build in
#       build-device/ (tools/build.sh), then device-pkg/device-pkg.tar.xz holding tulpar,
#       test_cuda_ops and test_comm_nccl (libexec/), wrappers that run them with the carried
#       libraries (bin/), and every non-system shared library they need per ldd (lib/: Open MPI,
#       HDF5, libconfig, OpenBLAS, libgfortran, ..., libcudart), plus device-pkg/MANIFEST.txt.
#       Not carried: glibc's own libraries and the driver (libcuda), which the device has, and
#       cuBLAS/cuBLASLt/NCCL/cuDNN (~800 MB, over the 64 MiB a device call carries): `run`
#       finds them there (CUDA 13 toolkit or PyTorch's nvidia-* pip packages). Compressed
#       because OpenBLAS alone is 36 MB. Ends with checks of the package on this machine: the
#       binaries load, a tiny CPU training run through the packaged tulpar on an llm.c-format
#       token file, and the Python scripts compile (the PyTorch baseline also runs a tiny CPU
#       round where a torch is installed).
#
#   tests/gpu/device_check.sh run       ON THE GPU MACHINE, from the repository root, with
#       device-pkg/ carried (device tool: command "tests/gpu/device_check.sh run",
#       carry ["device-pkg"], timeout_s 420). Under 6 minutes (DEVCHECK_BUDGET_S, default 345 s,
#       caps every step's own timeout). Steps: what is where (GPU, driver, nvcc, torch,
#       libnccl/libcudart/libcublas on the loader path or only in pip packages), test_cuda_ops,
#       test_comm_nccl (one process, no mpirun), tests/gpu/test_cuda_train.py (50 steps cpu vs
#       cuda, checkpoints across backends, generate), GPT-2 124M training throughput with tulpar
#       (batch 16, context 1024, bf16, 25 steps on random tokens, median step after 5), its op
#       profile (runtime.profile, 8 steps) and its products alone (tulpar bench gemm --gpt:
#       fp32 operands against bf16 compute copies, padded dlogits rows), the same training with
#       tests/gpu/torch_gpt_baseline.py, and last a short table (tests/gpu/device_tools.py
#       summary). Logs go to $OUT (the device tool's folder) or a temporary directory; at most 8
#       files: state.txt ops.log nccl.log train.log tulpar.log profile.log torch.log summary.txt.
#       DEVCHECK_ONLY="tulpar profile" runs only the steps named (env ops nccl train tulpar
#       profile torch, and sanitize: compute-sanitizer over some op-test groups, only when named).
set -uo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$SELF")/../.." || exit 1
ROOT=$PWD
PKG=$ROOT/device-pkg
BUILD=$ROOT/build-device
TARBALL=$PKG/device-pkg.tar.xz
BINARIES="tulpar tests/test_cuda_ops tests/test_comm_nccl"
PY=${PYTHON:-python3}

die() {
    echo "device_check: $*" >&2
    exit 1
}

# ---- package ------------------------------------------------------------------------------------

# Libraries the device has: glibc's own, the driver, and the big CUDA libraries (found there).
skip_lib() {
    case $1 in
    linux-vdso.so* | ld-linux* | libc.so.* | libm.so.* | libdl.so.* | libpthread.so.* | \
        librt.so.* | libresolv.so.* | libutil.so.* | libcuda.so.* | libnvidia-*)
        return 0 ;;
    esac
    return 1
}
from_device_lib() {
    case $1 in
    libcublas.so.* | libcublasLt.so.* | libnccl.so.* | libcudnn*.so.*) return 0 ;;
    esac
    return 1
}

write_wrapper() {
    cat >"$1" <<'EOF'
#!/bin/sh
# Run the packaged binary of the same name with the carried libraries first, then the GPU
# libraries device_check.sh found on this machine (TULPAR_GPU_LIBS), then the usual path.
here=$(cd "$(dirname "$0")/.." && pwd)
LD_LIBRARY_PATH="$here/lib${TULPAR_GPU_LIBS:+:$TULPAR_GPU_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
exec "$here/libexec/$(basename "$0")" "$@"
EOF
    chmod +x "$1"
}

package() {
    command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || die "nvcc not found"
    export PATH=$PATH:/usr/local/cuda/bin
    echo "== build: tools/build.sh build-device (Release, CUDA on)"
    tools/build.sh build-device -DCMAKE_BUILD_TYPE=Release -DTULPAR_CUDA=ON || die "build failed"
    grep -q "Tulpar CUDA backend: ON" "$BUILD/configure.log" || die "CUDA backend not enabled"

    local stage=$BUILD/pkg
    rm -rf "$stage" "$PKG"
    mkdir -p "$stage/bin" "$stage/libexec" "$stage/lib" "$PKG"
    local manifest=$stage/MANIFEST.txt
    {
        echo "device-pkg built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname) ($(grep -m1 PRETTY_NAME /etc/os-release))"
        echo "git: $(git rev-parse --short HEAD 2>/dev/null) (+ working tree changes)"
        echo "nvcc: $(nvcc --version | tail -1)"
        echo "binaries (libexec/, run through the bin/ wrappers):"
    } >"$manifest"
    for b in $BINARIES; do
        local name
        name=$(basename "$b")
        [ -x "$BUILD/$b" ] || die "$BUILD/$b was not built"
        cp "$BUILD/$b" "$stage/libexec/$name"
        strip --strip-unneeded "$stage/libexec/$name" 2>/dev/null || true
        write_wrapper "$stage/bin/$name"
        echo "  $name: NEEDED $(readelf -d "$BUILD/$b" | awk '/NEEDED/{gsub(/[\[\]]/,"",$5); printf "%s ", $5}')" >>"$manifest"
    done
    echo "carried libraries (lib/), from ldd:" >>"$manifest"
    local name path
    for b in $BINARIES; do
        ldd "$BUILD/$b"
    done | awk '/=> \//{print $1, $3}' | sort -u | while read -r name path; do
        if skip_lib "$name"; then
            continue
        elif from_device_lib "$name"; then
            echo "  NOT carried, found on the device: $name (here $path, $(du -Lh "$path" | cut -f1))" >>"$manifest"
        elif [ ! -e "$stage/lib/$name" ]; then
            cp -L "$path" "$stage/lib/$name"
            echo "  $name <- $path" >>"$manifest"
        fi
    done
    echo "not carried: glibc (libc, libm, libdl, libpthread, librt, libresolv, ld-linux) and the driver (libcuda)" >>"$manifest"
    echo "data: none packaged; the check reads tests/data/sample_multilingual.txt, configs/gpt2_124m.cfg and tests/cli/tulpar_test.py from the working tree and writes random GPT-2 tokens (tests/gpu/device_tools.py tokens)" >>"$manifest"
    local unpacked
    unpacked=$(du -sm "$stage" | cut -f1)
    echo "== package: $unpacked MiB unpacked; compressing"
    tar -C "$stage" -cf - . | xz -T0 -6 >"$TARBALL" || die "tar/xz failed"
    cp "$manifest" "$PKG/MANIFEST.txt"
    local packed
    packed=$(du -m "$TARBALL" | cut -f1)
    echo "   $TARBALL: $packed MiB (a device call carries at most 64 MiB with the working tree)"
    [ "$packed" -lt 56 ] || die "package too large to carry ($packed MiB)"
    cat "$PKG/MANIFEST.txt"

    # ---- checks of the package, on this machine --------------------------------------------
    echo "== checking the package here"
    local chk
    chk=$(mktemp -d /tmp/tulpar-devpkg-XXXXXX)
    tar -C "$chk" -xJf "$TARBALL" || die "cannot unpack $TARBALL"
    for b in $BINARIES; do
        name=$(basename "$b")
        local missing
        missing=$(LD_LIBRARY_PATH=$chk/lib ldd "$chk/libexec/$name" | grep "not found" || true)
        [ -z "$missing" ] || die "$name: libraries not found with the package's lib/: $missing"
    done
    "$chk/bin/test_cuda_ops" >"$chk/ops.log" 2>&1
    local rc=$?
    echo "   packaged test_cuda_ops: exit $rc ($(head -1 "$chk/ops.log"))"
    [ $rc -eq 77 ] || [ $rc -eq 0 ] || die "packaged test_cuda_ops failed to start (exit $rc)"
    "$chk/bin/test_comm_nccl" >"$chk/nccl.log" 2>&1
    rc=$?
    echo "   packaged test_comm_nccl: exit $rc ($(head -1 "$chk/nccl.log"))"
    [ $rc -eq 77 ] || [ $rc -eq 0 ] || die "packaged test_comm_nccl failed to start (exit $rc)"
    "$PY" tests/gpu/device_tools.py tokens "$chk/tok" --train 100000 --val 10000 || die "token writer"
    tput_sets "$chk/tok" 6 4 cpu fp32 2
    "$chk/bin/tulpar" train configs/gpt2_124m.cfg --run-dir "$chk/run" \
        --set model.n_layer=2 --set model.n_head=2 --set model.d_model=64 --set model.seq_len=64 \
        "${TPUT_ARGS[@]}" >"$chk/train.log" 2>&1 ||
        { tail -20 "$chk/train.log"; die "tiny CPU training through the packaged tulpar failed"; }
    "$PY" tests/gpu/device_tools.py throughput "$chk/run" --warmup 2 --peak 989e12 >"$chk/tput.json" ||
        die "throughput parser"
    echo "   packaged tulpar, tiny GPT (vocab 50257, llm.c tokens) on cpu: $(cat "$chk/tput.json")"
    for f in tests/gpu/torch_gpt_baseline.py tests/gpu/device_tools.py tests/gpu/test_cuda_train.py; do
        "$PY" -m py_compile "$f" || die "$f does not compile"
    done
    echo "   python3 -m py_compile: torch_gpt_baseline.py, device_tools.py, test_cuda_train.py ok"
    local torchpy=""
    for p in "$PY" /usr/bin/python3; do
        if "$p" -c "import torch" 2>/dev/null; then
            torchpy=$p
            break
        fi
    done
    if [ -n "$torchpy" ]; then
        "$torchpy" tests/gpu/torch_gpt_baseline.py --device cpu --tiny >"$chk/torch.log" 2>&1 ||
            { cat "$chk/torch.log"; die "torch_gpt_baseline.py --device cpu --tiny failed"; }
        echo "   torch_gpt_baseline.py --device cpu --tiny ($torchpy): ok"
    else
        echo "   (no torch here: the PyTorch baseline was only compiled)"
    fi
    rm -rf "$chk"
    echo "== package ready: $TARBALL"
    echo "   on the device: tests/gpu/device_check.sh run   (carry device-pkg)"
}

# `--set` arguments of the throughput runs into TPUT_ARGS: DATA_DIR STEPS BATCH BACKEND PRECISION
# THREADS
tput_sets() {
    local s
    TPUT_ARGS=()
    for s in "data.dir=\"$1\"" 'data.train="train.bin"' 'data.val="val.bin"' \
        "train.steps=$2" "train.batch=$3" train.grad_accum=1 train.micro_batch=0 \
        train.warmup_steps=2 'train.schedule="constant"' eval.every=0 eval.at_end=false \
        checkpoint.every=0 checkpoint.keep=1 log.every=1 "runtime.backend=\"$4\"" \
        "runtime.precision=\"$5\"" "runtime.threads=$6"; do
        TPUT_ARGS+=(--set "$s")
    done
}

# ---- run (on the GPU machine) -----------------------------------------------------------------

START=$(date +%s)
BUDGET=${DEVCHECK_BUDGET_S:-345}

left() {
    echo $((START + BUDGET - $(date +%s)))
}

# step NAME WANT_S LOG CMD...: run with timeout min(WANT_S, budget left), record the exit code.
step() {
    local name=$1 want=$2 log=$3
    shift 3
    local l t t0 rc
    l=$(left)
    t=$((want < l ? want : l))
    if [ -n "${DEVCHECK_ONLY:-}" ] && [[ " $DEVCHECK_ONLY " != *" $name "* ]]; then
        echo "rc $name skipped" >>"$STATE"
        echo "== $name: skipped (DEVCHECK_ONLY=$DEVCHECK_ONLY)"
        return
    fi
    if [ "$t" -lt 10 ]; then
        echo "rc $name notime" >>"$STATE"
        echo "== $name: not run (time budget of ${BUDGET}s spent)"
        return
    fi
    echo "== $name (timeout ${t}s, $(($(date +%s) - START))s into the check)"
    t0=$(date +%s)
    timeout -k 5 "$t" "$@" >"$log" 2>&1
    rc=$?
    echo "rc $name $rc" >>"$STATE"
    echo "   exit $rc after $(($(date +%s) - t0))s (log: $log)"
}

find_gpu_libs() {
    # Directories holding cuBLAS/cuBLASLt/NCCL that the loader does not find on its own.
    local sites lib d found dirs="" cache
    sites=$("$PY" -c 'import site,sys; print(" ".join(site.getsitepackages()+[site.getusersitepackages()]))' 2>/dev/null)
    cache=$(ldconfig -p 2>/dev/null)
    for lib in libcublas.so.13 libcublasLt.so.13 libnccl.so.2; do
        if grep -q "^[[:space:]]*$lib " <<<"$cache"; then continue; fi
        found=""
        for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
            if [ -e "$d/$lib" ]; then
                found=$d
                break
            fi
        done
        if [ -z "$found" ]; then
            for d in $sites; do
                [ -d "$d/nvidia" ] || continue
                found=$(find "$d/nvidia" -maxdepth 3 -name "$lib" -printf '%h\n' 2>/dev/null | head -1)
                [ -n "$found" ] && break
            done
        fi
        [ -n "$found" ] && case ":$dirs:" in *":$found:"*) ;; *) dirs=${dirs:+$dirs:}$found ;; esac
    done
    echo "$dirs"
}

env_report() {
    echo "--- nvidia-smi -L"
    nvidia-smi -L
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
    echo "--- nvcc: $(nvcc --version 2>/dev/null | tail -1)"
    echo "--- python3: $(command -v "$PY") $("$PY" --version 2>&1)"
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "nccl", torch.cuda.nccl.version() if torch.cuda.is_available() else None)' 2>&1 | tail -1
    echo "--- on the loader path (ldconfig -p):"
    ldconfig -p 2>/dev/null | grep -E 'libnccl|libcudart|libcublas|libcuda\.so' || echo "(none of libnccl, libcudart, libcublas)"
    echo "--- /usr/local/cuda:"
    ls -l /usr/local/cuda/lib64/libnccl* /usr/local/cuda/lib64/libcudart* \
        /usr/local/cuda/lib64/libcublas* 2>/dev/null || echo "(no libnccl/libcudart/libcublas there)"
    echo "--- in Python packages:"
    local d
    for d in $("$PY" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
        [ -d "$d/nvidia" ] && find "$d/nvidia" -maxdepth 3 \( -name 'libnccl.so*' -o -name 'libcudart.so*' -o -name 'libcublas*.so*' \)
    done
    echo "--- TULPAR_GPU_LIBS=$TULPAR_GPU_LIBS"
    echo "--- ldd of the packaged binaries with the wrappers' path (anything not found?):"
    local b
    for b in $BINARIES; do
        b=$(basename "$b")
        echo "$b: $(LD_LIBRARY_PATH=$PKG/lib:$TULPAR_GPU_LIBS ldd "$PKG/libexec/$b" | grep -E 'not found|libnccl|libcublas|libcudart|libcuda\.' | tr -s ' \t' ' ' | tr '\n' ';')"
    done
}

run_tput() {
    local work=$1
    "$PY" tests/gpu/device_tools.py tokens "$work/tok124m" --train 1048576 --val 65536 || return 1
    # 25 steps: 5 of warm-up (cuBLAS heuristics, allocations), 20 measured. The run writes one
    # 1.5 GB checkpoint at the end (checkpoint.every = 0 means end only).
    tput_sets "$work/tok124m" 25 16 cuda bf16 8
    "$PKG/bin/tulpar" train configs/gpt2_124m.cfg --run-dir "$work/tput" "${TPUT_ARGS[@]}" ||
        return 1
    rm -rf "$work/tput/checkpoints"
    "$PY" tests/gpu/device_tools.py throughput "$work/tput" --warmup 5 \
        --peak "$("$PY" tests/gpu/device_tools.py peak "${DEVCHECK_DEVICE:-}")"
}

# The same training with runtime.profile: where the step's time goes, op by op (CUDA events).
# Separate from run_tput so that the events do not touch the measured throughput. Then the
# step's products alone at the 124M shapes, on fp32 operands and on bf16 compute copies, and the
# LM head's dlogits products with padded rows (tulpar bench gemm --gpt; same log: the device tool
# brings back at most 8 files).
run_profile() {
    local work=$1
    [ -f "$work/tok124m/train.bin" ] ||
        "$PY" tests/gpu/device_tools.py tokens "$work/tok124m" --train 1048576 --val 65536 || return 1
    tput_sets "$work/tok124m" 8 16 cuda bf16 8
    "$PKG/bin/tulpar" train configs/gpt2_124m.cfg --run-dir "$work/prof" "${TPUT_ARGS[@]}" \
        --set runtime.profile=true || return 1
    rm -rf "$work/prof/checkpoints"
    # profile.json on one line, for the summary's comparison with PyTorch's kernels by class.
    "$PY" -c 'import json, sys; print(json.dumps({"tulpar_profile": json.load(open(sys.argv[1]))}))' \
        "$work/prof/profile.json"
    "$PKG/bin/tulpar" bench gemm --gpt --backend cuda --precision bf16 --iters 10
}

# compute-sanitizer's memcheck, synccheck and racecheck (the slowest, last) over op-test groups
# whose kernels index by hand and share memory between warps (DEVCHECK_SANITIZE_GROUPS narrows
# them), each tool under its own timeout so that a slow one still leaves the others' results.
run_sanitize() {
    local cs groups=${DEVCHECK_SANITIZE_GROUPS:-"layernorm embedding softmax_xent attention"} tool
    cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
    [ -n "$cs" ] || {
        echo "no compute-sanitizer on this machine"
        return 0
    }
    local rc=0
    for tool in memcheck synccheck racecheck; do
        echo "== tool $tool: $groups"
        # shellcheck disable=SC2086
        timeout -k 5 "${DEVCHECK_SANITIZE_TOOL_S:-75}" \
            "$cs" --tool "$tool" --error-exitcode 97 "$PKG/bin/test_cuda_ops" $groups || rc=1
    done
    return $rc
}

run_check() {
    [ -f "$TARBALL" ] || die "no $TARBALL: run 'tests/gpu/device_check.sh package' first and carry device-pkg"
    rm -rf "${PKG:?}/bin" "${PKG:?}/libexec" "${PKG:?}/lib"
    tar -C "$PKG" -xJf "$TARBALL" || die "cannot unpack $TARBALL"
    RES=${OUT:-$(mktemp -d /tmp/tulpar-devcheck-XXXXXX)}
    mkdir -p "$RES"
    STATE=$RES/state.txt
    : >"$STATE"
    local work
    work=$(mktemp -d /tmp/tulpar-devwork-XXXXXX)
    TULPAR_GPU_LIBS=$(find_gpu_libs)
    export TULPAR_GPU_LIBS TULPAR_PROGRESS=plain PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
    local dev
    dev=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
    echo "device ${dev:-none visible}" >>"$STATE"
    export DEVCHECK_DEVICE=$dev
    echo "== device check: ${dev:-no GPU visible}; results in $RES; budget ${BUDGET}s"
    head -3 "$PKG/MANIFEST.txt" 2>/dev/null

    # (env.log stays out of $RES: the device tool brings back at most 8 files; it is printed.)
    step env 40 "$work/env.log" "$SELF" _env
    cat "$work/env.log"

    step ops 90 "$RES/ops.log" "$PKG/bin/test_cuda_ops"
    grep -E "^testing|FAIL|test_cuda_ops:|SKIP" "$RES/ops.log" | head -25

    step nccl 60 "$RES/nccl.log" "$PKG/bin/test_comm_nccl"
    grep -E "^rank|FAIL|test_comm_nccl|SKIP" "$RES/nccl.log" | head -10

    step train 120 "$RES/train.log" "$PY" tests/gpu/test_cuda_train.py \
        --tulpar "$PKG/bin/tulpar" --source "$ROOT"
    grep -E "FAIL|loss agreement|skipped|cuda_train:" "$RES/train.log" | head -20

    step tulpar 120 "$RES/tulpar.log" "$SELF" _tput "$work"
    grep -E "^model|^step (1|5|25)/|summary:|memory:|error" "$RES/tulpar.log" | head -12
    tail -1 "$RES/tulpar.log"

    step profile 75 "$RES/profile.log" "$SELF" _profile "$work"
    sed -n '/op profile (rank/,/op profile ->/p' "$RES/profile.log" | sed 's/^[^]]*] //' | head -45
    grep -A32 '^# GPT training products' "$RES/profile.log"

    step torch 170 "$RES/torch.log" "$PY" tests/gpu/torch_gpt_baseline.py \
        --batch 16 --seq 1024 --warmup 5 --steps 20 --compile auto
    grep -vE '^\s*$' "$RES/torch.log" | grep -vE '^\{' | tail -5

    # Opt-in (named in DEVCHECK_ONLY; not part of the default run): the op test's kernels under
    # compute-sanitizer, for what the CPU emulation cannot see (out-of-bounds device accesses,
    # shared-memory races between warps, barrier misuse). Appended to ops.log: at most 8 files.
    if [[ " ${DEVCHECK_ONLY:-} " == *" sanitize "* ]]; then
        step sanitize 240 "$work/sanitize.log" "$SELF" _sanitize
        {
            echo "==== compute-sanitizer"
            cat "$work/sanitize.log"
        } >>"$RES/ops.log"
        grep -E "^== tool|ERROR SUMMARY|test_cuda_ops:|no compute-sanitizer" "$work/sanitize.log"
    fi

    rm -rf "$work"
    echo "   whole check: $(($(date +%s) - START))s"
    "$PY" tests/gpu/device_tools.py summary --dir "$RES" | tee "$RES/summary.txt"
}

case ${1:-} in
package)
    package
    ;;
run)
    run_check
    ;;
_env) # internal steps, each run by `step` under its own timeout
    env_report
    ;;
_tput)
    run_tput "$2"
    ;;
_profile)
    run_profile "$2"
    ;;
_sanitize)
    run_sanitize
    ;;
*)
    sed -n '2,30p' "$0" >&2
    exit 2
    ;;
esac
