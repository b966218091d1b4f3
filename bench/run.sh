#!/usr/bin/env bash
# One run of every benchmark figure (issue 7): builds the release binaries, then bench/run.py
# starts its own Valkey topologies and service processes on free loopback ports and stops them.
#   bench/run.sh            full run (~4 min on 2 cores), rewrites the table in docs/benchmarks.md
#   bench/run.sh --quick    short runs; with --no-doc --check it is the CI smoke test
#   BENCH_PROFILE=debug     use target/debug binaries (CI smoke: no release build needed)
set -euo pipefail
cd "$(dirname "$0")/.."
infra/local/install-deps.sh >/dev/null
profile=${BENCH_PROFILE:-release}
flag=()
[ "$profile" = release ] && flag=(--release)
cargo build --locked "${flag[@]}" --bin valkey-sessions --bin session-bench --bin health-probe --bin session-floor
exec python3 bench/run.py --profile "$profile" "$@"
