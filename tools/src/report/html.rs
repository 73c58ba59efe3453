//! `report.html`: one self-contained page (inline CSS, inline SVG plots
//! drawn with plotters' SVG backend, no scripts or external resources),
//! rendered from the same JSON value as `report.json` so the two never
//! disagree.

// The page reads the report's JSON with `value["key"]`, which gives Null for
// a missing key and never panics; no slice is indexed here.
#![allow(clippy::indexing_slicing)]

use std::fmt::Write as _;

use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use serde_json::Value;

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}\
table{border-collapse:collapse;margin:0.6em 0 1.4em}th,td{border:1px solid #bbb;padding:3px 7px;\
text-align:right;font-size:0.9em}th{background:#eee}td.l,th.l{text-align:left}\
.bad{color:#a00}.note{color:#555;font-size:0.9em}h2{margin-top:1.6em}svg{display:block;margin:0.5em 0}";

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A JSON value as table text.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "–".to_string(),
        Value::String(s) => esc(s),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.4}"),
            _ => n.to_string(),
        },
        other => esc(&other.to_string()),
    }
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot: {e:?}")
}

/// The page.
pub fn render(r: &Value) -> Result<String> {
    let mut h = String::new();
    header(&mut h, r);
    models(&mut h, r);
    let results: Vec<&Value> = r["results"].as_array().into_iter().flatten().collect();
    accuracy(&mut h, &results);
    latency(&mut h, r, &results)?;
    let ok: Vec<&Value> = results
        .iter()
        .copied()
        .filter(|x| x["status"] == "ok")
        .collect();
    rates(&mut h, &ok)?;
    per_class(&mut h, &ok);
    unavailable(&mut h, r);
    robustness(&mut h, &r["robustness"])?;
    h.push_str("<p class=note>All numbers were measured on the machine named above; the same values are in report.json.</p>\n</body></html>\n");
    Ok(h)
}

/// The title, the machine and the rows.
fn header(h: &mut String, r: &Value) {
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>tapstream model report</title><style>{CSS}</style></head><body>\n\
         <h1>tapstream model report</h1>\n"
    );
    let m = &r["machine"];
    let _ = writeln!(
        h,
        "<p>tapstream {} · machine: {} · ONNX Runtime: <code>{}</code> · baseline: {} on {}</p>",
        cell(&r["tapstream_version"]),
        cell(&m["description"]),
        cell(&r["onnxruntime_library"]),
        cell(&r["baseline"]["variant"]),
        cell(&r["baseline"]["backend"]),
    );
    let _ = writeln!(
        h,
        "<p>Rows: <b>{}</b> — {}.</p>",
        cell(&r["input"]["rows"]),
        cell(&r["input"]["rows_used"])
    );
}

/// The models compared.
fn models(h: &mut String, r: &Value) {
    h.push_str("<h2>Models</h2>\n<table><tr><th class=l>variant</th><th class=l>role</th><th class=l>path</th><th class=l>sha256</th><th>precision</th><th>features</th><th>threshold</th><th class=l>status</th></tr>\n");
    for v in r["variants"].as_array().into_iter().flatten() {
        let status = match v.get("error") {
            Some(e) if !e.is_null() => format!("<span class=bad>refused: {}</span>", cell(e)),
            _ => "loaded".to_string(),
        };
        let _ = writeln!(
            h,
            "<tr><td class=l>{}</td><td class=l>{}</td><td class=l><code>{}</code></td><td class=l><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class=l>{status}</td></tr>",
            cell(&v["name"]),
            cell(&v["role"]),
            cell(&v["path"]),
            cell(&v["sha256"]),
            cell(&v["precision"]),
            cell(&v["features"]),
            cell(&v["threshold"]),
        );
    }
    h.push_str("</table>\n");
}

