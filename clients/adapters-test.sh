#!/usr/bin/env bash
# The adapters' package tests against an ALREADY RUNNING service (SESSION_SERVICE_ADDR); see
# adapters-stage.sh. Each package is built from source and installed into a fresh directory.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${SESSION_SERVICE_ADDR:?set SESSION_SERVICE_ADDR}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
pass=0 fail=0
# Adds one adapter's counts (exit code, passed, failed) to the totals; a non-zero exit with no
# failed test (a build or install error) counts as one failure.
tally() {
  local rc=$1 p=$2 f=$3
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  pass=$((pass + p)) fail=$((fail + f))
}

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

# Java: clients/java/pom.xml is for users (CI builds the client with javac against Debian's jars).
# Offline, check what can be checked: well-formed XML with the coordinates and dependencies users
# expect, versions equal to Debian's jars that CI compiles and tests against, and (when mvn is
# installed) that Maven reads the model and fails only to resolve artifacts in offline mode.
java_pom() {
  python3 - "$here/java/pom.xml" <<'PY' || return 1
import glob, os, sys, xml.etree.ElementTree as ET
ns = {"m": "http://maven.apache.org/POM/4.0.0"}
root = ET.parse(sys.argv[1]).getroot()
props = {e.tag.split("}")[1]: e.text for e in root.find("m:properties", ns)}
val = lambda e, t: (e.findtext("m:" + t, namespaces=ns) or "").replace("${grpc.version}", props["grpc.version"]).replace("${protobuf.version}", props["protobuf.version"])
assert (val(root, "groupId"), val(root, "artifactId")) == ("io.valkeysessions", "valkey-sessions-client"), "coordinates"
deps = {val(d, "artifactId"): (val(d, "version"), val(d, "scope")) for d in root.iterfind("m:dependencies/m:dependency", ns)}
for a in ("grpc-netty-shaded", "grpc-protobuf", "grpc-stub", "protobuf-java", "junit"):
    assert a in deps, "missing dependency " + a
assert deps["junit"][1] == "test", "junit must be test scope"
debian = {"grpc-stub": "grpc-stub-", "grpc-protobuf": "grpc-protobuf-", "protobuf-java": "protobuf-", "junit": "junit4-"}
for a, prefix in debian.items():
    want = deps[a][0]
    if not os.path.exists(f"/usr/share/java/{prefix}{want}.jar"):
        have = sorted(os.path.basename(p) for p in glob.glob(f"/usr/share/java/{prefix}[0-9]*.jar"))
        raise SystemExit(f"pom.xml {a} {want}: Debian ships {have}")
    print(f"pom.xml {a} {want} = Debian's /usr/share/java/{prefix}{want}.jar")
assert "../../proto" in (root.findtext(".//m:protoSourceRoot", namespaces=ns) or ""), "stubs from ../../proto"
print("pom.xml: well-formed, coordinates, dependencies and versions ok")
PY
  command -v mvn >/dev/null || { echo "pom.xml: mvn not installed, model not read by Maven"; return 0; }
  local m2 out
  m2="$(mktemp -d)"
  out="$(cd "$here/java" && timeout 120 mvn -o -B -q -Dmaven.repo.local="$m2" validate 2>&1)"
  rm -rf "$m2"
  if grep -qiE 'Non-parseable|Malformed|unrecognised tag|Unrecognised tag|is missing|Duplicated|Unknown packaging' <<<"$out" ||
     ! grep -q 'offline mode' <<<"$out"; then
    echo "pom.xml: Maven (offline) did not fail only for artifact resolution:"; echo "$out" | head -20; return 1
  fi
  echo "pom.xml: Maven read the model; offline it fails only to resolve artifacts (no local repository)"
}

# Servlet session filter (Java): build the client, the filter and its tests from source with javac
# against Debian's jars (servlet-api, jetty9) into a clean directory, run the embedded-Jetty JUnit 4
# tests there.
servlet() {
  JAVA_BUILD_DIR="$work/java-build" bash "$here/java/servlet/build.sh" || return 1
  JAVA_BUILD_DIR="$work/java-build" bash "$here/java/servlet/run.sh" 2>&1 |
    grep -vE '^(\s+at |\s+\.\.\. [0-9]+ more|Caused by: |[0-9-]+ [0-9:.]+:(INFO|WARN):)'
  return "${PIPESTATUS[0]}"
}

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

echo "=== adapters: express-session (npm pack tarball in a clean directory) ==="
out="$(express 2>&1)"; rc=$?
echo "$out"
tally "$rc" "$(grep -E '^# pass [0-9]+' <<<"$out" | grep -oE '[0-9]+' || echo 0)" \
  "$(grep -E '^# fail [0-9]+' <<<"$out" | grep -oE '[0-9]+' || echo 0)"

echo "=== adapters: gorilla/sessions (Go module copied into a clean GOPATH, offline) ==="
out="$(gorilla 2>&1)"; rc=$?
echo "$out"
tally "$rc" "$(grep -cE '^--- PASS' <<<"$out")" "$(grep -cE '^--- FAIL' <<<"$out")"

echo "=== adapters: Java pom.xml (offline checks) ==="
if java_pom; then tally 0 1 0; else echo "java pom.xml check failed"; tally 1 0 1; fi

echo "=== adapters: Servlet filter (javac against Debian's servlet-api and jetty9 jars, clean build directory) ==="
out="$(servlet 2>&1)"; rc=$?
echo "$out"
if grep -qE '^OK \([0-9]+ tests?\)' <<<"$out"; then
  p="$(grep -oE '^OK \([0-9]+' <<<"$out" | grep -oE '[0-9]+' | tail -n 1)" f=0
else
  run="$(grep -oE '^Tests run: [0-9]+' <<<"$out" | grep -oE '[0-9]+' | tail -n 1)"
  f="$(grep -oE 'Failures: [0-9]+' <<<"$out" | grep -oE '[0-9]+' | tail -n 1)"
  p=$(( ${run:-0} - ${f:-0} )) f="${f:-0}"
fi
tally "$rc" "$p" "$f"

echo "=== adapters: django session engine (wheel in a fresh venv) ==="
out="$(django 2>&1)"; rc=$?
echo "$out"
summary="$(grep -E '^=+ .*(passed|failed|error).* in [0-9.]+s' <<<"$out" | tail -n 1)"
tally "$rc" "$(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)" \
  "$(grep -oE '[0-9]+ (failed|errors?)' <<<"$summary" | awk '{ s += $1 } END { print s + 0 }')"

echo "adapters: $pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
