#!/usr/bin/env bash
# A second Swarm node on this machine, for trying the stack across two nodes: a second dockerd in a
# network namespace of its own, joined to this engine's swarm as a worker. Needs root.
#
#   deploy/swarm/second-node.sh up IMAGE...   # namespace, dockerd, swarm join; IMAGEs copied to it
#   deploy/swarm/second-node.sh down          # the worker leaves, its dockerd and namespace go
#
# The two nodes talk over a veth pair, 10.213.7.1 (this side) and 10.213.7.2 (the worker): the
# manager must advertise 10.213.7.1, so `up` initialises the swarm itself when there is none (and
# `down` leaves it again). The worker has no registry either: the images the stack runs are copied
# to it with docker save | docker load.
set -euo pipefail

NS=lm-worker
HOST_IF=lm-mgr
NS_IF=lm-wrk
HOST_ADDR=10.213.7.1
NS_ADDR=10.213.7.2
RUN_DIR=/run/landmarks-docker-worker
DATA_ROOT=${LANDMARKS_WORKER_DATA_ROOT:-/var/lib/landmarks-docker-worker}
WORKER_HOST=unix://$RUN_DIR/docker.sock

log() { printf '[second-node] %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
worker() { DOCKER_HOST=$WORKER_HOST docker "$@"; }

up() {
    [ "$(id -u)" -eq 0 ] || die "needs root"
    if ! ip netns list | grep -qw "$NS"; then
        log "network namespace $NS, veth $HOST_IF ($HOST_ADDR) <-> $NS_IF ($NS_ADDR)"
        ip netns add "$NS"
        ip link add "$HOST_IF" type veth peer name "$NS_IF"
        ip link set "$NS_IF" netns "$NS"
        ip addr add "$HOST_ADDR/24" dev "$HOST_IF"
        ip link set "$HOST_IF" up
        ip netns exec "$NS" ip addr add "$NS_ADDR/24" dev "$NS_IF"
        ip netns exec "$NS" ip link set "$NS_IF" up
        ip netns exec "$NS" ip link set lo up
        ip netns exec "$NS" ip route add default via "$HOST_ADDR"
    fi
    if ! worker info >/dev/null 2>&1; then
        mkdir -p "$RUN_DIR" "$DATA_ROOT"
        log "dockerd in $NS (data root $DATA_ROOT, socket $WORKER_HOST)"
        # nsenter, not `ip netns exec`: that one remounts /sys, and dockerd needs the cgroup mounts.
        nsenter --net="/run/netns/$NS" dockerd --data-root "$DATA_ROOT" --exec-root "$RUN_DIR/exec" \
            --pidfile "$RUN_DIR/dockerd.pid" --host "$WORKER_HOST" --cgroup-parent landmarks-worker \
            --bip 172.30.0.1/16 >"$RUN_DIR/dockerd.log" 2>&1 &
        for _ in $(seq 60); do worker info >/dev/null 2>&1 && break; sleep 1; done
        worker info >/dev/null 2>&1 || { tail -n 20 "$RUN_DIR/dockerd.log" >&2; die "the worker's dockerd did not answer"; }
    fi
    case "$(docker info --format '{{.Swarm.LocalNodeState}}')" in
        inactive)
            log "docker swarm init --advertise-addr $HOST_ADDR"
            docker swarm init --advertise-addr "$HOST_ADDR" >/dev/null
            touch "$RUN_DIR/created-swarm"
            ;;
        active)
            [ "$(docker info --format '{{.Swarm.NodeAddr}}')" = "$HOST_ADDR" ] \
                || die "this engine's swarm advertises $(docker info --format '{{.Swarm.NodeAddr}}'), which the worker cannot reach: run swarm-down first"
            ;;
    esac
    if [ "$(worker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
        log "the worker joins"
        worker swarm join --token "$(docker swarm join-token -q worker)" "$HOST_ADDR:2377" >/dev/null
    fi
    for image in "$@"; do
        log "copying $image to the worker"
        docker save "$image" | worker load --quiet >/dev/null
    done
    docker node ls
}

down() {
    if worker info >/dev/null 2>&1; then
        local node
        node=$(worker info --format '{{.Swarm.NodeID}}')
        worker swarm leave --force >/dev/null 2>&1 || true
        [ -z "$node" ] || { sleep 2; docker node rm --force "$node" >/dev/null 2>&1 || true; }
        local pid
        pid=$(cat "$RUN_DIR/dockerd.pid" 2>/dev/null || true)
        if [ -n "$pid" ]; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        fi
    fi
    if [ -e "$RUN_DIR/created-swarm" ]; then
        log "docker swarm leave (second-node.sh initialised it)"
        docker swarm leave --force >/dev/null 2>&1 || true
        rm -f "$RUN_DIR/created-swarm"
    fi
    if ip netns list | grep -qw "$NS"; then
        ip link del "$HOST_IF" 2>/dev/null || true
        ip netns del "$NS"
    fi
    log "down"
}

case "${1:-}" in
    up) shift; up "$@" ;;
    down) down ;;
    *) die "usage: $0 up IMAGE... | down" ;;
esac
