//! Every shared capture through `tapstream run`: exit 0 with every packet
//! accounted for, or (for a file that is not a capture at all) a one-line
//! error and a non-zero exit. Never a panic.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::util::{bin, files_under, have_ort, output, root, shared_data};

#[derive(Default)]
struct Tally {
    ok: usize,
    not_captures: Vec<PathBuf>,
    /// Captures of link types tapstream does not decode (exit 3, named).
    undecodable: Vec<PathBuf>,
    read_errors: Vec<(PathBuf, String)>,
    failures: Vec<String>,
    packets: u64,
    flows: u64,
}

#[test]
fn every_shared_capture_runs_and_accounts_for_every_packet() {
    let test = "every_shared_capture_runs_and_accounts_for_every_packet";
    let Some(data) = shared_data(test) else {
        return;
    };
    if !have_ort(test) {
        return;
    }
    let files = files_under(&data.join("pcaps"));
    assert!(files.len() > 2000, "{} files", files.len());
    let dir = tempfile::tempdir().unwrap();
    let next = Mutex::new(0usize);
    let tally = Mutex::new(Tally::default());
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (files, next, tally, dir) = (&files, &next, &tally, dir.path());
            s.spawn(move || loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some(file) = files.get(i) else { break };
                let summary = dir.join(format!("s{t}.json"));
                let _ = std::fs::remove_file(&summary);
                let o = output(
                    bin()
                        .current_dir(root())
                        .args(["run", "--quiet", "--workers", "1", "--eve", "/dev/null"])
                        .arg("--pcap")
                        .arg(file)
                        .arg("--summary-json")
                        .arg(&summary),
                );
                let stderr = String::from_utf8_lossy(&o.stderr).to_string();
                let mut tl = tally.lock().unwrap();
                if stderr.contains("panicked") {
                    tl.failures
                        .push(format!("{}: panic: {stderr}", file.display()));
                    continue;
                }
                if o.status.code() == Some(3) {
                    // Nothing of it can be analysed: said in one line that
                    // names its link types; the summary still accounts for
                    // every packet (checked below).
                    let one_line = stderr.trim().lines().count() == 1;
                    if one_line && stderr.contains("tapstream decodes none of them") {
                        tl.undecodable.push(file.clone());
                    } else {
                        tl.failures
                            .push(format!("{}: exit 3: {stderr}", file.display()));
                        continue;
                    }
                } else if !o.status.success() {
                    let one_line = stderr.trim().lines().count() == 1;
                    if one_line && stderr.contains("not a capture") {
                        tl.not_captures.push(file.clone());
                    } else {
                        tl.failures.push(format!(
                            "{}: exit {:?}: {stderr}",
                            file.display(),
                            o.status
                        ));
                    }
                    continue;
                }
                let s: serde_json::Value = match std::fs::read_to_string(&summary)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                {
                    Some(v) => v,
                    None => {
                        tl.failures.push(format!("{}: no summary", file.display()));
                        continue;
                    }
                };
                if s["accounted"] != true {
                    tl.failures.push(format!(
                        "{}: packets not accounted for: {s}",
                        file.display()
                    ));
                    continue;
                }
                if let Some(e) = s["read_error"].as_str() {
                    tl.read_errors.push((file.clone(), e.to_string()));
                }
                tl.ok += 1;
                tl.packets += s["packets"].as_u64().unwrap_or(0);
                tl.flows += s["flows"].as_u64().unwrap_or(0);
            });
        }
    });
    let tl = tally.into_inner().unwrap();
    eprintln!(
        "{} captures ran ({} packets, {} flows); {} were not captures; {} only of link types \
         tapstream does not decode; {} stopped early on corruption",
        tl.ok,
        tl.packets,
        tl.flows,
        tl.not_captures.len(),
        tl.undecodable.len(),
        tl.read_errors.len()
    );
    for p in &tl.not_captures {
        eprintln!("  not a capture: {}", p.display());
    }
    for p in &tl.undecodable {
        eprintln!("  link type not decoded: {}", p.display());
    }
    for (p, e) in &tl.read_errors {
        eprintln!("  corrupt: {}: {e}", p.display());
    }
    assert!(tl.failures.is_empty(), "{}", tl.failures.join("\n"));
    // Nearly every shared file is a real capture.
    assert!(
        tl.ok >= files.len() - 20,
        "{} of {} ran",
        tl.ok,
        files.len()
    );
}
