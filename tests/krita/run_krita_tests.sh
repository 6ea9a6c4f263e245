#!/usr/bin/env bash
# Tests the livefill Krita plugin: plain-Python logic tests, then the plugin's own code inside real
# Krita (kritarunner, offscreen) against the stand-in daemon and against the real `livefill serve`
# on the tiny fixture models (one each, then both in one daemon), Krita's zip importer on the
# plugin zip, and finally the docker in a real Krita window under Xvfb (button clicks, undo,
# screenshot).
#
# Installs what it needs on Debian/Ubuntu (krita, xvfb, imagemagick) when missing. Everything Krita
# writes goes to a temporary profile (XDG_CONFIG_HOME / XDG_DATA_HOME), never to the user's.
#
# Environment:
#   LIVEFILL_BIN      livefill binary (default: target/debug/livefill); needed for the real-daemon
#                     runs, the installer and the zip
#   ORT_DYLIB_PATH    ONNX Runtime library for the daemon
#   LIVEFILL_KRITA_SKIP_GUI=1       skip the Xvfb window test
#   LIVEFILL_KRITA_SCREENSHOT=PATH  where the screenshot goes (default target/krita-docker.png;
#                                   empty = none; the model picker's, open over the stand-in's
#                                   several models, goes to target/krita-docker-models.png).
#                                   Refresh the committed one with
#                                   LIVEFILL_KRITA_SCREENSHOT=docs/krita-docker.png
#   LIVEFILL_KRITA_FAKE_ONLY=1      only the stand-in daemon (no livefill binary/model needed)
#   LIVEFILL_KRITA_KEEP_WORK=1      keep the temporary profile, logs and result JSONs
#   LIVEFILL_KRITA_GUI_ONLY=1       only the plain tests and the window (skip the kritarunner runs)
#   LIVEFILL_KRITA_TESTS=a,b        only these tests of krita_e2e.py in the kritarunner runs (e.g.
#                                   test_daemon_killed); every other step still runs
#   LIVEFILL_LIVE_BENCH=short|full|off  the live-latency benchmark (tests/krita/live_bench.py) in
#                                   kritarunner and in the window: short (default) proves it runs,
#                                   full is what BENCHMARKS.md records; figures go to
#                                   target/live-bench-krita.json and live-bench-krita-window.json
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

LIVEFILL_BIN=${LIVEFILL_BIN:-$root/target/debug/livefill}
screenshot=${LIVEFILL_KRITA_SCREENSHOT-$root/target/krita-docker.png}
fake_only=${LIVEFILL_KRITA_FAKE_ONLY:-0}
gui_only=${LIVEFILL_KRITA_GUI_ONLY:-0}
live_bench=${LIVEFILL_LIVE_BENCH:-short}
bench_stroke=1
bench_singles=4
if [ "$live_bench" = full ]; then bench_stroke=2; bench_singles=10; fi
bench_sizes_for() { [ "$1" = full ] && echo 512,1024,2048,4096 || echo 512,2048; }
skip_gui=${LIVEFILL_KRITA_SKIP_GUI:-0}
status=0
fail() {
    echo "FAIL: $*"
    status=1
}

# ---- dependencies ------------------------------------------------------------------------------
need=()
command -v kritarunner >/dev/null || need+=(krita)
# Debian's krita only *recommends* PyQt5, without which no Python plugin loads.
/usr/bin/python3 -c "import PyQt5.QtCore, PyQt5.sip" 2>/dev/null || need+=(python3-pyqt5 python3-sip)
if [ "$skip_gui" != 1 ]; then
    command -v Xvfb >/dev/null || need+=(xvfb)
    command -v import >/dev/null || need+=(imagemagick)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "${need[@]}" \
        || { $sudo apt-get -o DPkg::Lock::Timeout=900 update \
            && $sudo apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "${need[@]}"; } \
        || { echo "cannot install ${need[*]}"; exit 1; }
fi
# Krita's Python is the system one; run the plain tests with it too.
py=/usr/bin/python3
[ -x "$py" ] || py=python3
echo "Krita: $(kritarunner --version 2>/dev/null | tail -1 || true) ($(dpkg-query -W -f='${Version}' krita 2>/dev/null || echo '?'))"

# ---- plain Python ------------------------------------------------------------------------------
echo "=== plain-Python logic tests"
$py -m unittest "$here/test_logic.py" || fail "test_logic.py"

