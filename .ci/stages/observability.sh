#!/usr/bin/env bash
# The alert rules (promtool check and test), the dashboard's queries, and every metric
# name they use against a live scrape of the service.
set -euo pipefail
exec bash infra/observability/check/run.sh
