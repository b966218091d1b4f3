#!/usr/bin/env bash
# Runs the same session.v1 scenario in Python, TypeScript, Go and Java against an ALREADY RUNNING
# service, plus `buf lint` and `buf breaking` (against the last release's recorded descriptor set).
# Generates stubs first.
#
#   bash clients/install-deps.sh        # once
#   SESSION_SERVICE_ADDR=127.0.0.1:50051 bash clients/test-all.sh
#
# Counts individual tests (plus one per buf check), prints a table, and ends with
# `clients: N passed, M failed`; exits non-zero if anything failed.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
: "${SESSION_SERVICE_ADDR:?set SESSION_SERVICE_ADDR=host:port of a running valkey-sessions}"
export SESSION_SERVICE_ADDR
STAGE_TIMEOUT="${STAGE_TIMEOUT:-300}"
BREAKING_AGAINST="${BREAKING_AGAINST:-}"
buf="$here/typescript/node_modules/.bin/buf"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

total_pass=0 total_fail=0 total_skip=0
summary=()

# record NAME PASSED FAILED [NOTE]
record() {
  total_pass=$((total_pass + $2))
  total_fail=$((total_fail + $3))
  summary+=("$(printf '  %-14s %3d passed, %d failed%s' "$1" "$2" "$3" "${4:+  ($4)}")")
}

# stage NAME PARSER COMMAND...: runs COMMAND (output shown and logged), then PARSER on the log
# prints "PASSED FAILED". A non-zero exit with no failed test counted counts as one failure.
stage() {
  local name="$1" parser="$2"
  shift 2
  printf '\n=== clients: %s ===\n' "$name"
  local log="$logs/$name.log" rc counts p f
  timeout "$STAGE_TIMEOUT" bash -c '"$@"' _ "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  counts="$($parser < "$log")"
  p="${counts% *}" f="${counts#* }"
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1
    [ "$rc" -eq 124 ] && echo "clients: $name timed out after ${STAGE_TIMEOUT}s"
    record "$name" "$p" "$f" "exit $rc"
  elif [ "$rc" -eq 0 ] && [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
    record "$name" 0 1 "no test ran"
  else
    record "$name" "$p" "$f"
  fi
}

n() { grep -oE "$1" | grep -oE '[0-9]+' | awk '{s += $1} END {print s + 0}'; }
parse_pytest() { local l; l="$(tail -n 3)"; echo "$(n '[0-9]+ passed' <<<"$l") $(($(n '[0-9]+ failed' <<<"$l") + $(n '[0-9]+ errors?' <<<"$l")))"; }
parse_node() { local l; l="$(cat)"; echo "$(n '^# pass [0-9]+' <<<"$l") $(n '^# fail [0-9]+' <<<"$l")"; }
parse_go() { local l; l="$(cat)"; echo "$(grep -cE '^--- PASS' <<<"$l") $(grep -cE '^--- FAIL' <<<"$l")"; }
parse_junit() {
  local l run fail; l="$(cat)"
  if grep -qE '^OK \([0-9]+ tests?\)' <<<"$l"; then
    echo "$(n '^OK \([0-9]+' <<<"$l") 0"
  else
    run="$(n '^Tests run: [0-9]+' <<<"$l")"; fail="$(n 'Failures: [0-9]+' <<<"$l")"
    echo "$((run - fail)) $fail"
  fi
}
parse_check() { echo "0 0"; } # exit code decides: see check()

# check NAME COMMAND...: a single pass/fail check (buf).
check() {
  local name="$1"; shift
  printf '\n=== clients: %s ===\n' "$name"
  if timeout "$STAGE_TIMEOUT" bash -c '"$@"' _ "$@"; then
    echo "ok"
    record "$name" 1 0
  else
    record "$name" 0 1
  fi
}

missing_deps() {
  echo "clients: $1 missing; run: bash clients/install-deps.sh" >&2
  return 1
}

python_tests() {
  local py="$here/python/.venv/bin/python"
  [ -x "$py" ] || missing_deps "clients/python/.venv"
  bash "$here/python/generate.sh" && (cd "$here/python" && "$py" -m pytest -v -p no:cacheprovider)
}

typescript_tests() {
  [ -x "$buf" ] || missing_deps "clients/typescript/node_modules"
  (cd "$here/typescript" && npm run --silent build && node --test dist/test/)
}

go_tests() {
  bash "$here/go/generate.sh" &&
    (cd "$here/go" && . ./env.sh && go vet ./... && go test -count=1 -v ./scenario ./example)
}

java_tests() {
  bash "$here/java/build.sh" && bash "$here/java/run.sh" test
}

buf_lint() {
  (cd "$root" && "$buf" lint)
}

# buf breaking against the last release: the descriptor set recorded when it was cut
# (releases/proto/session-v1-<version>.binpb, made with `buf build -o`), so a removed or
# renumbered field fails here. $BREAKING_AGAINST may name another baseline (a file or a branch).
buf_breaking() {
  local against="${BREAKING_AGAINST:-}"
  if [ -z "$against" ]; then
    against="$(ls "$root"/releases/proto/session-v1-*.binpb 2>/dev/null | sort -V | tail -n 1)"
  fi
  if [ -z "$against" ]; then
    echo "buf breaking: no release recorded in releases/proto/" >&2
    return 1
  fi
  echo "buf breaking proto --against $against"
  (cd "$root" && "$buf" breaking proto --against "$against")
}

# Stages run in a child bash under `timeout`, so they see these as exported.
export here root buf logs BREAKING_AGAINST
export -f missing_deps python_tests typescript_tests go_tests java_tests buf_lint

stage python parse_pytest python_tests
stage typescript parse_node typescript_tests
stage go parse_go go_tests
stage java parse_junit java_tests
if [ -x "$buf" ]; then
  check "buf lint" buf_lint
  printf '\n=== clients: buf breaking ===\n'
  buf_breaking
  case $? in
    0) echo "ok"; record "buf breaking" 1 0 ;;
    3) total_skip=$((total_skip + 1)); summary+=("  buf breaking     skipped") ;;
    *) record "buf breaking" 0 1 ;;
  esac
else
  missing_deps "buf (clients/typescript/node_modules)"
  record "buf" 0 1 "not installed"
fi

printf '\n=== clients: summary (service at %s) ===\n' "$SESSION_SERVICE_ADDR"
printf '%s\n' "${summary[@]}"
skipped=""
[ "$total_skip" -eq 0 ] || skipped=", $total_skip skipped"
echo "clients: $total_pass passed, $total_fail failed$skipped"
[ "$total_fail" -eq 0 ]
