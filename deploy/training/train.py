#!/usr/bin/env python3
"""Train tapstream's default flow classifier (``models/cic-mlp.onnx``).

Recipe (see README.md next to this file for the reasoning):

  improved CIC-IDS2017 per-class CSV sample
    -> 82 numeric features (schema order, minus Src Port / Dst Port), non-finite -> 0
    -> stratified 75/25 split; the 25 % held-out part is only used for the final report
    -> sign(x)*log1p(|x|) -> StandardScaler -> MLP 82-64-32-C (ReLU, softmax)
    -> decision threshold on 1 - p(BENIGN) from 5-fold out-of-fold scores of the
       training part (benign FPR <= 1 %)
    -> hand-built ONNX (opset 17) with the scaler in the graph + tapstream metadata
    -> onnxruntime check against scikit-learn on the held-out part
    -> models/cic-mlp.onnx, models/cic-mlp.metrics.json, models/cic-mlp.holdout-ids.txt

Everything is seeded and BLAS runs single-threaded, so a rerun on the same
platform / package versions produces a byte-identical ONNX file.
"""

# --- determinism: must happen before numpy / scipy / sklearn are imported -------------
import os

for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
):
    os.environ[_var] = "1"
# numpy/scipy wheels ship a DYNAMIC_ARCH OpenBLAS that picks its kernels per CPU
# (SkylakeX on AVX-512 machines, Haswell on AVX2 ...), and different kernels round
# differently. Pinning the kernel family makes the trained weights (and so the ONNX
# SHA-256) the same on every x86-64 CPU with AVX2, not just on identical CPUs.
os.environ["OPENBLAS_CORETYPE"] = "Haswell"

import argparse  # noqa: E402
import csv  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import sklearn  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support  # noqa: E402
from sklearn.model_selection import StratifiedKFold, train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

# --- constants -------------------------------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = (REPO_ROOT / ".." / "shared" / "data" / "flows" / "cicids2017_improved_sample").resolve()
SCHEMA_RS = REPO_ROOT / "kernels" / "src" / "schema.rs"
DEFAULT_OUT = REPO_ROOT / "models"

SEED = 20170703  # first capture day of CIC-IDS2017
HOLDOUT_FRACTION = 0.25
CV_FOLDS = 5  # out-of-fold scores on the training part -> decision threshold
TARGET_BENIGN_FPR = 0.01
THRESHOLD_FLOOR = 0.5  # never alert on a flow the model thinks is more likely benign
HIDDEN = (64, 32)
MLP_PARAMS = dict(
    hidden_layer_sizes=HIDDEN,
    activation="relu",
    solver="adam",
    alpha=1e-4,
    batch_size=256,
    learning_rate_init=1e-3,
    max_iter=200,
    tol=1e-5,
    n_iter_no_change=15,
    shuffle=True,
    early_stopping=False,
)
CLASS_WEIGHT_POWER = 0.5  # sample weight of class c ~ (n_max / n_c) ** 0.5
ONNX_OPSET = 17
ONNX_IR_VERSION = 8  # IR version that goes with opset 17; any onnxruntime >= 1.13 loads it
MAX_ONNX_DIFF = 1e-4

BENIGN = "BENIGN"
EXCLUDED_FEATURES = ("Src Port", "Dst Port")
# Label -> training class. Anything not listed keeps its own label.
LABEL_MAP = {
    "Web Attack - Brute Force": "Web Attack",
    "Web Attack - SQL Injection": "Web Attack",
    "Web Attack - XSS": "Web Attack",
}
ATTEMPTED_SUFFIX = " - Attempted"


def log(msg: str) -> None:
    print(msg, flush=True)


# --- schema ----------------------------------------------------------------------------
def schema_features() -> list[str]:
    """The 84 numeric feature names, in order, from kernels/src/schema.rs (source of truth)."""
    src = SCHEMA_RS.read_text(encoding="utf-8")
    m = re.search(r"pub const FEATURES: \[\(&str, Kind\); (\d+)\] = \[(.*?)\];", src, re.S)
    if not m:
        sys.exit(f"cannot find FEATURES in {SCHEMA_RS}")
    names = re.findall(r'\("([^"]+)",\s*Kind::\w+\)', m.group(2))
    if len(names) != int(m.group(1)):
        sys.exit(f"parsed {len(names)} features from {SCHEMA_RS}, expected {m.group(1)}")
    return names


