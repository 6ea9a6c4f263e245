#!/usr/bin/env bash
# Tests the livefill GIMP plug-in in real GIMP 3 (inside a Debian trixie tree, see
# make_chroot.sh) against a real `livefill serve` running on the host on the tiny fixture models,
# plus the plain-Python logic tests.
#
#   tests/gimp/run_gimp_tests.sh             real daemon (needs LIVEFILL_BIN with `serve`)
#   tests/gimp/run_gimp_tests.sh --standin   the Python stand-in daemon (tests/standin_daemon.py;
#                                            no model, no ONNX Runtime)
#
# Environment: LIVEFILL_BIN (default target/debug/livefill), ORT_DYLIB_PATH (for the daemon),
# LIVEFILL_GIMP_CHROOT (tree location, default /var/cache/livefill-gimp-chroot),
# LIVEFILL_LIVE_BENCH (short|full|off: the live-latency benchmark, tests/gimp/gimp_live_bench.py,
# written to target/live-bench-gimp.json). The dialogs of the interactive runs are saved as
# target/gimp-dialogs/<run>/<procedure>.png.
# LIVEFILL_GIMP_ONLY=faults runs only the faults run (the daemon killed mid-job, then started
# again by the plug-in from inside the tree); LIVEFILL_GIMP_ONLY=models only the model pickers
# against the stand-in's several models.
# The daemon runs on the host with its socket inside the tree (<tree>/tmp/livefill-test-PID/),
# GIMP sees it as /tmp/livefill-test-PID/livefill.sock. The batch script writes its checks as
# JSON; this script asserts on it (gimp-console's exit status does not reflect failures).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
backend=daemon
[ "${1:-}" = "--standin" ] && backend=standin
LIVEFILL_BIN=${LIVEFILL_BIN:-$root/target/debug/livefill}

