#!/usr/bin/env bash
# Quick start: builds tapstream, makes the project's synthetic demo capture,
# and scores it with the shipped default model, printing EVE JSON alerts to
# stdout (the run summary goes to stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh run
scripts/fetch-onnxruntime.sh >/dev/null
cargo build --release --locked --quiet
bin="${CARGO_TARGET_DIR:-target}/release/tapstream"
mkdir -p target/demo
"$bin" demo-pcap --out target/demo/demo.pcap
exec "$bin" run --pcap target/demo/demo.pcap "$@"
