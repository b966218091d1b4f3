#!/usr/bin/env bash
# The gateway in headless Chromium and under schemathesis, against real processes.
set -euo pipefail
exec bash tests/gateway-e2e/run.sh
