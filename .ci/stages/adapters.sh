#!/usr/bin/env bash
# The framework adapters' packages, built from source, installed into clean directories
# and tested with their frameworks against a real service (the Rust adapter runs in cargo test).
set -euo pipefail
exec bash clients/adapters-stage.sh
