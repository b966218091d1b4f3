#!/usr/bin/env bash
# Issue 17: the framework adapters' packages, built from source, installed into clean directories
# and tested with their frameworks against a real service (the Rust adapter runs in cargo test).
set -euo pipefail
exec bash clients/adapters-stage.sh
