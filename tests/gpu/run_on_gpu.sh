#!/usr/bin/env bash
# Issue #11's GPU measurements in one command, on a machine with a GPU but no package registry
# and no Rust (what tests/gpu/stage.sh prepared travels there in a few device calls first; see
# tests/gpu/README.md). Writes $OUT/summary.md, $OUT/summary.json and $OUT/logs.tar.gz, also when
# steps fail or the time budget runs out.
#
#   bash tests/gpu/run_on_gpu.sh [options]
#
#   --device cuda|cpu     default cuda (cpu: a rehearsal; CPUExecutionProvider is then expected)
#   --size N              square side, a multiple of 64 (default 512; cpu 256, cpu --quick 64)
#   --iters N             timed runs per mode (default 50; --quick 10; cpu 3, cpu --quick 5)
#   --warmup N            untimed runs per mode first (default 10; --quick 3; cpu 1)
#   --quick               fewer runs; on cpu without --model/--models: the tiny fixture at 64²
#   --modes LIST          default txt2img,img2img,inpaint,live
#   --impls LIST          baselines: diffusers,optimum (default); empty: livefill alone
#   --only LIST           measurement steps to run, of main,diffusers,optimum,graph,fp32
#   --layer N             main also times an N×N layer through its daemon (default 2048; tiny
#                         model 256; 0: not)
#   --model DIR           one model folder for every step (no export; no fp32/fp16 pair)
#   --models DIR          where sd15-random/ and sd15-random-fp16/ are, or are exported to
#                         (default WORK/models)
#   --skip-export         never export; steps whose model is missing fail
#   --python PATH         the Python with torch (default python3)
#   --livefill PATH       the livefill binary (default: the staged one, else target/release)
#   --threads N           ONNX Runtime intra-op threads (default 1 on cuda, 2 on cpu)
#   --budget-seconds N    start no step after N s minus ~20 s kept for the summary (default 540:
#                         inside the device tool's 10-minute cap); a running step is stopped then
#   --out DIR             default $OUT
#   --work DIR            state kept between calls while the machine stays warm
#                         (default /tmp/livefill-gpu)
#   --stage DIR|none      the staged files, as carried (default .stage)
#   --receive-only        only take in what this call carried (and install the wheels)
#   --start-export        with --receive-only: start the model export in the background once the
#                         wheels are in, so that it runs while the remaining parts travel
#   -h, --help
#
# Steps, in priority order (the most important figures first if time runs out): setup, export,
# main (livefill in process, then through a daemon's socket, then a 2048² layer through that
# daemon, its GPU memory: tests/bench/run_bench.sh full), diffusers fp16, optimum CUDA EP,
# compare, graph (--cuda-graph), fp32 (vs the fp16 main run). Each is recorded; a failure does
# not stop the next.
# Exit status: 0 all ran and passed, 1 a step failed or the provider proof did, 2 bad usage.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd) || exit 2
cd "$root" || exit 2
self=$root/tests/gpu/run_on_gpu.sh
report=$root/tests/gpu/gpu_report.py
STEPS_N=4  # denoising steps: the issue's figures are for 4 (live: 2 UNet passes at strength 0.5)

usage() { sed -n '2,/^set -uo/p' "$self" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "run_on_gpu.sh: $*" >&2; exit 2; }
now() { date +%s; }
note() {  # to the console and the run's log
  local line
  line="[$(date -u +%H:%M:%S)] $*"
  echo "$line"
  if [ -n "${LFG_RUN:-}" ] && [ -d "$LFG_RUN" ]; then echo "$line" >> "$LFG_RUN/run.log"; fi
  return 0
}
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# --------------------------------------------------------------------------------- options

