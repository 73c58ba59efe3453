#!/usr/bin/env python3
"""Labelled flow rows from real captures, for the behaviour model (see BEHAVIOUR.md).

  captures (lab LABELS.tsv sets, public benign protocol captures, curated public attacks)
    -> `tapstream features --pcap FILE --out CSV -q --workers 2 [--context]`
       (cached under --cache, keyed by capture path + binary SHA-256 + context flag)
    -> one label per flow: behaviour class, attack kind, scenario id (= capture file),
       benign source (file-name prefix / lab-A / lab-B)
    -> numpy arrays (class `Flows`)

The feature columns are taken from the CSV header: the schema features of
``kernels/src/schema.rs`` minus ``Src Port`` / ``Dst Port`` (like train.py), then every
``ctx_*`` column when the binary wrote them (``--context``). Nothing here needs pandas.

Run it alone to extract/cache everything and print the data counts:

    python3 deploy/training/flows.py --tapstream /work/bin/tapstream-ctx --extra /work/labgen
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import EXCLUDED_FEATURES, schema_features  # noqa: E402  (train.py: the schema parser)

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = (REPO_ROOT / ".." / "shared" / "data").resolve()
DEFAULT_LAB = SHARED / "lab"
DEFAULT_BENIGN = SHARED / "pcaps" / "benign"
DEFAULT_PUBLIC_ATTACK = SHARED / "pcaps" / "attack"
DEFAULT_CACHE = Path("/tmp/tapstream-train-cache")
CAPTURE_EXTS = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz", ".snoop")

BENIGN = "benign"
# Behaviour classes in output-column order (benign first). Fixed, so the ONNX label list
# does not depend on which kinds happen to be present.
CLASSES = [BENIGN, "scan", "syn_flood", "udp_flood", "icmp_flood", "http_flood", "slow_dos",
           "brute_force", "dns_flood"]
# Attack kind (LABELS.tsv `label` column) -> behaviour class.
KIND_CLASS = {
    "portscan": "scan",
    "synflood": "syn_flood",
    "udpflood": "udp_flood",
    "icmpflood": "icmp_flood",
    "httpflood": "http_flood",
    "slowloris": "slow_dos",
    "sshbrute": "brute_force",
    "bruteforce": "brute_force",
    "dnsflood": "dns_flood",
}
SPOOFED = "random-spoofed"
CTX_PREFIX = "ctx_"
ID_COLUMNS = ("Flow ID", "Src IP", "Src Port", "Dst IP", "Dst Port", "Protocol", "Timestamp")


def log(msg: str) -> None:
    print(msg, flush=True)


# --- captures --------------------------------------------------------------------------
@dataclass
class Capture:
    path: Path
    set: str  # "A", "B", ... for lab sets, "public" for pcaps/benign
    kind: str  # "benign" or an attack kind (KIND_CLASS key)
    scenario: str  # scenario id: "<set>:<relative path>" (one capture file)
    source: str  # benign source: lab-A, lab-B, or the file-name prefix (ndpi, zeek, ...)
    attackers: tuple[str, ...] = ()
    victim: str = ""
    spoofed: bool = False
    meta: dict = field(default_factory=dict)
    variant: str = ""  # "" for the capture itself, else the `tapstream perturb` name of this copy

    @property
    def shown_as(self) -> str:
        """Its scenario, and for a perturbed copy the perturbation (`scenario~name`)."""
        return self.scenario + (f"~{self.variant}" if self.variant else "")

    @property
    def cls(self) -> str:
        return BENIGN if self.kind == BENIGN else KIND_CLASS[self.kind]


def lab_captures(root: Path, set_name: str | None = None) -> list[Capture]:
    """Captures listed in ROOT/LABELS.tsv that exist (a set still being produced may be partial)."""
    labels = root / "LABELS.tsv"
    if not labels.exists():
        return []
    out = []
    with labels.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            s = set_name or row.get("set") or "?"
            p = root / row["path"]
            if not p.exists() or p.stat().st_size == 0:
                log(f"  skip {p}: listed in {labels} but missing")
                continue
            kind = row["label"].strip()
            if kind != BENIGN and kind not in KIND_CLASS:
                log(f"  skip {p}: unknown label {kind!r}")
                continue
            atk = row.get("attacker_ips", "").strip()
            spoofed = atk.startswith(SPOOFED)
            attackers = () if (spoofed or atk in ("", "-")) else tuple(a.strip() for a in atk.replace(";", ",").split(",") if a.strip())
            out.append(Capture(
                path=p, set=s, kind=kind, scenario=f"{s}:{row['path']}", source=f"lab-{s}",
                attackers=attackers, victim=row.get("victim_ip", "").strip(), spoofed=spoofed,
                meta={"tool": row.get("tool", ""), "notes": row.get("notes", "")},
            ))
    return out


# Public attack captures that are used, with the attacker address read off each capture
# (the one host that opens the attack flows; checked by hand: top source address, its
# destinations/ports match the MANIFEST description). Labelled like the lab sets: a flow
# with the attacker as an endpoint is the attack, the rest of the file is benign
# background; "random-spoofed" (victim given instead): flows whose responder is the victim.
# Left out on purpose (see BEHAVIOUR.md): sanders__synscan (the same capture as
# ndpi__synscan, re-encoded), markofu__dosattack (100 SYNs with random source *and*
# destination addresses: no victim to label by), markofu__hackersview / osfingerprinting /
# zeek__vnc-scanner / pcapattack__* (1-3 flows of recon or RPC enumeration, not a scan
# in the flow sense), dos/* (DHCP/DNP3/IPv6 floods: no class here), amplification/*
# (reflection: no class here), everything else (no per-flow truth).
PUBLIC_ATTACKS = [
    # (path under pcaps/attack, kind, attacker addresses, spoofed-flood victim)
    ("scan/ndpi__synscan.pcap", "portscan", ("172.16.0.8",), ""),
    ("scan/esnet__tcp_0_1000_20190821.pcap", "portscan", ("172.31.15.102",), ""),
    ("scan/markofu__portscan.pcap", "portscan", ("10.100.25.14",), ""),
    ("scan/esnet__nmap_80_all.pcap", "portscan", ("10.87.1.10",), ""),
    ("scan/zeek__nmap-vsn.pcap", "portscan", ("192.168.1.71",), ""),
    ("scan/sanders__activeosfingerprinting.pcapng", "portscan", ("172.16.16.128",), ""),
    ("scan/ndpi__tcp_scan.pcapng", "portscan", ("192.168.1.178",), ""),
    ("syn_flood/stopddos__pkt.TCP.synflood.spoofed.pcap", "synflood", (), "10.10.10.10"),
    ("syn_flood/stopddos__pkt.TCP.DOMINATE.syn.ecn.cwr.pcapng", "synflood", (), "10.10.10.10"),
    ("syn_flood/sv__tcp-session-syn-flood-drop-precedence__input.pcap", "synflood", ("192.0.2.10",), ""),
    ("bruteforce/zeek__sshguess.pcap", "sshbrute", ("192.168.56.1",), ""),
    ("bruteforce/zeek__bruteforce.pcap", "bruteforce", ("192.168.56.1",), ""),
    ("bruteforce/markofu__ftp-crack.pcap", "bruteforce", ("10.234.125.254",), ""),
]


def public_attack_captures(root: Path) -> list[Capture]:
    out = []
    for rel, kind, attackers, victim in PUBLIC_ATTACKS:
        p = root / rel
        if not p.exists():
            log(f"  skip {p}: missing")
            continue
        src = p.name.split("__", 1)[0]
        out.append(Capture(path=p, set="public-attack", kind=kind, scenario=f"pub:{rel}", source=src,
                           attackers=attackers, victim=victim, spoofed=not attackers))
    return out


def benign_captures(root: Path) -> list[Capture]:
    """Every capture under pcaps/benign/**: benign, source = file-name prefix before `__`."""
    out = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or not p.name.lower().endswith(CAPTURE_EXTS):
            continue
        rel = p.relative_to(root).as_posix()
        src = p.name.split("__", 1)[0] if "__" in p.name else "other"
        out.append(Capture(path=p, set="public", kind=BENIGN, scenario=f"benign:{rel}", source=src))
    return out


# --- feature extraction (cached) -------------------------------------------------------
def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Extractor:
    """Runs `tapstream features` once per (capture path, binary hash, context flag)."""

    def __init__(self, binary: Path, cache: Path, context: bool, workers: int = 2):
        self.binary = binary.resolve()
        self.bin_sha = file_sha256(self.binary)
        self.context = context
        self.workers = workers
        self.dir = cache / f"{self.bin_sha[:16]}-{'ctx' if context else 'noctx'}"
        self.dir.mkdir(parents=True, exist_ok=True)

    def csv_path(self, cap: Path) -> Path:
        # capture path (+ size and mtime, so a regenerated capture is not served stale);
        # the binary hash and context flag are in self.dir
        st = cap.stat()
        key = hashlib.sha256(f"{cap.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        return self.dir / f"{key}-{cap.name}.csv"

    def extract(self, cap: Path) -> Path | None:
        out = self.csv_path(cap)
        err = out.with_suffix(".err")
        if out.exists():
            return out
        if err.exists():
            return None
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        cmd = [str(self.binary), "features", "--pcap", str(cap), "--out", str(tmp), "-q",
               "--workers", str(self.workers)]
        if self.context:
            cmd.append("--context")
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0 or not tmp.exists():
            err.write_text(f"rc={r.returncode}\n{r.stderr[-4000:]}", encoding="utf-8")
            tmp.unlink(missing_ok=True)
            return None
        tmp.replace(out)
        return out

    def extract_all(self, caps: list[Capture], jobs: int = 2) -> dict[Path, Path | None]:
        todo = [c.path for c in caps]
        t0 = time.time()
        with ThreadPoolExecutor(max_workers=jobs) as ex:
            res = dict(zip(todo, ex.map(self.extract, todo)))
        failed = [p for p, o in res.items() if o is None]
        log(f"features: {len(todo)} captures via {self.binary.name} (sha256 {self.bin_sha[:12]}, "
            f"context={self.context}) in {time.time() - t0:.0f}s; {len(failed)} failed (see *.err in {self.dir})")
        return res


# --- CSV -> arrays ---------------------------------------------------------------------
def model_columns(header: list[str]) -> list[str]:
    """The model's input columns present in this CSV header: schema features minus ports
    (schema order, like train.py), then ctx_* columns (CSV order)."""
    base = [f for f in schema_features() if f not in EXCLUDED_FEATURES]
    missing = [f for f in base if f not in header]
    if missing:
        raise ValueError(f"CSV lacks schema columns {missing}")
    return base + [h for h in header if h.startswith(CTX_PREFIX)]


def read_csv(path: Path) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """(columns, X float32, id columns) for one features CSV; cached as .npz next to it."""
    npz = path.with_suffix(".npz")
    if npz.exists() and npz.stat().st_mtime >= path.stat().st_mtime:
        z = np.load(npz, allow_pickle=False)
        cols = [str(c) for c in z["columns"]]
        return cols, z["X"], {k: z[f"id_{k}"] for k in ("src", "dst", "sport", "dport", "proto", "ts")}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        cols = model_columns(header)
        ci = {h: i for i, h in enumerate(header)}
        fidx = [ci[c] for c in cols]
        rows, src, dst, sport, dport, proto, ts = [], [], [], [], [], [], []
        for r in reader:
            vals = []
            for i in fidx:
                try:
                    vals.append(float(r[i]))
                except ValueError:
                    vals.append(0.0)
            rows.append(vals)
            src.append(r[ci["Src IP"]]); dst.append(r[ci["Dst IP"]])
            sport.append(int(r[ci["Src Port"]] or 0)); dport.append(int(r[ci["Dst Port"]] or 0))
            proto.append(int(r[ci["Protocol"]] or 0)); ts.append(r[ci["Timestamp"]])
    X = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(cols))
    X[~np.isfinite(X)] = 0.0  # like the runtime (inference/src/features.rs)
    X = X.astype(np.float32)
    ids = {"src": np.asarray(src, dtype=str), "dst": np.asarray(dst, dtype=str),
           "sport": np.asarray(sport, dtype=np.int32), "dport": np.asarray(dport, dtype=np.int32),
           "proto": np.asarray(proto, dtype=np.int16), "ts": np.asarray(ts, dtype=str)}
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, columns=np.asarray(cols, dtype=str), X=X, **{f"id_{k}": v for k, v in ids.items()})
    tmp.replace(npz)
    return cols, X, ids


def label_flows(cap: Capture, ids: dict[str, np.ndarray]) -> np.ndarray:
    """True where a flow belongs to the capture's attack (always False for benign captures).

    * attacker addresses listed: a flow with an attacker address as either endpoint;
    * `random-spoofed`: a flow whose responder (Dst IP) is the victim;
    everything else in the file is benign background."""
    n = len(ids["src"])
    if cap.kind == BENIGN:
        return np.zeros(n, dtype=bool)
    if cap.spoofed:
        return ids["dst"] == cap.victim
    atk = np.asarray(cap.attackers, dtype=str)
    return np.isin(ids["src"], atk) | np.isin(ids["dst"], atk)


# --- the dataset -----------------------------------------------------------------------
@dataclass
class Flows:
    features: list[str]
    X: np.ndarray  # float32 [n, f]
    y: np.ndarray  # class index into CLASSES
    kind: np.ndarray  # attack kind or "benign"
    scenario: np.ndarray  # capture scenario id (for attack flows: the attack scenario)
    source: np.ndarray  # benign source group (lab-A, lab-B, ndpi, zeek, ...)
    set: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    info: dict
    variant: np.ndarray  # "" for flows of the captures themselves, else the perturbation of the copy

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, m: np.ndarray) -> "Flows":
        return Flows(self.features, self.X[m], self.y[m], self.kind[m], self.scenario[m], self.source[m],
                     self.set[m], self.src[m], self.dst[m], self.info, self.variant[m])

    def clean(self) -> np.ndarray:
        """Rows of the captures themselves (not of perturbed copies)."""
        return self.variant == ""

    def counts(self) -> dict:
        def cnt(a):
            u, c = np.unique(a, return_counts=True)
            return {str(k): int(v) for k, v in zip(u, c)}
        att = self.y != 0
        return {
            "flows": int(len(self)),
            "per_class": {c: int((self.y == i).sum()) for i, c in enumerate(CLASSES)},
            "per_attack_scenario": cnt(self.scenario[att]),
            "benign_per_source": cnt(self.source[~att]),
            "benign_files_per_source": {s: int(len(np.unique(self.scenario[~att & (self.source == s)])))
                                        for s in np.unique(self.source[~att])},
        }


def perturbed_copies(binary: Path, bin_sha: str, caps: list[Capture], names: list[str], cache: Path,
                     jobs: int) -> list[Capture]:
    """A copy of every capture per perturbation name, written by `tapstream perturb` (each flow's
    initiator bends its packets) under CACHE/perturbed-<binary sha>/<name>/ and reused while the
    capture is unchanged. A copy keeps its capture's labels, scenario and source (the addresses do
    not change), so a leave-out fold removes the capture and its copies together."""
    root = cache / f"perturbed-{bin_sha[:16]}"
    tasks = []
    for cap in caps:
        st = cap.path.stat()
        for name in names:
            key = hashlib.sha256(f"{cap.path}|{st.st_size}|{st.st_mtime_ns}|{name}".encode()).hexdigest()[:16]
            tasks.append((cap, name, root / name / f"{key}-{cap.path.name}.pcap"))

    def make(task):
        cap, name, dst = task
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            r = subprocess.run([str(binary), "perturb", "--pcap", str(cap.path), "--out", str(dst), "--how", name],
                               capture_output=True, text=True)
            if r.returncode != 0:
                log(f"  perturb {name} {cap.path}: {r.stderr.strip()[-200:]}")
                return None
        return Capture(path=dst, set=cap.set, kind=cap.kind, scenario=cap.scenario, source=cap.source,
                       attackers=cap.attackers, victim=cap.victim, spoofed=cap.spoofed, meta=cap.meta, variant=name)

    t0 = time.time()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
        out = [c for c in ex.map(make, tasks) if c is not None]
    log(f"perturbed copies: {len(out)} of {len(tasks)} ({', '.join(names)}) in {time.time() - t0:.0f}s")
    return out


def load(binary: Path, lab_dirs: list[Path], benign_dir: Path | None, cache: Path = DEFAULT_CACHE,
         context: bool | None = None, jobs: int = 2, public_attack_dir: Path | None = None,
         perturbed: list[str] | None = None) -> Flows:
    """Extract (cached) and label every capture. context=None: use --context when the binary has it.
    perturbed: also every capture's copy under each of these `tapstream perturb` names."""
    if context is None:
        context = binary_has_context(binary)
    caps: list[Capture] = []
    for d in lab_dirs:
        caps += lab_captures(d)
    if public_attack_dir is not None:
        caps += public_attack_captures(public_attack_dir)
    if benign_dir is not None:
        caps += benign_captures(benign_dir)
    if not caps:
        sys.exit("no captures found")
    ext = Extractor(binary, cache, context)
    if perturbed:
        caps += perturbed_copies(ext.binary, ext.bin_sha, caps, perturbed, cache, jobs)
    csvs = ext.extract_all(caps, jobs=jobs)

    cols_ref = None
    parts = []
    failed, empty = [], []
    for cap in caps:
        p = csvs[cap.path]
        if p is None:
            failed.append(cap.shown_as)
            continue
        cols, X, ids = read_csv(p)
        if cols_ref is None:
            cols_ref = cols
        elif cols != cols_ref:
            sys.exit(f"{p}: feature columns differ from the other captures")
        if len(X) == 0:
            empty.append(cap.shown_as)
            continue
        is_atk = label_flows(cap, ids)
        n = len(X)
        y = np.where(is_atk, CLASSES.index(cap.cls), 0)
        kind = np.where(is_atk, cap.kind, BENIGN)
        # Background flows of an attack capture count as benign flows of that lab set.
        parts.append((X, y, kind, np.full(n, cap.scenario), np.full(n, cap.source), np.full(n, cap.set),
                      ids["src"], ids["dst"], np.full(n, cap.variant)))
    cat = [np.concatenate([p[i] for p in parts]) for i in range(9)]
    info = {
        "binary": str(ext.binary), "binary_sha256": ext.bin_sha, "context": context,
        "captures": len(caps), "captures_failed": failed, "captures_without_flows": len(empty),
        "lab_dirs": [str(d) for d in lab_dirs], "benign_dir": str(benign_dir) if benign_dir else None,
        "public_attack_dir": str(public_attack_dir) if public_attack_dir else None,
    }
    fl = Flows(cols_ref, cat[0], cat[1].astype(np.int64), cat[2], cat[3], cat[4], cat[5], cat[6], cat[7], info,
               cat[8].astype(str))
    log(f"flows: {len(fl)} rows x {len(cols_ref)} features ({sum(c.startswith(CTX_PREFIX) for c in cols_ref)} ctx), "
        f"{len(failed)} captures failed, {len(empty)} without flows")
    return fl


def binary_has_context(binary: Path) -> bool:
    r = subprocess.run([str(binary), "features", "--help"], capture_output=True, text=True)
    return "--context" in r.stdout


def default_lab_dirs(extra: list[Path]) -> list[Path]:
    return [DEFAULT_LAB] + [e for e in extra if (e / "LABELS.tsv").exists()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tapstream", type=Path, required=True)
    ap.add_argument("--extra", type=Path, action="append", default=[], help="another lab dir with LABELS.tsv")
    ap.add_argument("--benign", type=Path, default=DEFAULT_BENIGN)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--no-context", action="store_true")
    ap.add_argument("--no-public-attacks", action="store_true")
    a = ap.parse_args()
    fl = load(a.tapstream, default_lab_dirs(a.extra), a.benign, a.cache, False if a.no_context else None,
              public_attack_dir=None if a.no_public_attacks else DEFAULT_PUBLIC_ATTACK)
    print(json.dumps(fl.counts(), indent=1))


if __name__ == "__main__":
    main()
