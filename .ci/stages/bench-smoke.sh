#!/usr/bin/env bash
# The benchmark script runs end to end (standalone and the serverless-shaped TLS pair),
# with no RPC error and exactly one Valkey round trip per Create, Get, Put and Delete. Short
# runs on the debug binaries the tests built: this checks the instrument, not the figures.
# It also draws the run's pictures (into target/bench/plots/), and plot.py's tests run.
set -euo pipefail
python3 -m unittest bench/test_run.py
BENCH_PROFILE=debug bash bench/run.sh --quick --no-doc --check
bench/.venv/bin/python -m unittest bench/test_plot.py
