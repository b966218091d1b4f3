#!/usr/bin/env bash
# Offline validation of infra/ (no provider, image or cluster can be downloaded here):
#   1. every .tf parses (python-hcl2), the security-group, cache-access, compose and manifest
#      tests pass, and the cache user's access string works on a real Valkey (if installed);
#   2. checkov: no failed check on the Terraform, the Dockerfile and the Kubernetes manifests
#      (skips are inline, each with its reason);
#   3. kubernetes-validate accepts the manifests for the oldest and newest Kubernetes we target
#      (the prometheus-operator resources, which it has no schema for, are checked in step 1
#      against schema/prometheus-operator.json);
#   4. compose.yaml validates against the vendored compose spec (inside step 1).
# Installs its tools into infra/validate/.venv from requirements.txt (pinned).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
infra="$(cd "$here/.." && pwd)"
venv="$here/.venv"

[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"

echo "--- terraform parses; security groups, cache access, compose and manifest tests"
echo "    (test_cache_acl tries the cache user's access string on a local valkey-server; skipped without one)"
(cd "$here" && "$venv/bin/python" -m unittest -v test_infra test_cache_acl)

echo "--- checkov (terraform, dockerfile, kubernetes)"
# --skip-download: no Prisma Cloud account and no network; the bundled checks are used.
"$venv/bin/checkov" --skip-download --quiet --compact \
  --framework terraform dockerfile kubernetes -d "$infra" --skip-path validate/.venv \
  --skip-path observability/check/.venv

echo "--- kubernetes-validate"
manifests=()
for f in "$infra"/k8s/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] && continue
  grep -q '^apiVersion: monitoring.coreos.com/' "$f" && continue
  manifests+=("$f")
done
for version in 1.30.0 1.34.0; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${manifests[@]}"
done
echo "infra: all offline checks passed"
