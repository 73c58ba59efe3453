#!/usr/bin/env python3
"""Checks deploy/grafana/tapstream-dashboard.json (run by scripts/lint-deploy.sh).

- the file is JSON, panel ids are unique, every panel and query uses the
  templated data source ${DS_PROMETHEUS}, and the variables DS_PROMETHEUS and
  instance exist;
- every query parses as PromQL (with promql-parser, when installed), Grafana's
  $__rate_interval, $__range and $instance filled in;
- every tapstream metric a query names is one runtime/src/telemetry.rs describes
  (histograms through their _bucket/_sum/_count series), or one of PENDING;
- every tapstream metric selector filters on instance=~"$instance".

Usage: scripts/check-dashboard.py [DASHBOARD] [TELEMETRY_RS]
"""
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Metrics the sensor-mode work (live capture, queues, flow end reasons, alert
# suppression, EVE re-open) adds. Remove a name once runtime/src/telemetry.rs
# describes it; the check says which ones can go.
PENDING: set[str] = set()
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
GRAFANA_VARS = {"$__rate_interval": "5m", "$__range": "1h", "$instance": ".*"}


def main() -> int:
    dashboard = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "deploy/grafana/tapstream-dashboard.json"
    telemetry = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "runtime/src/telemetry.rs"
    errors = []
    notes = []

    # The METRICS table: `(Kind::Counter, "name", Unit::…, "help")` rows.
    described = set(re.findall(r'Kind::(?:Counter|Gauge|Histogram),\s*"([a-z0-9_]+)"', telemetry.read_text()))
    if not described:
        errors.append(f"{telemetry}: no metrics found in its METRICS table")
    for name in sorted(PENDING & described):
        notes.append(f"{name} is described in {telemetry.name} now: remove it from PENDING")
    known = described | PENDING

    try:
        dash = json.loads(dashboard.read_text())
    except json.JSONDecodeError as e:
        print(f"{dashboard}: not JSON: {e}")
        return 1

    try:
        import promql_parser
    except ImportError:
        promql_parser = None
        notes.append("promql-parser is not installed: PromQL syntax not checked")

    variables = {v.get("name") for v in dash.get("templating", {}).get("list", [])}
    for var in ("DS_PROMETHEUS", "instance"):
        if var not in variables:
            errors.append(f"templating variable {var} is missing")

    ids = set()
    used = set()
    queries = 0
    for panel in dash.get("panels", []):
        title = panel.get("title", "?")
        if panel.get("id") in ids:
            errors.append(f"{title}: duplicate panel id {panel.get('id')}")
        ids.add(panel.get("id"))
        if panel.get("type") == "row":
            continue
        if panel.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            errors.append(f"{title}: panel data source is not ${{DS_PROMETHEUS}}")
        targets = panel.get("targets", [])
        if not targets:
            errors.append(f"{title}: no queries")
        for t in targets:
            queries += 1
            expr = t.get("expr", "")
            where = f"{title} [{t.get('refId')}]"
            if t.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
                errors.append(f"{where}: query data source is not ${{DS_PROMETHEUS}}")
            if promql_parser is not None:
                filled = expr
                for var, value in GRAFANA_VARS.items():
                    filled = filled.replace(var, value)
                try:
                    promql_parser.parse(filled)
                except Exception as e:  # the parser raises a plain exception
                    errors.append(f"{where}: PromQL does not parse: {e}")
            for name, labels in re.findall(r"\b(tapstream_[a-z0-9_]+)(\{[^}]*\})?", expr):
                base = name
                if name not in known:
                    for suffix in HISTOGRAM_SERIES:
                        if name.endswith(suffix) and name[: -len(suffix)] in known:
                            base = name[: -len(suffix)]
                if base not in known:
                    errors.append(f"{where}: unknown metric {name}")
                used.add(base)
                if 'instance=~"$instance"' not in labels:
                    errors.append(f"{where}: {name} is not filtered on instance=~\"$instance\"")

    for note in notes:
        print(f"note: {note}")
    for error in errors:
        print(f"error: {error}")
    print(f"{dashboard.name}: {len(ids)} panels, {queries} queries, {len(used)} metrics "
          f"({len(used & PENDING)} of them pending), {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
