#!/usr/bin/env bash
# Fetch ONNX Runtime's GPU libraries (CUDA execution provider, CUDA 13) for
# the CUDA image (deploy/Dockerfile.cuda).
#
# Why: the same as scripts/fetch-onnxruntime.sh, for the GPU build. The
# libraries come from the official PyPI wheel `onnxruntime-gpu==1.31.1` (the
# version the project's GPU host runs, see ../shared/gpu/README.md), fetched
# with pip, checked against pinned SHA-256s (the wheel and each library), and
# unpacked into DEST_DIR:
#   libonnxruntime.so.1.31.1            the runtime (ORT_DYLIB_PATH)
#   libonnxruntime_providers_shared.so  loaded by the runtime for any provider
#   libonnxruntime_providers_cuda.so    the CUDA provider (284 MB); needs
#                                       libcudart.so.13, libcublas(Lt).so.13,
#                                       libcurand.so.10 and the driver's
#                                       libcuda.so.1; cuDNN 9 and cuFFT are
#                                       loaded when a model needs them
# The TensorRT provider library is left out: it needs libnvinfer (TensorRT),
# which no image or machine of this project has.
#
# Usage: scripts/fetch-onnxruntime-gpu.sh [DEST_DIR]
#   DEST_DIR defaults to <repo>/.deps/onnxruntime-gpu. Prints the runtime's path.
#
# Linux x86_64 only (the wheel exists for no other Linux platform). Idempotent.
# Needs python3 with pip; the wheel is 256 MB.
set -euo pipefail

ORT_VERSION=1.31.1

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
    echo "fetch-onnxruntime-gpu: onnxruntime-gpu ${ORT_VERSION} has Linux wheels for x86_64 only" \
        "(this is $(uname -s)-$(uname -m))." >&2
    exit 1
fi
# The Python tag does not matter (only the C libraries are taken), so pip is
# always asked for the cp312 wheel, as ../shared/gpu/stage-ort-gpu.sh does.
WHEEL="onnxruntime_gpu-${ORT_VERSION}-cp312-cp312-manylinux_2_28_x86_64.whl"
WHEEL_SHA256=05d548956197b9d01f59b625de740e0d6be3593f874e241a12dc0362650ecdf7
LIBS=(
    "libonnxruntime.so.${ORT_VERSION}:5104254339ecadae808da771bd0b63b240f0dbd466514234905e54372435c303"
    "libonnxruntime_providers_shared.so:086ec1d5388f64153d9c63470d126693db9a182c8ce236d3a1119068471b8a0d"
    "libonnxruntime_providers_cuda.so:8387867e857499e045caff5d13ac6a5de29571c801562fa2dde0e45f1f31de52"
)

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-${REPO_ROOT}/.deps/onnxruntime-gpu}"
RUNTIME="${DEST}/libonnxruntime.so.${ORT_VERSION}"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Already installed with the pinned bytes: done.
installed=1
for pair in "${LIBS[@]}"; do
    name="${pair%%:*}"
    if [[ ! -f "${DEST}/${name}" || "$(sha256_of "${DEST}/${name}")" != "${pair#*:}" ]]; then
        installed=0
        break
    fi
done
if [[ ${installed} == 1 ]]; then
    echo "${RUNTIME}"
    exit 0
fi

if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "fetch-onnxruntime-gpu: python3 with pip is required (Debian: apt-get install python3-pip)." >&2
    exit 1
fi

TMP="$(mktemp -d)"
trap 'rm -rf "${TMP}"' EXIT

echo "fetch-onnxruntime-gpu: downloading ${WHEEL} with pip" >&2
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi cp312 --platform manylinux_2_28_x86_64 \
    "onnxruntime-gpu==${ORT_VERSION}" -d "${TMP}" >&2

if [[ ! -f "${TMP}/${WHEEL}" ]]; then
    echo "fetch-onnxruntime-gpu: pip did not produce ${WHEEL}; got:" >&2
    ls -1 "${TMP}" >&2
    exit 1
fi
GOT="$(sha256_of "${TMP}/${WHEEL}")"
if [[ "${GOT}" != "${WHEEL_SHA256}" ]]; then
    echo "fetch-onnxruntime-gpu: SHA-256 mismatch for ${WHEEL}:" >&2
    echo "  expected ${WHEEL_SHA256}" >&2
    echo "  got      ${GOT}" >&2
    exit 1
fi

# Extract into a staging directory first, so that an interrupted run never
# leaves a half-written library behind.
mkdir -p "${DEST}"
STAGE="$(mktemp -d "${DEST}/.staging.XXXXXX")"
trap 'rm -rf "${TMP}" "${STAGE}"' EXIT
names=()
for pair in "${LIBS[@]}"; do names+=("${pair%%:*}"); done
python3 - "${TMP}/${WHEEL}" "${STAGE}" "${names[@]}" <<'PY'
import os, sys, zipfile
wheel, stage, *names = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        with z.open(f"onnxruntime/capi/{name}") as src, open(os.path.join(stage, name), "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
PY
for pair in "${LIBS[@]}"; do
    name="${pair%%:*}"
    want="${pair#*:}"
    got="$(sha256_of "${STAGE}/${name}")"
    if [[ "${got}" != "${want}" ]]; then
        echo "fetch-onnxruntime-gpu: SHA-256 mismatch for ${name} inside the wheel (expected ${want}, got ${got})" >&2
        exit 1
    fi
    chmod 0755 "${STAGE}/${name}"
    mv -f "${STAGE}/${name}" "${DEST}/${name}"
done

echo "${RUNTIME}"
