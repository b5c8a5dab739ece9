//! The relay's promises under adversity: a broker outage longer than every attempt, a stuck
//! aggregate with a backlog, a slow broker, a topic that cannot be created. Faults come through
//! the relay's broker seam (`faults.rs`); what is published reaches the real broker. Each test
//! fails when its fix is reverted.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use contracts::DomainEvent;
use outbox::{relay::PublishingState, relay::Relay, relay::RelaySettings, relay::SendError};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{
    faults::{unreachable_broker, Faulty, Injected},
    relay::{per_key, published_within, relay_with, unpublished, write, WAIT},
};

/// An event of a second aggregate type, so of a second topic.
#[derive(Debug, Serialize, Deserialize)]
struct Rang {
    bell: String,
    n: u32,
}

impl DomainEvent for Rang {
    const TYPE: &'static str = "Rang";
    const AGGREGATE_TYPE: &'static str = "bell";
    fn aggregate_id(&self) -> String {
        self.bell.clone()
    }
}

async fn ring(pool: &PgPool, bell: &str, n: u32) {
    let writer = outbox::Writer::default();
    let mut tx = pool.begin().await.unwrap();
    writer
        .write_in_tx(
            &mut tx,
            &Rang {
                bell: bell.into(),
                n,
            },
            None,
        )
        .await
        .unwrap();
    writer.commit(tx, pool).await.unwrap();
}

