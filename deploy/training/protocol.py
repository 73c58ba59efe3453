#!/usr/bin/env python3
"""Leave-out evaluation of the behaviour-model recipe (train_behaviour.py); see BEHAVIOUR.md.

Every fold retrains the *same recipe* as the shipped model (sampling caps, weights, MLP,
threshold = benign FPR <= 0.1 % on out-of-fold scores of the fold's own training benign
files, inner split inside the fold) without the left-out part, and scores only the
left-out part, scored in float32 like tapstream (TB.attack_score / TB.alerts; threshold capped
at TB.THRESHOLD_CAP):

* leave-one-scenario-out (LOSO): each attack capture file; flow recall at the fold's
  threshold, share of its flows whose top attack class is right, majority class of the
  alerted flows (--scenario-groups N: the scenarios leave in N class-stratified groups,
  fewer folds, each scenario still scored only by a model that never saw it);
* leave-one-source-out (benign): each benign source (file-name prefix of pcaps/benign,
  lab-A, lab-B, lab-C): benign FPR of its flows;
* leave-one-kind-out (LOKO): every scenario of one behaviour class left out: share of its
  flows still alerted (as any attack class).

With --perturbed NAMES every capture is also read as `tapstream perturb` rewrites it (each
flow's initiator pads, delays or splits its packets); a copy keeps its capture's scenario and
source, so it leaves training with it, and each fold also scores the held-out copies: recall
and benign FPR under the attacker's perturbations, out of sample. The copies are trained on
only with --augment (and then count with their capture towards its caps and weights).

    python3 deploy/training/protocol.py --tapstream /work/bin/tapstream-ctx --extra /work/labgen \
        --extra /work/labgen2 --out models
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_behaviour as TB  # noqa: E402  (imports train.py first: single-thread BLAS env)

import json  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
import multiprocessing as mp  # noqa: E402

import numpy as np  # noqa: E402

import flows as F  # noqa: E402

PROTOCOL_MAX_ITER = None  # None: same epochs as the shipped model
_FL: F.Flows | None = None  # set before forking the fold workers


PROTOCOL_INNER_USE = None  # inner threshold groups used per fold (None: all, like the shipped model)
AUGMENT: list = []  # perturbations whose copies are trained on too (train_behaviour.py --augment)


def _fold(job):
    """One fold: job = (fold type, name, left-out row indices, [(result name, scored row indices)]).
    Returns one result per scored part (several for a scenario group)."""
    ftype, name, test_idx, evals = job
    fl = _FL
    train_mask = TB.trainable(fl, AUGMENT).copy()
    train_mask[test_idx] = False
    t0 = time.time()
    model, thr, info = TB.fit_fold(fl, train_mask, max_iter=PROTOCOL_MAX_ITER, inner_use=PROTOCOL_INNER_USE)
    fit_s = round(time.time() - t0, 1)
    out = []
    for ename, all_idx in evals:
        # The capture's own flows are the result; its perturbed copies (never in this fold's
        # training: they share its scenario) are scored beside it.
        own = fl.variant[all_idx] == ""
        eval_idx = all_idx[own]
        perturbed = {}
        for v in sorted(set(fl.variant[all_idx][~own].tolist())):
            vi = all_idx[fl.variant[all_idx] == v]
            va = TB.alerts(TB.attack_score(model.predict_proba(fl.X[vi].astype(np.float64))), thr)
            perturbed[v] = {"flows": int(len(vi)), "alert_rate": round(float(va.mean()), 6), "alerts": int(va.sum())}
        p = model.predict_proba(fl.X[eval_idx].astype(np.float64))
        score = TB.attack_score(p)  # float32, as tapstream
        alert = TB.alerts(score, thr)
        y = fl.y[eval_idx]
        etype = ftype
        if ftype == "scenario-group" or (ftype == "set" and not ename.startswith("lab-")):
            etype = "scenario"
        elif ftype == "set":
            etype = "source"
        res = {"type": etype, "name": ename, "threshold": thr,
               "fit_s": fit_s, **info, "flows": int(len(eval_idx))}
        if ftype in ("scenario-group", "set"):
            res["left_out_with"] = name
        if perturbed:
            res["perturbed"] = perturbed
        if etype == "source":
            res["benign_fp"] = int(alert.sum())
            res["benign_fpr"] = round(float(alert.mean()), 6)
            res["files"] = int(len(np.unique(fl.scenario[eval_idx])))
        else:
            c = int(y[0])
            top_attack = 1 + p[:, 1:].argmax(axis=1)
            res["class"] = F.CLASSES[c]
            res["kind"] = str(fl.kind[eval_idx][0])
            res["recall"] = round(float(alert.mean()), 6)
            res["class_right_share"] = round(float((top_attack == c).mean()), 6)
            if alert.any():
                u, n = np.unique(top_attack[alert], return_counts=True)
                res["alerted_as"] = {F.CLASSES[int(k)]: int(v) for k, v in zip(u, n)}
                res["majority_class_of_alerts"] = F.CLASSES[int(u[n.argmax()])]
            else:
                res["alerted_as"] = {}
                res["majority_class_of_alerts"] = None
            res["class_right"] = res["majority_class_of_alerts"] == F.CLASSES[c]
            res["median_score"] = round(float(np.median(score)), 4)
        out.append(res)
    return out


def scenario_groups(fl: F.Flows, n_groups: int) -> list[list[str]]:
    """Attack scenarios dealt into n_groups: per class (in class order) in a fixed pseudo-random
    order, round-robin continuing across classes, so a group holds at most
    ceil(n_class / n_groups) scenarios of any class and the class keeps its other scenarios."""
    att = fl.y != 0
    groups = [[] for _ in range(n_groups)]
    g = 0
    for c in range(1, len(F.CLASSES)):
        scen = sorted({str(s) for s in np.unique(fl.scenario[att & (fl.y == c)])},
                      key=lambda s: (TB.stable_seed("group", s), s))
        for s in scen:
            groups[g % n_groups].append(s)
            g += 1
    return [sorted(x) for x in groups if x]


def auto_groups(fl: F.Flows) -> int:
    """Scenario count of the largest class: with that many groups every fold leaves out at
    most one scenario of each class (so per class it is leave-one-scenario-out)."""
    att = fl.y != 0
    return max(len(np.unique(fl.scenario[att & (fl.y == c)])) for c in range(1, len(F.CLASSES)) if (fl.y == c).any())


def set_jobs(fl: F.Flows) -> list:
    """Leave one lab set out (--sets-out): every capture of set S (with its perturbed copies)
    leaves training; each of S's attack captures is scored as a scenario, and S's benign flows
    as the source lab-S."""
    jobs = []
    att = fl.y != 0
    for s in sorted(str(x) for x in np.unique(fl.set) if (fl.source == f"lab-{x}").any()):
        in_set = fl.set == s
        evals = [(str(sc), np.flatnonzero((fl.scenario == sc) & att)) for sc in np.unique(fl.scenario[in_set & att])]
        evals.append((f"lab-{s}", np.flatnonzero(in_set & ~att)))
        jobs.append(("set", f"set:{s}", np.flatnonzero(in_set), evals))
    return jobs


def jobs_for(fl: F.Flows, n_groups: int = 0) -> list:
    jobs = []
    att = fl.y != 0
    if n_groups < 0:
        n_groups = auto_groups(fl)
    if n_groups > 0:
        # grouped LOSO: the capture files of one group leave training together; each scored alone.
        for i, grp in enumerate(scenario_groups(fl, n_groups)):
            in_files = np.isin(fl.scenario, grp)
            evals = [(s, np.flatnonzero((fl.scenario == s) & att)) for s in grp]
            jobs.append(("scenario-group", f"group{i:02d}", np.flatnonzero(in_files), evals))
    else:
        # LOSO: the whole capture file leaves training; its attack flows are scored.
        for s in sorted(np.unique(fl.scenario[att])):
            in_file = fl.scenario == s
            jobs.append(("scenario", str(s), np.flatnonzero(in_file), [(str(s), np.flatnonzero(in_file & att))]))
    # leave-one-source-out: the benign flows of one source leave training and are scored.
    for src in sorted(np.unique(fl.source[~att])):
        m = (~att) & (fl.source == src)
        jobs.append(("source", str(src), np.flatnonzero(m), [(str(src), np.flatnonzero(m))]))
    # LOKO: every capture holding flows of this class leaves training; its attack flows are scored.
    for c in range(1, len(F.CLASSES)):
        m = fl.y == c
        if not m.any():
            continue
        files = np.isin(fl.scenario, np.unique(fl.scenario[m]))
        jobs.append(("kind", F.CLASSES[c], np.flatnonzero(files), [(F.CLASSES[c], np.flatnonzero(m))]))
    # Larger folds first, so the two workers finish together.
    return sorted(jobs, key=lambda j: -sum(len(e[1]) for e in j[3]) if j[0].startswith("scenario") else 0)


def summarise(results: list) -> dict:
    loso = [r for r in results if r["type"] == "scenario"]
    src = [r for r in results if r["type"] == "source"]
    loko = [r for r in results if r["type"] == "kind"]
    per_kind = {}
    for c in F.CLASSES[1:]:
        rs = [r for r in loso if r["class"] == c]
        if not rs:
            continue
        per_kind[c] = {
            "scenarios": len(rs),
            "mean_recall": round(float(np.mean([r["recall"] for r in rs])), 4),
            "min_recall": round(float(np.min([r["recall"] for r in rs])), 4),
            "class_right_scenarios": int(sum(bool(r["class_right"]) for r in rs)),
            "mean_class_right_share": round(float(np.mean([r["class_right_share"] for r in rs])), 4),
            "leave_kind_out_alert_rate": next((r["recall"] for r in loko if r["class"] == c), None),
        }
    fp = sum(r["benign_fp"] for r in src)
    folds_by = {}
    for r in results:
        folds_by.setdefault((r["type"], r.get("left_out_with", r["name"])), r)
    capped = sorted(f"{t}:{n}" for (t, n), r in folds_by.items() if r.get("threshold_capped"))
    n = sum(r["flows"] for r in src)
    # Held-out perturbed copies: per perturbation, mean recall over kinds (mean of the kinds'
    # mean scenario recall, as for the clean figure) and pooled benign FPR over the sources.
    perturbed = {}
    for v in sorted({k for r in results for k in r.get("perturbed", {})}):
        kinds = {}
        for c in F.CLASSES[1:]:
            rs = [r["perturbed"][v]["alert_rate"] for r in loso if r["class"] == c and v in r.get("perturbed", {})]
            if rs:
                kinds[c] = round(float(np.mean(rs)), 4)
        sp = [r["perturbed"][v] for r in src if v in r.get("perturbed", {})]
        perturbed[v] = {
            "mean_recall_over_kinds": round(float(np.mean(list(kinds.values()))), 4) if kinds else None,
            "recall_per_kind": kinds,
            "benign_fpr_pooled": round(sum(x["alerts"] for x in sp) / max(sum(x["flows"] for x in sp), 1), 6),
            "benign_flows_pooled": int(sum(x["flows"] for x in sp)),
        }
    return {
        "perturbed": perturbed,
        "per_kind": per_kind,
        "mean_recall_over_kinds": round(float(np.mean([v["mean_recall"] for v in per_kind.values()])), 4) if per_kind else None,
        "mean_leave_kind_out_alert_rate": round(float(np.mean([r["recall"] for r in loko])), 4) if loko else None,
        "benign_fpr_per_source": {r["name"]: {"fpr": r["benign_fpr"], "fp": r["benign_fp"], "flows": r["flows"],
                                              "files": r["files"]} for r in src},
        "benign_fpr_pooled": round(fp / max(n, 1), 6),
        "benign_fp_pooled": int(fp),
        "benign_flows_pooled": int(n),
        "score_dtype": "float32",
        "threshold_cap": TB.THRESHOLD_CAP,
        "folds": len(folds_by),
        "folds_threshold_capped": len(capped),
        "folds_threshold_capped_names": capped,
        "benign_fpr_mean_over_sources": round(float(np.mean([r["benign_fpr"] for r in src])), 6) if src else None,
    }


def run(fl: F.Flows, jobs: int = 2, inner_use: int | None = None, scenario_groups: int = 0,
        augment: list | tuple = (), sets_out: bool = False) -> dict:
    global _FL, PROTOCOL_INNER_USE, AUGMENT
    _FL = fl
    PROTOCOL_INNER_USE = inner_use
    AUGMENT = list(augment)
    if scenario_groups < 0:
        scenario_groups = auto_groups(fl)
    js = set_jobs(fl) if sets_out else jobs_for(fl, scenario_groups)
    TB.log(f"protocol: {len(js)} folds ({sum(j[0].startswith('scenario') for j in js)} scenario"
           f"{' groups' if scenario_groups else ''}, {sum(j[0] == 'source' for j in js)} source, "
           f"{sum(j[0] == 'kind' for j in js)} kind) on {jobs} processes; threshold from "
           f"{inner_use or TB.INNER_FOLDS}/{TB.INNER_FOLDS} inner benign groups per fold")
    t0 = time.time()
    results = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("fork")) as ex:
        for i, rs in enumerate(ex.map(_fold, js)):
            results += rs
            for r in rs:
                extra = (f"FPR {r['benign_fpr']:.4f} ({r['benign_fp']}/{r['flows']})" if r["type"] == "source"
                         else f"recall {r['recall']:.3f} as {r['majority_class_of_alerts']}")
                TB.log(f"  [{i + 1}/{len(js)}] {r['type']:8s} {r['name']:45s} thr {r['threshold']:.6f}"
                       f"{'*' if r.get('threshold_capped') else ' '} "
                       f"{extra}  ({r['fit_s']}s, {time.time() - t0:.0f}s)")
    order = {"scenario": 0, "source": 1, "kind": 2}
    results.sort(key=lambda r: (order[r["type"]], r["name"]))
    return {
        "recipe": {
            "cap_attack_flows_per_scenario": TB.CAP_ATTACK, "cap_benign_flows_per_file": TB.CAP_BENIGN,
            "cap_benign_flows_per_lab_file": TB.CAP_BENIGN_LAB,
            "max_iter": PROTOCOL_MAX_ITER or TB.MLP_PARAMS["max_iter"], "hidden": list(TB.HIDDEN),
            "target_benign_fpr": TB.TARGET_BENIGN_FPR,
            "score": "float32: f32(1) - f32(p_benign), alert = score >= f32(threshold), as tapstream",
            "threshold_cap": TB.THRESHOLD_CAP,
            "threshold": f"per fold (capped at {TB.THRESHOLD_CAP}): out-of-fold scores of that fold's training benign flows, "
                         f"{inner_use or TB.INNER_FOLDS} of {TB.INNER_FOLDS} inner groups of benign files",
            "scenario_folds": ("one lab set (all its captures) per fold" if sets_out else
                               f"{scenario_groups} class-stratified groups of attack scenarios"
                               if scenario_groups else "one per attack scenario"),
            "seed": TB.SEED,
            "perturbed": sorted(set(fl.variant.tolist()) - {""}),
            "trained_on_perturbed": list(augment),
        },
        "data": {k: fl.info[k] for k in ("binary_sha256", "context")} | {"features": len(fl.features), "flows": len(fl)},
        "summary": summarise(results),
        "folds": results,
        "runtime_s": round(time.time() - t0, 1),
    }


def markdown(prot: dict) -> str:
    s = prot["summary"]
    L = ["| Behaviour class | LOSO scenarios | mean flow recall | min recall | scenarios with right class | leave-kind-out alert rate |",
         "|---|---:|---:|---:|---:|---:|"]
    for c, v in s["per_kind"].items():
        lk = v["leave_kind_out_alert_rate"]
        L.append(f"| {c} | {v['scenarios']} | {v['mean_recall']:.3f} | {v['min_recall']:.3f} | "
                 f"{v['class_right_scenarios']}/{v['scenarios']} | {'' if lk is None else f'{lk:.3f}'} |")
    lk = s["mean_leave_kind_out_alert_rate"]
    L.append(f"| **mean over kinds** | | **{s['mean_recall_over_kinds']:.3f}** | | | {'' if lk is None else f'{lk:.3f}'} |")
    L += ["", "| Benign source (left out) | files | flows | false positives | benign FPR |", "|---|---:|---:|---:|---:|"]
    for name, v in s["benign_fpr_per_source"].items():
        L.append(f"| {name} | {v['files']} | {v['flows']} | {v['fp']} | {v['fpr']:.4f} |")
    L.append(f"| **pooled** | | {s['benign_flows_pooled']} | {s['benign_fp_pooled']} | **{s['benign_fpr_pooled']:.4f}** |")
    if s.get("perturbed"):
        L += ["", "| Held-out copies perturbed by | mean recall over kinds | " + " | ".join(F.CLASSES[1:]) + " | benign FPR pooled |",
              "|---|---:|" + "---:|" * len(F.CLASSES[1:]) + "---:|"]
        for v, x in s["perturbed"].items():
            per = " | ".join(f"{x['recall_per_kind'][c]:.3f}" if c in x["recall_per_kind"] else "–" for c in F.CLASSES[1:])
            L.append(f"| {v} | {x['mean_recall_over_kinds']:.3f} | {per} | {x['benign_fpr_pooled']:.4f} |")
    L += ["", "| Left-out scenario | class | flows | recall | top attack class right (share) | alerts mostly as | fold threshold |",
          "|---|---|---:|---:|---:|---|---:|"]
    for r in prot["folds"]:
        if r["type"] == "scenario":
            L.append(f"| {r['name']} | {r['class']} | {r['flows']} | {r['recall']:.3f} | {r['class_right_share']:.3f} | "
                     f"{r['majority_class_of_alerts'] or '–'} | {r['threshold']:.6f}{' (cap)' if r.get('threshold_capped') else ''} |")
    return "\n".join(L)


def main() -> None:
    args = TB.parse_args()
    fl = TB.load_flows(args)
    prot = run(fl, jobs=args.jobs, inner_use=args.protocol_inner_use, scenario_groups=args.scenario_groups,
               augment=args.augment, sets_out=args.sets_out)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{TB.MODEL_NAME}.protocol.json").write_text(json.dumps(prot, indent=2) + "\n", encoding="utf-8")
    TB.log(f"wrote {out / f'{TB.MODEL_NAME}.protocol.json'}")
    print(markdown(prot))


if __name__ == "__main__":
    main()
