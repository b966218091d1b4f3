#!/usr/bin/env bash
# Every check and test of the project, in one run. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
# A one-shot build gains nothing from incremental artifacts; they would double the target size.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

stage() { printf '\n=== %s ===\n' "$*"; }

stage "dependencies"
infra/local/install-deps.sh --test
for tool in "cargo fmt" "cargo clippy"; do
  $tool --version >/dev/null 2>&1 || { echo "$tool is missing from the Rust toolchain" >&2; exit 1; }
done

stage "format"
cargo fmt --all -- --check

stage "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

stage "rust tests (real valkey-server processes)"
cargo test --locked --workspace --all-targets --no-fail-fast -- --test-threads "${TEST_THREADS:-3}"

for extra in .ci/stages/*.sh; do
  [ -e "$extra" ] || continue
  stage "$(basename "$extra" .sh)"
  bash "$extra"
done
