#!/usr/bin/env python3
"""Train tapstream's behaviour model (``models/behaviour-mlp.onnx``) on real captures.

Recipe (reasoning and results in BEHAVIOUR.md next to this file):

  lab captures (LABELS.tsv sets) + public benign protocol captures
    -> `tapstream features [--context]` per capture (flows.py; cached)
    -> label per flow (attacker address / spoofed victim rule), class = behaviour
    -> 82 schema features (minus ports, like train.py) + the ctx_* features present (36 with
       context schema 3), but those --without names (the shipped model: schema 2's 24)
    -> training sample: <= CAP_ATTACK flows per attack scenario, <= CAP_BENIGN per public benign
       file, <= CAP_BENIGN_LAB per lab benign file (the dense, busy lab captures)
    -> weights: scenario (file) weight ~ sqrt(flows); attack class weight ~ sqrt(flows);
       benign source weight ~ sqrt(flows); benign = all attacks
    -> sign(x)*log1p(|x|) -> StandardScaler -> MLP F-64-32-9 (ReLU, softmax)
    -> threshold on 1 - p(benign), scored in float32 like tapstream (f32(1) - f32 p(benign),
       alert = score >= f32 threshold), capped at 0.999:
       benign FPR <= 0.1 % on OUT-OF-FOLD benign scores (inner
       INNER_FOLDS-fold split of the training benign capture files; each inner model never saw
       the files it scores), then the model is refit on all training rows
    -> ONNX (train.py's exporter) + contract metadata (schema tapstream-context)
    -> onnxruntime check against scikit-learn; in-sample alert shares through onnxruntime (float32)
    -> optional (default on) leave-out protocol (protocol.py)
    -> models/behaviour-mlp.onnx, .metrics.json, .protocol.json

    python3 deploy/training/train_behaviour.py --tapstream /work/bin/tapstream-ctx \\
        --extra /work/labgen --extra /work/labgen2 --out models
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train as base  # noqa: E402  (sets the single-thread / OpenBLAS env before numpy loads)

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
import zlib  # noqa: E402
import multiprocessing as mp  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import sklearn  # noqa: E402
from onnx import helper  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import flows as F  # noqa: E402

SEED = 20260101
MODEL_NAME = "behaviour-mlp"
SCHEMA = "tapstream-context"
# Context features that came with schema version 3 (outcomes: answers and rejections per source
# and destination host); a model without them names version 2, which this build still runs.
V3_PREFIXES = ("ctx_src_answered_", "ctx_src_rejected_", "ctx_dst_answered_", "ctx_dst_rejected_")
MODEL_VERSION = 3  # 2: context schema 2 (group destinations read zero victim statistics); 3: schema 3 outcomes


def schema_version(features: list[str]) -> str:
    """The oldest context schema version that has every one of `features`."""
    return "3" if any(f.startswith(V3_PREFIXES) for f in features) else "2"
CAP_ATTACK = 500  # training flows per attack scenario (random, seeded); test uses all flows
CAP_BENIGN = 100  # training flows per public benign capture file (pcaps/benign: short protocol samples)
CAP_BENIGN_LAB = 2000  # training flows per lab benign file (source lab-*: dense, busy captures)
LAB_SOURCE_PREFIX = "lab-"
INNER_FOLDS = 5  # inner split of the training benign files for the out-of-fold threshold
TARGET_BENIGN_FPR = 0.001
THRESHOLD_FLOOR = 0.5
# Threshold grid: rounded *up* to 1e-6 (round 1 used 1e-3, fine for in-sample thresholds of
# 0.5-0.95, but out-of-fold benign scores put the 0.1 % quantile within 1e-3 of 1, where a
# 1e-3 grid rounds to 1.000 = never alert). 1e-6 is well above float32 spacing near 1 (6e-8).
THRESHOLD_STEP = 1e-6
# Round 3: scores as tapstream computes them, in float32 (ONNX Runtime's Softmax output is
# float32; tapstream's attack score is 1 - p(benign) in f32 and alerts when score >= threshold
# (f32)). Near 1 float32 has no resolution left (spacing 6e-8; every p(benign) < ~3e-8 gives
# exactly 1.0), so the threshold is capped: 0.999 leaves three decades of distinct scores.
THRESHOLD_CAP = 0.999
HIDDEN = (64, 32)
MLP_PARAMS = dict(
    hidden_layer_sizes=HIDDEN,
    activation="relu",
    solver="adam",
    alpha=1e-4,
    batch_size=512,
    learning_rate_init=1e-3,
    max_iter=100,
    tol=1e-5,
    n_iter_no_change=10,
    shuffle=True,
    early_stopping=False,
)
BENIGN_WEIGHT_SHARE = 0.5  # benign flows carry this share of the total training weight
MAX_ONNX_DIFF = 1e-4

# CIC-IDS2017 (improved) label -> behaviour class. Documentation of how the two label sets
# relate (BEHAVIOUR.md); CIC rows are NOT used for training here (no context columns, and
# another extractor / network). None = no behaviour class in this model.
CIC_CLASS_MAP = {
    "BENIGN": "benign",
    "DoS Hulk": "http_flood",
    "DoS GoldenEye": "http_flood",
    "DDoS": "http_flood",  # LOIC HTTP flood from 3 Windows hosts in CIC-IDS2017
    "DoS Slowloris": "slow_dos",
    "DoS Slowhttptest": "slow_dos",
    "SSH-Patator": "brute_force",
    "FTP-Patator": "brute_force",
    "Portscan": "scan",
    "Infiltration - Portscan": "scan",
    "Botnet": None,
    "Infiltration": None,
    "Web Attack - Brute Force": None,  # HTTP login guessing; flow shape ~ benign web use
    "Web Attack - SQL Injection": None,
    "Web Attack - XSS": None,
    "Heartbleed": None,
}


def log(msg: str) -> None:
    print(msg, flush=True)


def stable_seed(*parts) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode()) ^ SEED


# --- training sample and weights -------------------------------------------------------
def training_sample(fl: F.Flows, train_mask: np.ndarray, cap_attack: int = CAP_ATTACK,
                    cap_benign: int = CAP_BENIGN, cap_benign_lab: int = CAP_BENIGN_LAB) -> np.ndarray:
    """Indices of the training rows: per attack scenario <= cap_attack attack flows, per
    capture file <= cap_benign benign flows (<= cap_benign_lab for lab sources), seeded by
    the scenario name, so a scenario's sample does not depend on which other scenarios are
    in the fold."""
    keep = []
    is_atk = fl.y != 0
    for atk in (True, False):
        m = train_mask & (is_atk == atk)
        cap = cap_attack if atk else cap_benign
        idx_all = np.flatnonzero(m)
        if len(idx_all) == 0:
            continue
        scen = fl.scenario[idx_all]
        order = np.argsort(scen, kind="stable")
        scen_sorted = scen[order]
        bounds = np.flatnonzero(np.r_[True, scen_sorted[1:] != scen_sorted[:-1], True])
        for a, b in zip(bounds[:-1], bounds[1:]):
            idx = idx_all[order[a:b]]
            if not atk and str(fl.source[idx[0]]).startswith(LAB_SOURCE_PREFIX):
                cap = cap_benign_lab
            elif not atk:
                cap = cap_benign
            if len(idx) > cap:
                rng = np.random.default_rng(stable_seed(scen_sorted[a], atk))
                idx = np.sort(rng.choice(idx, cap, replace=False))
            keep.append(idx)
    return np.sort(np.concatenate(keep))


def _sqrt_share(groups: np.ndarray) -> np.ndarray:
    """Per row 1/sqrt(n_group), normalised to sum 1: group g gets total ~ sqrt(n_g)."""
    _, inv, cnt = np.unique(groups, return_inverse=True, return_counts=True)
    wc = 1.0 / np.sqrt(cnt[inv])
    return wc / wc.sum()


def sample_weights(y: np.ndarray, scenario: np.ndarray, n_classes: int,
                   source: np.ndarray | None = None) -> np.ndarray:
    """Scenario s of class c: total weight ~ sqrt(n_s) (a 2,000-flow flood counts ~45x a
    1-flow scenario, not 2,000x); class c: total ~ sqrt(n_c); benign: BENIGN_WEIGHT_SHARE
    of the total, split over benign *sources* ~ sqrt(n_source) and within a source over its
    files ~ sqrt(n_file) (the same square-root hierarchy as attack class / scenario; without
    `source`, benign files share the benign weight ~ sqrt(n_file) as in round 1).
    Normalised to mean 1."""
    w = np.zeros(len(y))
    class_tot = np.zeros(n_classes)
    for c in np.unique(y):
        mc = y == c
        class_tot[c] = np.sqrt(mc.sum())
        if c == 0 and source is not None:
            wb = np.zeros(int(mc.sum()))
            src_c, scen_c = source[mc], scenario[mc]
            srcs, src_inv = np.unique(src_c, return_inverse=True)
            src_share = _sqrt_share(src_c)
            for k in range(len(srcs)):
                ms = src_inv == k
                wb[ms] = _sqrt_share(scen_c[ms]) * src_share[ms].sum()
            w[mc] = wb
        else:
            w[mc] = _sqrt_share(scenario[mc])
    att = class_tot.copy()
    att[0] = 0.0
    if att.sum() > 0:
        att = att / att.sum() * (1.0 - BENIGN_WEIGHT_SHARE)
        att[0] = BENIGN_WEIGHT_SHARE if (y == 0).any() else 0.0
    else:
        att[0] = 1.0
    w *= att[y]
    return w / w.mean()


# --- model -----------------------------------------------------------------------------
class Model:
    """sign-log1p -> StandardScaler -> MLPClassifier over the classes present in training;
    predict_proba always returns len(CLASSES) columns (absent classes: probability 0)."""

    def __init__(self, seed: int, max_iter: int | None = None):
        params = dict(MLP_PARAMS)
        if max_iter is not None:
            params["max_iter"] = max_iter
        self.scaler = StandardScaler()
        self.mlp = MLPClassifier(random_state=seed, **params)
        self.inert = np.zeros(0, dtype=bool)
        self.present = np.zeros(0, dtype=np.int64)

    def fit(self, X: np.ndarray, y: np.ndarray, w: np.ndarray) -> "Model":
        Z = self.scaler.fit_transform(base.signed_log1p(X))
        self.present = np.unique(y)
        yy = np.searchsorted(self.present, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.mlp.fit(Z, yy, sample_weight=w)
        # constant-in-training features: standardized value 0 on every training row, so zeroing
        # their first-layer weights changes no training prediction but makes the model ignore them.
        self.inert = self.scaler.var_ == 0.0
        self.mlp.coefs_[0][self.inert, :] = 0.0
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = self.mlp.predict_proba(self.scaler.transform(base.signed_log1p(X)))
        out = np.zeros((len(X), len(F.CLASSES)))
        out[:, self.present] = p
        return out


def attack_score(p: np.ndarray) -> np.ndarray:
    """tapstream's attack score from class probabilities (n x classes): 1 - p(benign) in
    float32, from float32 probabilities (as ONNX Runtime's float32 Softmax gives them)."""
    return np.float32(1.0) - np.asarray(p)[:, 0].astype(np.float32)


def alerts(score: np.ndarray, threshold: float) -> np.ndarray:
    """tapstream's decision: f32 score >= f32 threshold."""
    return score.astype(np.float32) >= np.float32(threshold)


def pick_threshold(benign_scores: np.ndarray) -> tuple[float, float, dict]:
    """Smallest threshold (rounded up to THRESHOLD_STEP, >= floor) with benign FPR <= target on
    float32 scores, capped at THRESHOLD_CAP. Returns (threshold, benign FPR at it, cap info)."""
    sc = benign_scores.astype(np.float32)
    s = np.sort(sc)[::-1]
    allowed = int(np.floor(TARGET_BENIGN_FPR * len(s)))
    t = float(np.nextafter(s[allowed], np.float32(np.inf))) if allowed < len(s) else 0.0
    t = max(THRESHOLD_FLOOR, np.ceil(round(t / THRESHOLD_STEP, 6)) * THRESHOLD_STEP)
    t = round(min(t, 1.0), 6)
    capped = t > THRESHOLD_CAP
    cap = {"threshold_uncapped": float(t), "threshold_capped": bool(capped),
           "fpr_at_uncapped": round(float(alerts(sc, t).mean()), 6)}
    if capped:
        t = THRESHOLD_CAP
    return float(t), float(alerts(sc, t).mean()), cap


def fit_model(fl: F.Flows, train_mask: np.ndarray, seed: int = SEED, max_iter: int | None = None) -> tuple["Model", int]:
    """Sample + weight fl[train_mask] and fit one model. Returns (model, training rows)."""
    idx = training_sample(fl, train_mask)
    w = sample_weights(fl.y[idx], fl.scenario[idx], len(F.CLASSES), fl.source[idx])
    return Model(seed, max_iter).fit(fl.X[idx].astype(np.float64), fl.y[idx], w), int(len(idx))


def inner_benign_groups(fl: F.Flows, train_mask: np.ndarray, k: int = INNER_FOLDS) -> dict[str, int]:
    """Inner split for the threshold: every capture file holding benign training flows gets
    a group 0..k-1. Whole files (never split: a file's flows share hosts and context counts),
    stratified by benign source (within a source, files in a fixed pseudo-random order are
    dealt round-robin, continuing across sources) so every inner training set keeps every
    source. Depends only on the file names, so it is the same in every protocol fold."""
    m = train_mask & (fl.y == 0)
    files = {}
    for src, scen in zip(fl.source[m], fl.scenario[m]):
        files.setdefault(str(src), set()).add(str(scen))
    groups, g = {}, 0
    for src in sorted(files):
        for scen in sorted(files[src], key=lambda s: (stable_seed("inner", s), s)):
            groups[scen] = g % k
            g += 1
    return groups


def oof_benign_scores(fl: F.Flows, train_mask: np.ndarray, seed: int = SEED, max_iter: int | None = None,
                      k: int = INNER_FOLDS, use: int | None = None, jobs: int = 1) -> np.ndarray:
    """Out-of-fold scores 1 - p(benign) of the training benign flows: for inner group g, a
    model fit (same recipe) on train_mask without g's files (their attack flows too) scores
    g's benign flows. `use` = only the first `use` groups (use=1: a single 1/k holdout)."""
    groups = inner_benign_groups(fl, train_mask, k)
    bm = train_mask & (fl.y == 0) & fl.clean()  # the threshold is for the traffic itself, not perturbed copies
    gid = np.full(len(fl), -1)
    for scen, g in groups.items():
        gid[fl.scenario == scen] = g
    todo = list(range(k if use is None else use))
    global _OOF_CTX
    _OOF_CTX = (fl, train_mask, gid, bm, seed, max_iter)
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("fork")) as ex:
            parts = list(ex.map(_oof_one, todo))
    else:
        parts = [_oof_one(g) for g in todo]
    _OOF_CTX = None
    return np.concatenate(parts)


