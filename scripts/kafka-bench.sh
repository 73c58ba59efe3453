#!/usr/bin/env bash
# Benchmark of the Kafka path on this machine: a capture is produced into a
# 4-partition `packets` topic of a local tansu broker (scripts/fetch-tansu.sh),
# then one `tapstream run --kafka` member reads it all, scores the flows and
# writes the alerts to an `alerts` topic. Prints messages/s and packets/s of
# both halves, timed from the tools' own logs (group join and the idle exit
# are not counted).
# Usage: scripts/kafka-bench.sh [CAPTURE] [CHUNK_PACKETS]
#   CAPTURE defaults to target/bench/bench.pcap (tapstream make-bench-pcap).
set -euo pipefail
cd "$(dirname "$0")/.."
pcap=${1:-target/bench/bench.pcap}
chunk=${2:-1024}
bin=${TAPSTREAM_BIN:-${CARGO_TARGET_DIR:-target}/release/tapstream}
[ -x "$bin" ] || cargo build --release --locked
[ -f "$pcap" ] || { echo "no capture $pcap (build it: $bin make-bench-pcap --data ../shared/data --out $pcap)" >&2; exit 1; }
tansu=$(scripts/fetch-tansu.sh)
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$(scripts/fetch-onnxruntime.sh)}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$tansu" broker --cluster-id tapstream-bench --listener-url "tcp://127.0.0.1:$port" \
  --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine memory://tansu/ \
  > "$work/tansu.log" 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
cat > "$work/bench.toml" <<TOML
[kafka]
brokers = ["127.0.0.1:$port"]

[source.kafka]
group_id = "bench"
topics = ["packets"]
exit_after_idle = "5s"
order_wait = "${ORDER_WAIT:-200ms}"

TOML
# Alerts to the `alerts` topic (default) or, with ALERTS=file, to a file.
if [ "${ALERTS:-kafka}" = kafka ]; then
  printf '\n[output.kafka]\ntopic = "alerts"\n' >> "$work/bench.toml"
else
  printf '\n[output]\neve = "%s"\n' "$work/alerts.json" >> "$work/bench.toml"
fi
"$bin" kafka create-topics --config "$work/bench.toml" --partitions 4 packets alerts
echo "== machine"; nproc; grep -m1 "model name" /proc/cpuinfo
echo "== produce $pcap ($chunk packets per message)"
"$bin" kafka produce --config "$work/bench.toml" --pcap "$pcap" --chunk-packets "$chunk" 2>&1 | tee "$work/produce.txt"
echo "== consume (one member)"
TAPSTREAM_LOG=info "$bin" run --kafka --quiet --config "$work/bench.toml" --summary-json "$work/summary.json" 2> "$work/run.log"
python3 - "$work/run.log" "$work/summary.json" <<'PY'
import sys, json, re, datetime
log = open(sys.argv[1]).read().splitlines()
s = json.load(open(sys.argv[2]))
def ts(line):
    t = line.split()[0]
    return datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))
start = next(ts(l) for l in log if "partitions assigned" in l)
end = [ts(l) for l in log if "caught up" in l][-1]
secs = (end - start).total_seconds() - 1.0  # "caught up" is said after 1 s of quiet
k = s["kafka"]
print(f"read {k['messages']} messages, {s['packets']} packets, {s['flows']} flows, {s['alerts']} alerts in {secs:.2f} s")
print(f"consume: {k['messages']/secs:,.0f} messages/s, {s['packets']/secs:,.0f} packets/s; accounted: {s['accounted']}, malformed: {k['malformed']}, commits: {k['commits']}")
PY
