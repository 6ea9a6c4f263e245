#!/usr/bin/env bash
# Builds (or reuses) a Debian trixie tree with GIMP 3 in it, for running the livefill GIMP
# plug-in in real GIMP 3 (Debian 12 has only GIMP 2.10).
#
# Usage: tests/gimp/make_chroot.sh [DIR]
#   DIR defaults to $LIVEFILL_GIMP_CHROOT or /var/cache/livefill-gimp-chroot (or .cache/gimp-chroot
#   in the checkout when that folder cannot be written).
# Prints the tree's path as the last line of stdout. Needs root and debootstrap (installed
# here through apt-get when missing). A tree that already works is reused as is; one that
# does not is finished (apt-get install again) or, failing that, rebuilt.
set -euo pipefail

DIR="${1:-${LIVEFILL_GIMP_CHROOT:-/var/cache/livefill-gimp-chroot}}"
# A machine whose /var/cache cannot be written: keep the tree in the checkout (git-ignored).
parent=$(dirname "$DIR")
if ! mkdir -p "$parent" 2>/dev/null || [ ! -w "$parent" ]; then
    DIR="$(cd "$(dirname "$0")/../.." && pwd)/.cache/gimp-chroot"
    echo "[make_chroot] $parent is not writable; using $DIR" >&2
fi
MIRROR="${LIVEFILL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# xvfb + xauth: the interactive dialogs are tested on a virtual display.
PKGS=(gimp python3-gi gir1.2-gimp-3.0 gir1.2-gegl-0.4 xvfb xauth)

log() { echo "[make_chroot] $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    log "must run as root (debootstrap, chroot)"; exit 1
fi

proc_mounted_here=0
cleanup() {
    if [ "$proc_mounted_here" = 1 ]; then umount "$DIR/proc" 2>/dev/null || umount -l "$DIR/proc" || true; fi
}
trap cleanup EXIT

mount_proc() {
    if ! mountpoint -q "$DIR/proc"; then
        mount -t proc proc "$DIR/proc"; proc_mounted_here=1
    fi
}

works() {
    [ -x "$DIR/usr/bin/gimp-console-3.0" ] || return 1
    # The marker holds the package list it was made with; a changed list reinstalls.
    [ "$(cat "$DIR/.livefill-gimp-ready" 2>/dev/null)" = "${PKGS[*]}" ] || return 1
    chroot "$DIR" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root \
        gimp-console-3.0 --version >/dev/null 2>&1
}

if [ -d "$DIR" ] && works; then
    log "reusing $DIR"; echo "$DIR"; exit 0
fi

if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap on the host"
    apt-get -o DPkg::Lock::Timeout=900 install -y debootstrap >&2 || {
        apt-get -o DPkg::Lock::Timeout=900 update >&2
        apt-get -o DPkg::Lock::Timeout=900 install -y debootstrap >&2
    }
fi

start=$(date +%s)
mkdir -p "$(dirname "$DIR")"
avail_mb=$(df -Pm "$(dirname "$DIR")" | awk 'NR == 2 { print $4 }')
if [ "${avail_mb:-0}" -lt 2048 ]; then
    log "only ${avail_mb} MB free under $(dirname "$DIR"): the tree needs about 1.5 GB"; exit 1
fi
if [ ! -x "$DIR/usr/bin/apt-get" ] || [ ! -f "$DIR/.livefill-debootstrap-done" ]; then
    if [ -d "$DIR" ]; then
        log "removing incomplete tree $DIR"
        mountpoint -q "$DIR/proc" && umount -l "$DIR/proc"
        rm -rf --one-file-system "$DIR"
    fi
    log "debootstrap --variant=minbase trixie $DIR $MIRROR"
    debootstrap --variant=minbase trixie "$DIR" "$MIRROR" >&2
    touch "$DIR/.livefill-debootstrap-done"
fi

mount_proc
cp /etc/resolv.conf "$DIR/etc/resolv.conf" 2>/dev/null || true
# No daemons may start inside the tree.
printf '#!/bin/sh\nexit 101\n' > "$DIR/usr/sbin/policy-rc.d"; chmod +x "$DIR/usr/sbin/policy-rc.d"
log "installing ${PKGS[*]} inside the tree"
chroot "$DIR" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    DEBIAN_FRONTEND=noninteractive apt-get update >&2
chroot "$DIR" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PKGS[@]}" >&2
chroot "$DIR" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root apt-get clean >&2
echo "${PKGS[*]}" > "$DIR/.livefill-gimp-ready"
if ! works; then
    log "gimp-console-3.0 does not run inside $DIR"; exit 1
fi
log "tree ready in $(( $(date +%s) - start ))s"
echo "$DIR"
