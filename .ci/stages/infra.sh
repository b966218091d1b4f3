#!/usr/bin/env bash
# Issue 8: offline validation of infra/ (Terraform, Dockerfile, compose, Kubernetes).
set -euo pipefail
exec bash infra/validate/run.sh
