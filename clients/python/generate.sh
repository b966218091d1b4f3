#!/usr/bin/env bash
# Generates the Python stubs for session.v1 from the repository's proto/ into
# clients/python/session/v1/ (session_pb2.py, session_pb2.pyi, session_pb2_grpc.py; not committed).
# grpc.health.v1 comes from the grpcio-health-checking package.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-$here/.venv/bin/python}"
rm -rf "$here/session"
"$py" -m grpc_tools.protoc -I "$here/../../proto" \
  --python_out="$here" --pyi_out="$here" --grpc_python_out="$here" \
  session/v1/session.proto
echo "python: generated $(cd "$here" && ls session/v1/*.py* | tr '\n' ' ')"
