#!/usr/bin/env bash
# A daemon on "another machine" through OpenSSH's Unix-socket forwarding, the README's documented
# way (section "A GPU on another machine"):
#
#     ssh -N -o StreamLocalBindUnlink=yes -L /local/livefill.sock:/remote/livefill.sock user@host
#
# (or the same with a remote command such as `sleep infinity` instead of -N: faster, see below).
#
# The daemon keeps only its user-only local socket; a real sshd on 127.0.0.1 (free port,
# throwaway host and client keys in a temp folder) plays the remote machine. Over the forwarded
# socket: `livefill status`, `livefill generate --socket` (PNG bytes identical to a run straight
# on the daemon's socket), the plugins' Python client (hello, ListModels, txt2img and inpaint,
# pixels identical to direct), error texts when the remote daemon is gone, the forwarded socket's
# permissions, and — as root — the daemon's peer-uid check seen through the tunnel. Prints the
# latency ssh adds to small requests (a figure, not an assertion; BENCHMARKS.md).
#
# Needs sshd, ssh and ssh-keygen (Debian: apt-get install -y openssh-server openssh-client) and
# fails, loudly, without them; sshd runs as the user running this (root or not), who must have an
# unlocked account (sshd refuses system accounts such as nobody: "account is locked").
# LIVEFILL_BIN: the livefill binary (default target/debug/livefill); LIVEFILL_SSH_LATENCY_RUNS:
# timed requests per kind (20); LIVEFILL_SSH_KEEP=1 keeps the temp folder (logs) afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
livefill=${LIVEFILL_BIN:-$root/target/debug/livefill}
model=$root/tests/fixtures/tiny-sd
export NO_COLOR=1  # plain daemon logs, for grep
latency_runs=${LIVEFILL_SSH_LATENCY_RUNS:-20}

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# ---- tools --------------------------------------------------------------------------------
[ -x "$livefill" ] || fail "no livefill binary at $livefill (cargo build first, or set LIVEFILL_BIN)"
sshd=$(command -v sshd || true)
[ -n "$sshd" ] || sshd=/usr/sbin/sshd
[ -x "$sshd" ] || fail "no sshd: install openssh-server (apt-get install -y openssh-server openssh-client)"
for tool in ssh ssh-keygen python3; do
    command -v "$tool" >/dev/null || fail "no $tool: install openssh-client / python3"
done
echo "$("$sshd" -V 2>&1 | head -1 || true) (sshd: $sshd)"

# ---- scratch folder and cleanup -------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/lf-ssh.XXXXXX")
chmod 711 "$work"  # others may pass through (the root-only check's daemon user); every folder below is private
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "${LIVEFILL_SSH_KEEP:-0}" = 1 ] || [ "${failed:-1}" = 1 ]; then
        echo "kept $work (logs: sshd.log, daemon.log, tunnel.log)"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
failed=1

