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

echo "=== adapters: express-session (npm pack tarball in a clean directory) ==="
out="$(express 2>&1)"; rc=$?
echo "$out"
p="$(grep -E '^# pass [0-9]+' <<<"$out" | grep -oE '[0-9]+' || echo 0)"
f="$(grep -E '^# fail [0-9]+' <<<"$out" | grep -oE '[0-9]+' || echo 0)"
[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
pass=$((pass + p)) fail=$((fail + f))

echo "adapters: $pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
