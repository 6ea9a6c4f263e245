#!/usr/bin/env bash
# Fuzzing of everything livefill parses from outside input (frames, requests, ONNX headers,
# .npy, config.toml, prompts): the harnesses are the `fuzz/` crate (see fuzz/README.md).
#
#   tests/fuzz/run_fuzz.sh [--short|--long] [TARGET...]
#
# 1. Stable replay (always): rustfmt + clippy of fuzz/, then `cargo test` of fuzz/ on the stable
#    toolchain: every target on every corpus file and fixture, plus 3000 deterministic mutations
#    per target (LIVEFILL_FUZZ_MUTATIONS), in a debug build (overflow checks) with the
#    allocation cap. Shares ./target with the workspace build.
# 2. Coverage-guided (needs `cargo +nightly` and cargo-fuzz; cargo-fuzz is installed with
#    `cargo install cargo-fuzz` when nightly is there and it is not): builds the libFuzzer
#    binaries once (fuzz/target, cached), then runs the targets one at a time:
#      --short (default)  LIVEFILL_FUZZ_SECONDS (25) seconds per target
#      --long             LIVEFILL_FUZZ_RUNS (10000000) executions per target, at most
#                         LIVEFILL_FUZZ_MAX_SECONDS (2400) seconds each
#    New inputs go to fuzz/work/corpus/<target>/ (kept, so coverage builds up across runs), the
#    committed seeds in fuzz/corpus/<target>/ are read only; crashes land in
#    fuzz/artifacts/<target>/; logs and a summary (executions, seconds, cov, ft, corpus) in
#    fuzz/work/. Without nightly or cargo-fuzz this part is skipped and says so loudly; the
#    exit status is then the replay's.
# Exit status: 0 when the replay passed and no fuzzer found anything.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

mode=short
targets=()
for arg in "$@"; do
    case $arg in
        --short) mode=short ;;
        --long) mode=long ;;
        -*) echo "usage: $0 [--short|--long] [TARGET...]" >&2; exit 2 ;;
        *) targets+=("$arg") ;;
    esac
done
all_targets=(client_frames daemon_frames request onnx_header npy config tokenizer)
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")

# Longest input per target (the seeds fit; the tokenizer, ~1000 runs/s at 4 KiB, gets 128 bytes,
# enough to overflow CLIP's 75 tokens), and its dictionary in fuzz/dicts/.
declare -A max_len=([client_frames]=4096 [daemon_frames]=4096 [request]=4096
    [onnx_header]=16384 [npy]=8192 [config]=4096 [tokenizer]=128)
declare -A dict=([client_frames]=frames [daemon_frames]=frames [request]=frames
    [onnx_header]=onnx_header [npy]=npy [config]=config [tokenizer]=tokenizer)

failed=0
t0=$SECONDS

echo "=== fuzz: stable replay (fmt, clippy, corpus + mutations)"
manifest=(--manifest-path fuzz/Cargo.toml)
stable=(--no-default-features --target-dir "$root/target")
if cargo fmt "${manifest[@]}" -- --check &&
    cargo clippy "${manifest[@]}" "${stable[@]}" --all-targets --quiet -- -D warnings &&
    cargo test "${manifest[@]}" "${stable[@]}" --quiet -- --nocapture; then
    echo "--- ok: stable replay ($((SECONDS - t0)) s)"
else
    echo "--- FAILED: stable replay"
    failed=1
fi

skip() {
    echo
    echo "!!! SKIPPED: coverage-guided fuzzing: $1"
    echo "!!! Only the stable replay ran. To fuzz: rustup toolchain install nightly && cargo install cargo-fuzz"
    exit "$failed"
}

if ! cargo +nightly --version >/dev/null 2>&1; then
    skip "no nightly toolchain (cargo +nightly)"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "=== installing cargo-fuzz"
    cargo install cargo-fuzz --quiet || skip "cargo-fuzz is not installed and could not be installed"
fi

# Rust code only (no unsafe in the parsers), so no sanitizer: twice the executions; overflow
# checks and debug assertions on; the allocation cap of fuzz/src/alloc_cap.rs stands in for
# ASan's malloc limit.
fuzz_flags=(--sanitizer none --debug-assertions)
echo
echo "=== fuzz: building the libFuzzer targets ($(cargo +nightly --version), $(cargo fuzz --version))"
b0=$SECONDS
if ! (cd fuzz && cargo +nightly fuzz build "${fuzz_flags[@]}" >"$root/fuzz/build.log" 2>&1); then
    tail -n 40 fuzz/build.log
    echo "--- FAILED: cargo fuzz build (log: fuzz/build.log)"
    exit 1
fi
echo "--- built ($((SECONDS - b0)) s)"

mkdir -p fuzz/work/logs
summary=fuzz/work/summary-$mode.txt
printf '%-14s %12s %8s %7s %8s %12s  %s\n' target executions seconds cov ft corpus result >"$summary"
for target in "${targets[@]}"; do
    if [ -z "${max_len[$target]:-}" ]; then
        echo "unknown target $target (targets: ${all_targets[*]})" >&2
        exit 2
    fi
    if [ "$mode" = long ]; then
        budget=(-runs="${LIVEFILL_FUZZ_RUNS:-10000000}" -max_total_time="${LIVEFILL_FUZZ_MAX_SECONDS:-2400}")
    else
        budget=(-max_total_time="${LIVEFILL_FUZZ_SECONDS:-25}")
    fi
    work=fuzz/work/corpus/$target
    mkdir -p "$work" "fuzz/artifacts/$target"
    log=fuzz/work/logs/$mode-$target.log
    echo
    echo "=== fuzz: $target (${budget[*]}, -max_len=${max_len[$target]})"
    s0=$SECONDS
    # Paths relative to fuzz/, where cargo fuzz runs.
    (cd fuzz && cargo +nightly fuzz run "${fuzz_flags[@]}" "$target" "work/corpus/$target" "corpus/$target" -- \
        "${budget[@]}" -max_len="${max_len[$target]}" -dict="dicts/${dict[$target]}.dict" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/") >"$log" 2>&1
    rc=$?
    elapsed=$((SECONDS - s0))
    # "Done N runs" at a normal end, else the last status line's "#N"; cov/ft/corp from it.
    stats=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    runs=$(grep -oE '^Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' | tail -n 1)
    [ -n "$runs" ] || runs=$(grep -oE '^#[0-9]+' <<<"$stats" | tr -d '#')
    cov=$(grep -oE 'cov: [0-9]+' <<<"$stats" | grep -oE '[0-9]+')
    ft=$(grep -oE 'ft: [0-9]+' <<<"$stats" | grep -oE '[0-9]+')
    corpus=$(grep -oE 'corp: [0-9]+/[0-9]+[A-Za-z]*' <<<"$stats" | cut -d' ' -f2)
    if [ "$rc" = 0 ]; then
        result=ok
    else
        result="FAILED (rc $rc)"
        failed=1
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|allocation of|Test unit written' "$log" | head -n 20
        echo "log: $log; reproduce: (cd fuzz && cargo +nightly fuzz run ${fuzz_flags[*]} $target artifacts/$target/<file>)"
    fi
    printf '%-14s %12s %8s %7s %8s %12s  %s\n' "$target" "${runs:-?}" "$elapsed" "${cov:-?}" "${ft:-?}" \
        "$corpus" "$result" | tee -a "$summary"
done

echo
cat "$summary"
echo "fuzz ($mode): $((SECONDS - t0)) s in all; summary in $summary"
exit "$failed"
