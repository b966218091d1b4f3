#!/usr/bin/env bash
# Generates the Go stubs for session.v1 from the repository's proto/ with Debian's protoc-gen-go
# and protoc-gen-go-grpc into clients/go/.gopath/src/valkeysessions/gen/session/v1 (import path
# valkeysessions/gen/session/v1, from the proto's go_package; not committed).
# grpc.health.v1 comes from Debian's golang-google-grpc-dev.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/.gopath/src"
rm -rf "$out/valkeysessions/gen"
mkdir -p "$out"
protoc -I "$here/../../proto" -I /usr/include \
  --go_out="$out" --go-grpc_out="$out" \
  session/v1/session.proto
echo "go: generated $(cd "$out" && ls valkeysessions/gen/session/v1/*.go | tr '\n' ' ')"
