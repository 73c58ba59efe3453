//! Sensor mode: `tapstream run --interface` on one end of a veth pair
//! between two network namespaces the test creates (198.18.0.0/24), with
//! real tools' traffic: an nmap SYN scan and curl against a small HTTP
//! server. tcpdump captures the same interface as the reference count.
//!
//! Needs root, `ip`, nmap, curl, tcpdump and python3 (CI has them all and
//! sets TAPSTREAM_REQUIRE_NETNS, so there a missing piece fails the test;
//! elsewhere the test says what is missing and skips).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{bin, have_ort, metric, output, root, wait_until};

/// Two namespaces joined by a veth pair; removed on drop.
struct Netns {
    a: String,
    b: String,
    /// The capture side's interface (in `b`).
    vb: String,
}

impl Netns {
    /// `tag` (one letter) keeps the names of tests running at once apart.
    fn setup(test: &str, tag: char) -> Option<Netns> {
        let missing: Vec<&str> = ["ip", "nmap", "curl", "tcpdump", "python3", "setpriv"]
            .into_iter()
            .filter(|t| which(t).is_none())
            .collect();
        // SAFETY: geteuid has no preconditions.
        let root_user = unsafe { libc::geteuid() } == 0;
        if !missing.is_empty() || !root_user {
            let why = format!("needs root (root: {root_user}) and {missing:?}");
            if std::env::var_os("TAPSTREAM_REQUIRE_NETNS").is_some() {
                panic!("{test}: {why}");
            }
            eprintln!("{test}: skipped, {why}");
            return None;
        }
        let id = format!("{}{tag}", std::process::id() % 100_000);
        let ns = Netns {
            a: format!("tsa{id}"),
            b: format!("tsb{id}"),
            vb: format!("tsvb{id}"),
        };
        let va = format!("tsva{id}");
        let (a, b, vb) = (ns.a.as_str(), ns.b.as_str(), ns.vb.as_str());
        for args in [
            vec!["netns", "add", a],
            vec!["netns", "add", b],
            vec!["link", "add", &va, "type", "veth", "peer", "name", vb],
            vec!["link", "set", &va, "netns", a],
            vec!["link", "set", vb, "netns", b],
        ] {
            ip(&args);
        }
        for (n, dev, addr) in [(a, va.as_str(), "198.18.0.1/24"), (b, vb, "198.18.0.2/24")] {
            // No IPv6: its neighbour discovery would add packets of its own.
            for key in [
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ] {
                sh(Command::new("ip").args(["netns", "exec", n, "sysctl", "-qw", key]));
            }
            ip(&["-n", n, "addr", "add", addr, "dev", dev]);
            ip(&["-n", n, "link", "set", dev, "up"]);
            ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        Some(ns)
    }

    /// A command run inside namespace `ns`.
    fn exec(ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

fn sh(cmd: &mut Command) {
    let o = output(cmd);
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn ip(args: &[&str]) {
    sh(Command::new("ip").args(args));
}

/// Kills a helper process when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

/// Waits for `child` to exit, at most `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return s;
        }
        assert!(t.elapsed() < limit, "process did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The metrics text, fetched inside namespace `ns`.
fn scrape(ns: &str, port: u16) -> Option<String> {
    let o = Netns::exec(ns, "curl")
        .args(["-sf", "--max-time", "2"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Packet records in a capture file.
fn records(pcap: &Path) -> u64 {
    let mut r = tapstream_ingest::CaptureReader::open(pcap).expect("tcpdump's capture opens");
    let mut n = 0;
    while let Ok(Some(_)) = r.next_packet() {
        n += 1;
    }
    n
}

/// What the `Uid:` and `CapEff:` lines of every thread of `pid` say.
fn threads_identity(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process runs") {
        let Ok(t) = t else { continue };
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
            continue;
        };
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        };
        out.push((field("Uid:"), field("CapEff:")));
    }
    out
}

/// A tapstream sensor running in namespace `b` of a [`Netns`], with its own
/// scratch directory (model, ONNX Runtime, config, outputs), usable by the
/// unprivileged user it runs as wherever the checkout lives.
struct Sensor {
    proc: Reaped,
    stderr: std::process::ChildStderr,
    dir: tempfile::TempDir,
    /// Its log, once stopped.
    log: String,
}

impl Sensor {
    /// Starts `wrapper… tapstream run --interface` in `ns.b` with `extra`
    /// config sections, and waits for its metrics endpoint on `port`.
    fn start(ns: &Netns, wrapper: &[&str], extra: &str, port: u16) -> Sensor {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let model = d.join("cic-mlp.onnx");
        std::fs::copy(root().join("models/cic-mlp.onnx"), &model).unwrap();
        let lib = std::env::var_os("ORT_DYLIB_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join(".deps/onnxruntime/libonnxruntime.so.1.31.1"));
        let lib_copy = d.join("libonnxruntime.so.1.31.1");
        std::fs::copy(&lib, &lib_copy).unwrap();
        let cfg = d.join("sensor.toml");
        std::fs::write(
            &cfg,
            format!(
                "{extra}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\
                 [model]\npath = \"{}\"\n\
                 [inference]\nonnxruntime_library = \"{}\"\n",
                model.display(),
                lib_copy.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.b]).args(wrapper);
        let mut child = cmd
            .arg(env!("CARGO_BIN_EXE_tapstream"))
            .args([
                "run",
                "--alerts",
                "flows",
                "--quiet",
                "--interface",
                &ns.vb,
                "--config",
            ])
            .arg(&cfg)
            .arg("--eve")
            .arg(d.join("eve.json"))
            .arg("--summary-json")
            .arg(d.join("summary.json"))
            .env("TAPSTREAM_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("tapstream starts");
        let mut stderr = child.stderr.take().expect("piped");
        let mut proc = Reaped(child);
        wait_until("the metrics endpoint", Duration::from_secs(30), || {
            if let Ok(Some(status)) = proc.0.try_wait() {
                let mut log = String::new();
                let _ = stderr.read_to_string(&mut log);
                panic!("tapstream exited at start-up ({status}):\n{log}");
            }
            scrape(&ns.b, port).is_some()
        });
        Sensor {
            proc,
            stderr,
            dir,
            log: String::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// SIGTERM, then the exit status (which must be success) and the run
    /// summary.
    fn stop(&mut self) -> serde_json::Value {
        signal(&self.proc.0, libc::SIGTERM);
        let status = wait_exit(&mut self.proc.0, Duration::from_secs(60));
        let mut log = String::new();
        let _ = self.stderr.read_to_string(&mut log);
        assert!(status.success(), "tapstream: {status}\n{log}");
        assert!(log.contains("privileges dropped"), "{log}");
        self.log = log;
        let text = std::fs::read_to_string(self.path("summary.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

#[test]
fn live_capture_in_a_namespace_counts_scores_drops_privileges_and_flushes_on_sigterm() {
    let test = "live_capture_in_a_namespace";
    if !have_ort(test) {
        return;
    }
    let Some(ns) = Netns::setup(test, 'l') else {
        return;
    };
    // tcpdump first, on the same interface with the same filter.
    let td_dir = tempfile::tempdir().unwrap();
    let td_pcap = td_dir.path().join("tcpdump.pcap");
    let mut tcpdump = Reaped(
        Netns::exec(&ns.b, "tcpdump")
            .args(["-i", &ns.vb, "-n", "-U", "-s", "65535", "-w"])
            .arg(&td_pcap)
            .arg("ip")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump starts"),
    );
    let mut td_err = BufReader::new(tcpdump.0.stderr.take().expect("piped"));
    let mut line = String::new();
    td_err
        .read_line(&mut line)
        .expect("tcpdump says it listens");
    assert!(line.contains("listening on"), "tcpdump: {line}");

    let port = 19464;
    let mut sensor = Sensor::start(
        &ns,
        &[],
        "[capture]\nfilter = \"ip\"\ntimeout = \"50ms\"\n\
         [flow]\ntimeout = \"2s\"\nactivity_timeout = \"1s\"\ntcp_close_linger = \"1s\"\n\
         [privileges]\nrun_as = \"nobody\"\n",
        port,
    );

    // Past start-up, every thread is `nobody` with no capability.
    let ids = threads_identity(sensor.proc.0.id());
    assert!(ids.len() > 1, "{ids:?}");
    for (uid, cap) in &ids {
        assert_eq!(uid, "65534 65534 65534 65534", "{ids:?}");
        assert_eq!(cap, "0000000000000000", "{ids:?}");
    }

    // An HTTP server on the sensor side, and traffic from the other side.
    let _server = Reaped(
        Netns::exec(&ns.b, "python3")
            .args(["-m", "http.server", "8080", "--bind", "198.18.0.2"])
            .current_dir(td_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the HTTP server starts"),
    );
    wait_until("the HTTP server", Duration::from_secs(20), || {
        Netns::exec(&ns.b, "curl")
            .args(["-sf", "-o", "/dev/null", "http://198.18.0.2:8080/"])
            .status()
            .is_ok_and(|s| s.success())
    });
    for _ in 0..20 {
        sh(Netns::exec(&ns.a, "curl").args([
            "-sf",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "http://198.18.0.2:8080/",
        ]));
    }
    // A SYN scan of 1,000 ports: about 2,000 packets, a few seconds.
    sh(Netns::exec(&ns.a, "nmap").args([
        "-sS",
        "-Pn",
        "-n",
        "-T4",
        "--max-retries",
        "0",
        "-p",
        "1-1000",
        "198.18.0.2",
    ]));
    // Five UDP datagrams, then silence: their flow ends by the idle timeout
    // (flow.timeout) while no packet arrives (the wall clock moves the
    // shards).
    sh(Netns::exec(&ns.a, "python3").args([
        "-c",
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
         [s.sendto(b'tapstream', ('198.18.0.2', 9999)) for _ in range(5)]",
    ]));
    let idle_ended = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("tapstream_flows_ended_total{reason=\"idle_timeout\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    wait_until(
        "a flow ended by the idle timeout",
        Duration::from_secs(20),
        || scrape(&ns.b, port).is_some_and(|t| idle_ended(&t) >= 1.0),
    );

    // The endpoint serves the live counters.
    let text = scrape(&ns.b, port).expect("metrics while running");
    let read = metric(&text, "tapstream_packets_read_total").unwrap_or(0.0);
    assert!(read >= 2000.0, "packets read so far: {read}\n{text}");
    for name in [
        "tapstream_capture_kernel_drops_total",
        "tapstream_capture_queue_drops_total",
        "tapstream_flows_created_total",
        "tapstream_queue_depth",
        "tapstream_flows_active",
    ] {
        assert!(metric(&text, name).is_some(), "{name} missing:\n{text}");
    }

    // SIGTERM: every flow ends, alerts are flushed, the summary is written.
    let s = sensor.stop();
    signal(&tcpdump.0, libc::SIGTERM);
    wait_exit(&mut tcpdump.0, Duration::from_secs(20));
    let mut td_log = String::new();
    let _ = td_err.read_to_string(&mut td_log);

    let ours = s["packets"].as_u64().unwrap();
    let theirs = records(&td_pcap);
    let kernel = s["capture"]["kernel_dropped"].as_u64().unwrap()
        + s["capture"]["interface_dropped"].as_u64().unwrap();
    let td_dropped: u64 = td_log
        .lines()
        .find(|l| l.contains("dropped by kernel"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        ours.abs_diff(theirs) <= kernel + td_dropped,
        "tapstream read {ours}, tcpdump saw {theirs}; drops: ours {kernel}, tcpdump's {td_dropped}\n{td_log}"
    );
    assert!(ours >= 2000, "{s}");
    assert_eq!(s["accounted"], true, "{s}");
    assert_eq!(s["skipped"]["queue_full"].as_u64().unwrap_or(0), 0, "{s}");
    // Every SYN-scanned port is a flow of its own, the HTTP requests too.
    let flows = s["flows"].as_u64().unwrap();
    assert!(flows >= 1000, "{s}");
    assert_eq!(s["scored"].as_u64(), Some(flows), "{s}");
    let alerts = s["alerts"].as_u64().unwrap();
    let lines = std::fs::read_to_string(sensor.path("eve.json"))
        .unwrap()
        .lines()
        .count() as u64;
    assert_eq!(lines, alerts, "every alert reached the file");
    assert!(alerts > 0, "the SYN scan raised no alert: {s}");
    eprintln!(
        "{test}: tapstream read {ours} packets, tcpdump {theirs}; {flows} flows, {alerts} alerts"
    );
}

/// Without the privileges to capture, `run --interface` fails before
/// reading anything, naming the interface.
#[test]
fn a_missing_interface_is_a_clear_error() {
    let o = output(bin().args([
        "run",
        "--quiet",
        "--interface",
        "tapstream-nope0",
        "--eve",
        "-",
    ]));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("tapstream-nope0"), "{err}");
    assert!(o.stdout.is_empty());
}

/// A non-root start with ambient CAP_NET_RAW and CAP_NET_ADMIN, as the
/// systemd unit does it (`User=` + `AmbientCapabilities=`; `setpriv` here):
/// the capture opens, the user stays, and every capability set is empty
/// once running.
#[test]
fn an_unprivileged_start_with_ambient_capabilities_keeps_none() {
    let test = "an_unprivileged_start_with_ambient_capabilities";
    if !have_ort(test) {
        return;
    }
    let Some(ns) = Netns::setup(test, 'u') else {
        return;
    };
    let mut sensor = Sensor::start(
        &ns,
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=+net_raw,+net_admin",
            "--ambient-caps=+net_raw,+net_admin",
        ],
        "[capture]\ntimeout = \"50ms\"\n",
        19465,
    );
    let pid = sensor.proc.0.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for key in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        assert!(line.ends_with("0000000000000000"), "{line}\n{status}");
    }
    for (uid, cap) in threads_identity(pid) {
        assert_eq!(uid, "65534 65534 65534 65534");
        assert_eq!(cap, "0000000000000000");
    }
    sh(Netns::exec(&ns.a, "nmap").args([
        "-sS",
        "-Pn",
        "-n",
        "--max-retries",
        "0",
        "-p",
        "1-50",
        "198.18.0.2",
    ]));
    std::thread::sleep(Duration::from_millis(500));
    let s = sensor.stop();
    assert!(s["packets"].as_u64().unwrap() >= 100, "{s}");
    assert!(s["flows"].as_u64().unwrap() >= 50, "{s}");
    assert_eq!(s["accounted"], true, "{s}");
}

/// Started as root with no user to switch to, a live run refuses to read
/// packets unless `allow_root` says so.
#[test]
fn root_without_run_as_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("root_without_run_as_is_refused: skipped, needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("root.toml");
    std::fs::write(&cfg, "[privileges]\nrun_as = \"\"\n").unwrap();
    let o = output(
        bin()
            .args([
                "run",
                "--quiet",
                "--interface",
                "lo",
                "--eve",
                "-",
                "--config",
            ])
            .arg(&cfg),
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("refusing to process packets as root"), "{err}");
    assert!(o.stdout.is_empty());
}

/// `tapstream learn --interface`: live traffic for a while, privileges
/// dropped once the interface is open, then a model that loads and scores.
#[test]
fn learn_from_a_live_interface_for_a_while() {
    let test = "learn_from_a_live_interface_for_a_while";
    if !have_ort(test) {
        return;
    }
    let Some(ns) = Netns::setup(test, 'n') else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Written by `nobody` once privileges are dropped.
    std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let lib = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".deps/onnxruntime/libonnxruntime.so.1.31.1"));
    let lib_copy = d.join("libonnxruntime.so.1.31.1");
    std::fs::copy(&lib, &lib_copy).unwrap();
    let cfg = d.join("learn.toml");
    std::fs::write(
        &cfg,
        format!(
            "[capture]\nfilter = \"ip\"\ntimeout = \"50ms\"\n\
             [flow]\ntimeout = \"2s\"\nactivity_timeout = \"1s\"\ntcp_close_linger = \"1s\"\n\
             [privileges]\nrun_as = \"nobody\"\n\
             [inference]\nonnxruntime_library = \"{}\"\n",
            lib_copy.display()
        ),
    )
    .unwrap();
    let model = d.join("site.onnx");
    let learner = Reaped(
        Netns::exec(&ns.b, env!("CARGO_BIN_EXE_tapstream"))
            .args([
                "learn",
                "--interface",
                &ns.vb,
                "--for",
                "6s",
                "--fpr",
                "0.01",
            ])
            .arg("--config")
            .arg(&cfg)
            .arg("--out")
            .arg(&model)
            .env("TAPSTREAM_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("tapstream learn starts"),
    );
    // DNS-like UDP queries from the other side, one flow each, until the
    // learning time is over (bounded: 1,600 datagrams).
    let sender = Netns::exec(&ns.a, "python3")
        .args([
            "-c",
            "import socket, time\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             for i in range(1600):\n\
             \x20   s.sendto(b'q' * (20 + i % 40), ('198.18.0.2', 20000 + i))\n\
             \x20   time.sleep(0.005)\n",
        ])
        .status()
        .expect("python3 runs");
    assert!(sender.success());
    let mut learner = learner;
    let status = wait_exit(&mut learner.0, Duration::from_secs(60));
    let mut log = String::new();
    let _ = learner.0.stderr.take().unwrap().read_to_string(&mut log);
    assert!(status.success(), "tapstream learn: {status}\n{log}");
    assert!(log.contains("privileges dropped"), "{log}");
    assert!(log.contains("from 1 input"), "{log}");
    assert!(model.exists(), "{log}");
    // The model it wrote is one `run` takes.
    let o = output(
        bin()
            .args(["run", "-q", "--pcap"])
            .arg(crate::util::demo_pcap(d))
            .arg("--detector")
            .arg(format!("site={}", model.display()))
            .args(["--eve", "/dev/null"])
            .current_dir(root()),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_live_sensor_learns_for_a_while_then_flags_a_scan() {
    let test = "a_live_sensor_learns_for_a_while_then_flags_a_scan";
    if !have_ort(test) {
        return;
    }
    let Some(ns) = Netns::setup(test, 'w') else {
        return;
    };
    let mut sensor = Sensor::start(
        &ns,
        &[],
        "[capture]\nfilter = \"ip\"\ntimeout = \"50ms\"\n\
         [flow]\ntimeout = \"2s\"\nactivity_timeout = \"1s\"\ntcp_close_linger = \"1s\"\n\
         [privileges]\nrun_as = \"nobody\"\n\
         [[detector]]\nname = \"site\"\nlearn_for = \"4s\"\nfpr = 0.01\n",
        19465,
    );
    // Four and a half seconds of UDP queries (one flow each), a pause past
    // the learning period and the flow timeout, then a TCP connect scan of
    // 200 closed ports, then a few seconds more of queries.
    let traffic = Netns::exec(&ns.a, "python3")
        .args([
            "-c",
            "import socket, time\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             def queries(n, base):\n\
             \x20   for i in range(n):\n\
             \x20       s.sendto(b'q' * (20 + i % 40), ('198.18.0.2', base + i))\n\
             \x20       time.sleep(0.005)\n\
             queries(900, 20000)\n\
             time.sleep(4)\n\
             for port in range(1000, 1200):\n\
             \x20   try:\n\
             \x20       socket.create_connection(('198.18.0.2', port), timeout=0.5).close()\n\
             \x20   except OSError:\n\
             \x20       pass\n\
             queries(400, 30000)\n\
             time.sleep(3)\n",
        ])
        .status()
        .expect("python3 runs");
    assert!(traffic.success());
    let summary = sensor.stop();
    let site = &summary["detectors"][1];
    assert_eq!(site["name"], "site", "{summary}");
    assert_eq!(site["learn"]["failed"], serde_json::Value::Null, "{site}");
    let learned = site["learn"]["learned"].as_u64().unwrap();
    assert!(learned >= 300, "{site}");
    let scored = site["scored"].as_u64().unwrap();
    assert!(scored >= 200, "{site}");
    let eve = std::fs::read_to_string(sensor.path("eve.json")).unwrap();
    let scan_alerts = eve
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| {
            v["tapstream"]["detector"] == "site"
                && v["proto"] == "TCP"
                && v["dest_port"]
                    .as_u64()
                    .is_some_and(|p| (1000..1200).contains(&p))
        })
        .count();
    assert!(
        scan_alerts >= 150,
        "{scan_alerts} of 200 scan flows flagged: {site}"
    );
    // Fitted while the capture ran, once the scan's flows proved the
    // learning period over, not at the end.
    let log = &sensor.log;
    let fitted = log.find("learned model scoring");
    let ended = log.find("capture thread done");
    assert!(fitted.is_some() && fitted < ended, "{log}");
}
