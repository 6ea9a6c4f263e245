#!/bin/sh
# Stands in for the `livefill` binary in fake mode: `fake_livefill.sh serve --socket PATH [...]`
# starts the shared stand-in daemon (tests/standin_daemon.py) on PATH ($LIVEFILL_SOCKET without
# --socket; other flags are ignored). Used by the plugin's auto-start path.
here=$(cd "$(dirname "$0")" && pwd)
sock=""
while [ $# -gt 0 ]; do
    case "$1" in
        --socket) sock="$2"; shift 2 ;;
        *) shift ;;
    esac
done
[ -n "$sock" ] || sock="${LIVEFILL_SOCKET:?no socket}"
exec python3 "$here/../standin_daemon.py" serve --socket "$sock"
