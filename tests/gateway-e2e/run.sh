#!/usr/bin/env bash
# The gateway end to end: a throwaway Valkey, the service and todo-gateway on free ports, then
#   1. headless Chromium (Debian's chromium, driven by playwright-core) uses the page;
#   2. schemathesis fuzzes every operation of /openapi.json: no 5xx, no schema violation.
# Installs what it needs (chromium, playwright-core, schemathesis), stops what it started.
#   TODO_GATEWAY_BIN / SESSION_SERVICE_BIN  binaries (default target/debug/…; built if missing)
#   ARTIFACTS_DIR                            screenshot and schemathesis report (target/artifacts)
#   ST_MAX_EXAMPLES                          schemathesis examples per operation (default 60)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

gateway_bin="${TODO_GATEWAY_BIN:-$root/target/debug/todo-gateway}"
service_bin="${SESSION_SERVICE_BIN:-$root/target/debug/valkey-sessions}"
[ -x "$gateway_bin" ] && [ -x "$service_bin" ] || cargo build --locked --workspace --bin todo-gateway --bin valkey-sessions
export ARTIFACTS_DIR="${ARTIFACTS_DIR:-$root/target/artifacts}"
mkdir -p "$ARTIFACTS_DIR"

# Dependencies: Debian's Chromium, playwright-core (lockfile), schemathesis (pinned).
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ! -x /usr/bin/chromium ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
[ -x "$here/.venv/bin/pip" ] || python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
valkey_port="$(free_port)" grpc_port="$(free_port)" metrics_port="$(free_port)" http_port="$(free_port)"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
logs() {
  for f in "$work"/*.log; do echo "--- $(basename "$f") (last 30 lines) ---"; tail -n 30 "$f"; done
}

valkey-server --bind 127.0.0.1 --port "$valkey_port" --save '' --appendonly no --dir "$work" \
  > "$work/valkey.log" 2>&1 &
pids+=($!)
VALKEY_URL="redis://127.0.0.1:$valkey_port" GRPC_LISTEN="127.0.0.1:$grpc_port" \
  METRICS_LISTEN="127.0.0.1:$metrics_port" "$service_bin" > "$work/service.log" 2>&1 &
pids+=($!)
SESSION_SERVICE_URL="http://127.0.0.1:$grpc_port" GATEWAY_LISTEN="127.0.0.1:$http_port" \
  "$gateway_bin" > "$work/gateway.log" 2>&1 &
pids+=($!)
export GATEWAY_URL="http://127.0.0.1:$http_port"

# Ready when the gateway's readiness (the service's gRPC health) says so, 30 s at most.
for _ in $(seq 1 150); do
  curl -fsS "$GATEWAY_URL/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
if ! curl -fsS "$GATEWAY_URL/readyz" >/dev/null 2>&1; then
  echo "gateway-e2e: $GATEWAY_URL/readyz never answered 200" >&2
  logs >&2
  exit 1
fi
echo "gateway-e2e: valkey :$valkey_port, service :$grpc_port, gateway $GATEWAY_URL"

status=0
echo "--- browser test (headless Chromium) ---"
(cd "$here" && node --test browser.test.mjs) || status=1

echo "--- schemathesis against $GATEWAY_URL/openapi.json ---"
# Checks: no 5xx, statuses/content types/headers/bodies as documented, invalid input refused,
# valid input accepted, 405 for undocumented methods. Not use_after_free and friends: they
# assume resources named by ids a client chooses, while todo ids live inside a cookie session.
# The routes of a signed-in browser (security scheme `session`, the SESSION cookie) get one:
# schemathesis signs in through POST /login, and again whenever a revoked session answers 401.
cat > "$work/schemathesis.toml" <<'TOML'
[auth.dynamic.openapi.session]
path = "/login"
payload = { username = "schemathesis" }
extract_from = "cookie"
extract_selector = "SESSION"
TOML
"$here/.venv/bin/st" --config-file "$work/schemathesis.toml" run "$GATEWAY_URL/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,positive_data_acceptance,unsupported_method \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "${ST_MAX_EXAMPLES:-60}" --workers 2 --request-timeout 5 \
  --report junit --report-dir "$ARTIFACTS_DIR/schemathesis" || status=1

if [ "$status" -ne 0 ]; then logs; fi
exit "$status"