/// (parked rows, attempts spent by rows not yet published).
async fn parked_and_attempts(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as(
        "select count(*) filter (where parked_at is not null),
                coalesce(sum(attempts) filter (where published_at is null), 0)
         from outbox",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_broker_outage_longer_than_every_attempt_pauses_the_relay_and_parks_nothing() {
    let (_, pool) = testkit::fresh_outbox_database().await;
    let kafka = testkit::kafka();
    let settings = RelaySettings {
        batch_size: 50,
        max_attempts: 3,
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        lease: Duration::from_secs(3),
        poll_interval: Duration::from_millis(100),
        ..RelaySettings::default()
    };
    // Spending every attempt takes 3 x (1 s send timeout + at most 200 ms backoff): under 4 s.
    // The broker stays away twice that.
    let outage = Duration::from_secs(8);
    let faulty = Faulty::kafka(&kafka);
    let down = unreachable_broker(&kafka, settings.send_timeout());
    faulty.on_send(move |_| Some(Injected::Through(down.clone())));
    let outlet = faulty.outlet(&kafka);
    let aggregates = 5;
    for n in 1..=3 {
        for a in 0..aggregates {
            write(&pool, &format!("agg-{a}"), n, 0).await;
        }
    }
    let relay = Relay::new("test".into(), pool.clone(), settings, outlet.clone());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(relay.run(shutdown.clone()));

    // Orders keep committing while the broker is away.
    tokio::time::sleep(outage / 2).await;
    for a in 0..aggregates {
        write(&pool, &format!("agg-{a}"), 4, 0).await;
    }
    tokio::time::sleep(outage / 2).await;
    assert!(
        matches!(outlet.outage.state(), PublishingState::Paused { .. }),
        "the outage is visible: {:?}",
        outlet.outage.state()
    );
    assert_eq!(
        parked_and_attempts(&pool).await,
        (0, 0),
        "an outage spends no attempts and parks nothing"
    );
    assert_eq!(unpublished(&pool).await, i64::from(aggregates) * 4);

    // The broker is back: everything goes out on its own, in order.
    faulty.heal();
    let drained = testkit::eventually(WAIT, || async {
        (unpublished(&pool).await == 0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "events flow again after the outage");
    let messages = published_within(&kafka, aggregates as usize * 4, WAIT).await;
    for (key, ns) in per_key(&messages) {
        assert_eq!(ns, [1, 2, 3, 4], "order of {key}");
    }
    assert_eq!(outlet.outage.state(), PublishingState::Publishing);
    shutdown.cancel();
    running.await.unwrap();
}

/// How the head of an aggregate gets stuck.
#[derive(Debug, Clone, Copy)]
enum Stuck {
    Parked,
    WaitingForRetry,
}

#[tokio::test]
async fn a_stuck_aggregate_with_a_backlog_holds_up_no_other_aggregate() {
    for stuck in [Stuck::Parked, Stuck::WaitingForRetry] {
        let (_, pool) = testkit::fresh_outbox_database().await;
        let kafka = testkit::kafka();
        let batch_size = 50;
        // More rows behind the stuck head than two claims take, written before the others.
        let head = write(&pool, "stuck", 1, 0).await;
        sqlx::query(
            "insert into outbox (id, aggregatetype, aggregateid, type, payload)
             select gen_random_uuid(), 'clock', 'stuck', 'Ticked',
                    jsonb_build_object('aggregate', 'stuck', 'n', n)
             from generate_series(2, $1) as n",
        )
        .bind(batch_size * 2 + 30)
        .execute(&pool)
        .await
        .unwrap();
        let set = match stuck {
            Stuck::Parked => "attempts = 10, parked_at = now(), next_attempt_at = now()",
            Stuck::WaitingForRetry => "attempts = 1, next_attempt_at = now() + interval '1 hour'",
        };
        sqlx::query(&format!(
            "update outbox set {set}, last_error = 'broken' where id = $1"
        ))
        .bind(head)
        .execute(&pool)
        .await
        .unwrap();
        for n in 1..=3 {
            for other in ["b", "c", "d"] {
                write(&pool, other, n, 0).await;
            }
        }
        let relay = relay_with(
            &pool,
            &kafka,
            RelaySettings {
                batch_size,
                ..RelaySettings::default()
            },
        );

        let report = relay.relay_batch().await.unwrap();

        assert_eq!(report.published, 9, "{stuck:?}: {report:?}");
        let messages = published_within(&kafka, 9, WAIT).await;
        let keys = per_key(&messages);
        assert_eq!(keys.len(), 3, "{stuck:?}: only b, c and d went out");
        for other in ["b", "c", "d"] {
            assert_eq!(keys[other], [1, 2, 3], "{stuck:?}: order of {other}");
        }
        assert_eq!(
            unpublished(&pool).await,
            batch_size * 2 + 30,
            "{stuck:?}: the stuck aggregate waits, all of it"
        );
    }
}

#[tokio::test]
async fn a_slow_broker_ends_the_batch_at_its_deadline_and_the_marks_commit() {
    let (_, pool) = testkit::fresh_outbox_database().await;
    let kafka = testkit::kafka();
    let settings = RelaySettings {
        batch_size: 50,
        lease: Duration::from_secs(3),
        // Long enough to see the backoff right after the batch.
        retry_base: Duration::from_secs(2),
        retry_max: Duration::from_secs(2),
        ..RelaySettings::default()
    };
    let faulty = Faulty::kafka(&kafka);
    // One aggregate's chain takes far longer than the lease (10 sends of 400 ms each), and
    // another aggregate's first send hangs, once.
    let hung = Arc::new(AtomicBool::new(false));
    let hang_once = hung.clone();
    let slow_rule = move |event: &outbox::relay::Outgoing<'_>| match event.key {
        "slow" => Some(Injected::Delay(Duration::from_millis(400))),
        "hung" if !hang_once.swap(true, Ordering::SeqCst) => Some(Injected::Hang),
        _ => None,
    };
    faulty.on_send(slow_rule);
    for n in 1..=10 {
        write(&pool, "slow", n, 0).await;
    }
    for n in 1..=3 {
        write(&pool, "fast", n, 0).await;
        write(&pool, "hung", n, 0).await;
    }
    let relay = Relay::new(
        "test".into(),
        pool.clone(),
        settings.clone(),
        faulty.outlet(&kafka),
    );

    let started = Instant::now();
    let report = relay
        .relay_batch()
        .await
        .expect("the batch ends by its deadline and its marks commit inside the lease");

    assert!(
        started.elapsed() < settings.lease,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        report.failed, 2,
        "slow and hung each have one row past the deadline: {report:?}"
    );
    assert!(
        (3 + 1..3 + 10).contains(&report.published),
        "fast went out, slow partly: {report:?}"
    );
    let past_deadline: Vec<(String, i32, bool)> = sqlx::query_as(
        "select aggregateid, attempts, next_attempt_at > now()
         from outbox where last_error like '%deadline%' order by aggregateid",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        past_deadline,
        [("hung".to_owned(), 1, true), ("slow".to_owned(), 1, true)],
        "a row not acknowledged by the deadline is a failed attempt, with backoff"
    );

    // Healed, the rest follows in order, and nothing was published twice.
    faulty.heal();
    let drained = testkit::eventually(WAIT, || async {
        relay.relay_batch().await.unwrap();
        (unpublished(&pool).await == 0).then_some(())
    })
    .await;
    assert!(drained.is_some());
    let mut messages = published_within(&kafka, 16, WAIT).await;
    // At most the one send in flight at the deadline may arrive twice (at least once); a
    // batch published again would repeat every acknowledged row.
    assert!(
        messages.len() <= 17,
        "no batch was published again: {messages:?}"
    );
    messages.dedup();
    let keys = per_key(&messages);
    assert_eq!(keys["slow"], (1..=10).collect::<Vec<_>>());
    assert_eq!(keys["fast"], [1, 2, 3]);
    assert_eq!(keys["hung"], [1, 2, 3]);
}

#[tokio::test]
async fn a_topic_that_cannot_be_created_parks_its_events_and_holds_up_no_other_topic() {
    let (_, pool) = testkit::fresh_outbox_database().await;
    let kafka = testkit::kafka();
    let settings = RelaySettings {
        batch_size: 50,
        max_attempts: 2,
        lease: Duration::from_secs(3),
        retry_base: Duration::from_millis(10),
        retry_max: Duration::from_millis(20),
        ..RelaySettings::default()
    };
    let faulty = Faulty::kafka(&kafka);
    let bells = kafka.topic_for("bell");
    faulty.on_create_topic(move |topic| {
        (topic == bells).then(|| Injected::Fail(SendError::event("topic refused by policy")))
    });
    write(&pool, "a", 1, 0).await;
    ring(&pool, "x", 1).await;
    write(&pool, "a", 2, 0).await;
    ring(&pool, "x", 2).await;
    let relay = Relay::new("test".into(), pool.clone(), settings, faulty.outlet(&kafka));

    let first = relay
        .relay_batch()
        .await
        .expect("the batch goes on without the topic");
    assert_eq!((first.published, first.failed), (2, 1), "{first:?}");
    let parked = testkit::eventually(WAIT, || async {
        relay.relay_batch().await.unwrap();
        let (parked, _) = parked_and_attempts(&pool).await;
        (parked == 1).then_some(())
    })
    .await;
    assert!(
        parked.is_some(),
        "the failed topic creation counts attempts and parks"
    );
    let (error, n): (String, i32) = sqlx::query_as(
        "select last_error, (payload->>'n')::int from outbox where parked_at is not null",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((error.as_str(), n), ("topic refused by policy", 1));
    let clock = published_within(&kafka, 2, WAIT).await;
    assert_eq!(per_key(&clock)["a"], [1, 2]);
    assert_eq!(
        unpublished(&pool).await,
        2,
        "x/1 parked, x/2 waits behind it"
    );
}

#[tokio::test]
async fn creating_a_topic_slower_than_the_lease_does_not_hold_the_claim() {
    let (_, pool) = testkit::fresh_outbox_database().await;
    let kafka = testkit::kafka();
    let settings = RelaySettings {
        lease: Duration::from_secs(3),
        ..RelaySettings::default()
    };
    let faulty = Faulty::kafka(&kafka);
    let slow = settings.lease + Duration::from_secs(1);
    faulty.on_create_topic(move |_| Some(Injected::Delay(slow)));
    write(&pool, "a", 1, 0).await;
    ring(&pool, "x", 1).await;
    let relay = Relay::new("test".into(), pool.clone(), settings, faulty.outlet(&kafka));

    let report = relay
        .relay_batch()
        .await
        .expect("topics are created outside the claim's transaction");

    assert_eq!(report.published, 2, "{report:?}");
    assert_eq!(unpublished(&pool).await, 0);
}
