#!/usr/bin/env bash
# deploy/compose.kafka.yml without Docker: the same commands and the same
# config (deploy/kafka.toml, broker address swapped), against tansu (a
# Kafka-protocol broker in one binary, scripts/fetch-tansu.sh) on 127.0.0.1
# instead of Apache Kafka. Checks that the alerts topic holds exactly the
# alerts of `tapstream run --pcap` on the same capture (as sets of flow_id,
# duplicates counted).
#
# Usage: deploy/kafka-local.sh            (after cargo build --release,
#                                          scripts/fetch-onnxruntime.sh and
#                                          scripts/fetch-tansu.sh)
# Environment: TAPSTREAM_BIN (default target/release/tapstream),
#   TAPSTREAM_TANSU (default .deps/tansu/tansu), PORT (default 19092),
#   KEEP=1 keeps the work directory.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${TAPSTREAM_BIN:-${REPO}/target/release/tapstream}"
TANSU="${TAPSTREAM_TANSU:-${REPO}/.deps/tansu/tansu}"
PORT="${PORT:-19092}"
for f in "${BIN}" "${TANSU}"; do
    [[ -x "${f}" ]] || { echo "kafka-local: ${f} not found (see the usage line)" >&2; exit 2; }
done

W="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "${p}" 2>/dev/null || true; done
    if [[ "${KEEP:-0}" == 1 ]]; then echo "kafka-local: work directory ${W}" >&2; else rm -rf "${W}"; fi
}
trap cleanup EXIT
export TAPSTREAM_LOG="${TAPSTREAM_LOG:-info}"

sed "s/\"kafka:9092\"/\"127.0.0.1:${PORT}\"/" "${REPO}/deploy/kafka.toml" >"${W}/kafka.toml"

# kafka + topics
"${TANSU}" broker --cluster-id tapstream-local \
    --listener-url "tcp://127.0.0.1:${PORT}" --advertised-listener-url "tcp://127.0.0.1:${PORT}" \
    --storage-engine memory://tansu/ >"${W}/tansu.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null && break
    sleep 0.2
done
for t in packets alerts; do
    "${TANSU}" topic create "${t}" --broker "tcp://127.0.0.1:${PORT}" --partitions 4 >/dev/null
done

# tapstream-1, tapstream-2: one consumer group
for m in 1 2; do
    "${BIN}" run --kafka --config "${W}/kafka.toml" >"${W}/member-${m}.out" 2>"${W}/member-${m}.err" &
    PIDS+=($!)
done
MEMBERS=("${PIDS[1]}" "${PIDS[2]}")

# producer
"${BIN}" demo-pcap --out "${W}/demo.pcap"
"${BIN}" kafka produce --pcap "${W}/demo.pcap" --topic packets \
    --config "${W}/kafka.toml"

# Wait until both members have read what was produced, then stop them as
# `docker compose stop` does (SIGTERM): open flows are ended and flushed.
for _ in $(seq 120); do
    if grep -q "caught up" "${W}/member-1.err" && grep -q "caught up" "${W}/member-2.err"; then break; fi
    sleep 1
done
sleep 2
kill -TERM "${MEMBERS[@]}"
for p in "${MEMBERS[@]}"; do wait "${p}" || { echo "kafka-local: a member failed" >&2; tail -5 "${W}"/member-*.err >&2; exit 1; }; done
for m in 1 2; do
    echo "== member ${m}"
    grep -E "partitions assigned|^  (kafka|flows |alerts )" "${W}/member-${m}.err" || true
done

# The reference: the same capture as a file, same settings.
"${BIN}" run --pcap "${W}/demo.pcap" --config "${W}/kafka.toml" --eve "${W}/reference.json" --quiet 2>/dev/null

# alerts: every partition of the topic
for p in 0 1 2 3; do
    "${TANSU}" cat consume alerts --broker "tcp://127.0.0.1:${PORT}" --partition "${p}" \
        --max-wait-time-ms 1000 >"${W}/alerts-${p}.json"
done

python3 - "${W}" <<'PY'
import collections, glob, json, sys
w = sys.argv[1]
got = collections.Counter()
for path in sorted(glob.glob(f"{w}/alerts-*.json")):
    for line in open(path):
        if line.strip():
            batch = json.loads(line)
            for m in batch if isinstance(batch, list) else [batch]:
                got[m["value"]["flow_id"]] += 1
want = collections.Counter(json.loads(l)["flow_id"] for l in open(f"{w}/reference.json"))
missing, extra = set(want) - set(got), set(got) - set(want)
dups = sum(c - 1 for c in got.values())
print(f"alerts topic: {sum(got.values())} alerts, {len(got)} flow_ids ({dups} duplicates); "
      f"run --pcap: {len(want)} flow_ids; missing {len(missing)}, not in the reference {len(extra)}")
sys.exit(1 if missing or extra else 0)
PY
