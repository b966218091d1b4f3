#!/usr/bin/env bash
# Offline validation of infra/ (Terraform, Dockerfile, compose, Kubernetes).
set -euo pipefail
exec bash infra/validate/run.sh