# Polls "$@" until it succeeds, for at most $1 seconds.
wait_for() {
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# ---- a real sshd on 127.0.0.1 ------------------------------------------------------------------
user=$(id -un)
ssh-keygen -q -t ed25519 -N '' -C livefill-test-host -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -C livefill-test-client -f "$work/client_key"
cp "$work/client_key.pub" "$work/authorized_keys"
chmod 600 "$work/authorized_keys"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $port
HostKey $work/host_key
PidFile $work/sshd.pid
AuthorizedKeysFile $work/authorized_keys
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers $user
StrictModes no
UsePAM no
AllowStreamLocalForwarding yes
X11Forwarding no
PermitTTY no
LogLevel VERBOSE
EOF
if [ "$(id -u)" = 0 ] && [ ! -d /run/sshd ]; then
    mkdir -p -m 0755 /run/sshd  # sshd's privilege-separation folder (tmpfiles.d makes it at boot)
fi
"$sshd" -t -f "$work/sshd_config" || fail "sshd refuses the test config"
"$sshd" -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
pids+=($!)
ssh_opts=(-F /dev/null -p "$port" -i "$work/client_key" -o IdentitiesOnly=yes -o BatchMode=yes
    -o UserKnownHostsFile="$work/known_hosts" -o StrictHostKeyChecking=accept-new
    -o ConnectTimeout=10 -o LogLevel=ERROR)
wait_for 20 python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" ||
    fail "sshd did not start on 127.0.0.1:$port: $(cat "$work/sshd.log")"
ok "sshd on 127.0.0.1:$port (user $user, throwaway keys in $work)"

# ---- the "remote" daemon, on its own user-only socket ---------------------------------------------
mkdir -m 700 "$work/remote" "$work/local"
remote_sock=$work/remote/livefill.sock
local_sock=$work/local/livefill.sock
LIVEFILL_LOG=info,ort=warn "$livefill" serve --model "$model" --socket "$remote_sock" --device cpu --threads 1 \
    >"$work/daemon.log" 2>&1 &
daemon_pid=$!
pids+=("$daemon_pid")
wait_for 120 "$livefill" status --socket "$remote_sock" || fail "the daemon did not start: $(cat "$work/daemon.log")"
ok "livefill serve on $remote_sock"

# ---- the tunnel --------------------------------------------------------------------------------
# Opens `ssh -L $1:$2` in the background (with umask $3) and waits until $1 exists; without more
# arguments the connection has no session (-N), else they are the session's remote command.
tunnel() {
    local from=$1 to=$2 mask=$3
    shift 3
    local no_session=()
    [ "$#" -gt 0 ] || no_session=(-N)
    (umask "$mask" && exec ssh "${ssh_opts[@]}" "${no_session[@]}" -o ExitOnForwardFailure=yes \
        -o StreamLocalBindUnlink=yes -L "$from:$to" "$user@127.0.0.1" "$@" </dev/null) 2>>"$work/tunnel.log" &
    pids+=($!)
    wait_for 20 test -S "$from" ||
        fail "ssh -L made no socket at $from: $(cat "$work/tunnel.log"); sshd: $(tail -n 5 "$work/sshd.log")"
}
tunnel "$local_sock" "$remote_sock" 000
ok "ssh -N -L $local_sock:$remote_sock"

# The forwarded socket's permissions: ssh creates it with StreamLocalBindMask (default 0177), not
# the user's umask — this tunnel was started with umask 000 and still gets 0600.
mode=$(stat -c %a "$local_sock")
[ "$mode" = 600 ] || fail "the forwarded socket has mode $mode (expected 600 from StreamLocalBindMask 0177)"
ok "forwarded socket mode $mode (umask 000 at ssh's start; StreamLocalBindMask 0177 decides)"

# ---- livefill status and generate through the tunnel ---------------------------------------------
status=$("$livefill" status --socket "$local_sock") || fail "livefill status through the tunnel failed"
for needle in "model:           tiny-sd" "models (1):" "  tiny-sd [" "loading now:"; do
    grep -qF -- "$needle" <<<"$status" || fail "status through the tunnel lacks '$needle':"$'\n'"$status"
done
ok "livefill status --socket $local_sock"

gen() {  # gen SOCKET OUT FLAGS...
    local socket=$1 out=$2
    shift 2
    "$livefill" generate --socket "$socket" --seed 11 --out "$out" "$@" 2>>"$work/generate.log"
}
gen "$remote_sock" "$work/picture.png" --mode txt2img --prompt "a barn" --width 256 --height 192 >/dev/null
for socket in "$remote_sock" "$local_sock"; do
    name=$([ "$socket" = "$remote_sock" ] && echo direct || echo forwarded)
    gen "$socket" "$work/txt2img-$name.png" --mode txt2img --prompt "a red door" >"$work/txt2img-$name.txt"
    gen "$socket" "$work/inpaint-$name.png" --mode inpaint --prompt "a window" --image "$work/picture.png" \
        --mask "$work/picture.png" >"$work/inpaint-$name.txt"
done
for mode in txt2img inpaint; do
    cmp -s "$work/$mode-direct.png" "$work/$mode-forwarded.png" ||
        fail "$mode: the PNG through the tunnel differs from the direct one"
    grep -q "seed 11, model tiny-sd;" "$work/$mode-forwarded.txt" ||
        fail "$mode through the tunnel printed: $(cat "$work/$mode-forwarded.txt")"
done
ok "livefill generate --socket: txt2img and inpaint (256x192) PNGs through the tunnel = direct, byte for byte"

# ---- the plugins' Python client ------------------------------------------------------------------
python3 tests/remote/forward_client.py check "$local_sock" "$remote_sock" || fail "Python client through the tunnel"
ok "plugin core + livefill_client through the tunnel (socket setting = the forwarded socket)"

# ---- the peer-uid check sees ssh's session process ------------------------------------------------
if ! grep -q "refused a connection" "$work/daemon.log"; then
    ok "forwarded connections reach the daemon from sshd's session process, running as $user: the peer-uid check lets them in"
else
    fail "the daemon refused a forwarded connection of its own user: $(grep 'refused a connection' "$work/daemon.log")"
fi
if [ "$(id -u)" != 0 ]; then
    echo "skip: the other-user peer-uid check needs root (to run a daemon as another user)"
elif [ ! -f "${ORT_DYLIB_PATH:-}" ]; then
    echo "skip: the other-user peer-uid check needs ORT_DYLIB_PATH (a libonnxruntime that user can read)"
else
    # A daemon of another user (nobody), forwarded by root's ssh session: root may open that
    # user's socket file, but the daemon's peer-uid check refuses uid 0.
    other=$work/other
    mkdir -m 755 "$other"
    cp "$ORT_DYLIB_PATH" "$other/libonnxruntime.so"
    mkdir -m 700 "$other/run" && chown nobody "$other/run"
    setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups \
        env HOME=/nonexistent ORT_DYLIB_PATH="$other/libonnxruntime.so" \
        LIVEFILL_LOG=info,ort=warn "$livefill" serve --model "$model" --socket "$other/run/livefill.sock" \
        --device cpu --threads 1 >"$work/daemon-nobody.log" 2>&1 &
    pids+=($!)
    wait_for 120 grep -q "ready" "$work/daemon-nobody.log" ||
        fail "nobody's daemon did not start: $(cat "$work/daemon-nobody.log")"
    tunnel "$work/local/nobody.sock" "$other/run/livefill.sock" 077
    if out=$("$livefill" status --socket "$work/local/nobody.sock" 2>&1); then
        fail "a daemon running as nobody answered root's forwarded connection:"$'\n'"$out"
    fi
    grep -q "closed it before the daemon's hello" <<<"$out" || fail "unexpected error: $out"
    wait_for 10 grep -q "peer runs as uid 0" "$work/daemon-nobody.log" ||
        fail "nobody's daemon did not log the refusal: $(cat "$work/daemon-nobody.log")"
    ok "a daemon of another user refuses root's forwarded connection (log: $(grep -o 'peer runs as uid [0-9]*, the daemon as uid [0-9]*' "$work/daemon-nobody.log" | head -1))"
fi

# ---- latency: -N vs a tunnel with a session ----------------------------------------------------------
# sshd sets TCP_NODELAY when a session starts: a -N connection has none, so Nagle's algorithm holds
# each small reply frame (Progress, Result) behind the previous one's delayed ACK. The same forward
# next to a session (`sleep`) shows the difference; each is timed against the direct socket alone.
tunnel "$work/local/session.sock" "$remote_sock" 077 sleep 3600
# (Captured first: `grep -q` stopping at its match would cut status's output short.)
session_status=$("$livefill" status --socket "$work/local/session.sock")
grep -qF "model:           tiny-sd" <<<"$session_status" ||
    fail "livefill status through the tunnel with a session failed"
latency_n=$(python3 tests/remote/forward_client.py latency "$latency_runs" "$remote_sock" "ssh -N=$local_sock") ||
    fail "latency measurement (-N)"
latency_s=$(python3 tests/remote/forward_client.py latency "$latency_runs" "$remote_sock" \
    "ssh + session=$work/local/session.sock") || fail "latency measurement (session)"

# ---- the remote daemon gone: what the clients say -------------------------------------------------
kill "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
if out=$("$livefill" status --socket "$local_sock" 2>&1); then
    fail "status through a tunnel to a stopped daemon succeeded: $out"
fi
grep -q "accepted the connection but closed it before the daemon's hello" <<<"$out" ||
    fail "unexpected error through a tunnel to a stopped daemon: $out"
ok "remote daemon stopped: livefill says \"$(grep -o "accepted the connection.*hello" <<<"$out" | head -1)…\""
python3 tests/remote/forward_client.py gone "$local_sock" "$work/started" || fail "plugin core with the remote daemon gone"
ok "remote daemon stopped: the plugin core reports it and starts no local daemon (the tunnel answers)"

echo
echo "round trip straight on the socket and through the tunnel (loopback sshd, tiny-sd on CPU,"
echo "the plugins' Python client, one connection each, $latency_runs runs interleaved with direct ones):"
echo "$latency_n"
echo "$latency_s"
failed=0
echo "ssh-forward test passed"
