#!/usr/bin/env bash
# livefill vs diffusers vs optimum (ONNX Runtime), same work, same settings, one run.
#
#   tests/bench/run_bench.sh [tiny|full|all]        (default: all)
#
# tiny: tests/fixtures/tiny-sd at 64×64 (plumbing and fixed per-call costs, not model speed).
# full: a random-weight SD 1.5-architecture model (.cache/sd15-random, exported on first use by
#       tests/bench/export_full_size.py) — the meaningful one.
#
# Settings (environment; both sides always get the same ones):
#   DEVICE=cpu|cuda          (cuda: livefill --device cuda:0, optimum CUDAExecutionProvider, diffusers fp16,
#                             and the fp16 export .cache/sd15-random-fp16 for the full model)
#   THREADS=2                ONNX Runtime intra-op threads (both sides) and torch threads
#   MODES=txt2img,img2img,inpaint,live  (tiny suite)
#   FULL_MODES=inpaint,live  on CPU (all four on a GPU)
#   TINY_SIZE=64 TINY_ITER=20 TINY_WARMUP=3
#   FULL_SIZE=256 FULL_ITER=3 FULL_WARMUP=1  (CPU defaults; on a GPU use 512 / 50 / 10)
#   STEPS=4 IMPLS=diffusers,optimum  (IMPLS= empty: livefill alone, no table)
#   FULL_MODEL=dir           the full suite's model folder, used as it is (no export, no fp16 switch)
#   LAYER=N                  also time live + inpaint in an N×N layer through the same daemon
#                            (bench --layer: the plugins' pixel work and transfer) → <suite>-layer.json
#   NVIDIA_SMI=path          where present: the GPU memory in use while the daemon is up → <suite>-gpu-memory.txt
#   CUDA_GRAPH=--cuda-graph  (GPU only: livefill captures its live-preview UNet runs as CUDA graphs)
#   LIVEFILL_BIN=path        (default: cargo build --release -p livefill → target/release/livefill)
#   PY=path                  (default: .cache/benchvenv/bin/python, set up from .cache/refvenv on first use)
#   ORT_DYLIB_PATH           (default: .cache/ort/libonnxruntime.so.<ORT_VERSION> when present)
#   OUT=dir                  (default: .cache/bench/<date>) — JSON from both sides + table.md
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
suite=${1:-all}
DEVICE=${DEVICE:-cpu}
THREADS=${THREADS:-2}
MODES=${MODES:-txt2img,img2img,inpaint,live}
if [ "$DEVICE" = cpu ]; then FULL_MODES=${FULL_MODES:-inpaint,live}; else FULL_MODES=${FULL_MODES:-$MODES}; fi
STEPS=${STEPS:-4}
CUDA_GRAPH=${CUDA_GRAPH:-}
IMPLS=${IMPLS-diffusers,optimum}  # IMPLS= (empty): livefill only
TINY_SIZE=${TINY_SIZE:-64}; TINY_ITER=${TINY_ITER:-20}; TINY_WARMUP=${TINY_WARMUP:-3}
FULL_SIZE=${FULL_SIZE:-256}; FULL_ITER=${FULL_ITER:-3}; FULL_WARMUP=${FULL_WARMUP:-1}
OUT=${OUT:-$root/.cache/bench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

ort_lib=$root/.cache/ort/libonnxruntime.so.$(bash tests/ort_version.sh)
if [ -z "${ORT_DYLIB_PATH:-}" ] && [ -f "$ort_lib" ] && [ "$DEVICE" = cpu ]; then
  export ORT_DYLIB_PATH=$ort_lib
fi

# --- livefill (release) --------------------------------------------------------------------------
if [ -z "${LIVEFILL_BIN:-}" ]; then
  cargo build --release -p livefill
  LIVEFILL_BIN=$root/target/release/livefill
fi

# --- Python side: diffusers + optimum-onnx ------------------------------------------------------
# optimum-onnx 0.1.0 needs transformers < 4.58 (the reference venv has 5.x, which diffusers 0.42
# needs), so the bench venv layers its own transformers 4.57.6 / huggingface_hub 0.36.2 /
# diffusers 0.36.0 / optimum over .cache/refvenv (torch, onnxruntime 1.31.1, numpy, ...).
PY=${PY:-$root/.cache/benchvenv/bin/python}
if [ ! -x "$PY" ]; then
  ref=$root/.cache/refvenv
  [ -x "$ref/bin/python" ] || { echo "needs $ref (tests/reference/README.md) or PY=..." >&2; exit 2; }
  "$ref/bin/python" -m venv "$root/.cache/benchvenv"
  site=$("$root/.cache/benchvenv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  refsite=$("$ref/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$refsite" > "$site/refvenv.pth"
  "$root/.cache/benchvenv/bin/pip" install -q --no-deps -r tests/bench/requirements-nodeps.txt
  "$root/.cache/benchvenv/bin/pip" install -q httpx==0.28.1
  PY=$root/.cache/benchvenv/bin/python
fi

{
  echo "# livefill benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); $(free -g | awk '/Mem:/{print $2}') GiB RAM"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "livefill $("$LIVEFILL_BIN" --version 2>/dev/null || echo '?'); ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-}"
} | tee "$OUT/machine.txt"

gpu_memory() {  # suite daemon_pid label: the card's memory in use, and the daemon's own
  local smi=${NVIDIA_SMI:-nvidia-smi} total own
  command -v "$smi" >/dev/null || return 0
  total=$("$smi" --query-gpu=memory.used,memory.total --format=csv,noheader 2>/dev/null | head -1)
  own=$("$smi" --query-compute-apps=pid,used_memory --format=csv,noheader 2>/dev/null | awk -F', ' -v p="$2" '$1 == p {print $2}')
  echo "$3: card ${total:-?} (used, total); the daemon (pid $2): ${own:-not listed by nvidia-smi}" \
    | tee -a "$OUT/$1-gpu-memory.txt"
}

run_suite() {  # name model size iterations warmup modes
  local name=$1 model=$2 size=$3 iter=$4 warm=$5 modes=$6 dev_lf=cpu
  [ "$DEVICE" = cpu ] || dev_lf=cuda:0
  echo; echo "=== $name: $model ${size}x${size}, $STEPS steps, $iter timed runs (+$warm warm-up), $THREADS threads, $DEVICE ==="
  # Fresh prompts: the text encoder runs every time in livefill too, as it does in diffusers.
  "$LIVEFILL_BIN" bench --model "$model" --device "$dev_lf" --threads "$THREADS" --modes "$modes" \
    --size "$size" --steps "$STEPS" --iterations "$iter" --warmup "$warm" --fresh-prompts $CUDA_GRAPH \
    --json "$OUT/$name-livefill.json" | tee "$OUT/$name-livefill.txt"
  # Then the same requests through a daemon on the same model and settings (started only now, so
  # that its loading and warm-up do not compete with the in-process runs).
  local sock=$OUT/$name.sock daemon t0=$SECONDS
  "$LIVEFILL_BIN" serve --model "$model" --device "$dev_lf" --threads "$THREADS" $CUDA_GRAPH \
    --socket "$sock" > "$OUT/$name-daemon.log" 2>&1 &
  daemon=$!
  # shellcheck disable=SC2064  # the pid now: a failed socket run must not leave the daemon running
  trap "kill $daemon 2>/dev/null" EXIT
  until grep -q "model loaded and warmed up" "$OUT/$name-daemon.log"; do
    if ! kill -0 "$daemon" 2>/dev/null || [ $((SECONDS - t0)) -gt 900 ]; then
      echo "daemon not ready:" >&2; cat "$OUT/$name-daemon.log" >&2; kill "$daemon" 2>/dev/null; return 1
    fi
    sleep 1
  done
  gpu_memory "$name" "$daemon" "daemon loaded and warmed up"
  "$LIVEFILL_BIN" bench --socket-only --socket "$sock" --model "$model" --modes "$modes" \
    --size "$size" --steps "$STEPS" --iterations "$iter" --warmup "$warm" --fresh-prompts \
    --json "$OUT/$name-socket.json" | tee -a "$OUT/$name-livefill.txt"
  gpu_memory "$name" "$daemon" "after the timed requests"
  "$PY" - "$OUT/$name-livefill.json" "$OUT/$name-socket.json" <<'PY'
import json, sys
lf, sock = (json.load(open(p)) for p in sys.argv[1:3])
lf["socket"] = sock["socket"]
json.dump(lf, open(sys.argv[1], "w"), indent=1)
PY
  if [ -n "${LAYER:-}" ]; then
    "$LIVEFILL_BIN" bench --socket-only --socket "$sock" --model "$model" --modes live,inpaint \
      --size "$size" --layer "$LAYER" --steps "$STEPS" --iterations "$iter" --warmup "$warm" --fresh-prompts \
      --json "$OUT/$name-layer.json" | tee -a "$OUT/$name-livefill.txt"
    gpu_memory "$name" "$daemon" "after the ${LAYER}x${LAYER} layer requests"
  fi
  kill "$daemon"; wait "$daemon" || true
  trap - EXIT
  [ -n "$IMPLS" ] || return 0
  "$PY" tests/bench/bench_python.py --model "$model" --device "$DEVICE" --threads "$THREADS" \
    --modes "$modes" --size "$size" --steps "$STEPS" --iterations "$iter" --warmup "$warm" \
    --impls "$IMPLS" --json "$OUT/$name-python.json" 2>&1 | grep -v '^Multiple distributions' \
    | tee "$OUT/$name-python.txt"
  "$PY" tests/bench/compare.py "$OUT/$name-livefill.json" "$OUT/$name-python.json" --title "$name" \
    | tee -a "$OUT/table.md"
}

case $suite in
  tiny|all) run_suite tiny tests/fixtures/tiny-sd "$TINY_SIZE" "$TINY_ITER" "$TINY_WARMUP" "$MODES" ;;
esac
case $suite in
  full|all)
    if [ -n "${FULL_MODEL:-}" ]; then
      full=$FULL_MODEL
    else
      full=$root/.cache/sd15-random
      [ -f "$full/unet/model.onnx" ] || "$PY" tests/bench/export_full_size.py --out "$full"
      if [ "$DEVICE" != cpu ]; then
        [ -f "$full-fp16/unet/model.onnx" ] || "$PY" tests/bench/export_full_size.py --out "$full" --fp16-only
        full=$full-fp16
      fi
    fi
    run_suite full "$full" "$FULL_SIZE" "$FULL_ITER" "$FULL_WARMUP" "$FULL_MODES" ;;
esac
case $suite in tiny|full|all) ;; *) echo "usage: $0 [tiny|full|all]" >&2; exit 2 ;; esac
echo; echo "results in $OUT (table.md, *-livefill.json, *-python.json)"
