#!/usr/bin/env bash
# Generates the Python stubs for session.v1 from the repository's proto/ into
# clients/python/session_client/_pb/ (session_pb2.py, session_pb2.pyi, session_pb2_grpc.py; not
# committed). The wheel build (setup.py) runs the same generator, gen_stubs.py.
# grpc.health.v1 comes from the grpcio-health-checking package.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-$here/.venv/bin/python}"
rm -rf "$here/session"  # the stubs' former location (top-level package `session`)
"$py" "$here/gen_stubs.py" "$here/session_client/_pb"