parse_args() {
  DEVICE=cuda SIZE='' ITERS='' WARMUP='' QUICK=0 MODES=txt2img,img2img,inpaint,live IMPLS=diffusers,optimum
  ONLY=main,diffusers,optimum,graph,fp32 LAYER='' MODEL='' MODELS='' SKIP_EXPORT=0 PY=python3
  LIVEFILL='' THREADS='' BUDGET=540 OUT_DIR=${OUT:-} WORK=/tmp/livefill-gpu STAGE=.stage
  RECEIVE_ONLY=0 START_EXPORT=0
  local arg m
  while [ $# -gt 0 ]; do
    arg=$1; shift
    case $arg in --*=*) set -- "${arg#*=}" "$@"; arg=${arg%%=*} ;; esac
    case $arg in
      -h|--help) usage; exit 0 ;;
      --quick) QUICK=1; continue ;;
      --skip-export) SKIP_EXPORT=1; continue ;;
      --receive-only) RECEIVE_ONLY=1; continue ;;
      --start-export) START_EXPORT=1; continue ;;
    esac
    [ $# -ge 1 ] || die "$arg needs a value (see --help)"
    case $arg in
      --device) DEVICE=$1 ;;
      --size) SIZE=$1 ;;
      --iters) ITERS=$1 ;;
      --warmup) WARMUP=$1 ;;
      --modes) MODES=$1 ;;
      --impls) IMPLS=$1 ;;
      --only) ONLY=$1 ;;
      --layer) LAYER=$1 ;;
      --model) MODEL=$1 ;;
      --models) MODELS=$1 ;;
      --python) PY=$1 ;;
      --livefill) LIVEFILL=$1 ;;
      --threads) THREADS=$1 ;;
      --budget-seconds) BUDGET=$1 ;;
      --out) OUT_DIR=$1 ;;
      --work) WORK=$1 ;;
      --stage) STAGE=$1 ;;
      *) die "unknown option $arg (see --help)" ;;
    esac
    shift
  done
  case $DEVICE in cuda|cpu) ;; *) die "--device is cuda or cpu, not $DEVICE" ;; esac
  for m in ${IMPLS//,/ }; do case $m in diffusers|optimum) ;; *) die "--impls: unknown $m" ;; esac; done
  for m in ${ONLY//,/ }; do case $m in main|diffusers|optimum|graph|fp32) ;; *) die "--only: unknown $m" ;; esac; done
  for m in ${MODES//,/ }; do case $m in txt2img|img2img|inpaint|live) ;; *) die "--modes: unknown $m" ;; esac; done
  [ -n "$MODES" ] || die "--modes is empty"
  if [ "$DEVICE" = cpu ] && [ "$QUICK" = 1 ] && [ -z "$MODEL" ] && [ -z "$MODELS" ]; then MODEL=tests/fixtures/tiny-sd; fi
  if [ "$(cd "${MODEL:-/nonexistent}" 2>/dev/null && pwd)" = "$root/tests/fixtures/tiny-sd" ]; then
    : "${SIZE:=64}" "${LAYER:=256}"  # the tiny fixture's native size
  fi
  if [ "$DEVICE" = cuda ]; then
    : "${SIZE:=512}" "${THREADS:=1}"
    if [ "$QUICK" = 1 ]; then : "${ITERS:=10}" "${WARMUP:=3}"; else : "${ITERS:=50}" "${WARMUP:=10}"; fi
  else
    : "${THREADS:=2}" "${WARMUP:=1}"
    if [ "$QUICK" = 1 ]; then : "${ITERS:=5}"; else : "${ITERS:=3}"; fi
  fi
  : "${SIZE:=256}" "${LAYER:=2048}"
  local v
  for m in SIZE:size ITERS:iters WARMUP:warmup LAYER:layer THREADS:threads BUDGET:budget-seconds; do
    v=${m%%:*}
    is_uint "${!v}" || die "--${m#*:} must be a whole number, not ${!v}"
  done
  { [ $(( SIZE % 64 )) = 0 ] && [ "$SIZE" -gt 0 ]; } || die "--size must be a positive multiple of 64"
  [ "$ITERS" -ge 1 ] || die "--iters must be at least 1"
  if [ "$RECEIVE_ONLY" = 0 ] && [ -z "$OUT_DIR" ]; then die "no \$OUT and no --out DIR"; fi
  PY=$(command -v "$PY") || die "no Python at $PY"
  if [ -n "$LIVEFILL" ]; then LIVEFILL=$(cd "$(dirname "$LIVEFILL")" 2>/dev/null && pwd)/$(basename "$LIVEFILL"); fi
  command -v python3 >/dev/null || die "needs python3 (the summary is written with it)"
  return 0
}

resolve_models() {
  # One folder for everything (--model), or the exported pair: fp16 for the GPU, fp32 beside it.
  TINY=0
  if [ -n "$MODEL" ]; then
    MAIN_MODEL=$(cd "$MODEL" 2>/dev/null && pwd) || die "--model $MODEL: no such folder"
    FP32_MODEL='' FP16_MODEL=''
    [ "$MAIN_MODEL" = "$root/tests/fixtures/tiny-sd" ] && TINY=1
    SKIP_EXPORT=1
  else
    : "${MODELS:=$WORK/models}"
    mkdir -p "$MODELS" || die "cannot make $MODELS"
    MODELS=$(cd "$MODELS" && pwd)
    FP32_MODEL=$MODELS/sd15-random FP16_MODEL=$MODELS/sd15-random-fp16
    if [ "$DEVICE" = cuda ]; then MAIN_MODEL=$FP16_MODEL; else MAIN_MODEL=$FP32_MODEL; fi
  fi
}

export_state() {
  # What the re-invoked step bodies read.
  export LFG_DEVICE=$DEVICE LFG_SIZE=$SIZE LFG_ITERS=$ITERS LFG_WARMUP=$WARMUP LFG_MODES=$MODES
  LFG_LAYER_ARG=$LAYER; [ "$LAYER" = 0 ] && LFG_LAYER_ARG=''
  export LFG_THREADS=$THREADS LFG_LAYER_ARG LFG_PY=$PY LFG_WORK=$WORK LFG_MAIN_MODEL=$MAIN_MODEL
  export LFG_FP32_MODEL=$FP32_MODEL LFG_FP16_MODEL=$FP16_MODEL
  export LFG_DEV_ARG=cpu LFG_EXPECTED=CPUExecutionProvider
  if [ "$DEVICE" = cuda ]; then export LFG_DEV_ARG=cuda:0 LFG_EXPECTED=CUDAExecutionProvider; fi
  export LFG_NVSMI=${NVIDIA_SMI:-nvidia-smi}
  export XDG_CONFIG_HOME=$WORK/xdg-config   # no config file's models in the daemons
  mkdir -p "$XDG_CONFIG_HOME"
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RUST_BACKTRACE=0
  unset LIVEFILL_SOCKET
}

# --------------------------------------------------------------------------------- receiving

receive() {
  # Copy what this call carried (.stage/… in the repository copy) into WORK/stage, checked
  # against the manifest (sha256); on cpu the ONNX Runtime CUDA files are not needed.
  RECEIVED_NOTE="nothing staged"
  MISSING=()
  if [ "$STAGE" = none ]; then RECEIVED_NOTE="--stage none"; return 0; fi
  mkdir -p "$WORK/stage"
  local man=$STAGE/manifest.txt
  if [ -f "$man" ]; then cp "$man" "$WORK/stage/manifest.txt"; else man=$WORK/stage/manifest.txt; fi
  [ -f "$man" ] || return 0
  touch "$WORK/stage/verified"
  local sum _size path rel dst have=0 new=0 bad=()
  while IFS=$'\t' read -r sum _size path; do
    [ -n "$path" ] || continue
    rel=${path#.stage/}
    if [ "$DEVICE" = cpu ]; then case $rel in ortgpu/*|gpu/ortpy/*) continue ;; esac; fi
    dst=$WORK/stage/$rel
    if [ -f "$dst" ] && grep -qx "$sum $rel" "$WORK/stage/verified"; then have=$((have + 1)); continue; fi
    if [ -f "$STAGE/$rel" ]; then
      mkdir -p "$(dirname "$dst")" && cp "$STAGE/$rel" "$dst.part" && mv "$dst.part" "$dst"
    fi
    if [ -f "$dst" ] && [ "$(sha256sum "$dst" | cut -d' ' -f1)" = "$sum" ]; then
      echo "$sum $rel" >> "$WORK/stage/verified"; new=$((new + 1))
    elif [ -f "$dst" ]; then bad+=("$rel"); rm -f "$dst"
    else MISSING+=("$rel"); fi
  done < "$man"
  RECEIVED_NOTE="staged files: $((have + new)) in place ($new arrived now)"
  [ ${#bad[@]} = 0 ] || RECEIVED_NOTE+="; CORRUPT (removed): ${bad[*]}"
  [ ${#MISSING[@]} = 0 ] || RECEIVED_NOTE+="; still missing: ${MISSING[*]}"
  echo "$RECEIVED_NOTE" > "$WORK/stage/status.txt"
}

# --------------------------------------------------------------------------------- setup

setup_ort() {
  # livefill's ONNX Runtime: ORT_DYLIB_PATH if given; on cuda the staged CUDA build, joined by
  # the join.sh that travels with its last part (once per warm machine).
  if [ -n "${ORT_DYLIB_PATH:-}" ]; then
    [ -f "$ORT_DYLIB_PATH" ] || { echo "ORT_DYLIB_PATH=$ORT_DYLIB_PATH does not exist"; return 1; }
    echo "ONNX Runtime: ORT_DYLIB_PATH=$ORT_DYLIB_PATH (given)"; return 0
  fi
  if [ "$DEVICE" = cpu ]; then
    local lib
    lib=$root/.cache/ort/libonnxruntime.so.$(bash tests/ort_version.sh)
    [ -f "$lib" ] && export ORT_DYLIB_PATH=$lib
    echo "ONNX Runtime: ${ORT_DYLIB_PATH:-the lookup of livefill itself (next to the binary, its cache, pip)}"; return 0
  fi
  if [ -f "$WORK/ort-env.sh" ]; then
    # shellcheck disable=SC1091
    . "$WORK/ort-env.sh"
    if [ -f "${ORT_DYLIB_PATH:-}" ]; then echo "ONNX Runtime CUDA build joined earlier: $ORT_DYLIB_PATH"; return 0; fi
    unset ORT_DYLIB_PATH
  fi
  local chunks=("$WORK"/stage/ortgpu/p*/chunk-*) join m c
  join=$(ls "$WORK"/stage/ortgpu/p*/join.sh 2>/dev/null | head -1)
  if [ ! -f "${chunks[0]}" ] || [ -z "$join" ]; then
    echo "no ONNX Runtime CUDA build: its parts or join.sh were not received ($RECEIVED_NOTE)"; return 1
  fi
  for m in "${MISSING[@]}"; do
    case $m in ortgpu/*) echo "ONNX Runtime CUDA parts incomplete: $RECEIVED_NOTE"; return 1 ;; esac
  done
  rm -rf /tmp/ortgpu-parts /tmp/ortgpu && mkdir -p /tmp/ortgpu-parts || return 1
  for c in "${chunks[@]}"; do ln "$c" /tmp/ortgpu-parts/ 2>/dev/null || cp "$c" /tmp/ortgpu-parts/ || return 1; done
  bash "$join" > "$WORK/ort-join.log" 2>&1 || { cat "$WORK/ort-join.log"; echo "join.sh failed"; return 1; }
  grep '^export ' "$WORK/ort-join.log" > "$WORK/ort-env.sh"
  # shellcheck disable=SC1091
  . "$WORK/ort-env.sh"
  [ -f "${ORT_DYLIB_PATH:-}" ] || { echo "join.sh printed no usable ORT_DYLIB_PATH"; return 1; }
  rm -rf /tmp/ortgpu-parts
  echo "ONNX Runtime CUDA build: $ORT_DYLIB_PATH; LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
}

setup_binary() {
  local bin=
  if [ -n "$LIVEFILL" ]; then bin=$LIVEFILL
  elif [ -f "$WORK/stage/gpu/bin/livefill.xz" ]; then
    bin=$WORK/bin/livefill
    if [ ! -x "$bin" ] || [ "$WORK/stage/gpu/bin/livefill.xz" -nt "$bin" ]; then
      mkdir -p "$WORK/bin"
      "$PY" -c 'import lzma, sys; open(sys.argv[2], "wb").write(lzma.open(sys.argv[1]).read())' \
        "$WORK/stage/gpu/bin/livefill.xz" "$bin" && chmod +x "$bin" || return 1
    fi
  elif [ -x target/release/livefill ]; then bin=$root/target/release/livefill
  elif [ -x target/debug/livefill ]; then bin=$root/target/debug/livefill; echo "(a debug build: slow, not for figures)"
  fi
  if [ -z "$bin" ] || [ ! -x "$bin" ]; then echo "no livefill binary (stage it, or --livefill PATH)"; return 1; fi
  "$bin" --version || { echo "$bin does not run here"; return 1; }
  export LFG_BIN=$bin
  BUILD=$(paste -sd ';' "$WORK/stage/gpu/bin/BUILD.txt" 2>/dev/null | sed 's/;/; /g')
  [ -n "$BUILD" ] || BUILD="binary $bin"
  echo "livefill: $bin"
}

setup_python() {
  # The baselines' wheels into WORK/site (first on PYTHONPATH, so that transformers 4.57 etc.
  # shadow the machine's newer ones); onnxruntime-gpu's Python package into WORK/site-ort, put on
  # PYTHONPATH by the optimum step alone (the export keeps the machine's onnxruntime).
  local wheels=("$WORK"/stage/gpu/wheels/*.whl) key
  if [ -f "${wheels[0]}" ]; then
    key=$(cd "$WORK/stage/gpu/wheels" && ls | sha256sum | cut -c1-16)
    if [ "$(cat "$WORK/site/.installed" 2>/dev/null)" != "$key" ]; then
      rm -rf "$WORK/site"
      "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/site" "${wheels[@]}" || { echo "pip install of the staged wheels failed"; return 1; }
      echo "$key" > "$WORK/site/.installed"
    fi
    case ":${PYTHONPATH:-}:" in *":$WORK/site:"*) ;; *) export PYTHONPATH=$WORK/site${PYTHONPATH:+:$PYTHONPATH} ;; esac
    echo "wheels in $WORK/site: $(cd "$WORK/stage/gpu/wheels" && ls | sed 's/-py3-.*//; s/-cp3.*//' | tr '\n' ' ')"
  else
    echo "no staged wheels: $PY's own packages"
  fi
  export LFG_SITE_ORT=
  local tarball=$WORK/stage/gpu/ortpy/ort-py.tar.xz suffix lib
  if [ "$DEVICE" = cuda ] && [ -f "$tarball" ]; then
    suffix=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
    if [ ! -f "$WORK/site-ort/.installed" ]; then
      rm -rf "$WORK/site-ort" && mkdir -p "$WORK/site-ort"
      "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$tarball" "$WORK/site-ort" || return 1
      touch "$WORK/site-ort/.installed"
    fi
    if ! ls "$WORK/site-ort/onnxruntime/capi/"*"$suffix" >/dev/null 2>&1; then
      echo "onnxruntime-gpu's Python module is not built for this Python ($suffix): optimum cannot use CUDA"
    elif [ -n "${ORT_DYLIB_PATH:-}" ]; then
      for lib in "$(dirname "$ORT_DYLIB_PATH")"/lib*; do ln -sf "$lib" "$WORK/site-ort/onnxruntime/capi/"; done
      export LFG_SITE_ORT=$WORK/site-ort
      echo "onnxruntime-gpu Python package: $WORK/site-ort (libraries linked from $(dirname "$ORT_DYLIB_PATH"))"
    else
      echo "onnxruntime-gpu Python package unpacked, but no ONNX Runtime CUDA libraries to link"
    fi
  fi
  "$PY" - <<'PY' || true
import importlib
from importlib.metadata import version
out = []
for name in ("torch", "diffusers", "transformers", "huggingface_hub", "tokenizers", "optimum", "onnx", "onnxruntime"):
    try:
        m = importlib.import_module(name)
        v = getattr(m, "__version__", None)
        if v is None:
            v = version("optimum") if name == "optimum" else "?"
        out.append(f"{name} {v}")
    except Exception as e:  # noqa: BLE001
        out.append(f"{name} missing" if isinstance(e, ModuleNotFoundError) else f"{name} BROKEN ({str(e)[:80]})")
print("python packages: " + ", ".join(out))
PY
}

machine_report() {  # → RUN/machine.txt
  {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "uname: $(uname -srm)"
    echo "os: $(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-?}")"
    echo "cpus: $(nproc); memory: $(free -g 2>/dev/null | awk '/Mem:/{print $2 " GiB"}'); load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "livefill: $("$LFG_BIN" --version 2>&1); ${BUILD:-}"
    echo "ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-}"
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
    echo "PYTHONPATH=${PYTHONPATH:-}"
    echo "staged: ${RECEIVED_NOTE:-}"
    echo
    if command -v "$LFG_NVSMI" >/dev/null; then
      "$LFG_NVSMI"
      "$LFG_NVSMI" --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit --format=csv
    else
      echo "nvidia-smi: not found"
    fi
    echo
    "$PY" - <<'PY'
import sys
print("python", sys.version.split()[0], sys.executable)
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
          "available", torch.cuda.is_available())
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        print("device", p.name, f"{p.total_memory / 2**30:.0f} GiB", f"sm_{p.major}{p.minor}", p.multi_processor_count, "SMs")
except Exception as e:  # noqa: BLE001
    print("torch: unavailable:", e)
PY
    echo
    echo "livefill doctor:"
    timeout 60 "$LFG_BIN" doctor | sed 's/\x1b\[[0-9;]*m//g'
  } > "$LFG_RUN/machine.txt" 2>&1
}