# ---- temporary Krita profile with the plugin installed -------------------------------------------
work=$(mktemp -d /tmp/livefill-krita-test.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    [ "${LIVEFILL_KRITA_KEEP_WORK:-0}" = 1 ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
export XDG_CONFIG_HOME=$work/config XDG_DATA_HOME=$work/data XDG_CACHE_HOME=$work/cache
export XDG_RUNTIME_DIR=$work/run
mkdir -p "$XDG_CONFIG_HOME" "$XDG_DATA_HOME" "$XDG_CACHE_HOME" "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"
pykrita=$XDG_DATA_HOME/krita/pykrita
kritarc=$XDG_CONFIG_HOME/kritarc

have_bin=0
[ -x "$LIVEFILL_BIN" ] && have_bin=1
echo "=== install the plugin into $pykrita"
if [ $have_bin = 1 ] && "$LIVEFILL_BIN" install-plugin krita --help >/dev/null 2>&1; then
    "$LIVEFILL_BIN" install-plugin krita || fail "livefill install-plugin krita"
    installed_by="livefill install-plugin krita"
else
    # The binary is missing or predates the subcommand: install the same files by hand.
    mkdir -p "$pykrita/livefill_krita"
    cp "$root/plugin-krita/livefill.desktop" "$pykrita/livefill_krita.desktop"
    cp "$root"/plugin-krita/livefill_krita/*.py "$root"/plugin-krita/livefill_krita/*.html \
        "$root"/protocol/python/livefill_protocol.py "$root"/protocol/python/livefill_client.py \
        "$root"/protocol/python/livefill_plugin_core.py \
        "$root"/protocol/python/livefill_live.py "$pykrita/livefill_krita/"
    printf '[python]\nenable_livefill_krita=true\n' >"$kritarc"
    installed_by="copy (no install-plugin subcommand in $LIVEFILL_BIN)"
    [ "$fake_only" = 1 ] || fail "livefill install-plugin krita is not available in $LIVEFILL_BIN"
fi
echo "installed by: $installed_by"
[ -f "$pykrita/livefill_krita/__init__.py" ] || fail "plugin package not installed"
[ -f "$pykrita/livefill_krita/livefill_protocol.py" ] || fail "shared codec not installed"
[ -f "$pykrita/livefill_krita/livefill_plugin_core.py" ] || fail "shared plugin core not installed"
[ -f "$pykrita/livefill_krita.desktop" ] || fail "desktop file not installed"
grep -q '^enable_livefill_krita=true' "$kritarc" 2>/dev/null || fail "plugin not enabled in kritarc"

run_kritarunner() { # label results module [env...]
    local label=$1 results=$2 module=$3
    shift 3
    rm -f "$results"
    env "$@" LIVEFILL_TEST_RESULTS="$results" QT_QPA_PLATFORM=offscreen PYTHONPATH="$pykrita:$here" \
        timeout 900 kritarunner -s "$module" -f main >"$work/$label.log" 2>&1
    echo "kritarunner exit status: $? (not meaningful; the JSON is)"
    if ! "$py" "$here/check_results.py" "$results" "$label"; then
        fail "$label"
        echo "--- last lines of the kritarunner log:"
        grep -v "krita.lib.resources\|^$" "$work/$label.log" | tail -30
    fi
}

# ---- stand-in daemon ----------------------------------------------------------------------------
if [ "$gui_only" != 1 ]; then
echo "=== Krita + stand-in daemon (tests/standin_daemon.py)"
sock=$work/run/fake.sock
# The stand-in serves several models (plain default, inpainting, LCM, broken) and records what
# each request asked for, so the model picker's choices can be checked on the wire.
run_kritarunner krita-fake "$work/fake.json" krita_e2e \
    LIVEFILL_STANDIN_MODELS=several LIVEFILL_STANDIN_RECORD="$work/fake-requests.jsonl" \
    LIVEFILL_TEST_DAEMON=fake LIVEFILL_SOCKET="$sock" LIVEFILL_BIN="$here/fake_livefill.sh" \
    LIVEFILL_TEST_JOB_TIMEOUT=60 LIVEFILL_TEST_RESTART="'$here/fake_livefill.sh' serve --socket '$sock'"

# ---- real daemon --------------------------------------------------------------------------------
if [ "$fake_only" != 1 ]; then
    if [ $have_bin != 1 ]; then
        fail "no livefill binary at $LIVEFILL_BIN (set LIVEFILL_BIN, or LIVEFILL_KRITA_FAKE_ONLY=1)"
    else
        [ -n "${ORT_DYLIB_PATH:-}" ] || echo "note: ORT_DYLIB_PATH is not set; the daemon looks for ONNX Runtime itself"
        for model in tiny-sd-inpaint tiny-sd; do
            dir=$root/tests/fixtures/$model
            if [ ! -f "$dir/model_index.json" ]; then
                fail "fixture $dir is missing"
                continue
            fi
            echo "=== Krita + livefill serve --model tests/fixtures/$model"
            sock=$work/run/$model.sock
            log=$work/$model-serve.log
            run_kritarunner "krita-real-$model" "$work/real-$model.json" krita_e2e \
                LIVEFILL_TEST_DAEMON=real LIVEFILL_SOCKET="$sock" LIVEFILL_BIN="$LIVEFILL_BIN" \
                LIVEFILL_MODEL="$dir" LIVEFILL_TEST_JOB_TIMEOUT=300 \
                LIVEFILL_TEST_RESTART="'$LIVEFILL_BIN' serve --model '$dir' --socket '$sock' >>'$log' 2>&1"
        done
        # One daemon serving both fixtures: the picker's list, roles and per-action models from
        # the real daemon (the stand-in's several models above cover the rest of the picker).
        echo "=== Krita + livefill serve --model tests/fixtures/tiny-sd --model tests/fixtures/tiny-sd-inpaint"
        sock=$work/run/several.sock
        "$LIVEFILL_BIN" serve --model "$root/tests/fixtures/tiny-sd" \
            --model "$root/tests/fixtures/tiny-sd-inpaint" --socket "$sock" >"$work/several-serve.log" 2>&1 &
        several_pid=$!
        pids+=($several_pid)
        for _ in $(seq 600); do [ -S "$sock" ] && break; sleep 0.1; done
        run_kritarunner krita-real-several "$work/real-several.json" krita_e2e \
            LIVEFILL_TEST_DAEMON=real LIVEFILL_TEST_SEVERAL=1 LIVEFILL_KRITA_TESTS=test_models_real \
            LIVEFILL_SOCKET="$sock" LIVEFILL_BIN="$LIVEFILL_BIN" LIVEFILL_TEST_JOB_TIMEOUT=300
        kill $several_pid 2>/dev/null
    fi
fi

# ---- live-latency benchmark (kritarunner) ------------------------------------------------------
# tests/krita/live_bench.py against `livefill serve` on the tiny model: "short" by default (two
# sizes, 1 s strokes: it must run and print figures), "full" for BENCHMARKS.md, "off".
if [ "$fake_only" != 1 ] && [ $have_bin = 1 ] && [ "$live_bench" != off ]; then
    echo "=== live-latency benchmark in kritarunner ($live_bench)"
    sock=$work/run/bench.sock
    "$LIVEFILL_BIN" serve --model "$root/tests/fixtures/tiny-sd" --socket "$sock" >"$work/bench-serve.log" 2>&1 &
    bench_pid=$!
    pids+=($bench_pid)
    for _ in $(seq 300); do [ -S "$sock" ] && break; sleep 0.1; done
    mkdir -p "$root/target"
    run_kritarunner krita-live-bench "$work/bench-checks.json" live_bench \
        LIVEFILL_SOCKET="$sock" LIVEFILL_BIN="$LIVEFILL_BIN" LIVEFILL_BENCH_SIZES="$(bench_sizes_for "$live_bench")" \
        LIVEFILL_BENCH_STROKE_S="$bench_stroke" LIVEFILL_BENCH_SINGLE_DABS="$bench_singles" \
        LIVEFILL_BENCH_OUT="$root/target/live-bench-krita.json"
    grep -A6 "^  side |" "$work/krita-live-bench.log" || true
    kill $bench_pid 2>/dev/null
fi

# ---- zip for Krita's importer -------------------------------------------------------------------
if [ $have_bin = 1 ] && "$LIVEFILL_BIN" install-plugin krita --help 2>/dev/null | grep -q -- '--zip'; then
    echo "=== plugin zip through Krita's own importer"
    "$LIVEFILL_BIN" install-plugin krita --zip "$work/livefill-krita.zip" || fail "building the zip"
    mkdir -p "$work/zipdest"
    run_kritarunner krita-zip "$work/zip.json" krita_zip_import \
        LIVEFILL_ZIP="$work/livefill-krita.zip" LIVEFILL_ZIP_DEST="$work/zipdest"
else
    echo "=== (skipped: $LIVEFILL_BIN has no 'install-plugin krita --zip')"
fi

fi  # gui_only

# ---- the docker in a real window ----------------------------------------------------------------
if [ "$skip_gui" != 1 ]; then
    echo "=== Krita window under Xvfb: docker, buttons, undo, screenshot"
    cp "$here/gui_driver/livefill_gui_driver.desktop" "$pykrita/"
    rm -rf "$pykrita/livefill_gui_driver"
    cp -r "$here/gui_driver/livefill_gui_driver" "$pykrita/"
    printf '\n[python]\nenable_livefill_gui_driver=true\n' >>"$kritarc"
    # Merge the two [python] sections Krita would otherwise see twice.
    "$py" - "$kritarc" <<'PY'
import sys
path = sys.argv[1]
lines = open(path).read().splitlines()
out, python, seen = [], [], False
section = None
for line in lines:
    s = line.strip()
    if s.startswith("["):
        section = s
        if s == "[python]":
            continue
    if section == "[python]":
        if s:
            python.append(s)
        continue
    out.append(line)
out += ["", "[python]"] + sorted(set(python))
open(path, "w").write("\n".join(out).strip() + "\n")
PY
    gui_bin=$LIVEFILL_BIN
    gui_model=$root/tests/fixtures/tiny-sd-inpaint
    if [ $have_bin != 1 ] || [ "$fake_only" = 1 ]; then
        gui_bin=$here/fake_livefill.sh
    fi
    exec 3>"$work/display"
    Xvfb -displayfd 3 -screen 0 1600x1000x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
    pids+=($!)
    exec 3>&-
    for _ in $(seq 50); do [ -s "$work/display" ] && break; sleep 0.1; done
    export DISPLAY=:$(cat "$work/display")

    run_gui() { # phase bin screenshot bench_sizes [env...]: one Krita window session
        local phase=$1 bin=$2 shot=$3 sizes=$4
        shift 4
        local results=$work/gui-$phase.json ready=$work/gui-$phase.ready done_flag=$work/gui-$phase.shot-done
        echo "=== Krita window under Xvfb ($phase)"
        env "$@" HOME="$work/home" QT_QPA_PLATFORM=xcb LIVEFILL_BIN="$bin" LIVEFILL_MODEL="$gui_model" \
            LIVEFILL_SOCKET="$work/run/gui.sock" LIVEFILL_GUI_RESULTS="$results" PYTHONPATH="$here" \
            LIVEFILL_GUI_PHASE="$phase" \
            LIVEFILL_GUI_BENCH_SIZES="$sizes" LIVEFILL_GUI_BENCH_OUT="$root/target/live-bench-krita-window.json" \
            LIVEFILL_BENCH_STROKE_S="$bench_stroke" LIVEFILL_BENCH_SINGLE_DABS="$bench_singles" \
            LIVEFILL_GUI_SHOT_READY="$ready" LIVEFILL_GUI_SHOT_DONE="$done_flag" \
            timeout 600 krita --nosplash >"$work/krita-gui-$phase.log" 2>&1 &
        local krita_pid=$!
        pids+=($krita_pid)
        for _ in $(seq 1200); do
            [ -f "$ready" ] && break
            [ -f "$results" ] && grep -q '"done": true' "$results" && break
            kill -0 $krita_pid 2>/dev/null || break
            sleep 0.25
        done
        if [ -f "$ready" ] && [ -n "$shot" ]; then
            mkdir -p "$(dirname "$shot")"
            import -display "$DISPLAY" -window root "$shot" && echo "screenshot: $shot" || fail "screenshot"
        fi
        touch "$done_flag"
        # The window benchmark (if any) runs after the screenshot: give it time to finish.
        local wait_ticks=240
        [ -n "$sizes" ] && wait_ticks=2200
        for _ in $(seq $wait_ticks); do kill -0 $krita_pid 2>/dev/null || break; sleep 0.25; done
        kill $krita_pid 2>/dev/null
        if ! "$py" "$here/check_results.py" "$results" "krita-gui-$phase"; then
            fail "krita-gui-$phase"
            grep -iv "krita.lib.resources\|^$" "$work/krita-gui-$phase.log" | tail -30
        fi
    }

    bench_sizes=""
    [ "$live_bench" != off ] && [ "$gui_bin" = "$LIVEFILL_BIN" ] && bench_sizes=$(bench_sizes_for "$live_bench")
    run_gui main "$gui_bin" "$screenshot" "$bench_sizes"
    # The model picker against the stand-in's several models, then Krita again on the same
    # profile (the choice is kept in kritarc). Screenshot with the picker open.
    models_shot=""
    [ -n "$screenshot" ] && models_shot=$root/target/krita-docker-models.png
    gui_record=$work/gui-requests.jsonl
    run_gui models "$here/fake_livefill.sh" "$models_shot" "" \
        LIVEFILL_STANDIN_MODELS=several LIVEFILL_STANDIN_RECORD="$gui_record"
    run_gui restart "$here/fake_livefill.sh" "" "" \
        LIVEFILL_STANDIN_MODELS=several LIVEFILL_STANDIN_RECORD="$gui_record"
fi

if [ $status = 0 ]; then
    echo "krita plugin tests: all passed"
else
    echo "krita plugin tests: FAILED"
fi
exit $status
