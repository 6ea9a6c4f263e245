#!/bin/sh
# Runs the Python codec and client tests (stdlib unittest, Python 3.8+), from any directory.
set -eu
cd "$(dirname "$0")"
exec "${PYTHON:-python3}" -m unittest discover -s . -p 'test_*.py' "$@"
