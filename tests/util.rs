//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The tapstream binary built for these tests.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tapstream"))
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/data`, or `None` (after saying so) when it is absent.
pub fn shared_data(test: &str) -> Option<PathBuf> {
    let p = root().join("../shared/data");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("{test}: skipped, {} not found", p.display());
        None
    }
}

/// True when the ONNX Runtime library can be found (or the test must fail
/// because CI requires it).
pub fn have_ort(test: &str) -> bool {
    let found = std::env::var_os("ORT_DYLIB_PATH").is_some()
        || root()
            .join(".deps/onnxruntime/libonnxruntime.so.1.31.1")
            .exists();
    if !found && std::env::var_os("TAPSTREAM_REQUIRE_ORT").is_none() {
        eprintln!("{test}: skipped, ONNX Runtime not found (run scripts/fetch-onnxruntime.sh)");
        return false;
    }
    true
}

/// Runs a command and returns its output, panicking with its stderr if it
/// could not start.
pub fn output(cmd: &mut Command) -> Output {
    match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run {cmd:?}: {e}"),
    }
}

/// Writes the demo capture into `dir` and returns its path.
pub fn demo_pcap(dir: &Path) -> PathBuf {
    let p = dir.join("demo.pcap");
    let o = output(bin().arg("demo-pcap").arg("--out").arg(&p));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    p
}

/// Every file under `dir`, recursively, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The complete lines of a file another process may be writing: a last
/// line without its newline is not there yet (a reader that tails EVE, or a
/// log, must treat it so; tapstream writes whole lines, but a reader can
/// catch a write half done). Empty when the file does not exist.
pub fn complete_lines(path: &Path) -> String {
    let mut text = std::fs::read_to_string(path).unwrap_or_default();
    let end = text.rfind('\n').map_or(0, |i| i + 1);
    text.truncate(end);
    text
}

/// Waits until `cond` holds, polling every 10 ms; panics naming `what`
/// after `limit`.
pub fn wait_until(what: &str, limit: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The value of the first sample of `name` (any labels) in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A classic pcap of `link_type` holding `frames` (microsecond timestamps).
pub fn pcap_of(link_type: u32, frames: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&65_535u32.to_le_bytes());
    v.extend_from_slice(&link_type.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        v.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        v.extend_from_slice(&(i as u32).to_le_bytes());
        v.extend_from_slice(&(f.len() as u32).to_le_bytes());
        v.extend_from_slice(&(f.len() as u32).to_le_bytes());
        v.extend_from_slice(f);
    }
    v
}

/// A child's log lines as they come (its stderr, read on a thread).
pub struct LogLines {
    rx: crossbeam_channel::Receiver<String>,
    all: std::thread::JoinHandle<String>,
}

impl LogLines {
    /// Reads `stderr` until it closes.
    pub fn read(stderr: std::process::ChildStderr) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded::<String>();
        let all = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut all = String::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                all.push_str(&line);
                all.push('\n');
                let _ = tx.send(line);
            }
            all
        });
        LogLines { rx, all }
    }

    /// The next line that contains `text` (panics after 20 s without one).
    pub fn wait_for(&self, text: &str) -> String {
        let t = std::time::Instant::now();
        loop {
            let left = std::time::Duration::from_secs(20).saturating_sub(t.elapsed());
            match self.rx.recv_timeout(left) {
                Ok(l) if l.contains(text) => return l,
                Ok(_) => {}
                Err(_) => panic!("no log line with {text:?}"),
            }
        }
    }

    /// Every line, once the child has closed its stderr.
    pub fn all(self) -> String {
        self.all.join().unwrap_or_default()
    }
}
