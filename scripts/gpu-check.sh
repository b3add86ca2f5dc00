#!/usr/bin/env bash
# The CUDA backend's GPU checks, in two steps, because the GPU machine has no Rust toolchain:
#
#   scripts/gpu-check.sh build        here: builds the parity-test and benchmark binaries (release)
#                                     into target/gpu-check/
#   scripts/gpu-check.sh run [WHAT]   there, from the repository root with target/gpu-check carried
#                                     along: runs WHAT (tests, bench, or all, the default) and
#                                     writes every log under $OUT
#
# "run" needs an NVIDIA driver and a Python with PyTorch built for CUDA (its bundled NVIDIA wheels
# provide libnvrtc; PyTorch itself is the benchmark's reference). Set PYTHON to pick the Python,
# PRESETS to bench fewer presets (default: shakespeare-char gpt2-124m). Tests and benchmarks fit
# a 10-minute command each; run them as two commands where that is the limit.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=target/gpu-check

# The path of the test binary cargo builds for test target $1.
test_binary() {
    cargo test --release --locked --no-run --test "$1" --message-format=json |
        python3 -c '
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == sys.argv[1] \
            and msg.get("executable"):
        print(msg["executable"])
' "$1"
}

build() {
    rm -rf "$bundle"
    mkdir -p "$bundle"
    cargo build --release --locked --example cuda_bench
    cp target/release/examples/cuda_bench "$bundle/"
    cp "$(test_binary integration)" "$bundle/integration"
    # Debug info would take most of the carry allowance; panics still name their functions.
    strip --strip-debug "$bundle"/*
    du -sh "$bundle"/*
}

# Puts PyTorch's libnvrtc on the loader's path. A private libnvrtc.so link makes it findable
# whatever its major version (the backend's loader asks for libnvrtc.so first).
setup_nvrtc() {
    local lib links
    lib=$("$PYTHON" - <<'PY'
import glob, os, site, sys
for root in site.getsitepackages() + [site.getusersitepackages()]:
    for path in sorted(glob.glob(os.path.join(root, "nvidia", "**", "libnvrtc.so*"), recursive=True)):
        if "builtins" not in path and ".alt." not in path:
            print(path)
            sys.exit(0)
sys.exit(1)
PY
    ) || {
        echo "gpu-check: no libnvrtc.so* under $PYTHON's site-packages (PyTorch with CUDA?)" >&2
        exit 1
    }
    links=$(mktemp -d)
    ln -s "$lib" "$links/libnvrtc.so"
    export LD_LIBRARY_PATH="$links:$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "gpu-check: NVRTC from $lib"
}

run() {
    local what=${1:-all} status=0
    : "${OUT:?set OUT to the folder for the logs}"
    PYTHON=${PYTHON:-python3}
    [[ -x $bundle/integration ]] || {
        echo "gpu-check: no $bundle; run 'scripts/gpu-check.sh build' first and carry it" >&2
        exit 1
    }
    setup_nvrtc
    export MLWF_GPU_TESTS=1 MLWF_KERNEL_CACHE="$OUT/kernel-cache"
    nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true
    if [[ $what == all || $what == tests ]]; then
        "$bundle/integration" train::numerics::cuda --test-threads=1 2>&1 | tee "$OUT/parity.log" || status=1
    fi
    if [[ $what == all || $what == bench ]]; then
        for preset in ${PRESETS:-shakespeare-char gpt2-124m}; do
            for precision in bf16 tf32 fp32; do
                "$bundle/cuda_bench" "$preset" "$precision" 2>&1 |
                    tee "$OUT/mlwf-$preset-$precision.txt" || status=1
            done
            # PyTorch in its fast mode only (torch.compile takes minutes per configuration).
            "$PYTHON" benches/torch_gpt.py --preset "$preset" --device cuda --precision bf16 \
                --compile --matmul 2>&1 |
                tee "$OUT/torch-$preset-bf16.txt" || status=1
        done
    fi
    return "$status"
}

case ${1:-} in
build) build ;;
run) run "${2:-all}" ;;
*)
    echo "usage: scripts/gpu-check.sh build | run [tests|bench|all]" >&2
    exit 2
    ;;
esac
