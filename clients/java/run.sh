#!/usr/bin/env bash
# Runs the Java example or the scenario tests (JUnit 4) against SESSION_SERVICE_ADDR.
#   bash clients/java/run.sh example
#   bash clients/java/run.sh test
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/classpath.sh"
build="${JAVA_BUILD_DIR:-$here/build}" # JAVA_BUILD_DIR: build elsewhere (CI: a clean directory)
[ -d "$build/classes" ] || { echo "java: run clients/java/build.sh first" >&2; exit 1; }
case "${1:-}" in
  example) exec java -cp "$build/classes:$(java_classpath)" io.valkeysessions.client.Example ;;
  test) exec java -cp "$build/test-classes:$build/classes:$(java_classpath test)" org.junit.runner.JUnitCore io.valkeysessions.client.ScenarioTest ;;
  *) echo "usage: run.sh example|test" >&2; exit 2 ;;
esac
