#!/usr/bin/env bash
# Throughput comparison on the shared benchmark capture, all in one run on the
# same machine: tapstream (end to end: decode, flows, CIC features, ONNX
# model, EVE output), Suricata 7 (-r, no rules) and nfstream (statistical
# features, no DPI). Prints one table of packets/s.
#
# Usage: benches/compare.sh [BENCH.pcap]
#   BENCH.pcap defaults to target/bench/bench.pcap, built once from
#   ../shared/bench/make-bench-pcap.sh (needs ../shared/data and tshark tools).
set -euo pipefail
cd "$(dirname "$0")/.."
pcap=${1:-target/bench/bench.pcap}
if [ ! -s "$pcap" ]; then
  [ -x ../shared/bench/make-bench-pcap.sh ] || [ -f ../shared/bench/make-bench-pcap.sh ] || {
    echo "no $pcap and no ../shared/bench/make-bench-pcap.sh to build it" >&2; exit 1; }
  mkdir -p "$(dirname "$pcap")"
  echo "building $pcap (once) ..." >&2
  bash ../shared/bench/make-bench-pcap.sh "$pcap" >&2
fi
scripts/install-deps.sh bench
scripts/fetch-onnxruntime.sh >/dev/null
cargo build --release --locked --quiet

packets=$(capinfos -c -M "$pcap" | awk -F: '/Number of packets/ {gsub(/ /,"",$2); print $2}')
cpu=$(awk -F: '/model name/ {sub(/^ /,"",$2); print $2; exit}' /proc/cpuinfo)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cat "$pcap" > /dev/null   # warm the page cache for every tool alike

now() { date +%s.%N; }

# tapstream: the bench command's last line is JSON with pps.
target/release/tapstream bench --pcap "$pcap" | tee "$tmp/tapstream.txt" >&2
ts_pps=$(tail -n 1 "$tmp/tapstream.txt" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["pps"]))')

# tapstream as a whole process, timed like the others (start-up, model load,
# EVE formatting to /dev/null included).
t0=$(now)
target/release/tapstream run -q --pcap "$pcap" --eve /dev/null
t1=$(now)
tr_pps=$(python3 -c "print(round($packets/($t1-$t0)))")

# Suricata 7, offline, no rules, default outputs.
t0=$(now)
suricata -r "$pcap" -k none -S /dev/null -l "$tmp" >/dev/null 2>&1
t1=$(now)
su_pps=$(python3 -c "print(round($packets/($t1-$t0)))")

# nfstream: statistical analysis on, DPI off.
cat > "$tmp/nfs.py" <<'PY'
import sys, time
from nfstream import NFStreamer
t = time.perf_counter()
flows = sum(1 for _ in NFStreamer(source=sys.argv[1], statistical_analysis=True, n_dissections=0))
print(time.perf_counter() - t, flows)
PY
read -r nf_secs nf_flows < <(python3 "$tmp/nfs.py" "$pcap")
nf_pps=$(python3 -c "print(round($packets/$nf_secs))")

printf '\nmachine: %s (%s cores)\ncapture: %s (%s packets)\n' "$cpu" "$(nproc)" "$pcap" "$packets"
printf '%-58s %14s\n' "tool" "packets/s"
printf '%-58s %14s\n' "tapstream bench, end to end (CPU, default model)" "$ts_pps"
printf '%-58s %14s\n' "tapstream run, whole process (start-up and model load)" "$tr_pps"
printf '%-58s %14s\n' "Suricata $(suricata -V | awk '{print $5}') (-r, no rules)" "$su_pps"
printf '%-58s %14s\n' "nfstream $(python3 -c 'import nfstream; print(nfstream.__version__)' 2>/dev/null) (statistical, no DPI)" "$nf_pps"
