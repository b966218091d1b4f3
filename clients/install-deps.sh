#!/usr/bin/env bash
# Installs everything the client tests need on Debian 12 (bookworm); idempotent, safe to re-run.
#   apt:  protoc, Go toolchain + Debian's Go grpc/protobuf libraries and plugins, Java grpc/protobuf
#         jars + grpc-java plugin + JUnit 4, a JDK
#   pip:  clients/python/requirements.txt into clients/python/.venv
#   npm:  clients/typescript (npm ci from the committed package-lock.json; also provides buf)
# Node >= 20 and Python >= 3.9 must already be on the machine (Debian 12's nodejs is 18).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

apt_packages=(
  # protoc and the well-known types (google/protobuf/*.proto)
  protobuf-compiler libprotobuf-dev
  # Go: toolchain, generators and the libraries, importable offline from /usr/share/gocode.
  # golang-github-golang-protobuf-1-5-dev replaces -1-3-dev: grpc 1.33's codec goes through
  # github.com/golang/protobuf, and only 1.5 understands protoc-gen-go 1.28 (APIv2) messages.
  golang-go protoc-gen-go protoc-gen-go-grpc
  golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev
  # gorilla/sessions (and its securecookie) for the Go adapter, clients/go/gorillastore
  golang-github-gorilla-sessions-dev golang-github-gorilla-securecookie-dev
  # Java: the grpc-java plugin and the runtime jars in /usr/share/java (javac: see below)
  protobuf-compiler-grpc-java-plugin libgrpc-java libprotobuf-java
  libnetty-java libguava-java libperfmark-java libgoogle-gson-java liberror-prone-java
  libjsr305-java libgeronimo-annotation-1.3-spec-java junit4 libhamcrest-java
  # Java Servlet filter (java/servlet): the Servlet 4 API, and embedded Jetty 9.4 for its tests
  libservlet-api-java libjetty9-java
)

missing=()
for p in "${apt_packages[@]}"; do
  if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
    missing+=("$p")
  fi
done
command -v javac >/dev/null || missing+=(default-jdk-headless)
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "install-deps: apt packages present"
fi

# Python: a venv under clients/python/.venv (git-ignored) with the pinned requirements.
venv="$here/python/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  rm -rf "$venv"
  python3 -m venv "$venv"
fi
req_sum="$(sha256sum "$here/python/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$req_sum" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/python/requirements.txt"
  echo "$req_sum" > "$venv/.requirements.sha256"
fi
echo "install-deps: python venv ready ($("$venv/bin/python" --version))"

# TypeScript (and buf): npm ci from the lock file, skipped when node_modules matches it.
command -v node >/dev/null || { echo "install-deps: node (>= 20) not found" >&2; exit 1; }
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
  { echo "install-deps: node >= 20 needed, found $(node --version)" >&2; exit 1; }
lock_sum="$(sha256sum "$here/typescript/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$here/typescript/node_modules/.lock.sha256" 2>/dev/null)" != "$lock_sum" ]; then
  (cd "$here/typescript" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" > "$here/typescript/node_modules/.lock.sha256"
fi
echo "install-deps: node_modules ready (node $(node --version), buf $("$here/typescript/node_modules/.bin/buf" --version))"