gpu_name() {
  command -v "$LFG_NVSMI" >/dev/null || return 0
  "$LFG_NVSMI" --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1
}

# --------------------------------------------------------------------------------- GPU memory

sampler_loop() {  # one line a second: the card's memory, and each compute process's
  local t q pid used cmd
  while :; do
    t=$(date +%s.%N | cut -c1-14)
    q=$("$LFG_NVSMI" --query-gpu=memory.used,memory.total,utilization.gpu --format=csv,noheader,nounits 2>/dev/null | head -1)
    [ -n "$q" ] && echo "$t,${q// /}" >> "$LFG_RUN/gpu-mem.csv"
    "$LFG_NVSMI" --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null |
      while IFS=', ' read -r pid used; do
        [ -n "$pid" ] || continue
        cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-160)
        echo "$t,$pid,$used,${cmd//,/ }" >> "$LFG_RUN/gpu-apps.csv"
      done
    sleep 1
  done
}

# --------------------------------------------------------------------------------- step bodies
# Each runs as `bash run_on_gpu.sh __step NAME` under timeout (its own process group, so that a
# daemon it started goes with it), with the state in LFG_* variables.

show() { echo "+ $*"; echo "[$STEP_NAME] $*" >> "$LFG_RUN/commands.txt"; }

complete_model() {  # every component of a full export, not a half-written one
  local c
  [ -n "$1" ] || return 1
  for c in text_encoder unet vae_encoder vae_decoder taesd_decoder taesd_encoder; do
    [ -f "$1/$c/model.onnx" ] || return 1
  done
}

