#!/usr/bin/env bash
# Stages, HERE (package registries and Rust at hand), everything tests/gpu/run_on_gpu.sh needs on
# a GPU machine that has neither, and prints the device calls that carry it there: each call
# sends the working tree plus at most 8 "carried" ignored paths, 64 MiB in all.
#
#   tests/gpu/stage.sh [--skip-build] [--no-ort] [--ort-wheel FILE] [--call-mib N]
#
#   --skip-build      reuse target/release/livefill (else: cargo build --release -p livefill)
#   --no-ort          stage no ONNX Runtime CUDA build (no download; the plan then lacks it)
#   --ort-wheel FILE  the onnxruntime-gpu wheel to use instead of downloading it
#   --call-mib N      what one call may carry, working tree included (default 60; the limit is 64)
#
# Writes, git-ignored:
#   .stage/cache/        the onnxruntime-gpu wheel (~190 MB), downloaded once, reused; never carried
#   .stage/ortgpu/pK/    its libraries in parts + join.sh (../shared/device/stage-ort-gpu.sh)
#   .stage/gpu/bin/      livefill (release, stripped, xz) + BUILD.txt
#   .stage/gpu/ortpy/    onnxruntime-gpu's Python package without its libraries (optimum's side)
#   .stage/gpu/wheels/   the baselines' wheels: tests/bench/requirements-nodeps.txt + httpx/httpcore
#   .stage/manifest.txt  sha256, size and path of each of those files (run_on_gpu.sh checks them)
#   .stage/calls.txt     the device calls, in order (also printed)
#
# Run it in the checkout the session was started in: the device tool sends that one.
set -uo pipefail

die() { echo "stage.sh: $*" >&2; exit 1; }
say() { echo "stage.sh: $*"; }

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

