#!/usr/bin/env bash
# CI stage for the framework adapters' packages: builds each package from source,
# installs the built artifact into a clean directory and runs its framework tests there against
# a real service. (The Rust adapter's tests are Rust tests: tests/tower_sessions_adapter.rs in
# `cargo test --all-targets`, using the crate by path.)
#
#   bash clients/adapters-stage.sh      # from .ci/stages/adapters.sh
#
# Ends with `adapters: N passed, M failed`; exits non-zero if anything failed.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/install-deps.sh" >/dev/null || { echo "adapters: install-deps failed" >&2; exit 1; }
bash "$here/with-service.sh" bash "$here/adapters-test.sh"
