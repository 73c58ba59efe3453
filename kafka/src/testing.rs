//! Test support: a real Kafka-protocol broker (`tansu`) on 127.0.0.1.
//!
//! Why it is in the library and not in `tests/`: both this crate's
//! integration tests and the root crate's end-to-end tests (several
//! tapstream consumers in one group) start brokers, and a `tests/common`
//! module cannot be shared across crates. It is `#[doc(hidden)]`, is not
//! part of tapstream's API, and costs nothing at run time (it only starts a
//! process when asked).
//!
//! The binary comes from `scripts/fetch-tansu.sh`: `TAPSTREAM_TANSU` names
//! it, else `<workspace>/.deps/tansu/tansu`. Without it, [`Tansu::start_or_skip`]
//! prints why the test is skipped and returns `None`, unless
//! `TAPSTREAM_REQUIRE_TANSU=1` (as `scripts/test.sh` sets), when a missing
//! broker fails the test.
//!
//! Known limits of tansu 0.6.0's memory engine: the end offsets it reports
//! (ListOffsets "latest", high watermarks) are wrong, so read until the
//! expected number of messages arrived rather than up to a watermark; and
//! Debian's kcat cannot talk to it.

// Test support: a missing broker fails the calling test by panicking.
#![allow(clippy::panic)]

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// How long a broker may take to accept connections and answer metadata.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `tansu broker` with in-memory storage; killed on drop.
#[derive(Debug)]
pub struct Tansu {
    child: Child,
    brokers: String,
    log: PathBuf,
}

/// The tansu binary: `TAPSTREAM_TANSU`, else `.deps/tansu/tansu` under the
/// workspace root; `Err` says where it looked.
pub fn tansu_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("TAPSTREAM_TANSU").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("TAPSTREAM_TANSU={} is not a file", p.display()))
        };
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.deps/tansu/tansu");
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "no tansu binary at {} and TAPSTREAM_TANSU is not set (run scripts/fetch-tansu.sh)",
            p.display()
        ))
    }
}

impl Tansu {
    /// Starts a broker for test `test`, or says why not and returns `None`.
    ///
    /// # Panics
    ///
    /// When `TAPSTREAM_REQUIRE_TANSU=1` and the binary is missing, and
    /// whenever a present binary fails to start: a broken broker must fail
    /// the test, not skip it.
    pub fn start_or_skip(test: &str) -> Option<Tansu> {
        let bin = match tansu_binary() {
            Ok(bin) => bin,
            Err(why) => {
                if std::env::var_os("TAPSTREAM_REQUIRE_TANSU").is_some_and(|v| v == "1") {
                    panic!("{test}: TAPSTREAM_REQUIRE_TANSU=1 but {why}");
                }
                eprintln!("{test}: skipped: {why}");
                return None;
            }
        };
        match Tansu::start(&bin) {
            Ok(t) => Some(t),
            Err(e) => panic!("{test}: cannot start {}: {e}", bin.display()),
        }
    }

    /// Starts `bin` on a free 127.0.0.1 port and waits until it answers a
    /// metadata request. Retries on another port if the chosen one was
    /// taken in the meantime.
    pub fn start(bin: &Path) -> io::Result<Tansu> {
        let mut last = None;
        for _ in 0..3 {
            match Tansu::start_once(bin) {
                Ok(t) => return Ok(t),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("tansu did not start")))
    }

    fn start_once(bin: &Path) -> io::Result<Tansu> {
        let port = free_port()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let log =
            std::env::temp_dir().join(format!("tapstream-tansu-{}-{port}.log", std::process::id()));
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let child = Command::new(bin)
            .arg("broker")
            .args(["--cluster-id", "tapstream-test"])
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            // Its flags also read these; a stray value must not win.
            .env_remove("CLUSTER_ID")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()?;
        let mut tansu = Tansu {
            child,
            brokers: format!("127.0.0.1:{port}"),
            log,
        };
        tansu.wait_ready(port)?;
        Ok(tansu)
    }

    fn wait_ready(&mut self, port: u16) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "tansu exited with {status}; its log: {}",
                    self.log_tail()
                )));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("tansu did not accept connections in time"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let producer: BaseProducer = self.client_config().create().map_err(io::Error::other)?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match producer
                .client()
                .fetch_metadata(None, left.min(Duration::from_secs(2)))
            {
                Ok(md) if !md.brokers().is_empty() => return Ok(()),
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Ok(_) => return Err(io::Error::other("tansu lists no brokers")),
                Err(e) => return Err(io::Error::other(format!("metadata request failed: {e}"))),
            }
        }
    }

    /// The bootstrap servers, `127.0.0.1:PORT`.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// A client configuration with `bootstrap.servers` set.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c
    }

    /// Creates `topic` with `partitions` partitions (replication 1) and
    /// waits until the broker's metadata lists all of them.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), String> {
        super::admin::create_topic(&self.client_config(), topic, partitions, 1)
    }

    /// The last lines of the broker's output, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines
            .get(lines.len().saturating_sub(20)..)
            .unwrap_or_default()
            .join("\n")
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A port that was free a moment ago.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A consumed message's key and payload (empty when absent).
pub type KeyPayload = (Vec<u8>, Vec<u8>);

/// Reads `want` messages of `topic` (partitions `0..partitions`, from the
/// beginning) with a fresh consumer, as `(key, payload)` pairs, or fails
/// after `timeout` saying how many arrived. Reads by count, not to the end
/// offsets, which tansu's memory engine reports wrongly.
pub fn read_messages(
    brokers: &str,
    topic: &str,
    partitions: i32,
    want: usize,
    timeout: Duration,
) -> Result<Vec<KeyPayload>, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("tapstream-read-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    {
        // Dropped before the consumer: the other order hangs librdkafka.
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| format!("partition {p}: {e}"))?;
        }
        consumer.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    }
    let deadline = Instant::now() + timeout;
    let mut got = Vec::with_capacity(want);
    while got.len() < want {
        if Instant::now() > deadline {
            return Err(format!(
                "{topic}: {} of {want} messages after {timeout:?}",
                got.len()
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => got.push((
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            )),
            Some(Err(e)) => return Err(format!("{topic}: consume error: {e}")),
            None => {}
        }
    }
    Ok(got)
}
