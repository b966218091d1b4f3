#!/usr/bin/env bash
# One run of every benchmark figure: builds the release binaries, then bench/run.py
# starts its own Valkey topologies and service processes on free loopback ports and stops them;
# bench/plot.py then draws that run's results.
#   bench/run.sh            full run (~12 min on 2 cores), rewrites the table in docs/benchmarks.md
#                           and the pictures docs/bench/*.png
#   bench/run.sh --quick    short runs; with --no-doc --check it is the CI smoke test (pictures
#                           then go to target/bench/plots/)
#   BENCH_PROFILE=debug     use target/debug binaries (CI smoke: no release build needed)
set -euo pipefail
cd "$(dirname "$0")/.."
infra/local/install-deps.sh >/dev/null
[ -x bench/.venv/bin/pip ] || python3 -m venv bench/.venv
bench/.venv/bin/pip install -q --disable-pip-version-check -r bench/requirements.txt
profile=${BENCH_PROFILE:-release}
flag=()
[ "$profile" = release ] && flag=(--release)
# Release figures come from the two packages alone, built as a deployment builds them: with
# --workspace, the adapter crate's tower-sessions turns tracing's `log` feature on in every
# binary. The debug smoke run (CI) reuses what `cargo test --workspace` built.
select=(-p valkey-sessions -p session-bench)
[ "$profile" = release ] || select=(--workspace)
cargo build --locked "${flag[@]}" "${select[@]}" --bin valkey-sessions --bin session-bench --bin health-probe --bin session-floor
python3 bench/run.py --profile "$profile" "$@"
out=docs/bench
[[ " $* " == *" --no-doc "* ]] && out=target/bench/plots
exec bench/.venv/bin/python bench/plot.py target/bench/results.json --out "$out"
