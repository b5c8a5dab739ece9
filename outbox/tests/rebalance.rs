//! Consumer-group rebalances while events flow: two instances of a consumer in one group, a
//! third joining and one leaving. A revoked partition is handed over only after its message
//! in hand is done and committed, so no two instances ever handle one key at the same time,
//! every key's effects are applied in order, and each exactly once.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use outbox::{
    envelope::{Envelope, EventHeaders},
    handler::{EventHandler, HandleError},
    kafka::{run_consumer, ConsumerSettings},
};
use rdkafka::producer::FutureRecord;
use serde_json::json;
use sqlx::PgPool;
use testkit::Handling;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Applies each event once (through the inbox) as a row in `effects`, slowly enough that
/// messages queue up behind the one in hand, and logs every delivery it handled.
#[derive(Clone)]
struct Applier {
    instance: &'static str,
    pool: PgPool,
    log: Arc<Mutex<Vec<Handling>>>,
}

impl EventHandler for Applier {
    async fn handle(&self, event: &Envelope) -> Result<(), HandleError> {
        let started = Instant::now();
        let body: serde_json::Value = serde_json::from_slice(&event.payload)
            .map_err(|e| HandleError::Permanent(e.to_string()))?;
        let (key, n) = (body["key"].as_str().unwrap_or_default(), body["n"].as_i64());
        let mut tx = self.pool.begin().await?;
        if outbox::inbox::record(&mut tx, "applier", event.id, &event.event_type).await?
            == outbox::inbox::Recorded::First
        {
            sqlx::query("insert into effects (key, n, instance) values ($1, $2, $3)")
                .bind(key)
                .bind(n)
                .bind(self.instance)
                .execute(&mut *tx)
                .await?;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
        tx.commit().await?;
        self.log.lock().unwrap().push(Handling {
            key: key.to_owned(),
            instance: self.instance.to_owned(),
            started,
            finished: Instant::now(),
        });
        Ok(())
    }
}

struct Instance {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Instance {
    fn start(settings: &ConsumerSettings, applier: Applier) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_consumer(settings.clone(), applier, shutdown.clone()));
        Self { shutdown, task }
    }

    async fn leave(self) {
        self.shutdown.cancel();
        self.task.await.expect("consumer task");
    }
}

#[tokio::test]
async fn members_joining_and_leaving_under_load_keep_per_key_order_and_exactly_once_effects() {
    let (_, pool) = testkit::fresh_outbox_database().await;
    sqlx::query(
        "create table effects (seq bigserial primary key, key text not null, n bigint not null,
                               instance text not null)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let kafka = testkit::kafka();
    let topic = kafka.topic_for("tick");
    outbox::kafka::ensure_topics(&kafka, std::slice::from_ref(&topic))
        .await
        .unwrap();
    let settings = ConsumerSettings {
        kafka: kafka.clone(),
        name: "applier".into(),
        topics: vec![topic.clone()],
    };
    let log = Arc::new(Mutex::new(Vec::new()));
    let applier = |instance| Applier {
        instance,
        pool: pool.clone(),
        log: log.clone(),
    };

    // Events flow faster than the instances handle them (12 keys, about 200 a second over
    // three partitions, 40 ms each), so at every rebalance the partitions have more queued
    // than a rebalance lasts: the old owner would still be working when the new one starts.
    let keys: Vec<String> = (0..12).map(|k| format!("key-{k}")).collect();
    let per_key = 100;
    let producing = {
        let (kafka, topic, keys) = (kafka.clone(), topic.clone(), keys.clone());
        tokio::spawn(async move {
            let producer = outbox::kafka::producer(&kafka).unwrap();
            for n in 1..=per_key {
                for key in &keys {
                    let payload = json!({"key": key, "n": n}).to_string();
                    let (id, version) = (Uuid::now_v7().to_string(), "1".to_owned());
                    let headers = EventHeaders {
                        id: &id,
                        event_type: "Ticked",
                        aggregate_type: "tick",
                        aggregate_id: key,
                        schema_version: &version,
                        traceparent: None,
                    };
                    let record = FutureRecord::to(&topic)
                        .key(key)
                        .payload(&payload)
                        .headers(outbox::kafka::record_headers(&headers));
                    producer
                        .send(record, Duration::from_secs(10))
                        .await
                        .unwrap();
                }
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        })
    };

    let a = Instance::start(&settings, applier("a"));
    let b = Instance::start(&settings, applier("b"));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let c = Instance::start(&settings, applier("c"));
    tokio::time::sleep(Duration::from_secs(7)).await;
    a.leave().await;
    producing.await.unwrap();

    let total = (keys.len() * per_key) as i64;
    let applied = testkit::eventually(Duration::from_secs(60), || async {
        let count: i64 = sqlx::query_scalar("select count(*) from effects")
            .fetch_one(&pool)
            .await
            .unwrap();
        (count >= total).then_some(count)
    })
    .await;
    b.leave().await;
    c.leave().await;
    assert_eq!(applied, Some(total), "every event applied");

    // Exactly once, and in order per key.
    let rows: Vec<(String, i64)> = sqlx::query_as("select key, n from effects order by seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut order: HashMap<String, Vec<i64>> = HashMap::new();
    for (key, n) in rows {
        order.entry(key).or_default().push(n);
    }
    for key in &keys {
        let expected: Vec<i64> = (1..=per_key as i64).collect();
        assert_eq!(order[key], expected, "effects of {key}");
    }

    // Never two instances on one key at once: every delivery of a key started after every
    // earlier delivery of that key by another instance had finished.
    let log = log.lock().unwrap().clone();
    let instances: std::collections::HashSet<_> = log.iter().map(|h| h.instance.as_str()).collect();
    assert_eq!(instances.len(), 3, "all three instances worked");
    if let Some((earlier, later)) = testkit::overlap(&log) {
        panic!(
            "{}: {} and {} handled it at the same time ({earlier:?}, {later:?})",
            later.key, earlier.instance, later.instance
        );
    }
}