body_export() {
  local rc=0 args=() t0
  t0=$(date +%s)
  if [ "$LFG_DEVICE" = cuda ]; then
    if complete_model "$LFG_FP32_MODEL"; then args=(--fp16-only); else args=(--fp16); fi
  fi
  mkdir -p "$(dirname "$LFG_FP32_MODEL")"
  show "$LFG_PY" tests/bench/export_full_size.py --out "$LFG_FP32_MODEL" "${args[@]}"
  "$LFG_PY" tests/bench/export_full_size.py --out "$LFG_FP32_MODEL" "${args[@]}" || rc=$?
  echo "$(( $(date +%s) - t0 ))" > "$LFG_WORK/export.seconds"
  echo "$rc" > "$LFG_WORK/export.rc"
  return "$rc"
}

running() {  # pid: alive, and not a zombie that nobody reaps (its parent call has ended)
  kill -0 "$1" 2>/dev/null && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]
}

export_running() {  # the background export an earlier call started is still at work
  local pid
  pid=$(cat "$LFG_WORK/export.pid" 2>/dev/null) || return 1
  running "$pid" && [ ! -f "$LFG_WORK/export.rc" ]
}

wait_export() {  # wait for that export, if it still runs
  local pid
  export_running || return 1
  pid=$(cat "$LFG_WORK/export.pid")
  echo "waiting for the export an earlier call started (pid $pid; log export-background.log)"
  while running "$pid" && [ ! -f "$LFG_WORK/export.rc" ]; do sleep 1; done
  tail -n 20 "$LFG_WORK/export-background.log"
  [ "$(cat "$LFG_WORK/export.rc" 2>/dev/null)" = 0 ]
}

