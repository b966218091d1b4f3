#!/usr/bin/env bash
# Every check of infra/observability, in one run (stage `observability` of ./dev test):
#   1. promtool check rules and promtool test rules (rules.yaml, rules.test.yaml);
#   2. unit tests: alert metadata and runbook anchors, a firing and a quiet case for every alerting
#      rule (proved by mutating the rule), dashboard structure, every panel query parsed by
#      promtool, the compose Prometheus config (promtool check config), the name extraction and
#      comparison;
#   3. the live scrape: valkey-server and the debug valkey-sessions binary on free loopback ports
#      (gRPC with TLS and bearer tokens, certificates made with openssl), real RPCs and the TLS
#      and auth events, /metrics compared with every name the rules and the dashboard use.
# Installs promtool (Debian's prometheus package) and a pinned virtualenv if missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
kit="$(cd "$here/.." && pwd)"
root="$(cd "$kit/../.." && pwd)"

if ! command -v promtool >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # Only promtool is wanted; the package may start a Prometheus server on :9090.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi
promtool --version 2>&1 | head -n 1

venv="$here/.venv"
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"

echo "--- promtool check rules"
promtool check rules "$kit/rules.yaml"
echo "--- promtool test rules"
(cd "$kit" && promtool test rules rules.test.yaml)

echo "--- alerts, dashboard, compose Prometheus config, name extraction (unit tests)"
(cd "$here" && "$venv/bin/python" -m unittest -v test_rules test_dashboard test_compose test_names)

echo "--- live scrape of the service"
"$root/infra/local/install-deps.sh" >/dev/null
(cd "$root" && cargo build --locked --bin valkey-sessions)
(cd "$here" && "$venv/bin/python" live_scrape.py)

(cd "$here" && "$venv/bin/python" summary.py)
