#!/usr/bin/env bash
# A wsrpc cluster on one machine: Redis, three `wsrpc serve` nodes that
# share it, and nginx in front of them as the load balancer. Everything
# listens on 127.0.0.1 and lives in a temporary directory; Ctrl-C stops it
# all. Needs redis-server and nginx (Debian: apt-get install redis-server
# nginx) and Go.
#
#   examples/cluster/run.sh
#   wsrpc sub ws://127.0.0.1:8080/pubsub time              # through nginx
#   wsrpc call ws://127.0.0.1:8081/ws clients              # where each client is
#
# Ports: PORT (nginx, 8080), NODE_PORTS (8081 8082 8083), REDIS_PORT (6380);
# each node serves metrics on its port + 1000.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
PORT=${PORT:-8080}
NODE_PORTS=${NODE_PORTS:-"8081 8082 8083"}
REDIS_PORT=${REDIS_PORT:-6380}

for bin in redis-server nginx; do
	command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || {
		echo "run.sh: $bin not found (Debian: apt-get install redis-server nginx)" >&2
		exit 1
	}
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

dir=$(mktemp -d -t wsrpc-cluster.XXXXXX)
pids=()
stop() {
	trap - INT TERM EXIT
	echo "== stopping" >&2
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap stop EXIT
trap "exit 0" INT TERM # Ctrl-C: stop runs on the way out

echo "== building wsrpc" >&2
(cd "$root" && go build -o "$dir/wsrpc" ./cmd/wsrpc)

echo "== redis on 127.0.0.1:$REDIS_PORT" >&2
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$dir" \
	>"$dir/redis.log" 2>&1 &
pids+=($!)
redis_pid=$!
# The nodes connect to Redis at startup: wait until it listens.
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && break
	sleep 0.1
done

servers=""
nodes=""
n=0
for p in $NODE_PORTS; do
	n=$((n + 1))
	echo "== node$n on 127.0.0.1:$p (metrics on 127.0.0.1:$((p + 1000)))" >&2
	"$dir/wsrpc" serve --addr "127.0.0.1:$p" --node-id "node$n" \
		--broker "redis://127.0.0.1:$REDIS_PORT" --metrics "127.0.0.1:$((p + 1000))" \
		>"$dir/node$n.out" 2>"$dir/node$n.log" &
	pids+=($!)
	nodes+=" node$n=$!"
	servers+="		server 127.0.0.1:$p max_fails=1 fail_timeout=5s;"$'\n'
done

echo "== nginx on 127.0.0.1:$PORT" >&2
awk -v dir="$dir" -v port="$PORT" -v servers="$servers" '
	{ gsub(/@DIR@/, dir); gsub(/@PORT@/, port) }
	/@SERVERS@/ { printf "%s", servers; next }
	{ print }' "$here/nginx.conf.in" >"$dir/nginx.conf"
"$NGINX" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' &
pids+=($!)
nginx_pid=$!

cat >&2 <<MSG

The cluster is up:
  ws://127.0.0.1:$PORT/ws, /ws/{client_id}, /pubsub   through nginx
  logs                                              $dir/node*.log
  node pids                                        $nodes
Try:
  $dir/wsrpc sub ws://127.0.0.1:$PORT/pubsub news
  $dir/wsrpc pub ws://127.0.0.1:$PORT/pubsub news '"hello from any node"'
  $dir/wsrpc call ws://127.0.0.1:${NODE_PORTS%% *}/ws clients
Kill a node (kill -9 PID) to watch its clients move to the others.
Ctrl-C stops everything.
MSG
# Only Redis or nginx ending stops the cluster: a node may be killed, to
# watch its clients reconnect through nginx to the others.
wait -n "$redis_pid" "$nginx_pid" || true
echo "run.sh: redis-server or nginx ended; the ends of the logs:" >&2
for f in "$dir"/*.log; do echo "-- $f" >&2; tail -5 "$f" >&2; done
