#!/usr/bin/env python3
"""Joins tapstream's and Suricata's EVE alerts by Community ID.

merge-eve.py TAPSTREAM_EVE SURICATA_EVE OUT_JSONL

One output line per flow (Community ID) with an alert from either engine:
{"community_id", "src", "dst", "proto", "tapstream": [labels], "suricata":
[signatures]}; a table of counts goes to stdout. Only `event_type: alert`
lines are read; a line that is not JSON is reported and skipped.
"""
import json
import sys
from collections import Counter, defaultdict


def alerts(path):
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                e = json.loads(line)
            except json.JSONDecodeError as err:
                print(f"{path}:{n}: not JSON ({err}), skipped", file=sys.stderr)
                continue
            if e.get("event_type") == "alert" and e.get("community_id"):
                yield e


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    flows = defaultdict(lambda: {"tapstream": Counter(), "suricata": Counter()})
    for who, path in (("tapstream", sys.argv[1]), ("suricata", sys.argv[2])):
        for e in alerts(path):
            f = flows[e["community_id"]]
            f.setdefault("src", f"{e.get('src_ip')}:{e.get('src_port', '')}")
            f.setdefault("dst", f"{e.get('dest_ip')}:{e.get('dest_port', '')}")
            f.setdefault("proto", e.get("proto"))
            f[who][e["alert"].get("signature", "?")] += 1
    both = only_t = only_s = 0
    with open(sys.argv[3], "w", encoding="utf-8") as out:
        for cid, f in sorted(flows.items()):
            t, s = f["tapstream"], f["suricata"]
            both += bool(t) and bool(s)
            only_t += bool(t) and not s
            only_s += bool(s) and not t
            out.write(json.dumps({"community_id": cid, "src": f["src"], "dst": f["dst"],
                                  "proto": f["proto"], "tapstream": dict(t),
                                  "suricata": dict(s)}) + "\n")
    print(f"flows with an alert: {len(flows)} (both {both}, tapstream only {only_t}, "
          f"suricata only {only_s})")
    for who in ("tapstream", "suricata"):
        total = Counter()
        for f in flows.values():
            total.update(f[who])
        for sig, n in total.most_common(10):
            print(f"  {who:<9} {n:>7}  {sig}")


if __name__ == "__main__":
    main()
