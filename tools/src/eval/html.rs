//! `eval.html`: the evaluation as one self-contained page (inline CSS, no
//! scripts, no external resources), so it can be mailed or archived beside
//! the captures. It is drawn from the same [`Report`] as `eval.json`, so
//! the two never disagree: one table per metric with the models side by
//! side, and a confusion table per model.

use std::fmt::Write as _;

use super::labels::BENIGN;
use super::metrics::{Metrics, NOT_ALERTED};
use super::report::{one_decimal, percent, points, thousands, Report};

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}\
table{border-collapse:collapse;margin:0.6em 0 1.4em}th,td{border:1px solid #bbb;padding:3px 7px;\
text-align:right;font-size:0.9em}th{background:#eee}td.l,th.l{text-align:left}\
td.z{color:#aaa}.bad{color:#a00}.note{color:#555;font-size:0.9em}h2{margin-top:1.6em}code{font-size:0.85em}";

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A table: the first column left-aligned (row names), every cell escaped.
fn table(h: &mut String, head: &[String], rows: &[Vec<String>]) {
    h.push_str("<table><tr>");
    for (i, c) in head.iter().enumerate() {
        let class = if i == 0 { " class=\"l\"" } else { "" };
        let _ = write!(h, "<th{class}>{}</th>", esc(c));
    }
    h.push_str("</tr>\n");
    for row in rows {
        h.push_str("<tr>");
        for (i, c) in row.iter().enumerate() {
            let class = match (i, c.as_str()) {
                (0, _) => " class=\"l\"",
                (_, "0" | "-") => " class=\"z\"",
                _ => "",
            };
            let _ = write!(h, "<td{class}>{}</td>", esc(c));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

/// The page.
pub fn render(r: &Report) -> String {
    let mut h = String::with_capacity(16 << 10);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tapstream eval: {}</title>\
         <style>{CSS}</style></head><body>\n<h1>tapstream eval</h1>\n",
        esc(&r.data_dir)
    );
    header(&mut h, r);
    models(&mut h, r);
    per_kind(&mut h, r);
    benign(&mut h, r);
    episodes(&mut h, r);
    confusion(&mut h, r);
    perturbations(&mut h, r);
    read_errors(&mut h, r);
    h.push_str("</body></html>\n");
    h
}

fn header(h: &mut String, r: &Report) {
    let c = &r.counts;
    let _ = write!(
        h,
        "<p>Data <code>{}</code>, labels <code>{}</code> (attack windows widened by {} s), \
         tapstream {}.</p>\n<p>{} captures ({} read, {} with read errors), {} flows: {} attack \
         flows in {} kinds and {} episodes (capture × kind), {} benign flows.</p>\n\
         <p class=\"note\">A flow is alerted when its attack score reaches the model's threshold; \
         its class is the most probable non-benign label.</p>\n",
        esc(&r.data_dir),
        esc(&r.labels),
        r.window_slack_s,
        esc(r.tapstream_version),
        c.captures,
        c.captures_read,
        c.read_errors,
        thousands(c.flows),
        thousands(c.attack_flows),
        c.kinds.len(),
        c.episodes,
        thousands(c.benign_flows),
    );
}

fn models(h: &mut String, r: &Report) {
    h.push_str("<h2>Models</h2>\n");
    let head = [
        "model",
        "name",
        "version",
        "precision",
        "threshold",
        "own threshold",
        "SHA-256",
        "file",
    ]
    .map(String::from);
    let rows: Vec<Vec<String>> = r
        .models
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                m.model_name.clone(),
                m.model_version.clone(),
                m.precision.clone(),
                own_or(m.threshold),
                own_or(m.contract_threshold),
                m.sha256.clone(),
                m.path.clone(),
            ]
        })
        .collect();
    table(h, &head, &rows);
}

/// A header row: the first columns, then one per model.
fn with_models(r: &Report, first: &[&str]) -> Vec<String> {
    first
        .iter()
        .map(|s| s.to_string())
        .chain(r.models.iter().map(|m| m.name.clone()))
        .collect()
}

fn per_model(r: &Report, f: impl Fn(&Metrics) -> String) -> Vec<String> {
    r.results.iter().map(|x| f(&x.metrics)).collect()
}

fn per_kind(h: &mut String, r: &Report) {
    h.push_str("<h2>Flow recall per kind</h2>\n<p class=\"note\">Alerted attack flows of the kind ÷ its flows.</p>\n");
    let mut rows = Vec::new();
    for (kind, c) in &r.counts.kinds {
        let mut row = vec![kind.clone(), thousands(c.flows)];
        row.extend(per_model(r, |m| {
            m.kinds.get(kind).map_or_else(
                || "-".into(),
                |k| format!("{} ({})", percent(k.recall), thousands(k.alerted)),
            )
        }));
        rows.push(row);
    }
    let mut mean = vec!["mean of the kinds".to_string(), String::new()];
    mean.extend(per_model(r, |m| percent(m.mean_recall)));
    rows.push(mean);
    table(h, &with_models(r, &["kind", "flows"]), &rows);

    h.push_str("<h2>Captures hit per kind</h2>\n<p class=\"note\">Captures of the kind with at least one of its attack flows alerted ÷ captures of the kind.</p>\n");
    let rows: Vec<Vec<String>> = r
        .counts
        .kinds
        .iter()
        .map(|(kind, c)| {
            let mut row = vec![kind.clone(), c.captures.to_string()];
            row.extend(per_model(r, |m| {
                m.kinds.get(kind).map_or_else(
                    || "-".into(),
                    |k| {
                        format!(
                            "{}/{} ({})",
                            k.captures_hit,
                            k.captures,
                            percent(k.files_hit_rate)
                        )
                    },
                )
            }));
            row
        })
        .collect();
    table(h, &with_models(r, &["kind", "captures"]), &rows);
}

fn benign(h: &mut String, r: &Report) {
    h.push_str("<h2>Benign false-positive rate</h2>\n<p class=\"note\">Alerted benign flows ÷ benign flows, pooled and per group (the capture's directory, and the <code>source</code> of files named <code>source__name</code>); benign background of attack captures included.</p>\n");
    let mut rows = Vec::new();
    let mut pooled = vec![
        "all benign flows".to_string(),
        thousands(r.counts.benign_flows),
    ];
    pooled.extend(per_model(r, |m| {
        format!(
            "{} ({})",
            percent(m.benign.fpr),
            thousands(m.benign.alerted)
        )
    }));
    rows.push(pooled);
    for (group, flows) in &r.counts.benign_groups {
        let mut row = vec![group.clone(), thousands(*flows)];
        row.extend(per_model(r, |m| {
            m.benign.groups.get(group).map_or_else(
                || "-".into(),
                |g| format!("{} ({})", percent(g.rate), thousands(g.alerted)),
            )
        }));
        rows.push(row);
    }
    table(h, &with_models(r, &["group", "flows"]), &rows);
}

fn episodes(h: &mut String, r: &Report) {
    h.push_str("<h2>Alerts per attack episode</h2>\n<p class=\"note\">Alerted flows per episode (capture × kind), mean and max: how many alert lines one attack causes.</p>\n");
    let mut rows = Vec::new();
    for (kind, c) in &r.counts.kinds {
        let mut row = vec![kind.clone(), c.captures.to_string()];
        row.extend(per_model(r, |m| {
            m.kinds.get(kind).map_or_else(
                || "-".into(),
                |k| {
                    let e = &k.alerts_per_episode;
                    format!("{} / {}", one_decimal(e.mean), thousands(e.max))
                },
            )
        }));
        rows.push(row);
    }
    let mut all = vec!["all episodes".to_string(), r.counts.episodes.to_string()];
    all.extend(per_model(r, |m| {
        let e = &m.alerts_per_episode;
        format!("{} / {}", one_decimal(e.mean), thousands(e.max))
    }));
    rows.push(all);
    table(h, &with_models(r, &["kind", "episodes"]), &rows);
}

fn confusion(h: &mut String, r: &Report) {
    h.push_str("<h2>Confusion</h2>\n<p class=\"note\">Flows by true kind (rows) and the class each model alerted with (columns; <code>none</code>: not alerted).</p>\n");
    for (info, res) in r.models.iter().zip(&r.results) {
        let _ = writeln!(h, "<h3>{}</h3>", esc(&info.name));
        let m = &res.metrics;
        let mut columns: Vec<String> = m
            .confusion
            .values()
            .flat_map(|row| row.keys())
            .filter(|k| k.as_str() != NOT_ALERTED)
            .cloned()
            .collect();
        columns.sort();
        columns.dedup();
        columns.push(NOT_ALERTED.into());
        let truths = r
            .counts
            .kinds
            .keys()
            .map(String::as_str)
            .chain(std::iter::once(BENIGN));
        let rows: Vec<Vec<String>> = truths
            .map(|t| {
                let row = m.confusion.get(t);
                std::iter::once(t.to_string())
                    .chain(
                        columns
                            .iter()
                            .map(|c| thousands(row.and_then(|x| x.get(c)).copied().unwrap_or(0))),
                    )
                    .collect()
            })
            .collect();
        let head: Vec<String> = std::iter::once("true \\ predicted".to_string())
            .chain(columns.iter().cloned())
            .collect();
        table(h, &head, &rows);
    }
}

fn read_errors(h: &mut String, r: &Report) {
    h.push_str("<h2>Read errors</h2>\n");
    if r.read_errors.is_empty() {
        h.push_str("<p>Every capture was read.</p>\n");
        return;
    }
    let rows: Vec<Vec<String>> = r
        .read_errors
        .iter()
        .map(|e| {
            let what = if e.partial {
                "flows before the error evaluated"
            } else {
                "skipped"
            };
            vec![e.file.clone(), what.to_string(), e.error.clone()]
        })
        .collect();
    h.push_str("<div class=\"bad\">");
    table(h, &["capture", "", "error"].map(String::from), &rows);
    h.push_str("</div>\n");
}

/// Per perturbation, one table: a row per model, its recall per kind, mean
/// recall and benign FPR, each with the change from the clean captures.
fn perturbations(h: &mut String, r: &Report) {
    if r.perturbations.is_empty() {
        return;
    }
    h.push_str(
        "<h2>Perturbed captures</h2>\n<p class=\"note\">Each capture rewritten, then run \
                through the whole pipeline; in brackets the change from the clean captures, in \
                percentage points.</p>\n",
    );
    for p in &r.perturbations {
        let _ = write!(
            h,
            "<h3>{}</h3>\n<p class=\"note\">{} ({} attacker packets rewritten, {} left as they were)</p>\n",
            esc(&p.name),
            esc(&p.description),
            thousands(p.packets.rewritten),
            thousands(p.packets.unchanged)
        );
        let kinds: Vec<String> = r.counts.kinds.keys().cloned().collect();
        let mut head = vec!["model".to_string()];
        head.extend(kinds.iter().cloned());
        head.extend(["mean recall".to_string(), "benign FPR".to_string()]);
        let rows: Vec<Vec<String>> = p
            .results
            .iter()
            .map(|m| {
                let mut row = vec![m.model.clone()];
                for k in &kinds {
                    row.push(m.kinds.get(k).map_or_else(
                        || "-".to_string(),
                        |c| format!("{} ({})", percent(c.recall), points(c.change)),
                    ));
                }
                row.push(format!(
                    "{} ({})",
                    percent(m.mean_recall),
                    points(m.mean_recall_change)
                ));
                row.push(format!(
                    "{} ({})",
                    percent(m.benign_fpr),
                    points(m.benign_fpr_change)
                ));
                row
            })
            .collect();
        table(h, &head, &rows);
    }
}

/// A threshold, or "each own" for the models scored together.
fn own_or(t: f32) -> String {
    if t.is_nan() {
        "each own".to_owned()
    } else {
        t.to_string()
    }
}
