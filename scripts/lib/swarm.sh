# shellcheck shell=bash
# Shell functions shared by scripts/swarm-up.sh, swarm-down.sh and swarm-check.sh. Sourced, not run;
# the caller defines log and die.

# What swarm-up did that swarm-down undoes: one file per key (created_swarm: the node id of the swarm
# it initialised; engine_pid, engine_host: the engine it started).
SWARM_STATE_DIR=${LANDMARKS_SWARM_STATE_DIR:-/run/landmarks-docker}/swarm-up
if ! mkdir -p "$SWARM_STATE_DIR" 2>/dev/null; then
    SWARM_STATE_DIR=${TMPDIR:-/tmp}/landmarks-docker-$(id -u)/swarm-up
    mkdir -p "$SWARM_STATE_DIR"
fi

swarm_state_set() { printf '%s\n' "$2" >"$SWARM_STATE_DIR/$1"; }
swarm_state_get() { cat "$SWARM_STATE_DIR/$1" 2>/dev/null || true; }
swarm_state_clear() { rm -f "$SWARM_STATE_DIR/$1"; }

# True when SERVICE runs exactly N tasks, every one of them healthy (Swarm reports a task with a health
# check Running only once it is healthy), and no other task is still running (one being stopped).
swarm_converged() {
    local service=$1 want=$2 tasks
    tasks=$(docker service ps --format '{{.DesiredState}} {{.CurrentState}}' "$service" 2>/dev/null) || return 1
    [ "$(grep -c '^Running Running' <<<"$tasks")" -eq "$want" ] \
        && [ "$(grep -c ' Running' <<<"$tasks")" -eq "$want" ] \
        && [ "$(grep -c '^Running' <<<"$tasks")" -eq "$want" ]
}

# Tasks of the global `lb` service: one per node that takes work.
swarm_lb_tasks() {
    docker node ls --format '{{.Status}} {{.Availability}}' | grep -c '^Ready Active'
}

# Waits until swarm_converged SERVICE N, at most SECONDS; prints the tasks and fails past that.
swarm_wait_converged() {
    local service=$1 want=$2 deadline=$((SECONDS + $3))
    until swarm_converged "$service" "$want"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            docker service ps --no-trunc "$service" >&2 || true
            die "$service did not reach $want healthy tasks within $3 s"
        fi
        sleep 0.5
    done
}