/// Accuracy and agreement with the baseline, per (backend, variant).
fn accuracy(h: &mut String, results: &[&Value]) {
    h.push_str("<h2>Accuracy and agreement with the baseline</h2>\n<table><tr><th class=l>backend</th><th class=l>variant</th><th>rows</th><th>accuracy</th><th>benign FPR</th><th>detection</th><th>decision flips</th><th>class flips</th><th>max |Δscore|</th><th>mean |Δscore|</th></tr>\n");
    for x in results {
        if x["status"] != "ok" {
            let _ = writeln!(
                h,
                "<tr><td class=l>{}</td><td class=l>{}</td><td class='l bad' colspan=8>{}</td></tr>",
                cell(&x["backend"]),
                cell(&x["variant"]),
                cell(&x["reason"])
            );
            continue;
        }
        let mm = &x["metrics"];
        let vb = &mm["vs_baseline"];
        let _ = writeln!(
            h,
            "<tr><td class=l>{}</td><td class=l>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3e}</td><td>{:.3e}</td></tr>",
            cell(&x["backend"]),
            cell(&x["variant"]),
            cell(&mm["rows"]),
            cell(&mm["accuracy"]),
            cell(&mm["benign_fpr"]),
            cell(&mm["detection_rate"]),
            cell(&vb["decision_flips"]),
            cell(&vb["class_flips"]),
            vb["max_abs_score_delta"].as_f64().unwrap_or(0.0),
            vb["mean_abs_score_delta"].as_f64().unwrap_or(0.0),
        );
    }
    h.push_str("</table>\n");
}