# --- data ------------------------------------------------------------------------------
def load_data(data_dir: Path, features: list[str], attempted: str):
    files = sorted(p for p in data_dir.glob("*.csv") if p.name != "data_header_reference.csv")
    if not files:
        sys.exit(f"no class CSVs in {data_dir}")
    ref_header = None
    ref = data_dir / "data_header_reference.csv"
    if ref.exists():
        with ref.open(newline="", encoding="utf-8") as fh:
            ref_header = next(csv.reader(fh))

    X, raw_labels, labels, ids, dates = [], [], [], [], []
    n_attempted = 0
    per_file = {}
    for path in files:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            if ref_header is not None and header != ref_header:
                sys.exit(f"{path.name}: header differs from data_header_reference.csv")
            col = {name: i for i, name in enumerate(header)}
            missing = [f for f in features + ["id", "Timestamp", "Label", "Attempted Category"] if f not in col]
            if missing:
                sys.exit(f"{path.name}: missing columns {missing}")
            fidx = [col[f] for f in features]
            n = 0
            for row in reader:
                label = row[col["Label"]].strip()
                attempted_cat = row[col["Attempted Category"]].strip()
                is_attempted = label.endswith(ATTEMPTED_SUFFIX) or attempted_cat not in ("", "-1")
                if is_attempted:
                    n_attempted += 1
                    if attempted == "drop":
                        continue
                    cls = BENIGN
                else:
                    cls = LABEL_MAP.get(label, label)
                vals = []
                for i in fidx:
                    try:
                        vals.append(float(row[i]))
                    except ValueError:
                        vals.append(0.0)  # empty / unparsable cell -> 0, like non-finite
                X.append(vals)
                raw_labels.append(label)
                labels.append(cls)
                ids.append(row[col["id"]].strip())
                dates.append(row[col["Timestamp"]].strip()[:10])
                n += 1
            per_file[path.name] = n

    X = np.asarray(X, dtype=np.float64)
    n_nonfinite = int((~np.isfinite(X)).sum())
    X[~np.isfinite(X)] = 0.0
    # The runtime feeds float32; train on exactly the values the model will see.
    X = X.astype(np.float32).astype(np.float64)
    return X, np.asarray(raw_labels), np.asarray(labels), np.asarray(ids), np.asarray(dates), {
        "files": per_file,
        "attempted_rows": n_attempted,
        "attempted_policy": attempted,
        "nonfinite_values_replaced": n_nonfinite,
    }


# --- model -----------------------------------------------------------------------------
def signed_log1p(x: np.ndarray) -> np.ndarray:
    # Same arithmetic as the ONNX graph (Sign * Log(Abs + 1)); float32 like the runtime.
    x = x.astype(np.float32)
    return (np.sign(x) * np.log(np.abs(x) + np.float32(1.0))).astype(np.float64)


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = (counts.max() / counts) ** CLASS_WEIGHT_POWER
    w /= (w[y]).mean()  # mean sample weight 1 -> alpha keeps its usual meaning
    return w


class Model:
    """sign-log1p -> StandardScaler -> MLPClassifier, fitted with per-class sample weights."""

    def __init__(self, n_classes: int, seed: int):
        self.n_classes = n_classes
        self.scaler = StandardScaler()
        self.mlp = MLPClassifier(random_state=seed, **MLP_PARAMS)
        self.inert = np.zeros(0, dtype=bool)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "Model":
        Z = self.scaler.fit_transform(signed_log1p(X))
        w = class_weights(y, self.n_classes)[y]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.mlp.fit(Z, y, sample_weight=w)
        if list(self.mlp.classes_) != list(range(self.n_classes)):
            raise RuntimeError("a class is missing from the training data")
        # Features that are constant in training carry no information; their standardized
        # value is exactly 0 on all training rows, so zeroing their first-layer weights does
        # not change any training prediction but makes the model ignore them at runtime
        # (instead of reacting to never-seen values through untrained weights).
        self.inert = self.scaler.var_ == 0.0
        self.mlp.coefs_[0][self.inert, :] = 0.0
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.mlp.predict_proba(self.scaler.transform(signed_log1p(X)))


