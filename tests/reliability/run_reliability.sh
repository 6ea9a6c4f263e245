#!/usr/bin/env bash
# Prints the figures RELIABILITY.md records: the daemon's abuse, load and fault tests
# (daemon/tests/daemon_reliability.rs) in release mode, one at a time, with their output shown,
# and the long soak (LIVEFILL_SOAK_JOBS jobs in a row, 10 000 unless set).
#
#   tests/reliability/run_reliability.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export LIVEFILL_SOAK_JOBS=${LIVEFILL_SOAK_JOBS:-10000}
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
cargo test --release -p livefill --test daemon_reliability -- --nocapture --test-threads 1 2>&1 \
    | grep -oE '(half-open|queue cap|non-reading client|killed client|load|soak|out of memory): .*|test result.*'
