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
PROJECT=face-landmarks-check
IMAGE=${LANDMARKS_IMAGE:-face-landmarks:latest}

started=$SECONDS
engine_pid=""
compose_started=""
work_dir=$(mktemp -d "${TMPDIR:-/tmp}/landmarks-check.XXXXXX")

# The engine, the base image and the build inputs (shared with scripts/swarm-*.sh).
# shellcheck source=scripts/lib/docker-engine.sh
source scripts/lib/docker-engine.sh

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
    stop_engine
    unmount_below "$work_dir"
    rm -rf --one-file-system "$work_dir"
    exit_with "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. tools and lint ---------------------------------------------------------------------------

for tool in hadolint kubernetes-validate; do
    [ -x "$VENV/bin/$tool" ] || die "$VENV/bin/$tool is missing: install the dev extra (make .venv/.installed-dev)"
done
command -v docker >/dev/null 2>&1 || apt_install docker.io

ensure_compose
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

[ -f models/landmarks.json ] || die "models/landmarks.json is missing: the image bakes the ONNX export in (face-landmarks-train export)"
[ -f "$SAMPLE_IMAGE" ] || die "sample photo $SAMPLE_IMAGE not found (set LANDMARKS_SHARED_DIR)"

ensure_torch_wheel

# --- 3. a Docker engine --------------------------------------------------------------------------

ensure_engine "unix://$ENGINE_RUN_DIR/docker.sock"
log "engine: Docker $(docker version --format '{{.Server.Version}}')"

# --- 4. the base image ---------------------------------------------------------------------------

ensure_base_image

# --- 5. build, start, and ask it for landmarks ---------------------------------------------------

# Pip settings reach the build as build args (docker-compose.yml).
export_pip_urls
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
import importlib.util
extras = [m for m in ('torch', 'lightning', 'matplotlib') if importlib.util.find_spec(m)]
assert not extras, f'training-only packages in the image: {extras}'
"
if compose exec -T landmarks python -c "import torch" >/dev/null 2>&1; then
    die "python -c 'import torch' succeeds in the image: the service must not carry torch"
fi
log "python -c 'import torch' fails in the image, as it should (no torch, lightning or matplotlib)"

size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
log "image $IMAGE: $(awk -v s="$size" 'BEGIN {printf "%.0f MB (%.2f GiB)", s / 1e6, s / 2^30}')"
docker stats --no-stream --format '  memory in use: {{.MemUsage}}' "$(compose ps -q landmarks)"

# --- 6. one worker's memory and the time to ready, as an operator sizes a node ---------------------

# A container of one worker on one CPU, started afresh: seconds from `docker run` to /health/ready 200,
# the worker's resident memory idle, then its peak (VmHWM) under bench/load.py's 64 clients.
log "one worker: start to ready, memory idle and under the 64-client load of bench.load"
PYTHONPATH=$repo "$VENV/bin/python" - "$IMAGE" "$PROJECT-single" <<'PY'
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter

from bench.load import drive, request_mix

image, name = sys.argv[1], sys.argv[2]
with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
url = f"http://127.0.0.1:{port}"


def worker_kib(field: str) -> int:
    """``field`` (VmRSS, VmHWM) of the worker: the container's process that holds the model."""
    script = (
        "import os\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    cmd = open(f'/proc/{pid}/cmdline', 'rb').read()\n"
        "    if b'uvicorn' in cmd and b'app.main:app' in cmd:\n"
        f"        print(open(f'/proc/{{pid}}/status').read().split('{field}:')[1].split()[0])\n"
    )
    out = subprocess.run(["docker", "exec", name, "python", "-c", script], capture_output=True, text=True)
    return int(out.stdout.split()[0])


subprocess.run(["docker", "rm", "--force", name], capture_output=True)
started = time.monotonic()
subprocess.run(
    ["docker", "run", "--detach", "--name", name, "--cpus", "1", "-e", "WEB_CONCURRENCY=1",
     "-p", f"127.0.0.1:{port}:8000", image],
    check=True,
    stdout=subprocess.DEVNULL,
)
try:
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health/ready", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() - started > 60:
            sys.exit("the one-worker container was not ready 60 s after docker run")
        time.sleep(0.02)
    ready = time.monotonic() - started
    print(f"  start to ready: {ready:.1f} s (docker run to the first 200 of /health/ready)")
    time.sleep(2)
    idle = worker_kib("VmRSS") / 1024
    print(f"  one worker idle: {idle:.0f} MiB resident")
    kinds = [kind for kind in request_mix(0.0) if kind.good]
    drive(url, kinds, 64, 4.0, seed=1)  # warm-up, as bench.load does
    results, elapsed = drive(url, kinds, 64, 20.0, seed=2)
    statuses = Counter(result.status for result in results)
    peak = worker_kib("VmHWM") / 1024
    print(
        f"  64 clients, 20 s: {len(results)} requests ({len(results) / elapsed:.1f}/s), statuses "
        f"{dict(statuses)}; the worker's peak: {peak:.0f} MiB resident (VmHWM)"
    )
    targets = [("start to ready", ready, 5.0, "s"), ("idle", idle, 150, "MiB"), ("peak", peak, 250, "MiB")]
    for label, value, target, unit in targets:
        print(f"  {label}: {value:.1f} {unit} (target <= {target} {unit}): {'ok' if value <= target else 'OVER'}")
    if statuses.get(0) or any(status >= 500 and status != 503 for status in statuses):
        sys.exit(f"failed requests under load: {dict(statuses)}")
finally:
    subprocess.run(["docker", "rm", "--force", name], capture_output=True)
PY
