#!/usr/bin/env python3
"""Compares two EVE alert files of the same capture (a reference run and a
run on another device or provider) within a stated tolerance.

Usage: compare-alerts.py REFERENCE.json OTHER.json [TOLERANCE]

Alerts are matched by flow (flow_id, start, ports). A flow alerted by both
must have the same class and scores within TOLERANCE (default 1e-4); a flow
alerted by one run only must have a score within TOLERANCE of the
threshold (a last-bit difference of a GEMM can move such a flow across it).
Prints one summary line (and the first problems); exits 1 when any problem
is found, 2 when a file cannot be read.
"""
import json
import sys


def load(path):
    alerts = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            a = json.loads(line)
            t = a["tapstream"]
            key = (a["flow_id"], a["flow"]["start"], a.get("src_port"), a.get("dest_port"))
            if key in alerts:
                raise ValueError(f"{path}:{n}: a second alert for flow {key}")
            alerts[key] = (t["class"], float(t["score"]), float(t["threshold"]))
    return alerts


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    tol = float(sys.argv[3]) if len(sys.argv) == 4 else 1e-4
    try:
        ref, other = load(sys.argv[1]), load(sys.argv[2])
    except (OSError, ValueError, KeyError) as e:
        print(f"compare-alerts: {e}", file=sys.stderr)
        return 2
    problems = []
    both = ref.keys() & other.keys()
    max_diff = 0.0
    for k in both:
        (c1, s1, _), (c2, s2, _) = ref[k], other[k]
        max_diff = max(max_diff, abs(s1 - s2))
        if c1 != c2 or not abs(s1 - s2) <= tol:
            problems.append(f"flow {k}: {c1} {s1} vs {c2} {s2}")
    for name, only in (("reference", ref.keys() - other.keys()), ("other", other.keys() - ref.keys())):
        src = ref if name == "reference" else other
        for k in only:
            _, s, thr = src[k]
            if not s - thr <= tol:
                problems.append(f"flow {k}: alerted only in the {name} run, score {s}, threshold {thr}")
    only_ref = len(ref.keys() - other.keys())
    only_other = len(other.keys() - ref.keys())
    print(
        f"alerts: reference {len(ref)}, other {len(other)}, both {len(both)}, "
        f"only reference {only_ref}, only other {only_other}, "
        f"largest score difference {max_diff:.3g}, problems {len(problems)} (tolerance {tol:g})"
    )
    for p in sorted(problems)[:10]:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
