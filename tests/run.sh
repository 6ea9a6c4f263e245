#!/usr/bin/env bash
# Runs every livefill test: Rust (unit, golden frames, diffusers parity, daemon end-to-end),
# the fuzz targets (replay + a short coverage-guided run),
# the shared Python codec, the daemon through an ssh-forwarded socket (a real sshd on
# 127.0.0.1), the GPU benchmark script rehearsed on the CPU, and the plugins inside real Krita
# and real GIMP 3.
# Installs what it needs (ONNX Runtime's library from PyPI via pip, Krita from Debian, a Debian
# trixie tree with GIMP 3) and caches it under .cache/ and /var/cache/livefill-*.
#
#   tests/run.sh            everything
#   tests/run.sh --quick    Rust + Python + ssh forwarding only (no editors)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
quick=0
[ "${1:-}" = "--quick" ] && quick=1

passed=0
failed=0
failures=()
disk_free() { df -h --output=avail,target "$root" "${TMPDIR:-/tmp}" /var/cache 2>/dev/null | tail -n +2 | tr -s ' ' | paste -sd ';'; }
step() {
    local name=$1
    shift
    echo
    echo "=== $name"
    local t0=$SECONDS
    if "$@"; then
        passed=$((passed + 1))
        echo "--- ok: $name ($((SECONDS - t0)) s)"
    else
        failed=$((failed + 1))
        failures+=("$name")
        # A full disk is the usual cause of a step that fails without saying why.
        echo "--- FAILED: $name ($((SECONDS - t0)) s; disk free:$(disk_free))"
    fi
}

echo "disk free:$(disk_free)"

# ONNX Runtime's shared library from the PyPI wheel (what livefill itself fetches on first use).
ort_version=$(bash tests/ort_version.sh) || exit 1
ort_dir=$root/.cache/ort
export ORT_DYLIB_PATH=$ort_dir/libonnxruntime.so.$ort_version
if [ ! -f "$ORT_DYLIB_PATH" ]; then
    mkdir -p "$ort_dir/wheel"
    python3 -m pip download --quiet --no-deps --only-binary=:all: "onnxruntime==$ort_version" -d "$ort_dir/wheel" || exit 1
    python3 - "$ort_dir" <<'PY' || exit 1
import glob, os, sys, zipfile
dest = sys.argv[1]
whl = sorted(glob.glob(os.path.join(dest, "wheel", "*.whl")))[-1]
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime"):
            with open(os.path.join(dest, base), "wb") as f:
                f.write(z.read(name))
PY
fi
echo "ONNX Runtime: $ORT_DYLIB_PATH"

step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets --quiet -- -D warnings
step "cargo build" cargo build --workspace --quiet
export LIVEFILL_BIN=$root/target/debug/livefill
step "cargo test" cargo test --workspace
step "python codec tests" bash protocol/python/run_tests.sh
# Every parser of outside input: the stable replay of the fuzz targets, then a short
# coverage-guided run of each (cargo-fuzz on nightly; skipped, saying so, where there is none).
step "fuzzing (short)" bash tests/fuzz/run_fuzz.sh --short
# A real sshd on 127.0.0.1 forwarding the daemon's socket (fails, saying so, without sshd).
step "daemon through an ssh-forwarded socket" bash tests/remote/test_ssh_forward.sh
# The GPU benchmark script (tests/gpu/run_on_gpu.sh) rehearsed on the CPU: tiny model, ~30 s.
step "GPU benchmark script, CPU rehearsal" bash tests/gpu/test_rehearsal.sh

export_venv() {
    # The exporter's pinned toolchain (torch + diffusers + peft, ~7 GB with torch's CUDA wheels),
    # for the export test. Kept outside the checkout so that clones share it.
    local cache=${LIVEFILL_TEST_CACHE:-${HOME:-}/.cache/livefill-tests}
    mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ] || cache=$root/.cache  # no usable HOME
    local venv=$cache/exportvenv
    if ! "$venv/bin/python" -c 'import diffusers, peft, torch, onnx' 2>/dev/null; then
        python3 -m venv "$venv" && "$venv/bin/python" -m pip install --quiet -r tests/export/requirements.txt || return 1
    fi
    # optimum's exporter needs transformers 4: a venv layered over the export venv with optimum,
    # transformers 4.57 and diffusers 0.36 (the bench's pins), for the optimum-layout test.
    local optvenv=$cache/optimumvenv
    if ! "$optvenv/bin/python" -c 'import optimum.exporters.onnx, httpx' 2>/dev/null; then
        rm -rf "$optvenv"
        "$venv/bin/python" -m venv "$optvenv" || return 1
        "$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
            >"$("$optvenv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/exportvenv.pth"
        "$optvenv/bin/pip" install --quiet --no-deps -r tests/bench/requirements-nodeps.txt || return 1
        "$optvenv/bin/pip" install --quiet httpx==0.28.1 || return 1
    fi
    LIVEFILL_EXPORT_PYTHON=$venv/bin/python LIVEFILL_OPTIMUM_PYTHON=$optvenv/bin/python \
        bash tests/export/test_export.sh
}

if [ "$quick" = 0 ]; then
    step "models export + public ONNX layouts vs diffusers" export_venv
    [ -f tests/krita/run_krita_tests.sh ] && step "krita plugin in real Krita" bash tests/krita/run_krita_tests.sh
    [ -f tests/gimp/run_gimp_tests.sh ] && step "gimp plugin in real GIMP 3" bash tests/gimp/run_gimp_tests.sh
fi

echo
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
