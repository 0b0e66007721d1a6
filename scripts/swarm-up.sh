#!/usr/bin/env bash
# Brings the landmarks stack (deploy/swarm/stack.yml) up on Docker Swarm and waits until it serves.
#
#   scripts/swarm-up.sh [STACK]     # STACK defaults to face-landmarks; its services are STACK_landmarks, STACK_lb
#
#   1. a Docker engine: the one that answers, or dockerd started here on the default socket (left
#      running; scripts/swarm-down.sh stops it);
#   2. the images: the service's from the Dockerfile (LANDMARKS_IMAGE, face-landmarks:latest) and the
#      load balancer's from deploy/swarm/lb.Dockerfile (LANDMARKS_LB_IMAGE, face-landmarks-lb:latest),
#      both on python:3.11-slim-bookworm, made locally when no registry answers;
#   3. a single-node swarm when the engine is in none (`docker swarm init`), remembered so that
#      swarm-down leaves it again;
#   4. `docker stack deploy`, then waits until every replica is healthy and a request through the load
#      balancer is answered.
#
# The last line of output is the load balancer's URL.
#
# Settings (environment): LANDMARKS_PORT (8000), LANDMARKS_REPLICAS (3), LANDMARKS_CPUS (1.0),
# LANDMARKS_MEMORY (1G), LANDMARKS_IMAGE, LANDMARKS_LB_IMAGE, LANDMARKS_SWARM_BUILD (1; 0 deploys
# LANDMARKS_IMAGE as it is, and builds the load balancer's image only if it is missing), LANDMARKS_SWARM_ADVERTISE_ADDR (127.0.0.1, for `docker swarm init`),
# LANDMARKS_SWARM_WAIT (300 s), LANDMARKS_SWARM_STATE_DIR (/run/landmarks-docker), and those of
# scripts/lib/docker-engine.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

STACK=${1:-face-landmarks}
VENV=${VENV:-$repo/.venv}
export LANDMARKS_PORT=${LANDMARKS_PORT:-8000}
export LANDMARKS_REPLICAS=${LANDMARKS_REPLICAS:-3}
export LANDMARKS_IMAGE=${LANDMARKS_IMAGE:-face-landmarks:latest}
export LANDMARKS_LB_IMAGE=${LANDMARKS_LB_IMAGE:-face-landmarks-lb:latest}
WAIT=${LANDMARKS_SWARM_WAIT:-300}

started=$SECONDS
work_dir=$(mktemp -d "${TMPDIR:-/tmp}/landmarks-swarm-up.XXXXXX")
trap 'rm -rf --one-file-system "$work_dir"' EXIT

# shellcheck source=scripts/lib/docker-engine.sh
source scripts/lib/docker-engine.sh
# shellcheck source=scripts/lib/swarm.sh
source scripts/lib/swarm.sh

log() { printf '[swarm-up %4ss] %s\n' "$((SECONDS - started))" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

[[ $STACK =~ ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$ ]] || die "bad stack name '$STACK'"
[[ $LANDMARKS_PORT =~ ^[0-9]+$ ]] || die "LANDMARKS_PORT must be a port number, not '$LANDMARKS_PORT'"

# --- 1. engine -----------------------------------------------------------------------------------

command -v docker >/dev/null 2>&1 || apt_install docker.io
# An engine started here outlives this script: on the default socket, so that plain `docker` reaches it.
ensure_engine "unix:///var/run/docker.sock"
if [ -n "$engine_pid" ]; then
    swarm_state_set engine_pid "$engine_pid"
    swarm_state_set engine_host "$DOCKER_HOST"
fi
log "engine: Docker $(docker version --format '{{.Server.Version}}') (${DOCKER_HOST:-default socket})"

# --- 2. images -----------------------------------------------------------------------------------

ensure_base_image
if [ "${LANDMARKS_SWARM_BUILD:-1}" != 0 ]; then
    [ -x "$VENV/bin/python" ] || VENV=$(dirname "$(dirname "$(command -v python3)")")
    ensure_torch_wheel
    export_pip_urls
    log "docker build $LANDMARKS_IMAGE"
    docker build --quiet --tag "$LANDMARKS_IMAGE" \
        --build-arg PIP_INDEX_URL --build-arg PIP_EXTRA_INDEX_URL --build-arg PIP_FIND_LINKS . >/dev/null
fi
docker image inspect "$LANDMARKS_IMAGE" >/dev/null 2>&1 || die "image $LANDMARKS_IMAGE not found (build it, or LANDMARKS_SWARM_BUILD=1)"
if [ "${LANDMARKS_SWARM_BUILD:-1}" != 0 ] || ! docker image inspect "$LANDMARKS_LB_IMAGE" >/dev/null 2>&1; then
    log "docker build $LANDMARKS_LB_IMAGE"
    docker build --quiet --tag "$LANDMARKS_LB_IMAGE" -f deploy/swarm/lb.Dockerfile deploy/swarm >/dev/null
fi

# --- 3. swarm ------------------------------------------------------------------------------------

case "$(docker info --format '{{.Swarm.LocalNodeState}}')" in
    active)
        [ "$(docker info --format '{{.Swarm.ControlAvailable}}')" = true ] \
            || die "this engine is a swarm worker: run swarm-up on a manager"
        log "swarm: this engine is already a manager"
        ;;
    inactive)
        addr=${LANDMARKS_SWARM_ADVERTISE_ADDR:-127.0.0.1}
        log "docker swarm init --advertise-addr $addr"
        docker swarm init --advertise-addr "$addr" >/dev/null
        swarm_state_set created_swarm "$(docker info --format '{{.Swarm.NodeID}}')"
        ;;
    *) die "the engine's swarm state is '$(docker info --format '{{.Swarm.LocalNodeState}}')'" ;;
esac

# --- 4. deploy and wait --------------------------------------------------------------------------

# A host-mode port that something else holds would leave nginx failing to start until the wait ends.
if ! docker service inspect "${STACK}_lb" >/dev/null 2>&1 \
    && ! python3 -c "import socket, sys; socket.create_server(('0.0.0.0', int(sys.argv[1]))).close()" "$LANDMARKS_PORT" 2>/dev/null; then
    die "port $LANDMARKS_PORT is in use on this host: set LANDMARKS_PORT"
fi
log "docker stack deploy $STACK ($LANDMARKS_REPLICAS replicas of $LANDMARKS_IMAGE, load balancer on port $LANDMARKS_PORT)"
# The images are local: asking a registry for their digests would only time out.
docker stack deploy --resolve-image never --prune -c deploy/swarm/stack.yml "$STACK" >/dev/null

deadline=$((SECONDS + WAIT))
swarm_wait_converged "${STACK}_landmarks" "$LANDMARKS_REPLICAS" "$WAIT"
swarm_wait_converged "${STACK}_lb" "$(swarm_lb_tasks)" $((deadline - SECONDS))
url="http://127.0.0.1:$LANDMARKS_PORT"
ready="import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/health/ready', timeout=5)"
until python3 -c "$ready" "$url" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || die "$url/health/ready does not answer 200 through the load balancer"
    sleep 1
done
log "ready: $LANDMARKS_REPLICAS replicas of ${STACK}_landmarks healthy behind ${STACK}_lb"
echo "$url"
