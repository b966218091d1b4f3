#!/usr/bin/env bash
# Runs COMMAND... with a throwaway Valkey and valkey-sessions on free ports, SESSION_SERVICE_ADDR
# set to the service and SESSION_SERVICE_VALKEY_PORT to its Valkey; stops both (only the processes it started) when COMMAND ends.
#
#   SESSION_SERVICE_BIN   the service binary (default target/debug/valkey-sessions, or
#                         $CARGO_TARGET_DIR/debug/valkey-sessions; built if missing)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
bin="${SESSION_SERVICE_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/valkey-sessions}"
if [ ! -x "$bin" ]; then
  (cd "$root" && cargo build --locked --bin valkey-sessions)
fi
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
valkey_port="$(free_port)" grpc_port="$(free_port)" metrics_port="$(free_port)"
work="$(mktemp -d)"
valkey_pid="" service_pid=""
cleanup() {
  [ -z "$service_pid" ] || { kill "$service_pid" 2>/dev/null || true; wait "$service_pid" 2>/dev/null || true; }
  [ -z "$valkey_pid" ] || { kill "$valkey_pid" 2>/dev/null || true; wait "$valkey_pid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT
valkey-server --bind 127.0.0.1 --port "$valkey_port" --save '' --appendonly no --dir "$work" \
  > "$work/valkey.log" 2>&1 &
valkey_pid=$!
for _ in $(seq 1 100); do
  valkey-cli -p "$valkey_port" ping 2>/dev/null | grep -q PONG && break
  sleep 0.1
done
valkey-cli -p "$valkey_port" ping 2>/dev/null | grep -q PONG ||
  { echo "with-service: valkey-server did not start:" >&2; cat "$work/valkey.log" >&2; exit 1; }
VALKEY_URL="redis://127.0.0.1:$valkey_port" GRPC_LISTEN="127.0.0.1:$grpc_port" \
  METRICS_LISTEN="127.0.0.1:$metrics_port" "$bin" > "$work/service.log" 2>&1 &
service_pid=$!
for _ in $(seq 1 150); do
  grep -q "grpc listening" "$work/service.log" 2>/dev/null && break
  kill -0 "$service_pid" 2>/dev/null || { echo "the service exited:" >&2; tail -n 30 "$work/service.log" >&2; exit 1; }
  sleep 0.2
done
export SESSION_SERVICE_ADDR="127.0.0.1:$grpc_port"
# The Valkey behind it, for tests that change its settings (storage full: `maxmemory`).
export SESSION_SERVICE_VALKEY_PORT="$valkey_port"
echo "with-service: valkey on :$valkey_port, service on $SESSION_SERVICE_ADDR"
status=0
"$@" || status=$?
[ "$status" -eq 0 ] || { echo "--- service log (last 30 lines) ---"; tail -n 30 "$work/service.log"; }
exit "$status"