# --- threshold -------------------------------------------------------------------------
def pick_threshold(benign_scores: np.ndarray) -> tuple[float, float]:
    """Smallest threshold t (3 decimals, >= THRESHOLD_FLOOR) with FPR(score >= t) <= target."""
    s = np.sort(benign_scores)[::-1]
    allowed = int(np.floor(TARGET_BENIGN_FPR * len(s)))
    # Every benign score strictly above s[allowed] may alert; s[allowed] itself must not.
    t = np.nextafter(s[allowed], np.inf) if allowed < len(s) else 0.0
    t = max(THRESHOLD_FLOOR, np.ceil(t * 1000.0) / 1000.0)
    return float(t), float((benign_scores >= t).mean())


# --- ONNX ------------------------------------------------------------------------------
def build_onnx(model: Model, features: list[str], labels: list[str], threshold: float, training: str):
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    # Two rewrites keep the graph cheap for ONNX Runtime's CPU kernels (the
    # elementwise preprocessing, not the GEMMs, dominated its profile):
    # * sign(x) is computed as clip(x * 1e30, -1, 1): exact for every |x| >=
    #   1e-30, and for smaller |x| the product with log1p(|x|) ~ |x| is ~0
    #   either way. ORT's Sign kernel is far slower than Mul + Clip.
    # * the StandardScaler is folded into the first Gemm in float64:
    #   ((s - mean) / scale) @ W + b  ==  s @ (W / scale) + (b - (mean / scale) @ W).
    mean = np.asarray(model.scaler.mean_, dtype=np.float64)
    scale = np.asarray(model.scaler.scale_, dtype=np.float64)
    inits = [
        numpy_helper.from_array(f32([1.0]), "one"),
        numpy_helper.from_array(f32(1e30), "sign_gain"),
        numpy_helper.from_array(f32(-1.0), "minus_one"),
    ]
    nodes = [
        helper.make_node("Abs", ["features"], ["abs_x"], name="abs"),
        helper.make_node("Add", ["abs_x", "one"], ["abs_x_plus_1"], name="abs_plus_1"),
        helper.make_node("Log", ["abs_x_plus_1"], ["log1p_abs_x"], name="log1p"),
        helper.make_node("Mul", ["features", "sign_gain"], ["x_gained"], name="sign_gain_mul"),
        helper.make_node("Clip", ["x_gained", "minus_one", "one_scalar"], ["sign_x"], name="sign"),
        helper.make_node("Mul", ["sign_x", "log1p_abs_x"], ["slog_x"], name="signed_log1p"),
    ]
    inits.append(numpy_helper.from_array(f32(1.0), "one_scalar"))
    h = "slog_x"
    n_layers = len(model.mlp.coefs_)
    for i, (W, b) in enumerate(zip(model.mlp.coefs_, model.mlp.intercepts_)):
        W = np.asarray(W, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if i == 0:
            W, b = W / scale[:, None], b - (mean / scale) @ W
        inits += [numpy_helper.from_array(f32(W), f"dense{i}_weight"), numpy_helper.from_array(f32(b), f"dense{i}_bias")]
        out = f"dense{i}_out" if i < n_layers - 1 else "logits"
        nodes.append(helper.make_node("Gemm", [h, f"dense{i}_weight", f"dense{i}_bias"], [out], name=f"dense{i}"))
        if i < n_layers - 1:
            nodes.append(helper.make_node("Relu", [out], [f"relu{i}_out"], name=f"relu{i}"))
            h = f"relu{i}_out"
    nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1))

    graph = helper.make_graph(
        nodes,
        "cic_mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", len(features)])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", len(labels)])],
        initializer=inits,
    )
    m = helper.make_model(
        graph,
        producer_name="tapstream-train",
        producer_version="1",
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        doc_string="tapstream default flow classifier: improved CIC-IDS2017 features -> class probabilities",
    )
    m.ir_version = ONNX_IR_VERSION
    m.model_version = 1
    meta = {
        "tapstream.schema": "cic-ids2017-improved",
        "tapstream.schema_version": "1",
        "tapstream.features": json.dumps(features),
        "tapstream.scaler": "in-graph",
        "tapstream.labels": json.dumps(labels),
        "tapstream.benign_label": BENIGN,
        "tapstream.output": "probabilities",
        "tapstream.threshold": f"{threshold:.3f}",
        "tapstream.model_name": "cic-mlp",
        "tapstream.model_version": "1",
        "tapstream.precision": "fp32",
        "tapstream.training": training,
    }
    helper.set_model_props(m, meta)
    onnx.checker.check_model(m, full_check=True)
    return m


