#!/usr/bin/env bash
# Fetch the ONNX Runtime shared library that tapstream loads at run time.
#
# Why: tapstream links ONNX Runtime dynamically (ort's `load-dynamic`), so the
# build needs no network and no C++ toolchain. The library comes from the
# official PyPI wheel, fetched with pip (the ordinary client of that registry),
# checked against a pinned SHA-256, and unpacked into `.deps/onnxruntime/` at
# the repository root, where `tapstream` looks for it (see
# `inference/src/library.rs`).
#
# Usage: scripts/fetch-onnxruntime.sh [DEST_DIR]
#   DEST_DIR defaults to <repo>/.deps/onnxruntime. Prints the library path.
#
# Idempotent: when the library is already there with the pinned hash, nothing
# is downloaded. Needs python3 with pip (Debian: `apt-get install python3-pip`);
# nothing else is downloaded.
set -euo pipefail

ORT_VERSION=1.31.1

# The wheel's Python tag does not matter (we only take the C library out of
# it), so we always ask pip for the cp311 wheel: one file, one pinned hash per
# CPU architecture, whatever python3 this machine has.
case "$(uname -s)-$(uname -m)" in
Linux-x86_64)
    PLATFORM=manylinux_2_28_x86_64
    WHEEL_SHA256=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f
    LIB_SHA256=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
    SHARED_SHA256=086ec1d5388f64153d9c63470d126693db9a182c8ce236d3a1119068471b8a0d
    ;;
Linux-aarch64)
    PLATFORM=manylinux_2_28_aarch64
    WHEEL_SHA256=da05378364c44d4407e463982d2bf8d5e4cfea873283757e48beeb41df97b7f3
    LIB_SHA256=8aa3b76b28c778a2b1dd660d34161adb1d508c9ccd04ff9dc80e26eca5df8467
    SHARED_SHA256=3b6be288fbfb7dff8770d08a23defdde18e8f7e0f5a2b344a0e5e238c999ea88
    ;;
*)
    echo "fetch-onnxruntime: unsupported platform $(uname -s)-$(uname -m);" \
        "supported: Linux x86_64 and aarch64." >&2
    echo "Install ONNX Runtime ${ORT_VERSION} yourself and set ORT_DYLIB_PATH to its" \
        "libonnxruntime shared library." >&2
    exit 1
    ;;
esac
WHEEL="onnxruntime-${ORT_VERSION}-cp311-cp311-${PLATFORM}.whl"
LIB="libonnxruntime.so.${ORT_VERSION}"
SHARED="libonnxruntime_providers_shared.so"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-${REPO_ROOT}/.deps/onnxruntime}"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Already installed with the pinned bytes: done.
if [[ -f "${DEST}/${LIB}" && -f "${DEST}/${SHARED}" ]] &&
    [[ "$(sha256_of "${DEST}/${LIB}")" == "${LIB_SHA256}" ]] &&
    [[ "$(sha256_of "${DEST}/${SHARED}")" == "${SHARED_SHA256}" ]]; then
    echo "${DEST}/${LIB}"
    exit 0
fi

if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "fetch-onnxruntime: python3 with pip is required (Debian: apt-get install python3-pip)." >&2
    exit 1
fi

TMP="$(mktemp -d)"
trap 'rm -rf "${TMP}"' EXIT

echo "fetch-onnxruntime: downloading ${WHEEL} with pip" >&2
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 --platform "${PLATFORM}" \
    "onnxruntime==${ORT_VERSION}" -d "${TMP}" >&2

if [[ ! -f "${TMP}/${WHEEL}" ]]; then
    echo "fetch-onnxruntime: pip did not produce ${WHEEL}; got:" >&2
    ls -1 "${TMP}" >&2
    exit 1
fi
GOT="$(sha256_of "${TMP}/${WHEEL}")"
if [[ "${GOT}" != "${WHEEL_SHA256}" ]]; then
    echo "fetch-onnxruntime: SHA-256 mismatch for ${WHEEL}:" >&2
    echo "  expected ${WHEEL_SHA256}" >&2
    echo "  got      ${GOT}" >&2
    exit 1
fi

# Extract with Python's zipfile (no unzip needed), into a staging directory
# first so that an interrupted run never leaves a half-written library behind.
mkdir -p "${DEST}"
STAGE="$(mktemp -d "${DEST}/.staging.XXXXXX")"
trap 'rm -rf "${TMP}" "${STAGE}"' EXIT
python3 - "${TMP}/${WHEEL}" "${STAGE}" "${LIB}" "${SHARED}" <<'PY'
import os, sys, zipfile
wheel, stage, *names = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        with z.open(f"onnxruntime/capi/{name}") as src, open(os.path.join(stage, name), "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
PY
for pair in "${LIB}:${LIB_SHA256}" "${SHARED}:${SHARED_SHA256}"; do
    name="${pair%%:*}"
    want="${pair#*:}"
    got="$(sha256_of "${STAGE}/${name}")"
    if [[ "${got}" != "${want}" ]]; then
        echo "fetch-onnxruntime: SHA-256 mismatch for ${name} inside the wheel (expected ${want}, got ${got})" >&2
        exit 1
    fi
    chmod 0755 "${STAGE}/${name}"
    mv -f "${STAGE}/${name}" "${DEST}/${name}"
done

echo "${DEST}/${LIB}"
