#!/usr/bin/env bash
# Validates deploy/kubernetes/*.yaml and deploy/kubernetes/metrics/*.yaml offline against the API
# schemas of the oldest and newest Kubernetes releases we support (kubernetes-validate, strict: unknown
# fields are errors), then checks that the manifests keep the guarantees that scripts/swarm-check.sh
# proves on Swarm: readiness on /health/ready, a preStop delay, a termination grace period of at least
# that delay plus the service's drain, maxUnavailable 0, and an HPA on CPU and the queue's depth.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-.venv}
validate=$venv/bin/kubernetes-validate
if [ ! -x "$validate" ]; then
    echo "validate-k8s: $validate not found; run 'make .venv/.installed-dev' (dev extra)" >&2
    exit 1
fi

for version in ${K8S_VERSIONS:-1.29.0 1.37.0}; do
    "$validate" --strict --quiet --kubernetes-version "$version" deploy/kubernetes/*.yaml deploy/kubernetes/metrics/*.yaml
    echo "validate-k8s: deploy/kubernetes/{,metrics/}*.yaml valid for Kubernetes $version (strict)"
done

"$venv/bin/python" - <<'PY'
import re
import sys
from pathlib import Path

import yaml

# The longest request the service serves at its default limits: a detection at the detector budget
# (docs/ROBUSTNESS.md, "SIGTERM"). It finishes after SIGTERM, within the termination grace period.
LONGEST_REQUEST_S = 8

docs = {d["kind"]: d for f in sorted(Path("deploy/kubernetes").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d}
errors = []
spec = docs["Deployment"]["spec"]
pod = spec["template"]["spec"]
container = next(c for c in pod["containers"] if c["name"] == "landmarks")
env = {e["name"]: e.get("value") for e in container.get("env", [])}

if spec["strategy"]["rollingUpdate"].get("maxUnavailable") != 0:
    errors.append("the rolling update may take a replica away before its successor is ready (maxUnavailable != 0)")
if container.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/health/ready":
    errors.append("the readiness probe is not GET /health/ready")
pre_stop = " ".join(container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", []))
match = re.search(r"sleep\((\d+(?:\.\d+)?)\)", pre_stop)
if not match:
    errors.append("no preStop delay (exec ... time.sleep(N)) before SIGTERM")
delay = float(match.group(1)) if match else 0.0
grace = float(env.get("LANDMARKS_SHUTDOWN_GRACE_SECONDS") or 2)
needed = delay + grace + LONGEST_REQUEST_S
period = pod.get("terminationGracePeriodSeconds", 30)
if period < needed:
    errors.append(f"terminationGracePeriodSeconds {period} < preStop {delay:g} + grace {grace:g} + longest request {LONGEST_REQUEST_S}")
metrics = docs["HorizontalPodAutoscaler"]["spec"]["metrics"]
if not any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in metrics):
    errors.append("the HPA does not scale on CPU")
if not any(m["type"] == "Pods" and m["pods"]["metric"]["name"] == "landmarks_queue_depth" for m in metrics):
    errors.append("the HPA does not scale on landmarks_queue_depth")
if "PodDisruptionBudget" not in docs:
    errors.append("no PodDisruptionBudget")
for error in errors:
    print(f"validate-k8s: {error}", file=sys.stderr)
if errors:
    sys.exit(1)
print(
    f"validate-k8s: guarantees hold: readiness /health/ready, maxUnavailable 0, terminationGracePeriodSeconds "
    f"{period} >= preStop {delay:g} + grace {grace:g} + longest request {LONGEST_REQUEST_S}, HPA on CPU and queue depth"
)
PY