# --- metrics ---------------------------------------------------------------------------
def evaluate(y: np.ndarray, proba: np.ndarray, labels: list[str], threshold: float) -> dict:
    C = len(labels)
    b = labels.index(BENIGN)
    pred = proba.argmax(axis=1)
    score = 1.0 - proba[:, b]
    alert = score >= threshold
    is_attack = y != b
    prec, rec, f1, sup = precision_recall_fscore_support(y, pred, labels=list(range(C)), zero_division=0)
    cm = confusion_matrix(y, pred, labels=list(range(C)))
    per_class = {}
    for c, name in enumerate(labels):
        m = y == c
        per_class[name] = {
            "rows": int(sup[c]),
            "recall": round(float(rec[c]), 6),
            "precision": round(float(prec[c]), 6),
            "f1": round(float(f1[c]), 6),
            # binary view: share of this class's flows that raise an alert at the threshold
            # (for BENIGN this is the false-positive rate)
            "alert_rate_at_threshold": round(float(alert[m].mean()), 6) if m.any() else None,
        }
    tp = int((alert & is_attack).sum())
    fp = int((alert & ~is_attack).sum())
    fn = int((~alert & is_attack).sum())
    tn = int((~alert & ~is_attack).sum())
    return {
        "rows": int(len(y)),
        "multiclass": {
            "accuracy": round(float((pred == y).mean()), 6),
            "macro_f1": round(float(f1.mean()), 6),
            "per_class": per_class,
            "confusion_matrix": {"labels": labels, "rows_true_cols_pred": cm.tolist()},
        },
        "binary": {
            "threshold": threshold,
            "rule": "alert if 1 - p(BENIGN) >= threshold",
            "benign_fpr": round(fp / max(fp + tn, 1), 6),
            "attack_detection_rate": round(tp / max(tp + fn, 1), 6),
            "accuracy": round((tp + tn) / len(y), 6),
            "precision": round(tp / max(tp + fp, 1), 6),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": tn,
        },
    }


def markdown_table(ev: dict, labels: list[str], threshold: float) -> str:
    pc = ev["multiclass"]["per_class"]
    lines = [
        "| Class | Held-out rows | Recall (argmax) | Precision (argmax) | Alert rate @ threshold |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in labels:
        r = pc[name]
        tag = " (benign FPR)" if name == BENIGN else ""
        lines.append(
            f"| {name} | {r['rows']} | {r['recall']:.3f} | {r['precision']:.3f} | {r['alert_rate_at_threshold']:.3f}{tag} |"
        )
    bn = ev["binary"]
    lines += [
        "",
        f"Threshold on attack score 1 − p(BENIGN): **{threshold:.3f}** · benign FPR **{bn['benign_fpr']:.4f}** "
        f"({bn['fp']}/{bn['fp'] + bn['tn']}) · attack detection rate **{bn['attack_detection_rate']:.4f}** "
        f"({bn['tp']}/{bn['tp'] + bn['fn']}) · multiclass accuracy {ev['multiclass']['accuracy']:.4f} · "
        f"macro F1 {ev['multiclass']['macro_f1']:.4f}",
    ]
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"class CSV directory (default: {DEFAULT_DATA})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})")
    ap.add_argument(
        "--attempted",
        choices=("benign", "drop"),
        default="benign",
        help="rows labelled '<attack> - Attempted' / Attempted Category != -1: relabel BENIGN (default) or drop",
    )
    return ap.parse_args()


