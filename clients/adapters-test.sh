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

# Django session engine: build the wheel from a clean copy of clients/python (the stubs are
# generated from proto/ during the build), install it with Django and pytest into a fresh venv,
# run the Django app tests there (outside the source tree, so the installed package is tested).
django() {
  local src="$work/python-src" venv="$work/django-venv" app="$work/django-app"
  mkdir -p "$src" "$app" "$work/dist"
  tar -C "$here/python" --exclude=./.venv --exclude=./build --exclude='*.egg-info' --exclude=./session_client/_pb \
    --exclude=__pycache__ -cf - . | tar -C "$src" -xf - || return 1
  python3 -m venv "$venv" || return 1
  VALKEY_SESSIONS_PROTO="$here/../proto" "$venv/bin/pip" wheel -q --disable-pip-version-check --no-deps \
    -w "$work/dist" "$src" || return 1
  ls "$work/dist"
  "$venv/bin/pip" install -q --disable-pip-version-check "$work"/dist/valkey_sessions_client-*.whl \
    Django==5.2.19 pytest==9.2.0 || return 1
  cp "$here/python/adapter-test/test_django.py" "$app/"
  cd "$app" && "$venv/bin/python" -c 'import valkey_sessions.django as m; print("testing", m.__file__)' &&
    "$venv/bin/python" -m pytest -v -p no:cacheprovider test_django.py
}

echo "=== adapters: django session engine (wheel in a fresh venv) ==="
out="$(django 2>&1)"; rc=$?
echo "$out"
summary="$(grep -E '^=+ .*(passed|failed|error).* in [0-9.]+s' <<<"$out" | tail -n 1)"
p="$(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)"
f="$(grep -oE '[0-9]+ (failed|errors?)' <<<"$summary" | awk '{ s += $1 } END { print s + 0 }')"
[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
pass=$((pass + p)) fail=$((fail + f))

echo "adapters: $pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
