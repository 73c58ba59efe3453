//! Topic creation, for `tapstream kafka create-topics` and the tests.
//!
//! Why here: rdkafka's admin API is async, and nothing else in tapstream
//! needs an async runtime, so a small single-future executor drives it.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// Creates `topic` with `partitions` partitions and `replication` replicas,
/// then waits (10 s at most) until the broker's metadata lists them all.
/// A topic that already exists with that many partitions is fine.
pub fn create_topic(
    client: &ClientConfig,
    topic: &str,
    partitions: i32,
    replication: i32,
) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> =
        client.create().map_err(|e| format!("admin client: {e}"))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = block_on(admin.create_topics([&new], &opts))
        .map_err(|e| format!("create topic {topic}: {e}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => return Err(format!("create topic {t}: {e}")),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let md = admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(2))
            .map_err(|e| format!("metadata of {topic}: {e}"))?;
        let n = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len());
        if n == usize::try_from(partitions).unwrap_or(0) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{topic}: {n} partitions, not {partitions}, after 10 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a future to completion on this thread.
fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