def cv_threshold(X: np.ndarray, y: np.ndarray, tr: np.ndarray, labels: list[str], t0: float):
    """Step 2: the threshold from out-of-fold scores on the training part only."""
    C = len(labels)
    oof = np.zeros((len(tr), C))
    skf = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=SEED)
    for k, (a, b) in enumerate(skf.split(X[tr], y[tr])):
        m = Model(C, SEED + 1 + k).fit(X[tr][a], y[tr][a])
        oof[b] = m.predict_proba(X[tr][b])
        log(f"  cv fold {k + 1}/{CV_FOLDS}: {m.mlp.n_iter_} epochs, {time.time() - t0:.0f}s")
    b_idx = labels.index(BENIGN)
    oof_score = 1.0 - oof[:, b_idx]
    threshold, oof_fpr = pick_threshold(oof_score[y[tr] == b_idx])
    cv_eval = evaluate(y[tr], oof, labels, threshold)
    log(f"threshold {threshold:.3f} (out-of-fold benign FPR {oof_fpr:.4f}, "
        f"detection {cv_eval['binary']['attack_detection_rate']:.4f}, macro F1 {cv_eval['multiclass']['macro_f1']:.4f})")
    return threshold, oof_fpr, cv_eval


def check_onnx(onnx_path: Path, model: Model, X_te: np.ndarray):
    """Step 5: onnxruntime (CPU) vs scikit-learn on the held-out part; exits on a mismatch."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    p_onnx = sess.run(["probabilities"], {"features": X_te.astype(np.float32)})[0]
    p_skl = model.predict_proba(X_te)
    diff = float(np.abs(p_onnx.astype(np.float64) - p_skl).max())
    log(f"onnxruntime vs sklearn on held-out: max |dp| = {diff:.3e}")
    if diff > MAX_ONNX_DIFF:
        sys.exit(f"ONNX export mismatch: {diff} > {MAX_ONNX_DIFF}")
    return p_onnx, diff


def training_note(data_dir: Path, y: np.ndarray, tr: np.ndarray, te: np.ndarray, n_classes: int,
                  attempted: str) -> str:
    """How the model was trained, for its `tapstream.training` metadata."""
    return (
        f"data={data_dir.name}; rows={len(y)}; train={len(tr)}; holdout={len(te)} "
        f"(stratified {HOLDOUT_FRACTION:.0%}, ids in cic-mlp.holdout-ids.txt); seed={SEED}; "
        f"sklearn={sklearn.__version__}; mlp=82-{'-'.join(map(str, HIDDEN))}-{n_classes} relu adam "
        f"alpha={MLP_PARAMS['alpha']} sqrt-balanced class weights; "
        f"threshold=benign FPR<={TARGET_BENIGN_FPR:.0%} on {CV_FOLDS}-fold out-of-fold train scores; "
        f"attempted->{attempted}; web attacks merged; excluded features: Src Port, Dst Port"
    )


def export(model: Model, features: list[str], labels: list[str], threshold: float, training: str, out: Path):
    """Step 4: the ONNX file, written to `out`; returns its path, bytes and SHA-256."""
    onnx_model = build_onnx(model, features, labels, threshold, training)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "cic-mlp.onnx"
    blob = onnx_model.SerializeToString(deterministic=True)
    onnx_path.write_bytes(blob)
    sha = hashlib.sha256(blob).hexdigest()
    log(f"wrote {onnx_path} ({len(blob)} bytes, sha256 {sha})")
    return onnx_path, blob, sha


def write_holdout_ids(path: Path, te: np.ndarray, ids, dates, raw_labels) -> None:
    # (date, id) is the row key: upstream numbers rows per capture-day file, so `id` alone repeats.
    order = sorted(te, key=lambda i: (dates[i], int(ids[i])))
    with path.open("w", encoding="utf-8") as fh:
        fh.write("id\tdate\tlabel\n")
        for i in order:
            fh.write(f"{ids[i]}\t{dates[i]}\t{raw_labels[i]}\n")


def main() -> None:
    args = parse_args()
    t0 = time.time()
    np.random.seed(SEED)

    all_features = schema_features()
    features = [f for f in all_features if f not in EXCLUDED_FEATURES]
    assert len(features) == 82, len(features)

    data_dir = args.data.resolve()
    X, raw_labels, cls_names, ids, dates, load_info = load_data(data_dir, features, args.attempted)
    labels = [BENIGN] + sorted(set(cls_names) - {BENIGN})
    y = np.array([labels.index(c) for c in cls_names], dtype=np.int64)
    C = len(labels)
    log(f"data: {data_dir} ({len(y)} rows, {len(load_info['files'])} files, "
        f"{load_info['attempted_rows']} attempted rows -> {args.attempted})")
    for c, name in enumerate(labels):
        log(f"  {name:28s} {int((y == c).sum()):6d}")

    # 1) held-out split: never touched until the final report.
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=HOLDOUT_FRACTION, stratify=y, random_state=SEED)
    tr, te = np.sort(tr), np.sort(te)
    log(f"split: {len(tr)} train / {len(te)} held-out (stratified, seed {SEED})")

    # 2) threshold from out-of-fold scores on the training part only.
    threshold, oof_fpr, cv_eval = cv_threshold(X, y, tr, labels, t0)

    # 3) final model on the whole training part.
    model = Model(C, SEED).fit(X[tr], y[tr])
    log(f"final model: {model.mlp.n_iter_} epochs, loss {model.mlp.loss_:.5f}, {time.time() - t0:.0f}s")
    inert = [f for f, z in zip(features, model.inert) if z]
    if inert:
        log(f"  inert (constant in training) features, first-layer weights zeroed: {inert}")

    # 4) ONNX export.
    counts = {name: int((y == c).sum()) for c, name in enumerate(labels)}
    training = training_note(data_dir, y, tr, te, C, args.attempted)
    out = args.out.resolve()
    onnx_path, blob, sha = export(model, features, labels, threshold, training, out)

    # 5) onnxruntime (CPU) vs scikit-learn on the held-out part.
    p_onnx, diff = check_onnx(onnx_path, model, X[te])

    # 6) held-out report (with the ONNX probabilities: that is what ships).
    ev = evaluate(y[te], p_onnx.astype(np.float64), labels, threshold)
    n_params = sum(w.size for w in model.mlp.coefs_) + sum(b.size for b in model.mlp.intercepts_)
    metrics = {
        "model": "cic-mlp",
        "model_version": 1,
        "onnx": onnx_path.name,
        "onnx_sha256": sha,
        "onnx_bytes": len(blob),
        "parameters": int(n_params),
        "labels": labels,
        "features": features,
        "inert_features": inert,
        "threshold": threshold,
        "threshold_selection": {
            "method": f"{CV_FOLDS}-fold out-of-fold scores on the training part; smallest threshold "
            f"(rounded up to 0.001, floor {THRESHOLD_FLOOR}) with benign FPR <= {TARGET_BENIGN_FPR}",
            "oof_benign_fpr": round(oof_fpr, 6),
            "oof_eval": cv_eval,
        },
        "data": {
            "dir": data_dir.name,
            "rows": int(len(y)),
            "rows_per_class": counts,
            "rows_per_source_label": {k: int(v) for k, v in zip(*np.unique(raw_labels, return_counts=True))},
            **load_info,
        },
        "split": {
            "seed": SEED,
            "holdout_fraction": HOLDOUT_FRACTION,
            "train_rows": int(len(tr)),
            "holdout_rows": int(len(te)),
            "holdout_ids_file": "cic-mlp.holdout-ids.txt",
        },
        "training": {
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "mlp": {k: (list(v) if isinstance(v, tuple) else v) for k, v in MLP_PARAMS.items()},
            "class_weight": f"(n_max/n_c)^{CLASS_WEIGHT_POWER}, normalised to mean sample weight 1",
            "epochs": int(model.mlp.n_iter_),
            "final_loss": round(float(model.mlp.loss_), 6),
        },
        "onnx_vs_sklearn_max_abs_diff": diff,
        "holdout": ev,
    }
    (out / "cic-mlp.metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    write_holdout_ids(out / "cic-mlp.holdout-ids.txt", te, ids, dates, raw_labels)
    log(f"wrote {out / 'cic-mlp.metrics.json'} and {out / 'cic-mlp.holdout-ids.txt'}")

    log("\n### Held-out results (cic-mlp v1)\n")
    log(markdown_table(ev, labels, threshold))
    log(f"\ndone in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