run_bench() {  # OUT MODES CUDA_GRAPH LAYER: tests/bench/run_bench.sh full, livefill alone, this run's settings
  local cmd=(env DEVICE="$LFG_DEVICE" THREADS="$LFG_THREADS" FULL_SIZE="$LFG_SIZE" FULL_ITER="$LFG_ITERS"
    FULL_WARMUP="$LFG_WARMUP" STEPS="$STEPS_N" FULL_MODES="$2" FULL_MODEL="$LFG_MAIN_MODEL" IMPLS=
    CUDA_GRAPH="$3" LAYER="$4" NVIDIA_SMI="$LFG_NVSMI" LIVEFILL_BIN="$LFG_BIN" PY="$LFG_PY" OUT="$1"
    bash tests/bench/run_bench.sh full)
  show "${cmd[@]}"
  "${cmd[@]}"
}

body_python() {  # diffusers | optimum: the work run_bench.sh asks of bench_python.py
  local impl=$1
  mkdir -p "$LFG_RUN/$impl"
  if [ "$impl" = optimum ] && [ "$LFG_DEVICE" = cuda ]; then
    [ -n "${LFG_SITE_ORT:-}" ] || { echo "no onnxruntime-gpu Python package (see setup-python.log): optimum cannot use CUDA"; return 1; }
    export PYTHONPATH=$LFG_SITE_ORT:${PYTHONPATH:-}
  fi
  "$LFG_PY" -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.__file__, o.get_available_providers())'
  local args=(tests/bench/bench_python.py --model "$LFG_MAIN_MODEL" --device "$LFG_DEVICE" --threads "$LFG_THREADS"
    --modes "$LFG_MODES" --size "$LFG_SIZE" --steps "$STEPS_N" --iterations "$LFG_ITERS" --warmup "$LFG_WARMUP"
    --impls "$impl" --json "$LFG_RUN/$impl/full-python.json")
  show "$LFG_PY" "${args[@]}"
  "$LFG_PY" "${args[@]}" 2>&1 | grep -v '^Multiple distributions'
}