_OOF_CTX = None  # (fl, train_mask, group id per row, benign training mask, seed, max_iter) for the workers


def _oof_one(g: int) -> np.ndarray:
    """Inner fold g: fit without group g's files, score group g's benign flows."""
    fl, train_mask, gid, bm, seed, max_iter = _OOF_CTX
    held = gid == g
    model, _ = fit_model(fl, train_mask & ~held, seed, max_iter)
    return attack_score(model.predict_proba(fl.X[bm & held].astype(np.float64)))


def fit_fold(fl: F.Flows, train_mask: np.ndarray, seed: int = SEED, max_iter: int | None = None,
             inner_use: int | None = None, jobs: int = 1):
    """Train on fl[train_mask] (sampled + weighted); the threshold comes from out-of-fold
    benign scores (oof_benign_scores), never from the model's own training scores.
    Returns (model, threshold, info)."""
    oof = oof_benign_scores(fl, train_mask, seed, max_iter, INNER_FOLDS, inner_use, jobs)
    thr, fpr_oof, cap = pick_threshold(oof)
    model, n_rows = fit_model(fl, train_mask, seed, max_iter)
    bmask = train_mask & (fl.y == 0) & fl.clean()
    p = model.predict_proba(fl.X[bmask].astype(np.float64))
    fpr_in = float(alerts(attack_score(p), thr).mean())
    return model, thr, {"train_rows": n_rows, "train_benign_flows": int(bmask.sum()),
                        "threshold_cap": THRESHOLD_CAP, **cap, "score_dtype": "float32",
                        "threshold_oof_benign_flows": int(len(oof)),
                        "threshold_inner_groups_used": f"{INNER_FOLDS if inner_use is None else inner_use}/{INNER_FOLDS}",
                        "oof_benign_fpr_at_threshold": round(fpr_oof, 6),
                        "train_benign_fpr_at_threshold_in_sample": round(fpr_in, 6),
                        "epochs": int(model.mlp.n_iter_)}


