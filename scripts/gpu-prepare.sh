#!/usr/bin/env bash
# Prepares what scripts/gpu-check.sh needs on the GPU host, in .gpu/ (git
# ignored; name it in the device tool's `carry`): the release binary built
# with the `cuda` feature (stripped) and the Ethernet benign/attack captures
# of ../shared/data with MANIFEST.tsv, as an xz tarball (about 40 MB; the
# whole carry must stay under 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu
cargo build --release --locked --features cuda --quiet
cp "${CARGO_TARGET_DIR:-target}/release/tapstream" .gpu/tapstream
strip .gpu/tapstream
data=../shared/data
list=$(mktemp)
awk -F'\t' 'NR>1 && $7=="ether" && ($8=="benign" || $8 ~ /^attack/) {print $1}' "$data/MANIFEST.tsv" | sort > "$list"
echo MANIFEST.tsv >> "$list"
tar -C "$data" -cf - -T "$list" | xz -T0 -6 > .gpu/ether-captures.tar.xz
rm -f "$list"
du -ch .gpu/tapstream .gpu/ether-captures.tar.xz