body_compare() {
  mkdir -p "$LFG_RUN/compare"
  local inputs=() i
  for i in diffusers optimum; do [ -f "$LFG_RUN/$i/full-python.json" ] && inputs+=("$LFG_RUN/$i/full-python.json"); done
  [ ${#inputs[@]} -gt 0 ] || { echo "no baseline results to compare"; return 1; }
  python3 "$report" merge --out "$LFG_RUN/compare/full-python.json" "${inputs[@]}" || return 1
  show python3 tests/bench/compare.py main/full-livefill.json compare/full-python.json
  python3 tests/bench/compare.py "$LFG_RUN/main/full-livefill.json" "$LFG_RUN/compare/full-python.json" \
    --title "livefill vs the baselines" | tee "$LFG_RUN/compare/table.md"
}

body_fp32() {  # the fp32 export, in process only (one load), against the main run's fp16
  mkdir -p "$LFG_RUN/fp32"
  # shellcheck disable=SC2054  # live,inpaint is one argument
  local args=(bench --model "$LFG_FP32_MODEL" --device "$LFG_DEV_ARG" --threads "$LFG_THREADS" --modes live,inpaint
    --size "$LFG_SIZE" --steps "$STEPS_N" --iterations "$LFG_ITERS" --warmup "$LFG_WARMUP" --fresh-prompts
    --json "$LFG_RUN/fp32/full-livefill.json")
  show livefill "${args[@]}"
  "$LFG_BIN" "${args[@]}"
}

step_body() {  # NAME
  STEP_NAME=$1
  case $1 in
    export)  # the last call waits for a background export (that export itself does not)
      if [ -z "${LFG_BACKGROUND:-}" ]; then
        if wait_export; then return 0; fi
        if [ -f "$LFG_WORK/export.rc" ] && [ "$(cat "$LFG_WORK/export.rc")" != 0 ]; then
          # Not again: it would most likely fail the same way, and spend the budget doing so.
          echo "the export an earlier call started failed (exit $(cat "$LFG_WORK/export.rc")); not retried" \
            "(remove $LFG_WORK/export.rc to retry):"
          tail -n 30 "$LFG_WORK/export-background.log"
          return 1
        fi
      fi
      body_export ;;
    main) run_bench "$LFG_RUN/main" "$LFG_MODES" "" "$LFG_LAYER_ARG" ;;
    diffusers|optimum) body_python "$1" ;;
    compare) body_compare ;;
    graph) run_bench "$LFG_RUN/graph" live,inpaint --cuda-graph "" ;;
    fp32) body_fp32 ;;
    *) echo "unknown step $1"; return 2 ;;
  esac
}

# --------------------------------------------------------------------------------- the runner

record() {  # name status rc start end note
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$(( $5 - $4 ))" "$6" >> "$LFG_RUN/steps.tsv"
}

skip() {  # name reason
  record "$1" skipped "" "$(now)" "$(now)" "$2"
  note "--- $1: skipped ($2)"
}

failure_line() {  # log → the line that says why (an error if there is one, else the last)
  { grep -E 'Error|error:|ERROR|Exception|FAILED|cannot|no such' "$1" || grep -v '^ *$' "$1"; } 2>/dev/null |
    tail -n 1 | cut -c1-200 | tr '\t|' '  '
}

step() {  # name need_seconds title; returns the step's exit status, 99 when not started
  local name=$1 need=$2 title=$3 left t0 rc status tpid why=
  left=$(( DEADLINE - $(now) - RESERVE ))
  if [ "$left" -lt "$need" ]; then
    record "$name" "not started" "" "$(now)" "$(now)" "budget: ${left} s left before the summary, needs ~${need} s"
    note "--- $name: not started (budget: ${left} s left, needs ~${need} s)"
    return 99
  fi
  note "=== $name: $title (at most ${left} s; log $name.log)"
  t0=$(now)
  timeout --kill-after=10 "$left" bash "$self" __step "$name" > "$LFG_RUN/$name.log" 2>&1 &
  tpid=$!
  CURRENT_STEP=$tpid
  wait "$tpid"; rc=$?
  CURRENT_STEP=
  kill -TERM -- -"$tpid" 2>/dev/null  # whatever the step left running (timeout leads its group)
  case $rc in
    0) status=ok ;;
    124|137) status=timeout; why="stopped at the budget" ;;
    *) status=FAILED ;;
  esac
  [ "$status" = FAILED ] && why=$(failure_line "$LFG_RUN/$name.log")
  record "$name" "$status" "$rc" "$t0" "$(now)" "$why"
  note "--- $name: $status (exit $rc, $(( $(now) - t0 )) s)"
  if [ "$status" != ok ]; then
    FAILURES=$((FAILURES + 1))
    tail -n 12 "$LFG_RUN/$name.log" | sed 's/^/    | /'
  fi
  return "$rc"
}

check_providers() {  # step step_rc: the proof, from the step's JSON and logs; loud on a fallback
  local name=$1 out rc
  out=$(python3 "$report" providers --step "$name" --dir "$LFG_RUN/$name" --log "$LFG_RUN/$name.log" \
    --device "$DEVICE" --step-ok "$([ "$2" = 0 ] && echo 1 || echo 0)" --tsv "$LFG_RUN/providers.tsv" 2>&1)
  rc=$?
  echo "$out" | sed 's/^/    /'
  if [ $rc != 0 ]; then
    PROVIDER_FAILURES=$((PROVIDER_FAILURES + 1))
    note "!!! $name: NOT PROVEN that every session ran on $LFG_EXPECTED (see above)"
  fi
}

wanted() { [[ ",$ONLY," == *",$1,"* ]]; }
impl_wanted() { [[ ",$IMPLS," == *",$1,"* ]]; }

run_setup() {  # the setup steps, recorded like the others (no subshells: they export)
  local part t0 rc log last
  for part in receive ort binary python; do
    t0=$(now) log=$LFG_RUN/setup-$part.log
    case $part in
      receive) receive > "$log" 2>&1; rc=$?; echo "$RECEIVED_NOTE" >> "$log" ;;
      ort) setup_ort > "$log" 2>&1; rc=$? ;;
      binary) setup_binary > "$log" 2>&1; rc=$? ;;
      python) setup_python > "$log" 2>&1; rc=$? ;;
    esac
    last=$(grep -v '^ *$' "$log" | tail -n 1 | cut -c1-200 | tr '\t|' '  ')
    record "setup: $part" "$([ $rc = 0 ] && echo ok || echo FAILED)" "$rc" "$t0" "$(now)" "$last"
    note "--- setup $part: $([ $rc = 0 ] && echo ok || echo FAILED): $last"
    [ $rc = 0 ] || FAILURES=$((FAILURES + 1))
    printf -v "SETUP_${part^^}" %s "$rc"
  done
}