/// Latency percentiles per batch size and throughput, and their plot.
fn latency(h: &mut String, r: &Value, results: &[&Value]) -> Result<()> {
    let sizes: Vec<u64> = r["batch_sizes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    h.push_str("<h2>Latency per call and throughput</h2>\n<table><tr><th class=l>backend</th><th class=l>variant</th>");
    for b in &sizes {
        let _ = write!(h, "<th>p50 / p99 µs @{b}</th>");
    }
    h.push_str("<th>rows/s (largest batch)</th></tr>\n");
    for x in results.iter().filter(|x| x["status"] == "ok") {
        let _ = write!(
            h,
            "<tr><td class=l>{}</td><td class=l>{}</td>",
            cell(&x["backend"]),
            cell(&x["variant"])
        );
        for p in x["latency"]["per_batch"].as_array().into_iter().flatten() {
            let _ = write!(
                h,
                "<td>{:.1} / {:.1}</td>",
                p["p50_us"].as_f64().unwrap_or(0.0),
                p["p99_us"].as_f64().unwrap_or(0.0)
            );
        }
        let _ = writeln!(
            h,
            "<td>{}</td></tr>",
            cell(&x["latency"]["throughput"]["rows_per_s"])
        );
    }
    h.push_str("</table>\n");
    h.push_str(&latency_plot(results)?);
    Ok(())
}

/// Benign FPR, detection and accuracy per (variant, backend), as a plot.
fn rates(h: &mut String, ok: &[&Value]) -> Result<()> {
    let groups: Vec<String> = ok
        .iter()
        .map(|x| {
            format!(
                "{} @ {}",
                x["variant"].as_str().unwrap_or("?"),
                x["backend"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let series = vec![
        (
            "benign FPR".to_string(),
            ok.iter()
                .map(|x| x["metrics"]["benign_fpr"].as_f64())
                .collect(),
        ),
        (
            "detection rate".to_string(),
            ok.iter()
                .map(|x| x["metrics"]["detection_rate"].as_f64())
                .collect(),
        ),
        (
            "accuracy".to_string(),
            ok.iter()
                .map(|x| x["metrics"]["accuracy"].as_f64())
                .collect(),
        ),
    ];
    h.push_str(&bar_plot(
        "Benign FPR, detection and accuracy per (variant, backend)",
        &groups,
        &series,
    )?);
    Ok(())
}

/// Recall per class (argmax) per (variant, backend).
fn per_class(h: &mut String, ok: &[&Value]) {
    h.push_str(
        "<h2>Recall per class (argmax)</h2>\n<table><tr><th class=l>class</th><th>rows</th>",
    );
    for x in ok {
        let _ = write!(
            h,
            "<th>{} @ {}</th>",
            cell(&x["variant"]),
            cell(&x["backend"])
        );
    }
    h.push_str("</tr>\n");
    if let Some(first) = ok.first() {
        for (ci, c) in first["metrics"]["per_class"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let _ = write!(
                h,
                "<tr><td class=l>{}{}</td><td>{}</td>",
                cell(&c["label"]),
                if c["known_to_model"] == false {
                    " (unknown to the model)"
                } else {
                    ""
                },
                cell(&c["rows"])
            );
            for x in ok {
                let _ = write!(
                    h,
                    "<td>{}</td>",
                    cell(&x["metrics"]["per_class"][ci]["recall"])
                );
            }
            h.push_str("</tr>\n");
        }
    }
    h.push_str("</table>\n");
}

/// Backends and variants that could not be measured, and which backends
/// this ONNX Runtime has.
fn unavailable(h: &mut String, r: &Value) {
    let unavailable: Vec<&Value> = r["unavailable"].as_array().into_iter().flatten().collect();
    h.push_str("<h2>Unavailable backends and refused variants</h2>\n");
    if unavailable.is_empty() {
        h.push_str("<p>None.</p>\n");
    } else {
        h.push_str("<table><tr><th class=l>variant</th><th class=l>backend</th><th class=l>reason</th></tr>\n");
        for u in unavailable {
            let _ = writeln!(
                h,
                "<tr><td class=l>{}</td><td class=l>{}</td><td class='l bad'>unavailable: {}</td></tr>",
                cell(&u["variant"]),
                cell(&u["backend"]),
                cell(&u["reason"])
            );
        }
        h.push_str("</table>\n");
    }
    let backends: Vec<String> = r["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            format!(
                "{} ({})",
                b["name"].as_str().unwrap_or("?"),
                if b["built_in"] == true {
                    "in this ONNX Runtime"
                } else {
                    "not in this ONNX Runtime build"
                }
            )
        })
        .collect();
    let _ = writeln!(
        h,
        "<p class=note>Backends: {}.</p>",
        esc(&backends.join(", "))
    );
}

/// Detection under each perturbation, when a capture was given.
fn robustness(h: &mut String, rob: &Value) -> Result<()> {
    h.push_str("<h2>Robustness</h2>\n");
    if rob.is_null() {
        h.push_str(
            "<p>Not measured: robustness perturbs packets, so it needs <code>--pcap</code>.</p>\n",
        );
    } else {
        let _ = writeln!(
            h,
            "<p>Attacker: {}. Seed: {}. Detection: {}.</p>",
            cell(&rob["attacker"]),
            cell(&rob["seed"]),
            cell(&rob["detection"])
        );
        h.push_str("<table><tr><th class=l>perturbation</th><th class=l>budget</th><th>packets</th><th>flows</th><th class=l>detection (change vs unperturbed)</th></tr>\n");
        let perts: Vec<&Value> = rob["perturbations"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        for p in &perts {
            let det: Vec<String> = p["detection"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    format!(
                        "{}: {:.4} ({:+.4})",
                        d["variant"].as_str().unwrap_or("?"),
                        d["detection_rate"].as_f64().unwrap_or(0.0),
                        d["change_vs_unperturbed"].as_f64().unwrap_or(0.0)
                    )
                })
                .collect();
            let _ = writeln!(
                h,
                "<tr><td class=l>{}</td><td class=l>{}</td><td>{}</td><td>{}</td><td class=l>{}</td></tr>",
                cell(&p["name"]),
                cell(&p["description"]),
                cell(&p["packets"]),
                cell(&p["flows"]),
                esc(&det.join("; "))
            );
        }
        h.push_str("</table>\n");
        let names: Vec<String> = perts
            .iter()
            .map(|p| p["name"].as_str().unwrap_or("?").to_string())
            .collect();
        let mut variants: Vec<String> = Vec::new();
        for p in &perts {
            for d in p["detection"].as_array().into_iter().flatten() {
                let v = d["variant"].as_str().unwrap_or("?").to_string();
                if !variants.contains(&v) {
                    variants.push(v);
                }
            }
        }
        let series: Vec<(String, Vec<Option<f64>>)> = variants
            .iter()
            .map(|v| {
                let vals = perts
                    .iter()
                    .map(|p| {
                        p["detection"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .find(|d| d["variant"].as_str() == Some(v))
                            .and_then(|d| d["detection_rate"].as_f64())
                    })
                    .collect();
                (format!("{v} @ cpu"), vals)
            })
            .collect();
        h.push_str(&bar_plot(
            "Detection rate per perturbation (cpu)",
            &names,
            &series,
        )?);
    }
    Ok(())
}

/// p50 latency by batch size, one line per (backend, variant).
fn latency_plot(results: &[&Value]) -> Result<String> {
    let lines: Vec<(String, Vec<(f64, f64)>)> = results
        .iter()
        .filter(|x| x["status"] == "ok")
        .map(|x| {
            let pts = x["latency"]["per_batch"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| Some((p["batch"].as_f64()?, p["p50_us"].as_f64()?.max(0.001))))
                .collect();
            (
                format!(
                    "{} @ {}",
                    x["variant"].as_str().unwrap_or("?"),
                    x["backend"].as_str().unwrap_or("?")
                ),
                pts,
            )
        })
        .collect();
    let all: Vec<(f64, f64)> = lines.iter().flat_map(|l| l.1.iter().copied()).collect();
    if all.is_empty() {
        return Ok("<p>No latency measured.</p>\n".to_string());
    }
    let (mut x0, mut x1) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (mut y0, mut y1) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    x0 = (x0 * 0.7).max(0.5);
    x1 *= 1.4;
    y0 *= 0.7;
    y1 *= 1.4;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("p50 latency per call by batch size", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("batch size (rows per call)")
            .y_desc("p50 µs per call")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(plot_err)?;
        for (i, (name, pts)) in lines.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(plot_err)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(plot_err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg + "\n")
}

/// Grouped bars in 0..=1: one group per `groups` entry, one bar per series.
fn bar_plot(
    title: &str,
    groups: &[String],
    series: &[(String, Vec<Option<f64>>)],
) -> Result<String> {
    if groups.is_empty() || series.is_empty() {
        return Ok(String::new());
    }
    let per = series.len() + 1; // one gap after each group
    let total = i32::try_from(groups.len() * per).unwrap_or(i32::MAX);
    let mut svg = String::new();
    {
        let width = (160 + groups.len() * series.len() * 34).clamp(600, 1400) as u32;
        let root = SVGBackend::with_string(&mut svg, (width, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(60)
            .y_label_area_size(50)
            .build_cartesian_2d((0..total).into_segmented(), 0f64..1.08)
            .map_err(plot_err)?;
        let label = |v: &SegmentValue<i32>| -> String {
            let k = match v {
                SegmentValue::CenterOf(k) | SegmentValue::Exact(k) => *k,
                SegmentValue::Last => return String::new(),
            };
            let k = usize::try_from(k).unwrap_or(0);
            if k % per == (per - 1) / 2 {
                groups.get(k / per).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(usize::try_from(total).unwrap_or(0) + 1)
            .x_label_formatter(&label)
            .y_desc("share")
            .draw()
            .map_err(plot_err)?;
        for (si, (name, vals)) in series.iter().enumerate() {
            let color = Palette99::pick(si).to_rgba();
            let bars = vals.iter().enumerate().filter_map(|(g, v)| {
                let v = (*v)?;
                let k = i32::try_from(g * per + si).ok()?;
                Some(Rectangle::new(
                    [
                        (SegmentValue::Exact(k), 0.0),
                        (SegmentValue::Exact(k + 1), v),
                    ],
                    color.filled(),
                ))
            });
            chart
                .draw_series(bars)
                .map_err(plot_err)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg + "\n")
}
