#!/usr/bin/env bash
# Reserve-to-ready time of nodes, the `swarm` provider against the `docker` provider: each
# starts N nodes at once (the resource manager's warm-up, `--ready-nodes N`), and a node's
# time is from "starting the initial nodes" to its "... node ready" line in the resource
# manager's log. Prints p50 and p99 (nearest rank) per provider. Slow (a minute or two), so
# it is a script, not a test; docs/SCALING.md has its results.
#
#   deploy/measure-node-starts.sh            # N=20, images tagged $FAAS_IMAGE_TAG (latest)
#
# Needs: the images (deploy/build-images.sh), the `resource-manager` binary (cargo build -p
# faas-resource-manager; FAAS_RM_BIN overrides), N GiB of memory free (nodes of 1 GiB).
# The swarm half makes a one-machine swarm on 127.0.0.1 when the daemon is in none and
# leaves it afterwards (docker_gwbridge removed if it was not there before); a daemon already
# in a swarm is used as it is.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
n="${N:-20}"
tag="${FAAS_IMAGE_TAG:-latest}"
rm_bin="${FAAS_RM_BIN:-$repo/target/debug/resource-manager}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# ms between the warm-up line and each ready line of the log on stdin; then p50 and p99.
times() {
    python3 -c '
import re, sys, datetime, math
def ts(line):
    m = re.search(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
    return datetime.datetime.fromisoformat(m.group(1)[:26]) if m else None
t0, ready = None, []
for line in sys.stdin:
    if "starting the initial nodes" in line or "taking back the nodes" in line:
        t0 = ts(line)
    elif re.search(r"(docker|swarm) node ready", line) and t0:
        ready.append((ts(line) - t0).total_seconds() * 1000)
ready.sort()
rank = lambda p: ready[max(0, math.ceil(p / 100 * len(ready)) - 1)]
print(f"{len(ready)} nodes ready: p50 {rank(50):.0f} ms, p99 {rank(99):.0f} ms, max {ready[-1]:.0f} ms")
'
}

echo "== docker provider: $n nodes"
port_log="$work/docker.log"
"$rm_bin" --port 0 --provider docker --ready-nodes "$n" --max-nodes "$n" \
    --node-memory-mib 1024 --docker-instance measure-docker --docker-network minifaas-measure \
    --docker-node-image "minifaas/node-service:$tag" \
    --docker-container-image "minifaas/container-service:$tag" >"$port_log" 2>&1 &
rm_pid=$!
for _ in $(seq 1 240); do
    [ "$(grep -c 'docker node ready' "$port_log" || true)" -ge "$n" ] && break
    sleep 0.5
done
kill -TERM "$rm_pid"
wait "$rm_pid" || true
times <"$port_log"

echo "== swarm provider: $n nodes"
state="$(docker info --format '{{.Swarm.LocalNodeState}}')"
had_gwbridge=no
docker network inspect docker_gwbridge >/dev/null 2>&1 && had_gwbridge=yes
made=no
if [ "$state" = inactive ]; then
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null
    made=yes
fi
node="$(docker info --format '{{.Swarm.NodeID}}')"
docker node update --label-add minifaas.data=true "$node" >/dev/null
mkdir -m 700 "$work/secrets"
echo "admin measure $(openssl rand -hex 32)" >"$work/secrets/keys"
openssl rand -hex 32 >"$work/secrets/cluster-token"
chmod 600 "$work/secrets"/*
FAAS_IMAGE_TAG="$tag" FAAS_STACK=measure FAAS_SECRETS_DIR="$work/secrets" \
    FAAS_READY_NODES="$n" FAAS_MAX_NODES="$n" FAAS_NODE_MEMORY_MIB=1024 \
    FAAS_APISERVER_PORT=30500 FAAS_HTTP_PORT=30800 FAAS_SCHEDULER_PORT=30600 \
    FAAS_RESOURCE_MANAGER_PORT=30400 \
    docker stack deploy -c "$repo/deploy/stack.yml" measure >/dev/null
for _ in $(seq 1 240); do
    [ "$(docker service logs measure_resource-manager 2>&1 | grep -c 'swarm node ready' || true)" -ge "$n" ] && break
    sleep 0.5
done
docker service logs measure_resource-manager 2>&1 | times
docker stack rm measure >/dev/null 2>&1 || true   # the network may be refused: see below
for _ in $(seq 1 120); do
    [ -z "$(docker service ls -q --filter label=minifaas.instance=measure)" ] &&
        [ -z "$(docker ps -aq --filter label=com.docker.stack.namespace=measure)" ] && break
    sleep 0.5
done
sleep 2
docker stack rm measure >/dev/null 2>&1 || true   # the network, once its last task is gone
docker volume rm measure_apiserver-data measure_resource-manager-state >/dev/null 2>&1 || true
docker node update --label-rm minifaas.data "$node" >/dev/null 2>&1 || true
if [ "$made" = yes ]; then
    docker swarm leave --force >/dev/null
    [ "$had_gwbridge" = no ] && docker network rm docker_gwbridge >/dev/null 2>&1 || true
fi