skip_build=0
no_ort=0
ort_wheel=
call_mib=60
while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --skip-build) skip_build=1; shift ;;
    --no-ort) no_ort=1; shift ;;
    --ort-wheel) [ $# -ge 2 ] || die "--ort-wheel needs a file"; ort_wheel=$2; shift 2 ;;
    --call-mib) [ $# -ge 2 ] && [[ $2 =~ ^[0-9]+$ ]] || die "--call-mib needs a number"; call_mib=$2; shift 2 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

root=$(git rev-parse --show-toplevel 2>/dev/null) || die "run it inside the livefill checkout"
cd "$root" || exit 1
ort_version=$(bash tests/ort_version.sh) || die "tests/ort_version.sh failed"
ort_script=${ORT_STAGE_SCRIPT:-$root/../shared/device/stage-ort-gpu.sh}
# The GPU machine's Python (KINDS: 3.12, x86-64, manylinux 2.28-era glibc).
pip_target=(--only-binary=:all: --python-version 3.12 --implementation cp
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
stage=.stage
mib() { echo $(( ($1 + 1048575) / 1048576 )); }   # bytes → MiB, rounded up

ensure_ignored() {
  # .gitignore already ignores /.stage/; a checkout without that line gets it in info/exclude.
  mkdir -p "$stage"
  git check-ignore -q "$stage/x" && return 0
  local exclude
  exclude=$(git rev-parse --git-path info/exclude) || return 1
  mkdir -p "$(dirname "$exclude")" && echo '/.stage/' >> "$exclude"
}

tree_bytes() {
  # What every call sends anyway: tracked files plus untracked files git does not ignore.
  (git ls-files -z; git ls-files -z --others --exclude-standard) | python3 -c '
import os, sys
names = set(n for n in sys.stdin.buffer.read().split(b"\0") if n)
print(sum(os.lstat(n).st_size for n in names if os.path.isfile(n) and not os.path.islink(n)))'
}

build_binary() {
  mkdir -p "$stage/gpu/bin"
  if [ "$skip_build" = 0 ]; then
    say "cargo build --release -p livefill (minutes on a small machine)"
    nice cargo build --release -p livefill --quiet || return 1
  fi
  [ -x target/release/livefill ] || { echo "no target/release/livefill (leave out --skip-build)" >&2; return 1; }
  strip -o "$stage/gpu/bin/livefill" target/release/livefill || return 1
  local stripped
  stripped=$(stat -c %s "$stage/gpu/bin/livefill")
  rm -f "$stage/gpu/bin/livefill.xz"
  xz -9 -T0 "$stage/gpu/bin/livefill" || return 1
  {
    echo "$(target/release/livefill --version), commit $(git rev-parse HEAD)$(git diff --quiet HEAD -- daemon protocol Cargo.lock || echo ' + uncommitted changes')"
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -srm), $(rustc --version 2>/dev/null); ONNX Runtime pin $ort_version"
    echo "stripped $stripped bytes, xz $(stat -c %s "$stage/gpu/bin/livefill.xz") bytes"
  } > "$stage/gpu/bin/BUILD.txt"
  say "$(paste -sd ';' "$stage/gpu/bin/BUILD.txt")"
}

fetch_ort_wheel() {
  mkdir -p "$stage/cache"
  if [ -n "$ort_wheel" ]; then
    [ -f "$ort_wheel" ] || { echo "no such wheel: $ort_wheel" >&2; return 1; }
    cp -n "$ort_wheel" "$stage/cache/" || return 1
  fi
  if ! ls "$stage"/cache/onnxruntime_gpu-"$ort_version"-*.whl >/dev/null 2>&1; then
    say "downloading onnxruntime-gpu $ort_version (~190 MB, once: kept in $stage/cache)" >&2
    python3 -m pip download -q --no-deps "${pip_target[@]}" -d "$stage/cache" "onnxruntime-gpu==$ort_version" >&2 || return 1
  fi
  ls "$stage"/cache/onnxruntime_gpu-"$ort_version"-*.whl | head -1
}

stage_ort_parts() {  # part_mib
  # stage-ort-gpu.sh appends to .git/info/exclude, which a worktree does not have as a folder,
  # and sizes parts from the tree it runs in: run it in a scratch repository under .stage/, with
  # our part size and our cached wheel (pip reads PIP_NO_INDEX / PIP_FIND_LINKS).
  [ -x "$ort_script" ] || [ -f "$ort_script" ] || { echo "no $ort_script" >&2; return 1; }
  local scratch=$stage/ortrun
  rm -rf "$scratch" "$stage/ortgpu"
  mkdir -p "$scratch" && git -C "$scratch" init -q || return 1
  (cd "$scratch" && PIP_NO_INDEX=1 PIP_FIND_LINKS="$root/$stage/cache" bash "$ort_script" "$ort_version" "$1") \
    > "$stage/ortgpu.log" 2>&1 || { cat "$stage/ortgpu.log" >&2; return 1; }
  mv "$scratch/.stage/ortgpu" "$stage/ortgpu" && rm -rf "$scratch" || return 1
  grep -E '^(working tree|made|  part)' "$stage/ortgpu.log" | sed 's/^/  stage-ort-gpu.sh: /'
}

pack_ort_python() {  # wheel
  # Everything of the wheel but onnxruntime/capi/lib* (those travel as the parts above and are
  # linked in there): the Python module optimum's ORT pipelines import, CUDA build.
  mkdir -p "$stage/gpu/ortpy"
  python3 - "$1" "$stage/gpu/ortpy/ort-py.tar.xz" <<'PY' || return 1
import io, os, sys, tarfile, zipfile
whl, dst = sys.argv[1:3]
kept = 0
with zipfile.ZipFile(whl) as z, tarfile.open(dst, "w:xz") as t:
    for info in z.infolist():
        base = os.path.basename(info.filename)
        if info.is_dir() or (info.filename.startswith("onnxruntime/capi/") and base.startswith("lib")):
            continue
        data = z.read(info)
        ti = tarfile.TarInfo(info.filename)
        ti.size = len(data)
        ti.mode = 0o755 if base.endswith(".so") else 0o644
        t.addfile(ti, io.BytesIO(data))
        kept += len(data)
print(f"  onnxruntime-gpu Python package without libraries: {kept} bytes → {os.path.getsize(dst)} xz")
PY
  echo "$(basename "$1")" > "$stage/gpu/ortpy/WHEEL.txt"
}

fetch_wheels() {
  rm -rf "$stage/gpu/wheels" && mkdir -p "$stage/gpu/wheels"
  # The machine has torch, onnx, transformers 5, httpx, ... but no diffusers/optimum, and
  # transformers 4.57 (optimum-onnx's bound) needs huggingface_hub < 1 and tokenizers <= 0.23.0.
  python3 -m pip download -q --no-deps "${pip_target[@]}" -d "$stage/gpu/wheels" \
    -r tests/bench/requirements-nodeps.txt httpx==0.28.1 httpcore==1.0.9 || return 1
  say "wheels: $(ls "$stage/gpu/wheels" | tr '\n' ' ')"
}

write_manifest() {
  local f
  : > "$stage/manifest.txt"
  # What travels: the parts' folders and the payload (not .stage/ortgpu/join.sh, a copy of pN's).
  for f in $(find "$stage"/ortgpu/p[0-9]* "$stage/gpu" -type f 2>/dev/null | sort); do
    printf '%s\t%s\t%s\n' "$(sha256sum "$f" | cut -d' ' -f1)" "$(stat -c %s "$f")" "$f" >> "$stage/manifest.txt"
  done
}

plan_calls() {  # tree_mib
  # First fit, in this order: the wheels first (the first call can then start the model export,
  # which needs no ONNX Runtime CUDA build, while the parts travel), the binary, the rest.
  python3 - "$1" "$call_mib" "$stage" <<'PY'
import os, sys
tree, cap_total, stage = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def size(p):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(p) for f in fs)
items = [p for p in (f"{stage}/gpu/wheels", f"{stage}/gpu/bin", f"{stage}/gpu/ortpy") if os.path.isdir(p)]
parts = sorted((p for p in os.listdir(f"{stage}/ortgpu")) if os.path.isdir(f"{stage}/ortgpu") else [],
               key=lambda s: int(s[1:]) if s[1:].isdigit() else 0)
items += [f"{stage}/ortgpu/{p}" for p in parts if p.startswith("p")]
manifest = os.path.getsize(f"{stage}/manifest.txt")
cap = cap_total * 1048576 - tree * 1048576 - manifest
calls = []
for it in items:
    s = size(it)
    if s > cap:
        sys.exit(f"{it} ({s / 1048576:.1f} MiB) does not fit in one call ({cap / 1048576:.1f} MiB beside the tree)")
    for c in calls:
        if c["bytes"] + s <= cap and len(c["carry"]) < 8:
            c["carry"].append(it); c["bytes"] += s; break
    else:
        calls.append({"carry": [f"{stage}/manifest.txt", it], "bytes": s + manifest})
n = len(calls)
lines = [f"Device calls ({n}), one straight after the other (the machine goes back 30 s after a call, and",
         "with it everything written outside the repository copy). Each sends the working tree",
         f"(~{tree} MiB) plus what it carries; the limit is 64 MiB.", ""]
for i, c in enumerate(calls, 1):
    last = i == n
    cmd = ("bash tests/gpu/run_on_gpu.sh --budget-seconds B" if last
           else "bash tests/gpu/run_on_gpu.sh --receive-only --start-export")
    total = tree + c["bytes"] / 1048576
    lines.append(f"call {i}/{n}: ~{total:.0f} MiB in all ({c['bytes'] / 1048576:.1f} MiB carried)")
    lines.append(f"  carry:     {c['carry']}")
    lines.append(f"  command:   {cmd}")
    lines.append(f"  timeout_s: {600 if last else 180}")
lines += ["",
          "B (seconds the last call may use for measurements): min(560, budget_left_s - 60), with",
          "budget_left_s from the device tool's status just before that call; the script stops",
          "starting measurements when B runs out and always writes $OUT/summary.md, summary.json",
          "and logs.tar.gz. Then give the machine back (give_back).",
          "If a call lands on a fresh machine (what earlier calls left in /tmp is gone), the last",
          "call's summary names the missing files: redo the calls that carry them, then the last."]
print("\n".join(lines))
PY
}

