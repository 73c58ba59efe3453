#!/usr/bin/env bash
# Runs tapstream and Suricata on the same capture and puts their alerts side
# by side, joined by Community ID (both write it in EVE JSON).
#
# Flow-level detection sees rates, sizes, timing and fan-out; it cannot see
# a payload exploit (Heartbleed, Log4Shell, Zerologon, DCSync look like any
# TLS, HTTP or RPC session). A signature engine can. Run both and read both.
#
#   scripts/beside-suricata.sh CAPTURE OUT_DIR [RULES...]
#
# RULES default to the rule files Suricata ships (/etc/suricata/rules: decoder,
# stream and app-layer events, among them Heartbleed's invalid heartbeat);
# add your ruleset (for example ET Open) for exploit signatures. Writes
# OUT_DIR/tapstream.eve.json, OUT_DIR/suricata/eve.json and
# OUT_DIR/side-by-side.jsonl (one line per flow with an alert from either),
# and prints a table. TAPSTREAM (default: target/release/tapstream) and
# SURICATA (default: suricata) name the binaries.
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
cap=$1
out=$2
shift 2
tapstream=${TAPSTREAM:-target/release/tapstream}
suricata=${SURICATA:-suricata}
[ -r "$cap" ] || { echo "cannot read capture $cap" >&2; exit 2; }
command -v "$suricata" >/dev/null || { echo "suricata not found (apt install suricata)" >&2; exit 2; }
mkdir -p "$out/suricata"
rules=("$@")
if [ ${#rules[@]} -eq 0 ]; then
    rules=(/etc/suricata/rules/*.rules)
fi
cat "${rules[@]}" >"$out/suricata/rules"
rm -f "$out/suricata/eve.json" "$out/tapstream.eve.json"
# -k none: captures often carry offloaded (wrong) checksums.
"$suricata" -r "$cap" -l "$out/suricata" -S "$out/suricata/rules" -k none \
    --set outputs.1.eve-log.community-id=true >"$out/suricata/stdout.log" 2>&1
"$tapstream" run --pcap "$cap" --eve "$out/tapstream.eve.json" -q
python3 "$(dirname "$0")/merge-eve.py" "$out/tapstream.eve.json" "$out/suricata/eve.json" \
    "$out/side-by-side.jsonl"
