#!/usr/bin/env bash
# Builds the Servlet session filter (io.valkeysessions.servlet) and its embedded-Jetty tests with
# javac against Debian's jars (libservlet-api-java, libjetty9-java), on top of the client that
# clients/java/build.sh builds. Output under clients/java/build/ (not committed).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../classpath.sh"
build="${JAVA_BUILD_DIR:-$here/../build}"
bash "$here/../build.sh"
rm -rf "$build/servlet-classes" "$build/servlet-test-classes"
mkdir -p "$build/servlet-classes" "$build/servlet-test-classes"
javac -encoding UTF-8 --release 17 -d "$build/servlet-classes" \
  -cp "$build/classes:$(java_classpath):$(servlet_classpath)" $(find "$here/src/main/java" -name '*.java')
javac -encoding UTF-8 --release 17 -d "$build/servlet-test-classes" \
  -cp "$build/servlet-classes:$build/classes:$(java_classpath test):$(servlet_classpath test)" \
  $(find "$here/src/test/java" -name '*.java')
echo "java servlet: built the filter and its tests into $build/servlet-*classes"
