//! Alert sinks: file append/create/rotation, error reporting, and a real
//! closed pipe on stdout reported as `SinkError::Closed` (never a panic).

mod common;

use common::write_ids;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tapstream_connectors::eve::EveWriter;
use tapstream_connectors::sink::{AlertSink, FileSink, SinkError, StdoutSink};

fn ids_in(path: &std::path::Path) -> Vec<u64> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("each line is JSON");
            v["flow_id"].as_u64().unwrap()
        })
        .collect()
}

#[test]
fn sinks_are_send_trait_objects() {
    fn assert_send<T: Send>() {}
    assert_send::<Box<dyn AlertSink>>();
    assert_send::<StdoutSink>();
    assert_send::<FileSink>();
}

#[test]
fn file_sink_creates_buffers_and_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eve.json");

    let mut sink = FileSink::open(&path, EveWriter::new(0)).unwrap();
    assert_eq!(sink.path(), path);
    assert!(path.exists(), "created on open");
    write_ids(&mut sink, 0..3).unwrap();
    assert!(ids_in(&path).is_empty(), "buffered until flush");
    sink.flush().unwrap();
    assert_eq!(ids_in(&path), [0, 1, 2]);
    drop(sink);

    // A second sink appends, and dropping it writes what it buffered.
    let mut again = FileSink::open(&path, EveWriter::new(0)).unwrap();
    write_ids(&mut again, 3..5).unwrap();
    drop(again);
    assert_eq!(ids_in(&path), [0, 1, 2, 3, 4]);
}

#[test]
fn file_sink_writes_when_the_buffer_fills() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eve.json");
    let mut sink = FileSink::with_buffer_size(&path, EveWriter::new(0), 1).unwrap();
    write_ids(&mut sink, 0..10).unwrap();
    // Each write drains what the previous one buffered.
    assert_eq!(ids_in(&path), (0..9).collect::<Vec<_>>());
    sink.flush().unwrap();
    assert_eq!(ids_in(&path), (0..10).collect::<Vec<_>>());
}

/// A log shipper tailing the file never sees half an alert: whatever the
/// buffer size, each write to the file ends at a line end.
#[test]
fn file_sink_writes_whole_lines_only() {
    let dir = tempfile::tempdir().unwrap();
    for (i, bytes) in [1usize, 97, 300, 1000, 4096].into_iter().enumerate() {
        let path = dir.path().join(format!("eve-{i}.json"));
        let mut sink = FileSink::with_buffer_size(&path, EveWriter::new(0), bytes).unwrap();
        for id in 0..200u64 {
            write_ids(&mut sink, id..id + 1).unwrap();
            let text = fs::read(&path).unwrap();
            assert!(
                text.is_empty() || text.ends_with(b"\n"),
                "buffer {bytes}: the file ends mid-line after alert {id}"
            );
        }
        sink.flush().unwrap();
        assert_eq!(ids_in(&path), (0..200).collect::<Vec<_>>());
    }
}

#[test]
fn file_sink_reopen_after_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eve.json");
    let rotated = dir.path().join("eve.json.1");
    let mut sink = FileSink::open(&path, EveWriter::new(0)).unwrap();
    write_ids(&mut sink, 0..4).unwrap();
    sink.flush().unwrap();
    write_ids(&mut sink, 4..6).unwrap(); // still buffered at rotation time

    fs::rename(&path, &rotated).unwrap();
    sink.reopen().unwrap();
    write_ids(&mut sink, 6..8).unwrap();
    sink.flush().unwrap();

    assert_eq!(ids_in(&rotated), [0, 1, 2, 3, 4, 5]);
    assert_eq!(ids_in(&path), [6, 7]);
}

#[test]
fn file_sink_open_and_reopen_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/eve.json");
    let err = FileSink::open(&missing, EveWriter::new(0)).unwrap_err();
    assert!(matches!(err, SinkError::Open { .. }), "{err:?}");
    assert!(!err.is_closed());
    assert!(err.to_string().contains("no/such/dir"), "{err}");

    // The rotation target's directory vanished: reopen fails, the sink
    // keeps its old file and keeps working.
    let sub = dir.path().join("logs");
    fs::create_dir(&sub).unwrap();
    let path = sub.join("eve.json");
    let mut sink = FileSink::open(&path, EveWriter::new(0)).unwrap();
    write_ids(&mut sink, 0..2).unwrap();
    let moved = dir.path().join("logs.old");
    fs::rename(&sub, &moved).unwrap();
    let err = sink.reopen().unwrap_err();
    assert!(matches!(err, SinkError::Open { .. }), "{err:?}");
    write_ids(&mut sink, 2..3).unwrap();
    sink.flush().unwrap();
    assert_eq!(ids_in(&moved.join("eve.json")), [0, 1, 2]);
}

#[test]
fn write_errors_are_reported_and_bounded() {
    let full = std::path::Path::new("/dev/full");
    if !full.exists() {
        eprintln!("skip: no /dev/full on this system");
        return;
    }
    let mut sink = FileSink::with_buffer_size(full, EveWriter::new(0), 1).unwrap();
    write_ids(&mut sink, 0..1).unwrap(); // buffered
    let err = write_ids(&mut sink, 1..2).unwrap_err(); // must drain first: ENOSPC
    assert!(matches!(err, SinkError::Write { .. }), "{err:?}");
    assert!(!err.is_closed());
    // Refused again, not appended: the buffer does not grow while failing.
    for _ in 0..100 {
        assert!(write_ids(&mut sink, 2..3).is_err());
    }
    assert!(sink.flush().is_err());
}

const CHILD_ENV: &str = "TAPSTREAM_STDOUT_SINK_CHILD";
const CHILD_OK: &str = "stdout sink reported a closed pipe";

/// Runs in two roles: as the test, it starts this test binary again as a
/// child whose stdout is a pipe, reads one alert line, closes the pipe, and
/// checks that the child saw `SinkError::Closed`. As the child (the env var
/// set), it writes alerts to a `StdoutSink` until that error arrives.
#[test]
fn stdout_sink_reports_a_closed_pipe() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let mut sink = StdoutSink::with_buffer_size(EveWriter::new(0), 1);
        for id in 0..10_000_000u64 {
            let result = write_ids(&mut sink, id..id + 1).and_then(|()| sink.flush());
            match result {
                Ok(()) => {}
                Err(e) if e.is_closed() => {
                    eprintln!("{CHILD_OK}: {e}");
                    std::process::exit(0);
                }
                Err(e) => {
                    eprintln!("unexpected error: {e:?}");
                    std::process::exit(3);
                }
            }
        }
        eprintln!("the pipe never closed");
        std::process::exit(4);
    }

    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "stdout_sink_reports_a_closed_pipe",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "child closed stdout before writing an alert");
        if line.starts_with('{') {
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["event_type"], "alert");
            break;
        }
    }
    drop(stdout); // the reader goes away: the child's next write gets EPIPE

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child did not stop after its stdout closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "child {status}: {stderr}");
    assert!(stderr.contains(CHILD_OK), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
