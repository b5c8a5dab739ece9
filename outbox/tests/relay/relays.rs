//! The relay's front, `Relays`: every database added is relayed through the one broker, and
//! stopping waits for every relay and then flushes that broker once.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use futures::{future::BoxFuture, FutureExt};
use outbox::{
    kafka::KafkaBroker,
    relay::{Broker, Outgoing, RelaySettings, Relays, SendError},
};
use tokio_util::sync::CancellationToken;

use crate::relay::{per_key, published_within, unpublished, write, WAIT};

/// The real Kafka broker, counting the flushes it is asked for.
struct CountingFlushes {
    real: KafkaBroker,
    flushes: Arc<AtomicUsize>,
}

impl Broker for CountingFlushes {
    fn send<'a>(&'a self, event: Outgoing<'a>) -> BoxFuture<'a, Result<(), SendError>> {
        self.real.send(event)
    }

    fn create_topic<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), SendError>> {
        self.real.create_topic(topic)
    }

    fn flush(&self, timeout: std::time::Duration) -> BoxFuture<'_, ()> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        self.real.flush(timeout).boxed()
    }
}

async fn every_database_is_relayed_and_the_broker_flushed_once(databases: usize, events: u32) {
    let kafka = testkit::kafka();
    let flushes = Arc::new(AtomicUsize::new(0));
    let broker = CountingFlushes {
        real: crate::faults::kafka_broker(&kafka),
        flushes: flushes.clone(),
    };
    let mut relays = Relays::new(broker, kafka.topics(), RelaySettings::default());
    let mut pools = Vec::new();
    for d in 0..databases {
        let (url, pool) = testkit::fresh_outbox_database().await;
        for n in 1..=events {
            write(&pool, &format!("db{d}"), n, 0).await;
        }
        relays = relays.database(format!("db{d}"), &url).unwrap();
        pools.push(pool);
    }
    assert_eq!(relays.databases().len(), databases);

    let shutdown = CancellationToken::new();
    let running = relays.start(&shutdown);
    for pool in &pools {
        testkit::eventually(WAIT, || async {
            (unpublished(pool).await == 0).then_some(())
        })
        .await
        .expect("every database's outbox is drained");
    }
    assert_eq!(flushes.load(Ordering::SeqCst), 0, "no flush while running");
    shutdown.cancel();
    running.stopped().await;
    assert_eq!(flushes.load(Ordering::SeqCst), 1, "one flush, at the end");

    let total = databases * events as usize;
    let messages = published_within(&kafka, total, WAIT).await;
    let keys = per_key(&messages);
    assert_eq!(keys.len(), databases);
    for (key, ns) in keys {
        assert_eq!(ns, (1..=events).collect::<Vec<_>>(), "{key}");
    }
}

#[tokio::test]
async fn relays_relay_every_database_and_flush_once_at_stop() {
    every_database_is_relayed_and_the_broker_flushed_once(1, 3).await;
    every_database_is_relayed_and_the_broker_flushed_once(3, 5).await;
}