start_background_export() {
  # While later calls bring the ONNX Runtime parts: the export needs only torch + diffusers + onnx.
  [ "$SKIP_EXPORT" = 1 ] && return 0
  if complete_model "$MAIN_MODEL"; then echo "models already exported"; return 0; fi
  local pid
  pid=$(cat "$WORK/export.pid" 2>/dev/null) && running "$pid" && [ ! -f "$WORK/export.rc" ] &&
    { echo "export already running (pid $pid)"; return 0; }
  "$PY" -c 'import diffusers, torch, onnx' 2>/dev/null || { echo "export not started: diffusers/torch/onnx not importable yet"; return 0; }
  rm -f "$WORK/export.rc"
  LFG_BACKGROUND=1 setsid nohup bash "$self" __step export > "$WORK/export-background.log" 2>&1 < /dev/null &
  echo $! > "$WORK/export.pid"
  echo "export started in the background (pid $!, log $WORK/export-background.log)"
}

write_meta() {  # what the summary reports about the run (values through the environment)
  M_STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ) M_GPU=$(gpu_name) M_VERSION=$("$LFG_BIN" --version 2>/dev/null) \
  M_PYVER=$(grep -h '^python packages: ' "$LFG_RUN/setup-python.log" 2>/dev/null | cut -c18-) \
  M_DEVICE=$DEVICE M_SIZE=$SIZE M_ITERS=$ITERS M_WARMUP=$WARMUP M_THREADS=$THREADS M_BUDGET=$BUDGET \
  M_MODES=$MODES M_IMPLS=$IMPLS M_ONLY=$ONLY M_LAYER=$LAYER M_MAIN=$MAIN_MODEL M_FP32=$FP32_MODEL \
  M_TINY=$TINY M_EXPECTED=$LFG_EXPECTED M_BUILD=${BUILD:-} M_ORT=${ORT_DYLIB_PATH:-} M_QUICK=$QUICK \
  M_ARGV=$ARGV M_STAGED=${RECEIVED_NOTE:-} python3 - "$LFG_RUN/meta.json" <<'PY'
import json, os, sys
e = os.environ
ints = ("size", "iters", "warmup", "threads", "budget", "layer")
keys = dict(started="M_STARTED", gpu="M_GPU", livefill_version="M_VERSION", python_versions="M_PYVER",
            device="M_DEVICE", size="M_SIZE", iters="M_ITERS", warmup="M_WARMUP", threads="M_THREADS",
            budget="M_BUDGET", modes="M_MODES", impls="M_IMPLS", only="M_ONLY", layer="M_LAYER",
            main_model="M_MAIN", fp32_model="M_FP32", expected_provider="M_EXPECTED", build="M_BUILD",
            ort_lib="M_ORT", argv="M_ARGV", staged="M_STAGED")
meta = {k: (int(e[v]) if k in ints else e.get(v, "")) for k, v in keys.items()}
meta["tiny_model"] = e.get("M_TINY") == "1"
meta["quick"] = e.get("M_QUICK") == "1"
json.dump(meta, open(sys.argv[1], "w"), indent=1)
PY
}

finish() {  # exit_code: the summary, the logs, always
  local code=$1
  trap - TERM INT
  [ -n "${SAMPLER:-}" ] && kill "$SAMPLER" 2>/dev/null
  cp "$WORK/export-background.log" "$WORK/ort-join.log" "$LFG_RUN/" 2>/dev/null
  if [ -f "$WORK/commands.txt" ]; then  # the background export's command, first
    { sed 's/^\[export\]/[export, in the background, from an earlier call]/' "$WORK/commands.txt"
      cat "$LFG_RUN/commands.txt" 2>/dev/null; } > "$LFG_RUN/commands.all" && mv "$LFG_RUN/commands.all" "$LFG_RUN/commands.txt"
  fi
  python3 - "$LFG_RUN/meta.json" "$code" "$(( $(now) - START ))" <<'PY'
import json, sys
p, code, elapsed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    m = json.load(open(p))
except (OSError, ValueError):
    m = {}
m.update(exit=code, elapsed=elapsed)
json.dump(m, open(p, "w"), indent=1)
PY
  mkdir -p "$OUT_DIR"
  python3 "$report" summary --run "$LFG_RUN" --out "$OUT_DIR" || code=1
  tar -C "$(dirname "$LFG_RUN")" --exclude='*.sock' -czf "$OUT_DIR/logs.tar.gz" "$(basename "$LFG_RUN")"
  note "wrote $OUT_DIR/summary.md, summary.json, logs.tar.gz ($(du -k "$OUT_DIR/logs.tar.gz" | cut -f1) KiB); exit $code"
  echo
  sed -n '1,/^## Steps/p' "$OUT_DIR/summary.md" | sed '$d'
  exit "$code"
}

on_signal() {
  note "!!! interrupted: writing the summary of what ran"
  [ -n "${CURRENT_STEP:-}" ] && kill -TERM -- -"$CURRENT_STEP" 2>/dev/null
  record interrupted FAILED 143 "$(now)" "$(now)" "the script got a signal"
  finish 1
}

