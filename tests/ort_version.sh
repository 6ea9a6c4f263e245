#!/usr/bin/env bash
# Prints the ONNX Runtime version livefill is pinned to: `ORT_VERSION` in the daemon's Rust
# source, the one place it is written down (wherever in daemon/src that constant lives).
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(grep -rh 'pub const ORT_VERSION' daemon/src | sed -n 's/^pub const ORT_VERSION: &str = "\(.*\)";/\1/p')
if [ -z "$version" ]; then
    echo "tests/ort_version.sh: no 'pub const ORT_VERSION: &str = \"...\";' in daemon/src" >&2
    exit 1
fi
echo "$version"
