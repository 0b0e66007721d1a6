#!/usr/bin/env bash
# Validates deploy/kubernetes/*.yaml offline against the API schemas of the oldest and newest
# Kubernetes releases we support (kubernetes-validate, strict: unknown fields are errors).
set -euo pipefail
cd "$(dirname "$0")/.."

validate=${VENV:-.venv}/bin/kubernetes-validate
if [ ! -x "$validate" ]; then
    echo "validate-k8s: $validate not found; run 'make .venv/.installed-dev' (dev extra)" >&2
    exit 1
fi

for version in ${K8S_VERSIONS:-1.29.0 1.37.0}; do
    "$validate" --strict --quiet --kubernetes-version "$version" deploy/kubernetes/*.yaml
    echo "validate-k8s: deploy/kubernetes/*.yaml valid for Kubernetes $version (strict)"
done
