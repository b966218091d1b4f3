#!/usr/bin/env bash
# Runs the Servlet filter's JUnit 4 tests (embedded Jetty 9) against SESSION_SERVICE_ADDR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../classpath.sh"
build="${JAVA_BUILD_DIR:-$here/../build}"
[ -d "$build/servlet-test-classes" ] || { echo "java servlet: run clients/java/servlet/build.sh first" >&2; exit 1; }
exec java -cp "$build/servlet-test-classes:$build/servlet-classes:$build/classes:$(java_classpath test):$(servlet_classpath test)" \
  org.junit.runner.JUnitCore io.valkeysessions.servlet.ServletAdapterTest
