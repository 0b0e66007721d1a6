#!/usr/bin/env bash
# Removes the stack that scripts/swarm-up.sh deployed, and waits until its tasks, containers and network
# are gone. When no stack is left, it also undoes what swarm-up did to the engine: leaves the swarm if
# swarm-up initialised it, and stops dockerd if swarm-up started it. A swarm or an engine that was there
# before is left as it was.
#
#   scripts/swarm-down.sh [STACK]     # STACK defaults to face-landmarks
#
# Settings (environment): LANDMARKS_SWARM_WAIT (120 s), LANDMARKS_SWARM_STATE_DIR (as for swarm-up).
set -euo pipefail
cd "$(dirname "$0")/.."

STACK=${1:-face-landmarks}
WAIT=${LANDMARKS_SWARM_WAIT:-120}
started=$SECONDS

log() { printf '[swarm-down %4ss] %s\n' "$((SECONDS - started))" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# shellcheck source=scripts/lib/docker-engine.sh
source scripts/lib/docker-engine.sh
# shellcheck source=scripts/lib/swarm.sh
source scripts/lib/swarm.sh

engine_host=$(swarm_state_get engine_host)
if [ -z "${DOCKER_HOST:-}" ] && [ -n "$engine_host" ]; then
    export DOCKER_HOST=$engine_host
fi
engine_answers || die "no Docker engine answers (${DOCKER_HOST:-default socket})"

if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = active ]; then
    if docker stack ls --format '{{.Name}}' | grep -qx "$STACK"; then
        log "docker stack rm $STACK"
        docker stack rm "$STACK" >/dev/null
    else
        log "no stack $STACK"
    fi
    # `stack rm` returns at once; the tasks then stop (each within its stop_grace_period).
    deadline=$((SECONDS + WAIT))
    while [ -n "$(docker ps -aq --filter "label=com.docker.stack.namespace=$STACK")" ] \
        || docker network inspect "${STACK}_default" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "the containers or the network of $STACK are still there after $WAIT s"
        sleep 0.5
    done
    log "stack $STACK removed"
    others=$(docker stack ls --format '{{.Name}}')
    created=$(swarm_state_get created_swarm)
    if [ -n "$others" ]; then
        log "other stacks remain ($(tr '\n' ' ' <<<"$others")): the swarm stays"
        exit 0
    elif [ -n "$created" ] && [ "$created" = "$(docker info --format '{{.Swarm.NodeID}}')" ]; then
        log "docker swarm leave (swarm-up initialised this swarm)"
        docker swarm leave --force >/dev/null
    else
        log "the swarm was there before swarm-up: left as it is"
    fi
fi
swarm_state_clear created_swarm

engine_pid=$(swarm_state_get engine_pid)
if [ -n "$engine_pid" ] && [ "$(cat "/proc/$engine_pid/comm" 2>/dev/null)" = dockerd ]; then
    stop_engine
fi
swarm_state_clear engine_pid
swarm_state_clear engine_host
