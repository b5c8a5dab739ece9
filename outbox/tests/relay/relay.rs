//! Claim, publish, mark: what the relay guarantees, checked on the real broker.

use std::{collections::HashMap, time::Duration};

use contracts::DomainEvent;
use outbox::kafka::KafkaConfig;
use outbox::{
    relay::RelaySettings,
    relay::{BatchReport, Outlet, Relay},
};
use rdkafka::Message;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A test event: `n` numbers the events of one aggregate, so order can be checked.
#[derive(Debug, Serialize, Deserialize)]
struct Ticked {
    aggregate: String,
    n: u32,
    #[serde(default)]
    padding: String,
}

impl DomainEvent for Ticked {
    const TYPE: &'static str = "Ticked";
    const AGGREGATE_TYPE: &'static str = "clock";
    fn aggregate_id(&self) -> String {
        self.aggregate.clone()
    }
}

pub(crate) async fn write(pool: &PgPool, aggregate: &str, n: u32, padding: usize) -> Uuid {
    let writer = outbox::Writer::default();
    let mut tx = pool.begin().await.unwrap();
    let event = Ticked {
        aggregate: aggregate.into(),
        n,
        padding: "x".repeat(padding),
    };
    let id = writer
        .write_in_tx(
            &mut tx,
            &event,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        )
        .await
        .unwrap();
    writer.commit(tx, pool).await.unwrap();
    id
}

fn relay(pool: &PgPool, kafka: &KafkaConfig) -> Relay {
    let settings = RelaySettings {
        batch_size: 50,
        ..RelaySettings::default()
    };
    relay_with(pool, kafka, settings)
}

pub(crate) fn relay_with(pool: &PgPool, kafka: &KafkaConfig, settings: RelaySettings) -> Relay {
    Relay::new(
        "test".into(),
        pool.clone(),
        settings,
        Outlet::new(
            std::sync::Arc::new(crate::faults::kafka_broker(kafka)),
            kafka.topics(),
        ),
    )
}

