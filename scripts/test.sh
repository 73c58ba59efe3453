#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need (Suricata 7
# for the Community ID cross-check, the ONNX Runtime library from its PyPI
# wheel), then the whole workspace's tests. Tests over ../shared/data skip
# with a message where that directory is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
scripts/fetch-onnxruntime.sh >/dev/null
export TAPSTREAM_REQUIRE_ORT=1
cargo test --workspace --all-targets --locked --release