ensure_ignored || die "could not make .stage/ ignored"
command -v xz >/dev/null || die "needs xz"
command -v strip >/dev/null || die "needs strip (binutils)"

build_binary || die "building the binary failed"
fetch_wheels || die "downloading the wheels failed"
tree=$(mib "$(tree_bytes)")
part_mib=$(( call_mib - tree - 1 ))
say "working tree ~${tree} MiB; a call may carry $(( call_mib - tree )) MiB more; ORT parts of ${part_mib} MiB"
[ "$part_mib" -ge 8 ] || die "the working tree leaves too little room per call"
if [ "$no_ort" = 0 ]; then
  wheel=$(fetch_ort_wheel) || die "getting the onnxruntime-gpu wheel failed"
  pack_ort_python "$wheel" || die "packing onnxruntime-gpu's Python package failed"
  stage_ort_parts "$part_mib" || die "stage-ort-gpu.sh failed"
else
  rm -rf "$stage/ortgpu" "$stage/gpu/ortpy"
  say "--no-ort: no ONNX Runtime CUDA build staged (run_on_gpu.sh --device cuda then needs ORT_DYLIB_PATH)"
fi
write_manifest
plan_calls "$tree" > "$stage/calls.txt" || { cat "$stage/calls.txt"; die "planning the calls failed"; }
echo
cat "$stage/calls.txt"
