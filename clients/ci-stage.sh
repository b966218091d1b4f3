#!/usr/bin/env bash
# One CI stage for the clients: starts a throwaway Valkey and the service once, installs the
# clients' dependencies, runs clients/test-all.sh against the service, then stops both (only
# the processes it started). For .ci/stages/: `bash clients/ci-stage.sh`.
#
#   SESSION_SERVICE_BIN   the service binary (default target/debug/valkey-sessions; built with
#                         `cargo build --locked --bin valkey-sessions` if missing)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

bin="${SESSION_SERVICE_BIN:-$root/target/debug/valkey-sessions}"
if [ ! -x "$bin" ]; then
  cargo build --locked --bin valkey-sessions
fi

bash "$here/install-deps.sh"

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
# Start the service only once Valkey answers: it must not depend on reconnecting.
for _ in $(seq 1 100); do
  valkey-cli -p "$valkey_port" ping 2>/dev/null | grep -q PONG && break
  sleep 0.1
done
VALKEY_URL="redis://127.0.0.1:$valkey_port" GRPC_LISTEN="127.0.0.1:$grpc_port" \
  METRICS_LISTEN="127.0.0.1:$metrics_port" "$bin" > "$work/service.log" 2>&1 &
service_pid=$!

# Ready when grpc.health.v1 says SERVING (30 s at most).
addr="127.0.0.1:$grpc_port"
ready=""
for _ in $(seq 1 150); do
  if "$here/python/.venv/bin/python" - "$addr" <<'PY' 2>/dev/null; then ready=1; break; fi
import sys, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
with grpc.insecure_channel(sys.argv[1]) as ch:
    res = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
sys.exit(0 if res.status == health_pb2.HealthCheckResponse.SERVING else 1)
PY
  kill -0 "$service_pid" 2>/dev/null || break
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "clients: the service did not become SERVING at $addr; its log:" >&2
  tail -n 50 "$work/service.log" >&2
  exit 1
fi
echo "clients: valkey on :$valkey_port, service on $addr"

status=0
SESSION_SERVICE_ADDR="$addr" bash "$here/test-all.sh" || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- service log (last 30 lines) ---"
  tail -n 30 "$work/service.log"
fi
exit "$status"
