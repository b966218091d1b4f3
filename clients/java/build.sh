#!/usr/bin/env bash
# Generates the Java stubs (protoc + Debian's grpc_java_plugin) for session.v1 (proto/) and
# grpc.health.v1 (clients/proto/), then compiles them, the client and the tests with javac into
# clients/java/build/ (not committed).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/classpath.sh"
build="${JAVA_BUILD_DIR:-$here/build}" # JAVA_BUILD_DIR: build elsewhere (CI: a clean directory)
rm -rf "$build"
mkdir -p "$build/gen" "$build/classes" "$build/test-classes"

plugin="$(command -v grpc_java_plugin || command -v protoc-gen-grpc-java || true)"
[ -n "$plugin" ] || { echo "java: grpc_java_plugin not found (protobuf-compiler-grpc-java-plugin)" >&2; exit 1; }
protoc -I "$here/../../proto" -I "$here/../proto" -I /usr/include \
  --plugin=protoc-gen-grpc-java="$plugin" \
  --java_out="$build/gen" --grpc-java_out="$build/gen" \
  session/v1/session.proto grpc/health/v1/health.proto

cp_main="$(java_classpath)"
cp_test="$(java_classpath test)"
find "$build/gen" "$here/src/main/java" -name '*.java' > "$build/main-sources.txt"
javac -nowarn -encoding UTF-8 --release 17 -d "$build/classes" -cp "$cp_main" @"$build/main-sources.txt"
find "$here/src/test/java" -name '*.java' > "$build/test-sources.txt"
javac -encoding UTF-8 --release 17 -d "$build/test-classes" -cp "$build/classes:$cp_test" @"$build/test-sources.txt"
echo "java: built $(grep -c . "$build/main-sources.txt") main and $(grep -c . "$build/test-sources.txt") test sources into $build/"
