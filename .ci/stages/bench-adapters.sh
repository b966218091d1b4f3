#!/usr/bin/env bash
# The adapter benchmark's harness (bench/adapters/run.py) runs end to end: the Express
# and gorilla apps, each on our adapter and on its Redis store, 1 s per side on the debug service
# the tests built. It checks the instrument (apps start, sessions read back, wrk drives them, no
# error responses, a row per framework), never the figures. The axum app (a release build of its
# own dependency tree) and the Django venv (a wheel build) take minutes to prepare and are left
# to full runs (docs/benchmarks.md, "Framework adapters"). About 30-60 s.
set -euo pipefail
bash clients/install-deps.sh >/dev/null
missing=()
for p in wrk golang-github-boj-redistore-dev; do
  dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The service binary `cargo test --workspace` built; a `cargo build --bin` of the package alone
# would unify features differently and rebuild its dependencies.
bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/valkey-sessions"
[ -x "$bin" ] && export SESSION_SERVICE_BIN="${SESSION_SERVICE_BIN:-$bin}"
timeout 600 python3 bench/adapters/run.py --profile debug --frameworks node,go --seconds 1 --repeats 1 --warmup 0
