#!/usr/bin/env bash
# Every client (Python, TypeScript, Go, Java) against one running service; buf lint/breaking.
set -euo pipefail
exec bash clients/ci-stage.sh
