//! The relay over a source of its own: the `Source` seam wrapped around the real `outbox`
//! table, as `faults.rs` wraps the broker, to check the seam's contract. Nothing of a batch
//! is recorded until the source's mark succeeds, so a mark that fails (a crash between the
//! broker's acknowledgement and the commit) sends the batch again, in order, and loses
//! nothing.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use outbox::relay::{
    Batch, Marks, OutboxTable, Outlet, Relay, RelayError, RelaySettings, Source, Stats,
};
use sqlx::{Postgres, Transaction};

use crate::relay::{per_key, published_within, unpublished, write, WAIT};

/// The table, with its first `failing` marks refused: the claim's transaction is dropped
/// unmarked, as a crash would leave it.
#[derive(Clone)]
struct RefusingMarks {
    table: OutboxTable,
    failing: Arc<AtomicUsize>,
    /// Events the broker acknowledged in the batches whose mark was refused.
    unmarked: Arc<AtomicUsize>,
}

impl Source for RefusingMarks {
    type Held = Transaction<'static, Postgres>;

    async fn claim(&self, limit: i64) -> Result<Option<Batch<Self::Held>>, RelayError> {
        self.table.claim(limit).await
    }

    async fn mark(&self, held: Self::Held, marks: Marks) -> Result<(), RelayError> {
        let refuse = self
            .failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refuse {
            self.unmarked
                .fetch_add(marks.published.len(), Ordering::SeqCst);
            drop(held);
            return Err(RelayError::Source("mark refused by the test".into()));
        }
        self.table.mark(held, marks).await
    }

    async fn stats(&self) -> Result<Stats, RelayError> {
        self.table.stats().await
    }

    async fn delete_expired(&self, retention: Duration, batch: i64) -> Result<u64, RelayError> {
        self.table.delete_expired(retention, batch).await
    }
}

async fn a_failed_mark_repeats_its_batch(failing: usize, aggregates: u32, events: u32) {
    let (_, pool) = testkit::fresh_outbox_database().await;
    let kafka = testkit::kafka();
    for n in 1..=events {
        for a in 0..aggregates {
            write(&pool, &format!("agg-{a}"), n, 0).await;
        }
    }
    let total = (aggregates * events) as usize;
    let settings = RelaySettings {
        batch_size: i64::from(aggregates * events / 2).max(1),
        ..RelaySettings::default()
    };
    let source = RefusingMarks {
        table: OutboxTable::new(pool.clone()),
        failing: Arc::new(AtomicUsize::new(failing)),
        unmarked: Arc::default(),
    };
    let outlet = Outlet::new(
        Arc::new(crate::faults::kafka_broker(&kafka)),
        kafka.topics(),
    );
    let relay = Relay::with_source(
        "test".into(),
        pool.clone(),
        source.clone(),
        settings,
        outlet,
    );

    for _ in 0..failing {
        let error = relay.relay_batch().await.expect_err("the mark is refused");
        assert!(matches!(error, RelayError::Source(_)), "{error}");
        assert_eq!(
            unpublished(&pool).await,
            total as i64,
            "nothing was recorded"
        );
    }
    let sent_unmarked = source.unmarked.load(Ordering::SeqCst);
    assert!(sent_unmarked > 0, "the refused batches were sent");
    testkit::eventually(WAIT, || async {
        relay.relay_batch().await.unwrap();
        (unpublished(&pool).await == 0).then_some(())
    })
    .await
    .expect("the outbox drains once marks are taken");

    let messages = published_within(&kafka, total + sent_unmarked, WAIT).await;
    assert_eq!(
        messages.len(),
        total + sent_unmarked,
        "every refused batch went out once more"
    );
    for (key, ns) in per_key(&messages) {
        let mut first_seen: Vec<u32> = Vec::new();
        for n in ns {
            if !first_seen.contains(&n) {
                first_seen.push(n);
            }
        }
        assert_eq!(
            first_seen,
            (1..=events).collect::<Vec<_>>(),
            "{key}: in order, every event, the repeats aside"
        );
    }
}

#[tokio::test]
async fn a_mark_the_source_refuses_sends_its_batch_again() {
    a_failed_mark_repeats_its_batch(1, 3, 4).await;
    a_failed_mark_repeats_its_batch(2, 5, 1).await;
}
