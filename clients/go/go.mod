// For users of the Go client in module mode (see README.md, "go.mod"). CI and this repository
// build offline in GOPATH mode against Debian's packages (env.sh), which ignores this file; the
// versions below are the ones Debian 12 ships, i.e. what CI tests. There is no go.sum: it cannot
// be computed offline; `go mod tidy` writes it where the module proxy is reachable.
module github.com/valkey-sessions/valkey-sessions/clients/go

go 1.19

require (
	github.com/gorilla/sessions v1.2.1
	google.golang.org/genproto v0.0.0-20200413115906-b5235f65be36
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)

// github.com/golang/protobuf is pinned to 1.5: grpc 1.33's codec marshals through it and 1.4
// cannot marshal protoc-gen-go 1.28 messages (see README.md). `go mod tidy` adds the remaining
// indirect requirements (golang.org/x/net, x/sys, x/text) and go.sum.
require (
	github.com/golang/protobuf v1.5.2 // indirect
	github.com/gorilla/securecookie v1.1.1 // indirect
)