# --- ONNX ------------------------------------------------------------------------------
def baseline_json(fl: F.Flows) -> str:
    """The contract's `tapstream.baseline`: each context feature's median and 99th percentile
    over the benign training flows (4 decimals, 6 significant digits). Alerts explain themselves
    with the context features furthest above their p99."""
    benign = fl.X[(fl.y == 0) & fl.clean()]
    out = {}
    for j, name in enumerate(fl.features):
        if name.startswith(F.CTX_PREFIX):
            col = benign[:, j].astype(np.float64)
            med, p99 = np.quantile(col, [0.5, 0.99]) if len(col) else (0.0, 0.0)
            med, p99 = round(max(float(med), 0.0), 4), round(max(float(p99), float(med), 0.0), 4)
            out[name] = {"median": float(f"{med:.6g}"), "p99": float(f"{p99:.6g}")}
    return json.dumps(out, sort_keys=True)


def build_onnx(model: Model, features: list[str], threshold: float, training: str,
               baseline: str | None = None) -> onnx.ModelProto:
    """train.py's hand-built graph (signed log1p, scaler folded into the first Gemm), with the
    behaviour model's contract metadata."""
    m = base.build_onnx(model, features, F.CLASSES, threshold, training)
    m.graph.name = "behaviour_mlp"
    m.doc_string = "tapstream behaviour classifier: CIC + context flow features -> behaviour class probabilities"
    meta = {
        "tapstream.schema": SCHEMA,
        "tapstream.schema_version": schema_version(features),
        "tapstream.features": json.dumps(features),
        "tapstream.scaler": "in-graph",
        "tapstream.labels": json.dumps(F.CLASSES),
        "tapstream.benign_label": F.BENIGN,
        "tapstream.output": "probabilities",
        "tapstream.threshold": f"{threshold:.6f}",
        "tapstream.model_name": MODEL_NAME,
        "tapstream.model_version": str(MODEL_VERSION),
        "tapstream.precision": "fp32",
        "tapstream.training": training,
    }
    if baseline is not None:
        meta["tapstream.baseline"] = baseline
    helper.set_model_props(m, meta)
    onnx.checker.check_model(m, full_check=True)
    return m


