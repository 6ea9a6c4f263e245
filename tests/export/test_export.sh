#!/usr/bin/env bash
# Offline end-to-end test of `livefill models export`: tiny random base + tiny random LoRA →
# export → livefill's output must equal diffusers' fused pipeline (PSNR ≥ 40 dB); then the public
# ONNX layouts (diffusers' legacy converter) made from a tiny pipeline and run as they are
# (test_public_layouts.py).
#
# Needs a Python with tests/export/requirements.txt. Uses, in order: $LIVEFILL_EXPORT_PYTHON,
# .cache/exportvenv (made from .cache/refvenv + peft, see below; tests/run.sh passes its own venv). When neither exists the test is
# SKIPPED with a message (exit 0) — create it with:
#   .cache/refvenv/bin/python -m venv .cache/exportvenv
#   echo "$(.cache/refvenv/bin/python -c 'import site;print(site.getsitepackages()[0])')" \
#       > .cache/exportvenv/lib/python3.11/site-packages/_refvenv.pth
#   .cache/exportvenv/bin/python -m pip install peft==0.21.2
# (or a fresh venv with `pip install -r tests/export/requirements.txt`).
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${LIVEFILL_EXPORT_PYTHON:-.cache/exportvenv/bin/python}
if [ ! -x "$python" ] || ! "$python" -c 'import diffusers, peft, torch, onnx' 2>/dev/null; then
    echo "SKIPPED: no Python with the exporter's requirements ($python); see tests/export/test_export.sh"
    exit 0
fi
livefill=${LIVEFILL_BIN:-target/debug/livefill}
[ -x "$livefill" ] || cargo build -p livefill --quiet
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$PWD/.cache/ort/libonnxruntime.so.$(bash tests/ort_version.sh)}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
status=0
"$python" tests/export/test_export.py --livefill "$livefill" "$@" || status=1
# The layouts of the ONNX models people download (diffusers' legacy converter), made here.
"$python" tests/export/test_public_layouts.py --livefill "$livefill" --layouts legacy || status=1
# optimum's own exporter needs transformers 4: its Python is a separate venv (tests/run.sh makes it).
if [ -n "${LIVEFILL_OPTIMUM_PYTHON:-}" ]; then
    "$LIVEFILL_OPTIMUM_PYTHON" tests/export/test_public_layouts.py --livefill "$livefill" --layouts optimum || status=1
else
    echo "SKIPPED: optimum's layout (set LIVEFILL_OPTIMUM_PYTHON to a Python with tests/bench/requirements-nodeps.txt)"
fi
exit $status
