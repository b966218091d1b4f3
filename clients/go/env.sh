# Source this (`. clients/go/env.sh`) to build the Go client offline against Debian's packaged
# libraries: GOPATH mode, with the generated stubs in clients/go/.gopath first and
# /usr/share/gocode (golang-google-grpc-dev, golang-google-protobuf-dev, ...) second.
# No module proxy, no go.sum, no downloads.
_go_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export GOPATH="$_go_here/.gopath:/usr/share/gocode"
export GO111MODULE=off
export GOPROXY=off
export GOFLAGS=
export GOTOOLCHAIN=local
[ -n "${GOCACHE:-}" ] || [ -n "${HOME:-}" ] || [ -n "${XDG_CACHE_HOME:-}" ] || export GOCACHE=/tmp/go-build-cache
unset _go_here