def ort_session(path: Path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def onnx_in_sample(path: Path, fl: F.Flows, thr: float) -> dict:
    """Training-set flows (IN-SAMPLE, not an evaluation) scored like tapstream: onnxruntime on
    float32 features, score = f32(1) - f32 p(benign), alert = score >= f32(threshold)."""
    sess = ort_session(path)
    p = sess.run(["probabilities"], {"features": fl.X.astype(np.float32)})[0]
    assert p.dtype == np.float32
    score = attack_score(p)
    a = alerts(score, thr)
    return {
        "note": "in-sample: the final model scores its own training-set flows (all flows, not only the sampled rows)",
        "threshold": thr,
        "per_class": {c: round(float(a[fl.y == i].mean()), 6) for i, c in enumerate(F.CLASSES) if (fl.y == i).any()},
        "flows_per_class": {c: int((fl.y == i).sum()) for i, c in enumerate(F.CLASSES) if (fl.y == i).any()},
        "benign_alerts": int(a[fl.y == 0].sum()),
        "share_of_flows_scored_exactly_1": round(float((score == np.float32(1.0)).mean()), 6),
        "share_of_benign_scored_exactly_1": round(float((score[fl.y == 0] == np.float32(1.0)).mean()), 6),
    }


def check_onnx(path: Path, model: Model, X: np.ndarray) -> float:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    p_onnx = sess.run(["probabilities"], {"features": X.astype(np.float32)})[0]
    p_skl = model.predict_proba(X.astype(np.float64))
    diff = float(np.abs(p_onnx.astype(np.float64) - p_skl).max())
    log(f"onnxruntime vs sklearn on {len(X)} flows: max |dp| = {diff:.3e}")
    if diff > MAX_ONNX_DIFF:
        sys.exit(f"ONNX export mismatch: {diff} > {MAX_ONNX_DIFF}")
    return diff


# --- main ------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tapstream", type=Path, required=True, help="tapstream binary (with `features --context` for the full model)")
    ap.add_argument("--extra", type=Path, action="append", default=[],
                    help="another lab directory with LABELS.tsv (repeatable; skipped if it has no LABELS.tsv yet)")
    ap.add_argument("--lab", type=Path, default=F.DEFAULT_LAB, help=f"lab set A (default {F.DEFAULT_LAB})")
    ap.add_argument("--benign", type=Path, default=F.DEFAULT_BENIGN, help=f"public benign captures (default {F.DEFAULT_BENIGN})")
    ap.add_argument("--cache", type=Path, default=F.DEFAULT_CACHE, help=f"feature CSV cache (default {F.DEFAULT_CACHE})")
    ap.add_argument("--out", type=Path, default=base.DEFAULT_OUT, help=f"output directory (default {base.DEFAULT_OUT})")
    ap.add_argument("--public-attack", type=Path, default=F.DEFAULT_PUBLIC_ATTACK,
                    help=f"public attack captures, only the files in flows.PUBLIC_ATTACKS (default {F.DEFAULT_PUBLIC_ATTACK})")
    ap.add_argument("--no-public-attacks", action="store_true", help="leave the public attack captures out")
    ap.add_argument("--no-context", action="store_true", help="do not pass --context even if the binary has it")
    ap.add_argument("--skip-protocol", action="store_true", help="only train + export (no leave-out protocol)")
    ap.add_argument("--jobs", type=int, default=2, help="parallel extraction / protocol folds (default 2)")
    ap.add_argument("--protocol-inner-use", type=int, default=None,
                    help=f"protocol folds: threshold from only the first N of the {INNER_FOLDS} inner groups "
                         f"(1 = a single 1/{INNER_FOLDS} holdout; default: all, like the shipped model)")
    ap.add_argument("--scenario-groups", type=int, default=0,
                    help="protocol: leave attack scenarios out in N class-stratified groups instead of one by one "
                         "(0 = one fold per scenario; -1 = as many groups as the largest class has scenarios, "
                         "so a fold leaves out at most one scenario per class)")
    ap.add_argument("--perturbed", default="",
                    help="comma-separated `tapstream perturb` names (e.g. jitter_500ms,padding_512b): every capture is "
                         "also read as perturbed by its flows' initiators; the protocol scores the held-out copies "
                         "too. They are trained on only with --augment")
    ap.add_argument("--sets-out", action="store_true",
                    help="protocol.py: leave one lab set out per fold (its attack captures and benign flows are "
                         "scored) instead of the scenario, source and kind folds")
    ap.add_argument("--augment", default="",
                    help="comma-separated names among --perturbed whose copies are trained on as well (same labels "
                         "and scenarios; the caps and weights count a capture and its copies together; thresholds "
                         "and the baseline use the captures only); the other copies are only scored")
    ap.add_argument("--without", default="",
                    help="comma-separated feature-name prefixes the model does not read (e.g. "
                         "ctx_src_answered_,ctx_dst_answered_); the contract then names the oldest context schema "
                         "version that has the rest")
    args = ap.parse_args()
    args.without = tuple(n.strip() for n in args.without.split(",") if n.strip())
    args.perturbed = [n.strip() for n in args.perturbed.split(",") if n.strip()]
    args.augment = [n.strip() for n in args.augment.split(",") if n.strip()]
    if not set(args.augment) <= set(args.perturbed):
        ap.error("--augment names must also be in --perturbed")
    return args


def trainable(fl: F.Flows, augment: list[str] | tuple = ()) -> np.ndarray:
    """Rows a model may train on: the captures' own flows, and the copies perturbed by `augment`."""
    return fl.clean() | np.isin(fl.variant, list(augment))


def load_flows(args) -> F.Flows:
    lab_dirs = [args.lab] + [e for e in args.extra if (e / "LABELS.tsv").exists()]
    for e in args.extra:
        if not (e / "LABELS.tsv").exists():
            log(f"note: {e} has no LABELS.tsv (yet); skipped")
    fl = F.load(args.tapstream, lab_dirs, args.benign, args.cache, False if args.no_context else None, args.jobs,
                public_attack_dir=None if args.no_public_attacks else args.public_attack,
                perturbed=args.perturbed)
    if args.without:
        keep = [i for i, f in enumerate(fl.features) if not f.startswith(args.without)]
        log(f"without {', '.join(args.without)}*: {len(fl.features) - len(keep)} features left out, {len(keep)} read")
        fl.features = [fl.features[i] for i in keep]
        fl.X = np.ascontiguousarray(fl.X[:, keep])
    return fl


def training_note(fl: F.Flows, info: dict, threshold: float) -> str:
    n_ctx = sum(c.startswith(F.CTX_PREFIX) for c in fl.features)
    sets = sorted(set(fl.set.tolist()))
    return (
        f"data=lab sets {','.join(s for s in sets if not s.startswith('public'))} + pcaps/benign"
        f"{' + curated pcaps/attack' if 'public-attack' in sets else ''} ({len(fl)} flows, "
        f"{len(np.unique(fl.scenario))} captures); tapstream sha256 {fl.info['binary_sha256'][:12]} "
        f"context={fl.info['context']}; features={len(fl.features) - n_ctx} cic + {n_ctx} ctx; "
        f"train rows={info['train_rows']} (<= {CAP_ATTACK}/attack scenario, <= {CAP_BENIGN}/public benign file, "
        f"<= {CAP_BENIGN_LAB}/lab benign file); weights sqrt per scenario/file, attack class and benign source, "
        f"benign {BENIGN_WEIGHT_SHARE:.0%}; seed={SEED}; "
        f"sklearn={sklearn.__version__}; mlp={len(fl.features)}-{'-'.join(map(str, HIDDEN))}-{len(F.CLASSES)} "
        f"relu adam alpha={MLP_PARAMS['alpha']} max_iter={MLP_PARAMS['max_iter']}; threshold={threshold:.6f} "
        f"(float32 scores; cap {THRESHOLD_CAP}{' reached' if info.get('threshold_capped') else ''}; benign FPR<={TARGET_BENIGN_FPR:.1%} on out-of-fold scores of the training benign flows, {INNER_FOLDS}-fold by file); "
        f"see deploy/training/BEHAVIOUR.md"
    )


def main() -> None:
    args = parse_args()
    t0 = time.time()
    np.random.seed(SEED)
    fl = load_flows(args)
    counts = fl.counts()
    for c, n in counts["per_class"].items():
        log(f"  {c:12s} {n:7d}")

    missing = [c for i, c in enumerate(F.CLASSES) if not (fl.y == i).any()]
    if missing:
        sys.exit(f"no training flows for classes {missing}: the ONNX output would not match tapstream.labels")
    # 1) final model on everything
    model, thr, info = fit_fold(fl, trainable(fl, args.augment), jobs=args.jobs)
    log(f"final model: {info['epochs']} epochs, {info['train_rows']} training rows, threshold {thr:.6f} "
        f"(out-of-fold benign FPR {info['oof_benign_fpr_at_threshold']:.4%} on {info['threshold_oof_benign_flows']} flows, "
        f"in-sample {info['train_benign_fpr_at_threshold_in_sample']:.4%}), {time.time() - t0:.0f}s")
    inert = [f for f, z in zip(fl.features, model.inert) if z]

    # 2) export + check
    training = training_note(fl, info, thr)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    m = build_onnx(model, fl.features, thr, training, baseline_json(fl))
    blob = m.SerializeToString(deterministic=True)
    onnx_path = out / f"{MODEL_NAME}.onnx"
    onnx_path.write_bytes(blob)
    sha = hashlib.sha256(blob).hexdigest()
    log(f"wrote {onnx_path} ({len(blob)} bytes, sha256 {sha})")
    diff = check_onnx(onnx_path, model, fl.X)

    # 3) training-set view (in-sample; NOT an evaluation, see protocol), on the captures themselves
    own = fl.subset(fl.clean())
    p = model.predict_proba(own.X.astype(np.float64))
    alert = alerts(attack_score(p), thr)
    in_sample = {c: round(float(alert[own.y == i].mean()), 6) for i, c in enumerate(F.CLASSES) if (own.y == i).any()}
    # same, scored exactly as tapstream does: the exported graph in onnxruntime, float32 in/out
    in_sample_ort = onnx_in_sample(onnx_path, own, thr)
    log(f"in-sample (onnxruntime float32) alert share per class at {thr:.6f}: {in_sample_ort['per_class']}")

    # 4) protocol
    protocol = None
    if not args.skip_protocol:
        import protocol as P
        protocol = P.run(fl, jobs=args.jobs, inner_use=args.protocol_inner_use, scenario_groups=args.scenario_groups,
                         augment=args.augment)
        (out / f"{MODEL_NAME}.protocol.json").write_text(json.dumps(protocol, indent=2) + "\n", encoding="utf-8")
        log(f"wrote {out / f'{MODEL_NAME}.protocol.json'}")
        log("\n" + P.markdown(protocol))

    n_params = sum(w.size for w in model.mlp.coefs_) + sum(b.size for b in model.mlp.intercepts_)
    metrics = {
        "model": MODEL_NAME,
        "model_version": MODEL_VERSION,
        "onnx": onnx_path.name,
        "onnx_sha256": sha,
        "onnx_bytes": len(blob),
        "parameters": int(n_params),
        "schema": SCHEMA,
        "labels": F.CLASSES,
        "features": fl.features,
        "inert_features": inert,
        "threshold": thr,
        "baseline": json.loads(baseline_json(fl)),
        "threshold_selection": {
            "method": f"float32 scores (f32 1 - f32 p(benign), as tapstream); smallest threshold (rounded up to "
                      f"{THRESHOLD_STEP:g}, floor {THRESHOLD_FLOOR}, capped at {THRESHOLD_CAP}) with benign FPR <= "
                      f"{TARGET_BENIGN_FPR} on out-of-fold scores of all training benign flows: {INNER_FOLDS} inner "
                      f"groups of benign capture files (whole files, stratified by source); each scored by a model "
                      f"of the same recipe fit without that group's files; then refit on everything",
            **info,
        },
        "data": {**fl.info, **counts},
        "training": {
            "seed": SEED,
            "cap_attack_flows_per_scenario": CAP_ATTACK,
            "cap_benign_flows_per_file": CAP_BENIGN,
            "cap_benign_flows_per_lab_file": CAP_BENIGN_LAB,
            "weights": f"per flow 1/sqrt(n_scenario or file); attack class total ~ sqrt(n_class); benign share "
                       f"{BENIGN_WEIGHT_SHARE}, split over benign sources ~ sqrt(n_source)",
            "threshold_inner_folds": INNER_FOLDS,
            "sklearn": sklearn.__version__, "numpy": np.__version__, "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "mlp": {k: (list(v) if isinstance(v, tuple) else v) for k, v in MLP_PARAMS.items()},
            "final_loss": round(float(model.mlp.loss_), 6),
            "provenance": training,
        },
        "cic_class_map": CIC_CLASS_MAP,
        "onnx_vs_sklearn_max_abs_diff": diff,
        "in_sample_alert_rate_per_class": in_sample,
        "in_sample_onnxruntime_float32": in_sample_ort,
        "protocol": protocol,
        "runtime_s": round(time.time() - t0, 1),
    }
    (out / f"{MODEL_NAME}.metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {out / f'{MODEL_NAME}.metrics.json'}; done in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
