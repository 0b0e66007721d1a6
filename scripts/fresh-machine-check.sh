#!/usr/bin/env bash
# The README's promise on a truly fresh machine: a clean Debian bookworm (debootstrap minbase, made
# once and cached) with only python3, python3-pip, python3-venv, make and git installed, as root, runs
# `make test` (or the command given) in a clean clone of this repo's HEAD, with ../shared beside it
# read-only. Not part of CI (it installs everything from scratch: tens of minutes on 2 cores).
#
#   bash scripts/fresh-machine-check.sh [COMMAND|SCRIPT] default: make test; SCRIPT: a file run with bash
#   bash scripts/fresh-machine-check.sh --rootfs-only  only make the cached rootfs (no engine needed)
#
# Needs root and a running Docker engine. This machine's pip settings (index, find-links, the local
# wheel folders) and extra CA certificates are copied in, as for the container check's image, so that
# pip and apt inside reach the registries through the same egress as the host.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
command=${1:-make test}
[ "$command" = --rootfs-only ] && command=""
SHARED_DIR=${LANDMARKS_SHARED_DIR:-$repo/../shared}
CACHE_DIR=${LANDMARKS_CI_CACHE:-/var/cache/landmarks-ci}
IMAGE=debian-clean:bookworm
# What the fresh machine has before `make` (leave python3-venv out to check that make installs it).
PACKAGES=${FRESH_PACKAGES:-python3 python3-pip python3-venv make git}
tarball=$CACHE_DIR/debian-bookworm-minbase-v1.tar

log() { printf '[fresh-machine %5ss] %s\n' "$SECONDS" "$*"; }

if [ ! -s "$tarball" ]; then
    mirror=$(awk '$1 == "URIs:" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources)
    root=$(mktemp -d)
    log "debootstrap --variant=minbase bookworm from ${mirror:=http://deb.debian.org/debian}"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 \
        || { tail -n 20 "$root.log"; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    : >"$root/etc/resolv.conf"
    mkdir -p "$CACHE_DIR"
    tar --numeric-owner -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf --one-file-system "$root" "$root.log"
fi
[ "${1:-}" = --rootfs-only ] && exit 0
timeout 10 docker info >/dev/null 2>&1 || { log "no Docker engine answers"; exit 1; }
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' "$tarball" "$IMAGE" >/dev/null
    log "imported $IMAGE"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone --quiet "$repo" "$work/main"
# Pip's settings and the extra CA certificates of this host:
mkdir -p "$work/etc"
cp -r /usr/local/share/ca-certificates "$work/etc/ca" 2>/dev/null || mkdir -p "$work/etc/ca"
for f in /etc/pip.conf /etc/xdg/pip/pip.conf /etc/xdg/pip/constraints.txt /root/.config/pip/pip.conf; do
    [ -f "$f" ] && install -D -m 644 "$f" "$work/etc/pip$f"
done
mounts=()
for dir in /opt/wheels /opt/pypi /opt/pypi-more; do
    [ -d "$dir" ] && mounts+=(-v "$dir:$dir:ro")
done

# A script file on this machine runs as it is (no quoting to get right).
if [ -f "$command" ]; then
    cp "$command" "$work/etc/command.sh"
    command="bash /host-etc/command.sh"
fi

name=fresh-machine-$$
log "container $name: apt-get install $PACKAGES, then: $command"
docker run --rm --name "$name" \
    -v "$work/main:/src:ro" -v "$(realpath "$SHARED_DIR"):/work/shared:ro" -v "$work/etc:/host-etc:ro" \
    "${mounts[@]}" -e PIP_FIND_LINKS="${PIP_FIND_LINKS:-}" -e PIP_DEFAULT_TIMEOUT=180 \
    -e PIP_DISABLE_PIP_VERSION_CHECK=1 -e DEBIAN_FRONTEND=noninteractive \
    "$IMAGE" bash -c "
        set -euo pipefail
        cp -a /host-etc/pip/. / 2>/dev/null || true
        apt-get update -q >/dev/null
        apt-get install -y -q $PACKAGES >/tmp/apt.log 2>&1 || { tail -20 /tmp/apt.log; exit 1; }
        if ls /host-etc/ca/*.crt >/dev/null 2>&1; then
            cp /host-etc/ca/*.crt /usr/local/share/ca-certificates/ && update-ca-certificates >/dev/null
        fi
        export PIP_CERT=/etc/ssl/certs/ca-certificates.crt
        cp -a /src /work/main && cd /work/main
        echo \"python: \$(python3 --version); chromium: \$(command -v chromium || echo none)\"
        $command
    "
log "passed: $command"
