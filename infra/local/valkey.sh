#!/usr/bin/env bash
# Starts and stops local Valkey topologies with nothing on disk (no RDB, no AOF).
#   infra/local/valkey.sh start [standalone]   one Valkey on ${VALKEY_PORT:-6379}
#   infra/local/valkey.sh stop  [standalone]
#   infra/local/valkey.sh status
# State (pid files, logs, certificates) lives under ${VALKEY_LOCAL_DIR:-/tmp/valkey-sessions-local}.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
state=${VALKEY_LOCAL_DIR:-/tmp/valkey-sessions-local}
port=${VALKEY_PORT:-6379}
mkdir -p "$state"

ping() { valkey-cli -h 127.0.0.1 -p "$1" "${@:2}" PING 2>/dev/null | grep -q PONG; }

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
  status:*)
    for d in "$state"/*/; do
      [ -f "$d/valkey.pid" ] && kill -0 "$(cat "$d/valkey.pid")" 2>/dev/null && echo "running: $(basename "$d")"
    done
    true
    ;;
  *)
    echo "usage: $0 start|stop|status [standalone]" >&2
    exit 2
    ;;
esac
