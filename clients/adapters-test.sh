#!/usr/bin/env bash
# The adapters' package tests against an ALREADY RUNNING service (SESSION_SERVICE_ADDR); see
# adapters-stage.sh. Each package is built from source and installed into a fresh directory.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${SESSION_SERVICE_ADDR:?set SESSION_SERVICE_ADDR}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
pass=0 fail=0

# express-session store: npm pack (prepack builds from source), install the tarball with Express
# into a clean directory, run the Express app tests there.
express() {
  local tgz
  tgz="$(cd "$here/typescript" && npm pack --silent --pack-destination "$work" | tail -n 1)" || return 1
  mkdir -p "$work/express-app" && cd "$work/express-app" || return 1
  printf '{"name":"express-app","private":true,"type":"module"}\n' > package.json
  npm install --no-audit --no-fund --loglevel=error "$work/$tgz" express@4.21.2 express-session@1.18.1 || return 1
  cp "$here/typescript/adapter-test/express.test.mjs" .
  node --test --test-timeout 60000 express.test.mjs
}

# gorilla/sessions store: generate the stubs, copy the Go module (sources only) into a clean GOPATH
# under its import path, build and vet it offline against Debian's packages and run the net/http
# app tests there; then check clients/go/go.mod (for module users) parses and that a module-mode
# build of the copy fails only for the network (GOPROXY=off), not for its paths or imports.
gorilla() {
  bash "$here/go/generate.sh" || return 1
  local mod=github.com/valkey-sessions/valkey-sessions/clients/go dst
  dst="$work/gopath/src/$mod"
  mkdir -p "$dst" && cp -r "$here/go/." "$dst/" && rm -rf "$dst/.gopath" || return 1
  (
    cd "$dst" && . ./env.sh || exit 1
    export GOPATH="$work/gopath:/usr/share/gocode"
    go vet "$mod/gorillastore" && go test -count=1 -v "$mod/gorillastore" || exit 1
    echo "--- go.mod (module mode, offline) ---"
    GO111MODULE=on GOFLAGS= go mod edit -json go.mod >/dev/null || { echo "go.mod does not parse"; exit 1; }
    local errs
    errs="$(GO111MODULE=on GOFLAGS=-mod=mod GOPROXY=off GOPATH="$work/modcache" go build ./gorillastore 2>&1 |
      grep -vE '^go: downloading |module lookup disabled by GOPROXY=off$')"
    [ -z "$errs" ] || { echo "module-mode build: errors other than the network:"; echo "$errs"; exit 1; }
    echo "go.mod parses; a module-mode build fails only for module lookups (GOPROXY=off)"
  )
}

echo "=== adapters: express-session (npm pack tarball in a clean directory) ==="
out="$(express 2>&1)"; rc=$?
echo "$out"
p="$(grep -E '^# pass [0-9]+' <<<"$out" | grep -oE '[0-9]+' || echo 0)"
f="$(grep -E '^# fail [0-9]+' <<<"$out" | grep -oE '[0-9]+' || echo 0)"
[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
pass=$((pass + p)) fail=$((fail + f))

echo "=== adapters: gorilla/sessions (Go module copied into a clean GOPATH, offline) ==="
out="$(gorilla 2>&1)"; rc=$?
echo "$out"
p="$(grep -cE '^--- PASS' <<<"$out")"
f="$(grep -cE '^--- FAIL' <<<"$out")"
[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
pass=$((pass + p)) fail=$((fail + f))

echo "adapters: $pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
