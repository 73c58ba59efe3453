#!/usr/bin/env bash
# Live-capture load test: tcpreplay sends a capture as fast as it can into one
# end of a veth pair between two network namespaces this script creates;
# `tapstream run --interface` captures the other end, once per capture-thread
# count, and the packets sent, captured and dropped (kernel, interface,
# pipeline full) are reported with the rate.
#
# Usage: sudo scripts/live-bench.sh [PCAP] [THREADS...]
#   PCAP     default target/bench/bench.pcap (../shared/bench/make-bench-pcap.sh
#            builds it: 2.3 M packets)
#   THREADS  capture thread counts to compare (default: 1 2)
# Env: LIMIT (packets sent per run, default 1000000), WORKERS (flow workers,
#      default auto), BUFFER_MIB (kernel ring per capture thread, default
#      256), PIN (CPU list: run tapstream and tcpreplay on these CPUs only,
#      e.g. PIN=0 to overload it on purpose), TAPSTREAM (binary; default
#      ${CARGO_TARGET_DIR:-target}/release/tapstream, built if missing), OUT (result directory,
#      default target/live-bench), KEEP (keep the scratch directory).
# Needs root, iproute2 and tcpreplay (scripts/install-deps.sh bench).
set -euo pipefail
cd "$(dirname "$0")/.."

pcap=${1:-target/bench/bench.pcap}
shift || true
threads=("$@")
[ ${#threads[@]} -eq 0 ] && threads=(1 2)
limit=${LIMIT:-1000000}
out=${OUT:-target/live-bench}
bin=${TAPSTREAM:-${CARGO_TARGET_DIR:-target}/release/tapstream}

[ "$(id -u)" -eq 0 ] || { echo "live-bench: needs root (network namespaces)" >&2; exit 1; }
for t in ip tcpreplay python3; do
  command -v "$t" >/dev/null || { echo "live-bench: $t is missing (scripts/install-deps.sh bench)" >&2; exit 1; }
done
[ -f "$pcap" ] || { echo "live-bench: $pcap not found (../shared/bench/make-bench-pcap.sh builds it)" >&2; exit 1; }
if [ ! -x "$bin" ]; then
  cargo build --release --locked --bin tapstream
fi
ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}
export ORT_DYLIB_PATH

a=tslb-a b=tslb-b va=tslb-va vb=tslb-vb
cleanup() { ip netns del "$a" 2>/dev/null || true; ip netns del "$b" 2>/dev/null || true; }
trap cleanup EXIT
cleanup
ip netns add "$a"
ip netns add "$b"
ip link add "$va" type veth peer name "$vb"
ip link set "$va" netns "$a"
ip link set "$vb" netns "$b"
for n in "$a" "$b"; do
  ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$n" link set lo up
done
# The benchmark capture holds frames up to 64 KiB (offloaded segments).
ip -n "$a" link set "$va" mtu 65535 up
ip -n "$b" link set "$vb" mtu 65535 up

mkdir -p "$out"
# The sensor writes as `nobody`: a scratch directory it may use.
work=$(mktemp -d)
chmod 0777 "$work"
results="$out/results.tsv"
printf 'threads\tsent\tsend_s\tsend_pps\tread\tkernel_dropped\tif_dropped\tqueue_full\tcaptured_pps\tflows\talerts\tcpu_s\tcpu_ns_per_pkt\n' >"$results"
cores=$(nproc)
for t in "${threads[@]}"; do
  cfg="$work/live-$t.toml"
  cat >"$cfg" <<EOF
[capture]
threads = $t
buffer_mib = ${BUFFER_MIB:-256}
[privileges]
run_as = "nobody"
EOF
  summary="$work/summary-$t.json"
  workers=()
  [ -n "${WORKERS:-}" ] && workers=(--workers "$WORKERS")
  pin=()
  [ -n "${PIN:-}" ] && pin=(taskset -c "$PIN")
  ip netns exec "$b" "${pin[@]}" "$bin" run --quiet --interface "$vb" --config "$cfg" \
    --eve "$work/eve-$t.json" --summary-json "$summary" "${workers[@]}" \
    2>"$work/tapstream-$t.log" &
  # (TAPSTREAM_LOG=info in the environment logs each capture thread's counts.)
  pid=$!
  # Ready when the process has dropped to nobody (the capture is open).
  for _ in $(seq 100); do
    grep -q "^Uid:.*65534" "/proc/$pid/status" 2>/dev/null && break
    sleep 0.1
  done
  sleep 1
  ip netns exec "$a" "${pin[@]}" tcpreplay --topspeed --limit="$limit" -i "$va" "$pcap" >"$work/tcpreplay-$t.log" 2>&1
  sleep 2
  # CPU time of the whole process (all threads), clock ticks.
  cpu=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill -TERM "$pid"
  wait "$pid"
  python3 - "$t" "$work/tcpreplay-$t.log" "$summary" "$cpu" "$(getconf CLK_TCK)" >>"$results" <<'PY'
import json, re, sys
t, log, summary, cpu, hz = sys.argv[1:]
cpu_s = int(cpu) / int(hz)
text = open(log).read()
failed = re.search(r"Failed packets:\s+(\d+)", text)
sent = int(re.search(r"Actual: (\d+) packets", text).group(1)) - (int(failed.group(1)) if failed else 0)
secs = float(re.search(r"packets \(\d+ bytes\) sent in ([0-9.]+) seconds", text).group(1))
s = json.load(open(summary))
c = s["capture"]
print("\t".join(str(x) for x in [
    t, sent, f"{secs:.2f}", f"{sent / secs:.0f}", s["packets"], c["kernel_dropped"],
    c["interface_dropped"], c["queue_dropped"], f"{(s['packets'] - c['queue_dropped']) / secs:.0f}",
    s["flows"], s["alerts"], f"{cpu_s:.2f}", f"{cpu_s / max(s['packets'], 1) * 1e9:.0f}"]))
PY
done
if [ -n "${KEEP:-}" ]; then echo "live-bench: kept $work"; else rm -rf "$work"; fi
echo "live-bench: $cores cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
column -t "$results"
