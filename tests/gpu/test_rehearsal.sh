#!/usr/bin/env bash
# CPU rehearsal of tests/gpu/run_on_gpu.sh, for tests/run.sh (~20 s): the tiny fixture, livefill
# alone, a stand-in nvidia-smi. Checks the options, the provider proof (CPUExecutionProvider
# here), the summary and the logs, the stop at the budget, and the receive / background-export
# flow of the calls before the last (with a stand-in Python whose "export" takes 8 s).
#
#   LIVEFILL_BIN=target/debug/livefill ORT_DYLIB_PATH=... bash tests/gpu/test_rehearsal.sh
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
root=$PWD
bin=${LIVEFILL_BIN:-$root/target/debug/livefill}
[ -x "$bin" ] || { echo "needs a livefill binary (cargo build; LIVEFILL_BIN=...)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() {  # description command...
  if "${@:2}"; then echo "ok: $1"; else echo "FAILED: $1"; fails=$((fails + 1)); fi
}
has() { grep -qF -- "$2" "$1" || { echo "  ($1 lacks: $2)"; return 1; }; }
run() { NVIDIA_SMI=$root/tests/gpu/standin-nvidia-smi bash tests/gpu/run_on_gpu.sh "$@"; }

# Options.
check "--help" bash -c 'bash tests/gpu/run_on_gpu.sh --help | grep -q -- --budget-seconds'
bash tests/gpu/run_on_gpu.sh --device gpu --out "$tmp/x" > /dev/null 2>&1
check "a bad option is refused (exit 2)" test $? = 2

# 1. Everything livefill measures, on the tiny fixture.
run --device cpu --quick --impls= --stage none --livefill "$bin" --work "$tmp/w1" --out "$tmp/o1" > "$tmp/r1.log" 2>&1
rc=$?
check "the rehearsal exits 0" test $rc = 0
s=$tmp/o1/summary.md
check "summary: every step ran" has "$s" "every step that ran succeeded"
check "summary: the provider proof" has "$s" "CPUExecutionProvider shown for every session checked"
check "summary: daemon's hello checked" has "$s" "| main | livefill daemon (its hello) | full-livefill.json | CPUExecutionProvider | ok |"
check "summary: the goals table" has "$s" "| live img2img, 2 UNet passes + TAESD decode, 64², in process | ≤ 15 ms p50 |"
check "summary: CUDA-graph table" has "$s" "| mode | in process, plain | in process, graphs |"
check "summary: the layer through the socket" has "$s" "| mode | layer via socket |"
check "summary: the daemon's own GPU memory" has "$s" "daemon loaded and warmed up: card 2612 MiB"
check "summary: GPU memory per step" has "$s" "livefill serve (daemon): 2100"
check "summary.json and logs.tar.gz" test -s "$tmp/o1/summary.json" -a -s "$tmp/o1/logs.tar.gz"
check "logs.tar.gz holds the daemon log" bash -c "tar -tzf '$tmp/o1/logs.tar.gz' | grep -q main/full-daemon.log"
check "no more than 8 files come back" test "$(find "$tmp/o1" -type f | wc -l)" -le 8
[ $rc = 0 ] || tail -n 30 "$tmp/r1.log"

# 2. The budget: nothing starts when the summary's reserve is all that is left.
run --device cpu --quick --impls= --stage none --livefill "$bin" --work "$tmp/w2" --out "$tmp/o2" \
  --budget-seconds 21 > "$tmp/r2.log" 2>&1
check "budget: exit 0, summary written" test $? = 0 -a -s "$tmp/o2/summary.md"
check "budget: steps not started" has "$tmp/o2/summary.md" "| main | not started | 0 | budget:"

# 3. The calls before the last: receive (checked against the manifest), background export.
mkdir -p "$tmp/stage/gpu/bin"
echo "stand-in build" > "$tmp/stage/gpu/bin/BUILD.txt"
printf '%s\t%s\t%s\n' "$(sha256sum "$tmp/stage/gpu/bin/BUILD.txt" | cut -d' ' -f1)" 15 .stage/gpu/bin/BUILD.txt \
  0000 1 .stage/gpu/wheels/not-sent-yet.whl > "$tmp/stage/manifest.txt"
cat > "$tmp/python" <<'PY'
#!/usr/bin/env bash
# Stand-in Python: "imports" the export's packages, and "exports" a model in 8 s.
case "$1 ${2:-}" in
  "-c import diffusers"*) exit 0 ;;
  "tests/bench/export_full_size.py "*)
    out=$3; sleep 8
    for c in text_encoder unet vae_encoder vae_decoder taesd_decoder taesd_encoder; do
      mkdir -p "$out/$c" "$out-fp16/$c"; : > "$out/$c/model.onnx"; : > "$out-fp16/$c/model.onnx"
    done
    echo "stand-in export of $out"; exit 0 ;;
esac
exec python3 "$@"
PY
chmod +x "$tmp/python"
run --device cpu --receive-only --start-export --stage "$tmp/stage" --python "$tmp/python" --work "$tmp/w3" \
  --out "$tmp/o3" > "$tmp/r3.log" 2>&1
check "receive-only exits 0" test $? = 0
check "receive: the file that came is checked in" has "$tmp/o3/receive.txt" "1 in place (1 arrived now)"
check "receive: the one still to come is named" has "$tmp/o3/receive.txt" "still missing: gpu/wheels/not-sent-yet.whl"
check "the export started in the background" has "$tmp/r3.log" "export started in the background"
run --device cpu --stage "$tmp/stage" --python "$tmp/python" --livefill "$bin" --work "$tmp/w3" --out "$tmp/o4" \
  --impls= --only= > "$tmp/r4.log" 2>&1
check "the last call waits for that export" has "$tmp/w3/runs/latest/export.log" "waiting for the export an earlier call started"
check "... and records it" has "$tmp/o4/summary.md" "| export | ok |"

echo
echo "$fails failed"
[ "$fails" = 0 ]
