#!/usr/bin/env bash
# Generates the Go stubs for session.v1 from the repository's proto/ with Debian's protoc-gen-go
# and protoc-gen-go-grpc into clients/go/gen/session/v1 (not committed), under the module's import
# path github.com/valkey-sessions/valkey-sessions/clients/go/gen/session/v1 (an M option overrides
# the proto's go_package, so module users (go.mod) and the offline GOPATH build here import the
# same path). For GOPATH mode, clients/go/.gopath/src/github.com/valkey-sessions/valkey-sessions/
# clients/go is a symlink back to clients/go (see env.sh). grpc.health.v1 comes from Debian's
# golang-google-grpc-dev.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
module=github.com/valkey-sessions/valkey-sessions/clients/go
m="Msession/v1/session.proto=$module/gen/session/v1;sessionv1"
rm -rf "$here/gen" "$here/.gopath/src/valkeysessions"
mkdir -p "$here/gen/session/v1" "$here/.gopath/src/$(dirname "$module")"
ln -sfn "$here" "$here/.gopath/src/$module"
protoc -I "$here/../../proto" -I /usr/include \
  --go_out="$here/gen" --go_opt=paths=source_relative,"$m" \
  --go-grpc_out="$here/gen" --go-grpc_opt=paths=source_relative,"$m" \
  session/v1/session.proto
echo "go: generated $(cd "$here" && ls gen/session/v1/*.go | tr '\n' ' ')"