receive_only() {  # calls before the last: take in the parts; maybe start the export
  export LFG_RUN=$WORK
  receive
  echo "$RECEIVED_NOTE"
  setup_python > "$WORK/setup-python.log" 2>&1 || echo "setup of the Python packages FAILED:"
  tail -n 3 "$WORK/setup-python.log"
  if [ "$START_EXPORT" = 1 ]; then start_background_export; fi
  if command -v "$LFG_NVSMI" >/dev/null; then "$LFG_NVSMI" -L; fi
  if [ -n "$OUT_DIR" ]; then mkdir -p "$OUT_DIR" && cp "$WORK/stage/status.txt" "$OUT_DIR/receive.txt" 2>/dev/null; fi
  exit 0
}

measure() {  # the measurement steps, in priority order
  # Seconds a step needs at least to be worth starting (loads dominate: the UNet's CUDA session
  # with exhaustive cuDNN search, torch's random init of 860 M parameters).
  local need_main=90 need_py=60 need_other=60 rc impl title
  if [ "$TINY" = 1 ]; then need_main=5 need_py=15 need_other=5
  elif [ "$QUICK" = 1 ]; then need_main=60 need_py=45 need_other=40
  fi
  if wanted main; then
    step main "$need_main" "livefill in process, then through a daemon's socket$([ "$LAYER" = 0 ] || echo ", then a ${LAYER}² layer through it") (run_bench.sh full)"
    rc=$?; [ $rc = 99 ] || check_providers main $rc
  else skip main "--only"; fi
  for impl in diffusers optimum; do
    if ! wanted "$impl"; then skip "$impl" "--only"; continue; fi
    if ! impl_wanted "$impl"; then skip "$impl" "--impls"; continue; fi
    title="$impl on the same model and settings"
    [ "$DEVICE" = cuda ] && [ "$impl" = diffusers ] && title+=" (torch fp16)"
    [ "$DEVICE" = cuda ] && [ "$impl" = optimum ] && title+=" (ONNX Runtime CUDA EP)"
    step "$impl" "$need_py" "$title"
    rc=$?; [ $rc = 99 ] || check_providers "$impl" $rc
  done
  if [ -f "$LFG_RUN/main/full-livefill.json" ] && ls "$LFG_RUN"/*/full-python.json >/dev/null 2>&1; then
    step compare 3 "the side-by-side table (compare.py)"
  fi
  if wanted graph; then
    step graph "$need_other" "livefill with --cuda-graph (live previews' UNet runs captured, replayed)"
    rc=$?; [ $rc = 99 ] || check_providers graph $rc
  else skip graph "--only"; fi
  if ! wanted fp32; then skip fp32 "--only"
  elif [ -z "$FP32_MODEL" ]; then skip fp32 "--model given: no fp32/fp16 pair"
  elif [ "$DEVICE" = cpu ]; then skip fp32 "cpu: the main run is on the fp32 model already"
  else
    step fp32 "$need_other" "livefill on the fp32 export (vs the fp16 main run)"
    rc=$?; [ $rc = 99 ] || check_providers fp32 $rc
  fi
}

main() {
  ARGV="$*"
  parse_args "$@"
  START=$(now) RESERVE=20
  DEADLINE=$(( START + BUDGET ))
  FAILURES=0 PROVIDER_FAILURES=0 MISSING=() RECEIVED_NOTE='' SAMPLER='' CURRENT_STEP=''
  mkdir -p "$WORK" || die "cannot make $WORK"
  WORK=$(cd "$WORK" && pwd)
  resolve_models
  export_state
  [ "$RECEIVE_ONLY" = 1 ] && receive_only

  mkdir -p "$WORK/runs" "$OUT_DIR" || die "cannot make $WORK/runs or $OUT_DIR"
  LFG_RUN=$WORK/runs/run-$(date -u +%Y%m%d-%H%M%S)-$$
  export LFG_RUN
  mkdir -p "$LFG_RUN" && ln -sfn "$LFG_RUN" "$WORK/runs/latest"
  trap on_signal TERM INT
  note "run_on_gpu.sh $ARGV → $LFG_RUN (budget ${BUDGET} s, device $DEVICE, ${SIZE}², $ITERS timed + $WARMUP warm-up runs)"

  run_setup
  if [ "${SETUP_BINARY:-1}" != 0 ]; then note "!!! no livefill binary: its steps will fail"; export LFG_BIN=/nonexistent/livefill; fi
  machine_report
  write_meta
  if command -v "$LFG_NVSMI" >/dev/null; then bash "$self" __sampler & SAMPLER=$!; fi

  if [ "$SKIP_EXPORT" = 1 ]; then
    skip export "$([ -n "$MODEL" ] && echo "--model given" || echo "--skip-export")"
  elif ! export_running && complete_model "$MAIN_MODEL" && { [ "$DEVICE" = cpu ] || complete_model "$FP32_MODEL"; }; then
    if [ -f "$WORK/export.seconds" ]; then
      skip export "done by an earlier call in the background in $(cat "$WORK/export.seconds") s (export-background.log)"
    else
      skip export "models already in $MODELS"
    fi
  else
    step export 60 "export the SD 1.5-architecture random model ($([ "$DEVICE" = cuda ] && echo "fp32 + fp16" || echo fp32))"
  fi
  complete_model "$MAIN_MODEL" || note "!!! no complete model at $MAIN_MODEL: the measurements will fail"

  measure
  local code=0
  { [ "$FAILURES" = 0 ] && [ "$PROVIDER_FAILURES" = 0 ]; } || code=1
  [ "$PROVIDER_FAILURES" = 0 ] || note "!!! CPU FALLBACK or no proof of $LFG_EXPECTED in $PROVIDER_FAILURES step(s): those figures are not GPU figures"
  finish "$code"
}

case ${1:-} in
  __step) shift; step_body "$@"; exit ;;
  __sampler) sampler_loop; exit ;;
esac
main "$@"