log() { echo "[gimp-tests] $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    log "needs root (debootstrap/chroot)"; exit 1
fi

log "plain-Python logic tests"
python3 -m unittest tests/gimp/test_logic.py

tree=$(bash tests/gimp/make_chroot.sh | tail -n 1)
[ -x "$tree/usr/bin/gimp-console-3.0" ] || { log "no GIMP 3 in $tree"; exit 1; }

inside=/tmp/livefill-test-$$
work=$tree$inside
daemon_pid=
proc_mounted=0
cleanup() {
    if [ -n "$daemon_pid" ]; then kill "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
    stop_socket_daemon
    if [ "$proc_mounted" = 1 ]; then umount "$tree/proc" 2>/dev/null || umount -l "$tree/proc" || true; fi
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
rm -rf "$work"
mkdir -p "$work"
if ! mountpoint -q "$tree/proc"; then mount -t proc proc "$tree/proc"; proc_mounted=1; fi

start_daemon() { # $1 = model folder ("" with the stand-in), $2 = "several": the stand-in's several models
    local sock=$work/livefill.sock
    rm -f "$sock"
    if [ "${2:-}" = several ]; then
        # Several models (plain default, inpainting, LCM, no role, broken); every request is
        # recorded where GIMP can read it ($inside/requests.jsonl).
        python3 tests/standin_daemon.py serve --socket "$sock" --models several \
            --record "$work/requests.jsonl" >"$work/daemon.log" 2>&1 &
    elif [ "$backend" = standin ]; then
        python3 tests/standin_daemon.py serve --socket "$sock" >"$work/daemon.log" 2>&1 &
    else
        "$LIVEFILL_BIN" serve --model "$1" --socket "$sock" >"$work/daemon.log" 2>&1 &
    fi
    daemon_pid=$!
    # Ready = it answers the handshake (the daemon binds its socket before loading the model).
    local t0=$SECONDS
    while [ $((SECONDS - t0)) -lt 300 ]; do
        if [ -S "$sock" ] && python3 - "$sock" <<'PY' 2>>"$work/probe.log"; then
import sys
sys.path.insert(0, "protocol/python")
import livefill_client
c = livefill_client.DaemonConnection.connect(sys.argv[1], "gimp-tests", timeout=5)
print("[gimp-tests] daemon ready: model %r, %dx%d native, %s" % (
    c.hello.model, c.hello.native_width, c.hello.native_height, c.hello.execution_provider))
c.close()
PY
            return 0
        fi
        if ! kill -0 "$daemon_pid" 2>/dev/null; then
            log "daemon exited:"; cat "$work/daemon.log" >&2; daemon_pid=; return 1
        fi
        sleep 0.5
    done
    log "daemon did not answer at $sock within 300 s"; cat "$work/daemon.log" >&2; return 1
}

stop_daemon() {
    if [ -n "$daemon_pid" ]; then kill "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
    daemon_pid=
}

# Asks whatever daemon answers at the tree's socket to exit: one the plug-in started (the faults
# run), which this script did not start and which would outlive GIMP.
stop_socket_daemon() {
    [ -S "$work/livefill.sock" ] || return 0
    python3 - "$work/livefill.sock" <<'PY' 2>/dev/null || true
import sys
sys.path.insert(0, "protocol/python")
import livefill_client
try:
    c = livefill_client.DaemonConnection.connect(sys.argv[1], "gimp-tests", timeout=5)
except Exception:
    sys.exit(0)
c.shutdown_daemon()
while c.messages.get(timeout=30) is not None:  # ShuttingDown, then None once it closed
    pass
c.close()
PY
}

install_plugin() { # $1 = GIMP profile (inside the tree, host path)
    local plug_ins=$1/plug-ins
    mkdir -p "$plug_ins"
    if [ "$backend" = daemon ] && "$LIVEFILL_BIN" install-plugin gimp --help >/dev/null 2>&1; then
        "$LIVEFILL_BIN" install-plugin gimp --dest "$plug_ins" >&2
    else
        [ "$backend" = daemon ] && log "warning: $LIVEFILL_BIN has no 'install-plugin gimp'; copying the files"
        # Same layout as `livefill install-plugin gimp` (daemon/src/plugin_install/gimp.rs).
        mkdir -p "$plug_ins/livefill"
        cp plugin-gimp/plug-ins/livefill/*.py protocol/python/livefill_protocol.py \
            protocol/python/livefill_client.py protocol/python/livefill_plugin_core.py \
            protocol/python/livefill_live.py "$plug_ins/livefill/"
        chmod 755 "$plug_ins/livefill/livefill.py"
    fi
    [ -x "$plug_ins/livefill/livefill.py" ] || { log "plug-in not installed in $plug_ins"; return 1; }
}

failures=0
# The live-latency benchmark (tests/gimp/gimp_live_bench.py): "short" by default (two sizes, one
# 1 s stroke, to prove it runs), "full" for BENCHMARKS.md, "off" to skip.
live_bench=${LIVEFILL_LIVE_BENCH:-short}
run_live_bench() {
    local home=$inside/home-bench sizes=512,2048 stroke=1 singles=4
    [ "$live_bench" = full ] && { sizes=512,1024,2048,4096; stroke=2; singles=10; }
    mkdir -p "$tree$home/.config/GIMP/3.0"
    install_plugin "$tree$home/.config/GIMP/3.0"
    cp tests/gimp/gimp_live_bench.py "$work/bench.py"
    log "live-latency benchmark in GIMP ($live_bench: sizes $sizes)"
    timeout 900 chroot "$tree" /usr/bin/env -i PATH=/usr/bin:/bin HOME="$home" LANG=C.UTF-8 \
        LIVEFILL_SOCKET="$inside/livefill.sock" LIVEFILL_BENCH_OUT="$inside/live-bench.json" \
        LIVEFILL_BENCH_SIZES="$sizes" LIVEFILL_BENCH_STROKE_S="$stroke" LIVEFILL_BENCH_SINGLE_DABS="$singles" \
        LIVEFILL_PLUGIN_DIR="$home/.config/GIMP/3.0/plug-ins/livefill" \
        sh -c "gimp-console-3.0 -idf --batch-interpreter python-fu-eval -b - --quit < $inside/bench.py" \
        >"$work/gimp-bench.log" 2>&1 || log "gimp-console exited with $? (checked through the JSON)"
    mkdir -p "$root/target"
    cp "$work/live-bench.json" "$root/target/live-bench-gimp.json" 2>/dev/null || true
    if ! python3 - "$work/live-bench.json" <<'PY'; then
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception as e:
    print("no benchmark results from GIMP (%s)" % e); sys.exit(1)
for c in r["checks"]:
    print("  %s %s%s" % ("ok  " if c["ok"] else "FAIL", c["name"], "" if c["ok"] else ": " + c["detail"]))
for x in r["results"]:
    s, g = x.get("stroke", {}), x.get("single", {})
    print("  %5d px: stroke change->preview p50 %s p90 %s ms; single dab p50 %s ms; tick p99 %s max %s ms; idle %s %%" % (
        x["side"], s.get("change_to_preview", {}).get("p50"), s.get("change_to_preview", {}).get("p90"),
        g.get("change_to_preview", {}).get("p50"), s.get("tick_ms", {}).get("p99"), s.get("tick_ms", {}).get("max"),
        x.get("idle", {}).get("busy_share_pct")))
sys.exit(0 if r.get("done") and r["checks"] and all(c["ok"] for c in r["checks"]) else 1)
PY
        failures=$((failures + 1))
        log "GIMP benchmark log, last lines:"; tail -n 30 "$work/gimp-bench.log" >&2
    fi
}

run_gimp() { # $1 = label, $2 = expectation (standin|daemon), $3 = tests to run ("" = all),
             # $4 = dialog answer for the interactive runs ("" = non-interactive, ok:MS, cancel:MS),
             # $5 = profile (default: the label's own; the same one = GIMP restarted on it),
             # $6 = fewest checks expected (default: by kind of run)
    local label=$1 out=$work/results-$1.json home=$inside/home-${5:-$1} answer=${4:-}
    local gimp="gimp-console-3.0" minimum=60
    if [ -n "$answer" ]; then gimp="xvfb-run -a gimp-3.0"; minimum=8; fi
    [ -n "$3" ] && minimum=10
    [ -n "${6:-}" ] && minimum=$6
    mkdir -p "$tree$home/.config/GIMP/3.0" "$work/shots-$label"
    install_plugin "$tree$home/.config/GIMP/3.0"
    cp tests/gimp/gimp_batch_test.py "$work/batch.py"
    log "running GIMP ($label)"
    local t0=$SECONDS
    timeout 900 chroot "$tree" /usr/bin/env -i PATH=/usr/bin:/bin HOME="$home" LANG=C.UTF-8 \
        ${gimp_env[@]+"${gimp_env[@]}"} \
        LIVEFILL_SOCKET="$inside/livefill.sock" LIVEFILL_TEST_OUT="$inside/results-$label.json" \
        LIVEFILL_TEST_EXPECT="$2" LIVEFILL_TEST_ONLY="$3" LIVEFILL_DIALOG_AUTORESPOND="$answer" \
        LIVEFILL_STANDIN_RECORD="$inside/requests.jsonl" LIVEFILL_DIALOG_DUMP="$inside/dump-$label.jsonl" \
        LIVEFILL_DIALOG_SHOT="$inside/shots-$label" \
        sh -c "$gimp -idf --batch-interpreter python-fu-eval -b - --quit < $inside/batch.py" \
        >"$work/gimp-$label.log" 2>&1 || log "gimp-console exited with $? (checked through the JSON)"
    log "GIMP ($label) took $((SECONDS - t0)) s"
    # Pictures of the dialogs (interactive runs): target/gimp-dialogs/<label>/<procedure>.png.
    if compgen -G "$work/shots-$label/*.png" >/dev/null; then
        mkdir -p "$root/target/gimp-dialogs/$label"
        cp "$work/shots-$label"/*.png "$root/target/gimp-dialogs/$label/"
    fi
    if ! python3 - "$out" "$minimum" <<'PY'; then
import json, sys
path, minimum = sys.argv[1], int(sys.argv[2])
try:
    r = json.load(open(path))
except Exception as e:
    print("no results from GIMP (%s)" % e); sys.exit(1)
bad = [c for c in r["checks"] if not c["ok"]]
for c in r["checks"]:
    print("  %s %s%s" % ("ok  " if c["ok"] else "FAIL", c["name"], "" if c["ok"] else ": " + c["detail"]))
extra = {k: v for k, v in r.items() if k != "checks"}
print("  " + json.dumps(extra))
if not r.get("done"):
    print("batch script did not finish"); sys.exit(1)
if len(r["checks"]) < minimum:
    print("only %d checks ran (expected >= %d)" % (len(r["checks"]), minimum)); sys.exit(1)
print("  %d checks, %d failed" % (len(r["checks"]), len(bad)))
sys.exit(1 if bad else 0)
PY
        failures=$((failures + 1))
        log "GIMP log ($label), last lines:"; grep -v -i scriptfu "$work/gimp-$label.log" | tail -n 40 >&2
        log "daemon log:"; tail -n 40 "$work/daemon.log" >&2 || true
    fi
}

# The daemon killed (SIGKILL) mid-job by the batch script, which then expects the next call to
# start it again from inside GIMP's tree, as the plug-in does on an artist's machine
# ($LIVEFILL_BIN, $LIVEFILL_MODEL): the livefill binary with ONNX Runtime beside it and the model
# are linked into the run's folder in the tree (with the stand-in backend: a wrapper running the
# stand-in there). The daemon this script starts is the one killed.
gimp_env=()
run_faults() {
    local dir=$work/faults
    rm -rf "$dir"
    mkdir -p "$dir/bin"
    if [ "$backend" = standin ]; then
        mkdir -p "$dir/standin/tests" "$dir/standin/protocol/python"
        cp tests/standin_daemon.py "$dir/standin/tests/"
        cp protocol/python/livefill_protocol.py "$dir/standin/protocol/python/"
        printf '#!/bin/sh\nexec python3 %s/faults/standin/tests/standin_daemon.py "$@"\n' "$inside" >"$dir/bin/livefill"
        chmod 755 "$dir/bin/livefill"
        start_daemon "" || { failures=$((failures + 1)); return; }
    else
        # The library the host's daemon loads: ORT_DYLIB_PATH, else livefill's cache.
        local ort=${ORT_DYLIB_PATH:-}
        if [ -z "$ort" ]; then
            ort=$(ls "${XDG_CACHE_HOME:-$HOME/.cache}/livefill/onnxruntime/$(bash tests/ort_version.sh)-cpu/"libonnxruntime.so* \
                2>/dev/null | sort | tail -n 1 || true)
        fi
        if [ ! -f "$ort" ]; then
            log "faults run: no ONNX Runtime library to put beside livefill in the tree (set ORT_DYLIB_PATH)"
            failures=$((failures + 1)); return
        fi
        ln -f "$LIVEFILL_BIN" "$dir/bin/livefill" 2>/dev/null || cp "$LIVEFILL_BIN" "$dir/bin/livefill"
        ln -f "$(readlink -f "$ort")" "$dir/bin/$(basename "$ort")" 2>/dev/null || cp "$ort" "$dir/bin/$(basename "$ort")"
        cp -al "$root/tests/fixtures/tiny-sd" "$dir/model" 2>/dev/null || cp -r "$root/tests/fixtures/tiny-sd" "$dir/model"
        start_daemon "$root/tests/fixtures/tiny-sd" || { failures=$((failures + 1)); return; }
    fi
    gimp_env=(LIVEFILL_BIN="$inside/faults/bin/livefill" LIVEFILL_MODEL="$inside/faults/model" TMPDIR="$inside/faults")
    run_gimp faults "$backend" faults "" "" 12
    gimp_env=()
    stop_daemon  # the one killed: reaped here
    stop_socket_daemon  # the one the plug-in started, should the batch script not have stopped it
    for started_log in "$dir"/livefill-serve-*.log; do
        [ -f "$started_log" ] || continue
        log "the daemon the plug-in started, end of its log:"; tail -n 5 "$started_log" >&2
    done
}

# The Model list, model-name and the returned model against the stand-in's several models
# (with either backend: the real daemon's several-model serving is tested on the Rust side), the
# dialogs, then GIMP again on the dialogs' profile (the choice is among GIMP's last values).
run_models() {
    start_daemon "" several
    run_gimp models standin models "" "" 20
    stop_daemon
    start_daemon "" several  # the dialogs see models not loaded yet, as after a daemon start
    # 1.5 s into each dialog the artist picks dreamshaper-8 (a plain model): the inpaint dialog
    # has it already; the live one changes from Automatic, and its warning must follow.
    gimp_env=(LIVEFILL_DIALOG_SET="model-name=dreamshaper-8@1500")
    run_gimp models-dialogs standin models ok:3000 "" 10
    gimp_env=()
    run_gimp models-restart standin models-restart ok:3000 models-dialogs 3
    stop_daemon
}

if [ "${LIVEFILL_GIMP_ONLY:-}" = faults ]; then
    run_faults
elif [ "${LIVEFILL_GIMP_ONLY:-}" = models ]; then
    run_models
elif [ "$backend" = standin ]; then
    start_daemon ""
    run_gimp standin standin ""
    run_gimp standin-dialogs standin "" ok:3000
    run_gimp standin-cancel standin "" cancel:1500
    stop_daemon
    run_faults
    run_models
else
    if ! "$LIVEFILL_BIN" serve --help >/dev/null 2>&1; then
        log "$LIVEFILL_BIN has no 'serve' command (yet); run with --standin for the stand-in daemon"
        exit 1
    fi
    [ -n "${ORT_DYLIB_PATH:-}" ] || log "warning: ORT_DYLIB_PATH is not set"
    # Every procedure on the plain tiny model, then inpainting again on the 9-channel inpaint model.
    start_daemon "$root/tests/fixtures/tiny-sd"
    run_gimp tiny-sd daemon ""
    run_gimp tiny-sd-dialogs daemon "" ok:4000
    run_gimp tiny-sd-cancel daemon "" cancel:1500
    [ "$live_bench" != off ] && run_live_bench
    stop_daemon
    start_daemon "$root/tests/fixtures/tiny-sd-inpaint"
    run_gimp tiny-sd-inpaint daemon "inpaint"
    stop_daemon
    run_faults
    run_models
fi

if [ "$failures" != 0 ]; then log "$failures GIMP run(s) failed"; exit 1; fi
log "all GIMP checks passed ($backend)"