pub(crate) async fn unpublished(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from outbox where published_at is null")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// (key, n) of every message on the test topic, in partition order.
async fn published(kafka: &KafkaConfig, expected: usize) -> Vec<(String, u32)> {
    published_within(kafka, expected, WAIT).await
}

pub(crate) async fn published_within(
    kafka: &KafkaConfig,
    expected: usize,
    wait: Duration,
) -> Vec<(String, u32)> {
    testkit::read_topic(kafka, &kafka.topic_for("clock"), expected, wait)
        .await
        .iter()
        .map(|m| {
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            (key, testkit::json(m)["n"].as_u64().unwrap() as u32)
        })
        .collect()
}

/// Per key, the sequence numbers in the order they were read.
pub(crate) fn per_key(messages: &[(String, u32)]) -> HashMap<String, Vec<u32>> {
    let mut out: HashMap<String, Vec<u32>> = HashMap::new();
    for (key, n) in messages {
        out.entry(key.clone()).or_default().push(*n);
    }
    out
}

/// `per_aggregate` events for each of `aggregates` aggregates, written round-robin so every
/// aggregate's events are spread through the outbox. The events at (aggregate, n) in `broken`
/// are over the broker's size limit and fail to publish until [`fix_broken`].
async fn write_interleaved(
    pool: &PgPool,
    aggregates: u32,
    per_aggregate: u32,
    broken: &[(u32, u32)],
) {
    for n in 1..=per_aggregate {
        for a in 0..aggregates {
            let padding = if broken.contains(&(a, n)) {
                2_000_000
            } else {
                0
            };
            write(pool, &format!("agg-{a}"), n, padding).await;
        }
    }
}

/// The operator fixes the broken payloads; their retries then succeed.
async fn fix_broken(pool: &PgPool) {
    sqlx::query("update outbox set payload = payload - 'padding' where last_error is not null")
        .execute(pool)
        .await
        .unwrap();
}

/// Each key's events were read in the order they were written, 1 to `per_aggregate`.
fn assert_in_order_per_key(all: &[(String, u32)], per_aggregate: u32) {
    for (key, ns) in per_key(all) {
        assert_eq!(
            ns,
            (1..=per_aggregate).collect::<Vec<_>>(),
            "order of {key}"
        );
    }
}

#[tokio::test]
async fn publishes_with_key_headers_and_marks_rows_published() {
    let (_, pool) = testkit::fresh_outbox_database().await;
    let kafka = testkit::kafka();
    let id = write(&pool, "agg-1", 1, 0).await;

    let report = relay(&pool, &kafka).relay_batch().await.unwrap();

    assert_eq!(
        report,
        BatchReport {
            claimed: 1,
            published: 1,
            failed: 0,
            deferred: 0,
            pause: None,
        }
    );
    assert_eq!(unpublished(&pool).await, 0);
    let messages = testkit::read_topic(&kafka, &kafka.topic_for("clock"), 1, WAIT).await;
    let m = &messages[0];
    assert_eq!(m.key(), Some(b"agg-1".as_slice()));
    assert_eq!(testkit::json(m)["n"], 1);
    assert_eq!(testkit::header(m, "id"), Some(id.to_string()));
    assert_eq!(testkit::header(m, "type").as_deref(), Some("Ticked"));
    assert_eq!(
        testkit::header(m, "aggregatetype").as_deref(),
        Some("clock")
    );
    assert_eq!(testkit::header(m, "aggregateid").as_deref(), Some("agg-1"));
    assert!(testkit::header(m, "traceparent")
        .unwrap()
        .starts_with("00-4bf92f35"));
    // Nothing left: a second batch claims nothing and publishes nothing.
    assert_eq!(
        relay(&pool, &kafka).relay_batch().await.unwrap(),
        BatchReport::default()
    );
}

#[tokio::test]
async fn a_later_event_waits_while_an_earlier_one_of_its_aggregate_is_held_elsewhere() {
    let (_, pool) = testkit::fresh_outbox_database().await;
    let kafka = testkit::kafka();
    let first = write(&pool, "a", 1, 0).await;
    write(&pool, "a", 2, 0).await;
    write(&pool, "b", 1, 0).await;

    // Another relay instance holds event a/1 (its claim transaction is open).
    let mut other = pool.begin().await.unwrap();
    sqlx::query("select 1 from outbox where id = $1 for update")
        .bind(first)
        .execute(&mut *other)
        .await
        .unwrap();

    let report = relay(&pool, &kafka).relay_batch().await.unwrap();
    assert_eq!(
        report,
        BatchReport {
            claimed: 2,
            published: 1,
            failed: 0,
            deferred: 1,
            pause: None,
        }
    );
    assert_eq!(published(&kafka, 1).await, [("b".to_owned(), 1)]);

    // The other instance goes away without publishing; a/1 then a/2 follow, in order.
    other.rollback().await.unwrap();
    relay(&pool, &kafka).relay_batch().await.unwrap();
    let all = published(&kafka, 3).await;
    assert_eq!(per_key(&all)["a"], [1, 2]);
    assert_eq!(unpublished(&pool).await, 0);
}

#[tokio::test]
async fn two_relays_keep_order_per_aggregate_through_publish_failures() {
    let (_, pool) = testkit::fresh_outbox_database().await;
    let kafka = testkit::kafka();
    let (aggregates, per_aggregate) = (10, 8);
    // A few events fail to publish until "fixed".
    write_interleaved(&pool, aggregates, per_aggregate, &[(3, 2), (7, 5), (7, 6)]).await;
    let settings = RelaySettings {
        batch_size: 16,
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        max_attempts: 1000,
        ..RelaySettings::default()
    };
    let relays = [
        relay_with(&pool, &kafka, settings.clone()),
        relay_with(&pool, &kafka, settings),
    ];
    let run = |r: Relay, fix_after: Option<u32>| {
        let pool = pool.clone();
        async move {
            for round in 0..2000 {
                if fix_after.is_some_and(|f| round >= f) {
                    fix_broken(&pool).await;
                }
                r.relay_batch().await.unwrap();
                if unpublished(&pool).await == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("backlog not drained");
        }
    };
    let [one, two] = relays;
    tokio::join!(run(one, Some(30)), run(two, None));

    let failed_at_least_once: i64 =
        sqlx::query_scalar("select count(*) from outbox where attempts > 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(failed_at_least_once >= 2, "the injected failures happened");
    let expected = (aggregates * per_aggregate) as usize;
    let all = published(&kafka, expected).await;
    assert_eq!(all.len(), expected);
    assert_in_order_per_key(&all, per_aggregate);
}

#[tokio::test]
async fn a_stale_lease_is_taken_over_and_the_hung_relay_cannot_mark() {
    let (url, pool) = testkit::fresh_outbox_database().await;
    let kafka = testkit::kafka();
    write(&pool, "a", 1, 0).await;
    write(&pool, "b", 1, 0).await;
    let settings = RelaySettings {
        lease: Duration::from_millis(1000),
        ..RelaySettings::default()
    };
    let leased_pool = || outbox::db::connect_lazy(&url, 2, settings.lease).unwrap();
    let hung = relay_with(&leased_pool(), &kafka, settings.clone());
    let healthy = relay_with(&leased_pool(), &kafka, settings);

    // An instance claims the rows and then hangs.
    let claim = hung.claim().await.unwrap().expect("rows to claim");
    assert_eq!(
        healthy.relay_batch().await.unwrap().published,
        0,
        "rows are held"
    );

    // After the lease PostgreSQL ends the hung session; the rows are free.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(healthy.relay_batch().await.unwrap().published, 2);
    assert_eq!(unpublished(&pool).await, 0);

    // The hung instance wakes up: it may publish again (at least once), but it cannot mark.
    let published = hung.publish(&claim).await;
    assert!(hung.mark(claim, published).await.is_err());
}

#[tokio::test]
async fn retention_deletes_only_published_rows() {
    let (_, pool) = testkit::fresh_outbox_database().await;
    let kafka = testkit::kafka();
    write(&pool, "a", 1, 0).await;
    write(&pool, "b", 1, 0).await;
    let parked = write(&pool, "c", 1, 2_000_000).await;
    let settings = RelaySettings {
        max_attempts: 1,
        retention: Duration::ZERO,
        retention_batch: 1,
        ..RelaySettings::default()
    };
    let relay = relay_with(&pool, &kafka, settings);
    assert_eq!(relay.relay_batch().await.unwrap().published, 2);
    let pending = write(&pool, "d", 1, 0).await;

    assert_eq!(relay.delete_expired().await.unwrap(), 2);

    let mut left: Vec<uuid::Uuid> = sqlx::query_scalar("select id from outbox order by seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    left.sort();
    let mut expected = vec![parked, pending];
    expected.sort();
    assert_eq!(left, expected, "the parked and the pending rows stay");
}

#[tokio::test]
async fn a_failed_publish_is_recorded_and_its_aggregate_waits_while_others_go_on() {
    let (_, pool) = testkit::fresh_outbox_database().await;
    let kafka = testkit::kafka();
    // Larger than the broker's default message size limit (1 MB): the send fails.
    let too_big = write(&pool, "a", 1, 2_000_000).await;
    write(&pool, "a", 2, 0).await;
    write(&pool, "b", 1, 0).await;

    let report = relay(&pool, &kafka).relay_batch().await.unwrap();

    assert_eq!(
        report,
        BatchReport {
            claimed: 3,
            published: 1,
            failed: 1,
            deferred: 1,
            pause: None,
        }
    );
    let (attempts, error, due): (i32, Option<String>, bool) = sqlx::query_as(
        "select attempts, last_error, next_attempt_at > now() from outbox where id = $1",
    )
    .bind(too_big)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(attempts, 1);
    assert!(error.is_some_and(|e| !e.is_empty()));
    assert!(due, "retry is scheduled with backoff, not immediate");
    assert_eq!(
        unpublished(&pool).await,
        2,
        "a/1 and a/2 wait; b/1 went out"
    );
    // While a/1 backs off, a/2 stays behind it.
    let again = relay(&pool, &kafka).relay_batch().await.unwrap();
    assert_eq!(again.published, 0);
    assert_eq!(published(&kafka, 1).await, [("b".to_owned(), 1)]);
}

#[tokio::test]
async fn two_relays_share_a_backlog_without_duplicates_or_reordering() {
    let (_, pool) = testkit::fresh_outbox_database().await;
    let kafka = testkit::kafka();
    let (aggregates, per_aggregate) = (20, 10);
    write_interleaved(&pool, aggregates, per_aggregate, &[]).await;
    let (one, two) = (relay(&pool, &kafka), relay(&pool, &kafka));
    let drain = |r: Relay| async move {
        let mut total = 0;
        for _ in 0..200 {
            let report = r.relay_batch().await.unwrap();
            total += report.published;
            if report.claimed == 0 {
                break;
            }
        }
        total
    };
    let (a, b) = tokio::join!(drain(one), drain(two));

    let expected = (aggregates * per_aggregate) as usize;
    assert_eq!(a + b, expected);
    assert_eq!(unpublished(&pool).await, 0);
    // Everything is acknowledged already; wait a little for a duplicate that must not come.
    let all = published_within(&kafka, expected + 1, Duration::from_secs(3)).await;
    assert_eq!(
        all.len(),
        expected,
        "each event exactly once in normal operation"
    );
    assert_in_order_per_key(&all, per_aggregate);
}

#[tokio::test]
async fn a_row_committed_out_of_sequence_order_is_still_published() {
    let (_, pool) = testkit::fresh_outbox_database().await;
    let kafka = testkit::kafka();
    // A long transaction takes its sequence number first and commits last.
    let mut straggler = pool.begin().await.unwrap();
    outbox::Writer::default()
        .write_in_tx(
            &mut straggler,
            &Ticked {
                aggregate: "slow".into(),
                n: 1,
                padding: String::new(),
            },
            None,
        )
        .await
        .unwrap();
    write(&pool, "fast", 1, 0).await;
    assert_eq!(
        relay(&pool, &kafka).relay_batch().await.unwrap().published,
        1
    );

    straggler.commit().await.unwrap();
    assert_eq!(
        relay(&pool, &kafka).relay_batch().await.unwrap().published,
        1
    );
    let keys: Vec<String> = published(&kafka, 2)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(keys.contains(&"slow".to_owned()) && keys.contains(&"fast".to_owned()));
}

#[tokio::test]
async fn a_pipelined_relay_keeps_order_per_aggregate_through_publish_failures() {
    let (_, pool) = testkit::fresh_outbox_database().await;
    let kafka = testkit::kafka();
    let (aggregates, per_aggregate) = (12, 10);
    // Two events fail until the operator fixes them.
    write_interleaved(&pool, aggregates, per_aggregate, &[(2, 3), (9, 7)]).await;
    // Four claims in flight at once, small enough that one aggregate's events are spread
    // over many of them.
    let settings = RelaySettings {
        batch_size: 7,
        pipeline: 4,
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        max_attempts: 1000,
        ..RelaySettings::default()
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(relay_with(&pool, &kafka, settings).run(shutdown.clone()));
    let failed = testkit::eventually(WAIT, || async {
        let failed: i64 = sqlx::query_scalar("select count(*) from outbox where attempts > 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        (failed >= 2).then_some(())
    })
    .await;
    assert!(failed.is_some(), "the injected failures happened");
    fix_broken(&pool).await;
    let drained = testkit::eventually(WAIT, || async {
        (unpublished(&pool).await == 0).then_some(())
    })
    .await;
    shutdown.cancel();
    running.await.unwrap();
    assert!(drained.is_some(), "backlog drained");

    let expected = (aggregates * per_aggregate) as usize;
    let all = published(&kafka, expected).await;
    assert_eq!(all.len(), expected);
    assert_in_order_per_key(&all, per_aggregate);
}
