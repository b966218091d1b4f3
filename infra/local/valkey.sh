#!/usr/bin/env bash
# Starts and stops local Valkey topologies with nothing on disk (no RDB, no AOF).
#   infra/local/valkey.sh start [standalone]   one Valkey on ${VALKEY_PORT:-6379}, no TLS
#   infra/local/valkey.sh start serverless     the ElastiCache Serverless shape: a TLS cluster of
#                                              one shard, primary on P=${VALKEY_PORT:-6379} and its
#                                              replica on P+1 (6380), all slots on the primary
#   infra/local/valkey.sh start cluster        3 TLS primaries (P, P+1, P+2) with one replica each
#                                              (P+3, P+4, P+5)
#   infra/local/valkey.sh stop  [standalone|serverless|cluster]
#   infra/local/valkey.sh status
# State (pid files, logs, certificates) lives under ${VALKEY_LOCAL_DIR:-/tmp/valkey-sessions-local}.
# TLS topologies print the VALKEY_URL and VALKEY_CA_FILE to run the service against them.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
state=${VALKEY_LOCAL_DIR:-/tmp/valkey-sessions-local}
port=${VALKEY_PORT:-6379}
mkdir -p "$state"

ping() { valkey-cli -h 127.0.0.1 -p "$1" "${@:2}" PING 2>/dev/null | grep -q PONG; }

tls_cli() { # port args...
  local p=$1
  shift
  valkey-cli -h 127.0.0.1 -p "$p" --tls --cacert "$state/tls/ca.pem" "$@"
}

# A throwaway CA and one node certificate valid for 127.0.0.1 and localhost (the addresses the
# cluster announces), so rustls verifies every node including replicas.
make_certs() {
  local dir=$state/tls
  [ -f "$dir/node.pem" ] && return 0
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=valkey-sessions local CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=valkey node" -keyout "$dir/node.key" -out "$dir/node.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$dir/ext.cnf"
  openssl x509 -req -in "$dir/node.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 30 -extfile "$dir/ext.cnf" -out "$dir/node.pem" 2>/dev/null
}

start_tls_node() { # port
  local p=$1
  start_node "$p" "$state/node-$p" --port 0 --tls-port "$p" --cluster-port $((p + 10000)) \
    --tls-cert-file "$state/tls/node.pem" --tls-key-file "$state/tls/node.key" \
    --tls-ca-cert-file "$state/tls/ca.pem" --tls-auth-clients no \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
    --tls-cluster yes --tls-replication yes
  for _ in $(seq 1 100); do tls_cli "$p" PING 2>/dev/null | grep -q PONG && return 0; sleep 0.1; done
  echo "TLS node on $p did not answer" >&2
  return 1
}

# start_cluster SHARDS: primaries on port..port+SHARDS-1, replicas after them.
start_cluster() {
  local shards=$1 name=$2 i p r first last per
  per=$((16384 / shards))
  "$here/install-deps.sh" >/dev/null
  if tls_cli "$port" PING 2>/dev/null | grep -q PONG; then
    echo "a TLS node already answers on $port; stop it first" >&2
    exit 1
  fi
  make_certs
  for ((i = 0; i < 2 * shards; i++)); do start_tls_node $((port + i)); done
  for ((i = 0; i < shards; i++)); do
    first=$((i * per))
    last=$((i == shards - 1 ? 16383 : first + per - 1))
    tls_cli $((port + i)) CLUSTER ADDSLOTSRANGE "$first" "$last" >/dev/null
  done
  for ((i = 1; i < 2 * shards; i++)); do tls_cli $((port + i)) CLUSTER MEET 127.0.0.1 "$port" $((port + 10000)) >/dev/null; done
  for _ in $(seq 1 100); do
    [ "$(tls_cli "$port" CLUSTER NODES | wc -l)" -eq $((2 * shards)) ] && break
    sleep 0.2
  done
  for ((i = 0; i < shards; i++)); do
    p=$((port + i)) r=$((port + shards + i))
    local id
    id=$(tls_cli "$p" CLUSTER MYID)
    for _ in $(seq 1 50); do tls_cli "$r" CLUSTER REPLICATE "$id" 2>/dev/null | grep -q OK && break; sleep 0.2; done
  done
  for _ in $(seq 1 150); do
    tls_cli "$port" CLUSTER INFO | grep -q cluster_state:ok && break
    sleep 0.2
  done
  # CLUSTER SLOTS omits a replica whose replication offset is 0: write once per shard and wait
  # until every replica is listed, so clients discover it.
  for ((i = 0; i < shards; i++)); do
    p=$((port + i)) r=$((port + shards + i))
    for n in $(seq 0 5000); do
      tls_cli "$p" SET "warmup:{$n}" 1 2>/dev/null | grep -q OK && { tls_cli "$p" DEL "warmup:{$n}" >/dev/null; break; }
    done
    for _ in $(seq 1 150); do
      tls_cli "$p" CLUSTER SLOTS | grep -qx "$r" && break
      sleep 0.2
    done
  done
  echo "$name" >"$state/topology"
  echo "valkey $name (TLS cluster, $shards shard(s)) on 127.0.0.1:$port..$((port + 2 * shards - 1))"
  echo "  VALKEY_URL=rediss-cluster://127.0.0.1:$port"
  echo "  VALKEY_CA_FILE=$state/tls/ca.pem"
}

stop_cluster() {
  local d
  for d in "$state"/node-*/; do
    [ -d "$d" ] || continue
    stop_node "$d"
    rm -rf "$d"
  done
  rm -f "$state/topology"
}

wait_ping() {
  for _ in $(seq 1 100); do ping "$@" && return 0; sleep 0.1; done
  echo "valkey on port $1 did not answer" >&2
  return 1
}

start_node() { # port dir extra-args...
  local p=$1 dir=$2
  shift 2
  mkdir -p "$dir"
  valkey-server --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
    --daemonize yes --pidfile "$dir/valkey.pid" --logfile "$dir/valkey.log" "$@"
}

stop_node() { # dir
  local pid
  [ -f "$1/valkey.pid" ] || return 0
  pid=$(cat "$1/valkey.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$1/valkey.pid"
}

cmd=${1:-status}
topology=${2:-standalone}
case "$cmd:$topology" in
  start:standalone)
    "$here/install-deps.sh" >/dev/null
    if ping "$port"; then echo "valkey already answering on 127.0.0.1:$port"; exit 0; fi
    start_node "$port" "$state/standalone" --port "$port"
    wait_ping "$port"
    echo "valkey standalone on redis://127.0.0.1:$port"
    ;;
  stop:standalone)
    stop_node "$state/standalone"
    echo "stopped standalone"
    ;;
  start:serverless)
    start_cluster 1 serverless
    ;;
  start:cluster)
    start_cluster 3 cluster
    ;;
  stop:serverless | stop:cluster)
    stop_cluster
    echo "stopped $topology"
    ;;
  status:*)
    for d in "$state"/*/; do
      [ -f "$d/valkey.pid" ] && kill -0 "$(cat "$d/valkey.pid")" 2>/dev/null && echo "running: $(basename "$d")"
    done
    true
    ;;
  *)
    echo "usage: $0 start|stop|status [standalone|serverless|cluster]" >&2
    exit 2
    ;;
esac
