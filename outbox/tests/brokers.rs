//! The relay and a consumer on every broker the crate supports, through the same tests: Kafka
//! (the local Kafka-protocol broker) and NATS JetStream (127.0.0.1:4222, or `NATS_URL`). Each
//! test is written once against [`Broker`] and run once per broker.
//!
//! What they hold on either broker: every event the relay publishes reaches the consumer and
//! is applied once and in order per aggregate, also when the relay publishes rows again (a
//! crash between the broker's ack and the mark); a failing handler gets the same message again
//! and nothing after it overtakes it; what is not an event, or fails for good, is dead-lettered
//! with its reason, and the messages after it are still handled.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use outbox::{
    envelope::Envelope,
    handler::{EventHandler, HandleError},
    inbox::{self, Recorded},
    kafka::{self, ConsumerSettings, KafkaBroker, KafkaConfig},
    nats::{self, NatsBroker, NatsConfig, NatsConsumerSettings},
    relay::{Outlet, Relay, RelaySettings},
    topics::TopicNames,
    DomainEvent,
};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);
const CONSUMER: &str = "ledger";

/// The event these tests write: step `n` of aggregate `aggregate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stepped {
    aggregate: String,
    n: i32,
}

impl DomainEvent for Stepped {
    const TYPE: &'static str = "Stepped";
    const AGGREGATE_TYPE: &'static str = "ledger";
    fn aggregate_id(&self) -> String {
        self.aggregate.clone()
    }
}

/// One of the brokers, with a topic prefix of its own for each test.
enum Broker {
    Kafka(KafkaConfig),
    Nats(NatsConfig),
}

impl Broker {
    fn kafka() -> Self {
        Self::Kafka(testkit::kafka())
    }

    fn nats() -> Self {
        Self::Nats(NatsConfig {
            url: std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".to_owned()),
            topic_prefix: format!("test-{}.", Uuid::new_v4().simple()),
        })
    }

    fn names(&self) -> TopicNames {
        match self {
            Self::Kafka(kafka) => kafka.topics(),
            Self::Nats(nats) => nats.topics(),
        }
    }

    fn topic(&self) -> String {
        self.names().topic_for(Stepped::AGGREGATE_TYPE)
    }

    async fn outlet(&self) -> Outlet {
        let settings = RelaySettings::default();
        match self {
            Self::Kafka(kafka) => {
                let broker = KafkaBroker::connect(kafka, &settings).expect("producer");
                Outlet::new(Arc::new(broker), kafka.topics())
            }
            Self::Nats(nats) => {
                let broker = NatsBroker::connect(nats, &settings)
                    .await
                    .expect("nats client");
                Outlet::new(Arc::new(broker), nats.topics())
            }
        }
    }

    /// Runs the consumer group `CONSUMER` on the test's topic until `shutdown`.
    fn consume<H: EventHandler>(
        &self,
        handler: H,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let topics = vec![self.topic()];
        match self {
            Self::Kafka(kafka) => tokio::spawn(kafka::run_consumer(
                ConsumerSettings {
                    kafka: kafka.clone(),
                    name: CONSUMER.to_owned(),
                    topics,
                },
                handler,
                shutdown,
            )),
            Self::Nats(nats) => tokio::spawn(nats::run_consumer(
                NatsConsumerSettings {
                    nats: nats.clone(),
                    name: CONSUMER.to_owned(),
                    topics,
                },
                handler,
                shutdown,
            )),
        }
    }

    /// Puts a message that is not an event (no `id` header) on the test's topic.
    async fn publish_garbage(&self, payload: &[u8]) {
        let topic = self.topic();
        match self {
            Self::Kafka(kafka) => {
                testkit::produce(kafka, &topic, "garbage", payload, &[("type", "Stepped")]).await
            }
            Self::Nats(nats) => {
                let js = jetstream::new(nats.connect().await.expect("nats client"));
                nats::ensure_stream(&js, &topic).await.expect("stream");
                js.publish(topic, payload.to_vec().into())
                    .await
                    .expect("publish")
                    .await
                    .expect("ack");
            }
        }
    }

    /// The dead-letter copies of group `CONSUMER`: (reason, payload), waiting for `expected`.
    async fn dead_letters(&self, expected: usize) -> Vec<(String, Vec<u8>)> {
        let topic = self.names().dead_letter_topic(CONSUMER);
        match self {
            Self::Kafka(kafka) => testkit::read_topic(kafka, &topic, expected, WAIT)
                .await
                .iter()
                .map(|m| {
                    let reason = testkit::header(m, "dlq-reason").unwrap_or_default();
                    (
                        reason,
                        rdkafka::Message::payload(m).unwrap_or_default().to_vec(),
                    )
                })
                .collect(),
            Self::Nats(nats) => {
                let js = jetstream::new(nats.connect().await.expect("nats client"));
                let stream = nats::ensure_stream(&js, &topic).await.expect("stream");
                let reader = stream
                    .create_consumer(pull::Config::default())
                    .await
                    .expect("reader");
                let mut messages = reader.messages().await.expect("messages");
                let mut out = Vec::new();
                let deadline = tokio::time::Instant::now() + WAIT;
                while out.len() < expected {
                    match tokio::time::timeout_at(deadline, messages.next()).await {
                        Ok(Some(Ok(m))) => {
                            let reason = m
                                .headers
                                .as_ref()
                                .and_then(|h| h.get("dlq-reason"))
                                .map(|v| v.as_str().to_owned())
                                .unwrap_or_default();
                            out.push((reason, m.payload.to_vec()));
                        }
                        Ok(other) => panic!("reading {topic}: {other:?}"),
                        Err(_) => break,
                    }
                }
                out
            }
        }
    }
}

/// A consumer that applies each step once: the inbox and the effect in one transaction. Steps
/// named in `fail` fail transiently that many times first; a step with `n < 0` fails for good.
#[derive(Clone)]
struct Ledger {
    pool: PgPool,
    fail: Arc<Mutex<HashMap<(String, i32), u32>>>,
    /// How long each handling takes before its transaction: long enough, with two instances,
    /// for the second to overtake the first if the broker let it.
    pause: Duration,
}

impl EventHandler for Ledger {
    async fn handle(&self, event: &Envelope) -> Result<(), HandleError> {
        let step: Stepped = event.decode()?;
        if step.n < 0 {
            return Err(HandleError::Permanent(format!(
                "step {} is negative",
                step.n
            )));
        }
        {
            let mut fail = self.fail.lock().unwrap();
            if let Some(left) = fail
                .get_mut(&(step.aggregate.clone(), step.n))
                .filter(|l| **l > 0)
            {
                *left -= 1;
                return Err(HandleError::Transient("the ledger is away".into()));
            }
        }
        tokio::time::sleep(self.pause).await;
        let mut tx = self.pool.begin().await?;
        if let Recorded::First =
            inbox::record(&mut tx, CONSUMER, event.id, &event.event_type).await?
        {
            sqlx::query("insert into ledger (aggregate, n, event_id) values ($1, $2, $3)")
                .bind(&step.aggregate)
                .bind(step.n)
                .bind(event.id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// A database with the outbox and inbox tables and the ledger; the relay and the consumer on
/// `broker`, stopped when dropped.
struct Setup {
    pool: PgPool,
    relay: Relay,
    ledger: Ledger,
    shutdown: CancellationToken,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn setup(broker: &Broker) -> Setup {
    let (url, pool) = testkit::fresh_outbox_database().await;
    sqlx::query(
        "create table ledger (seq bigserial primary key, aggregate text not null, n int not null,
                              event_id uuid not null)",
    )
    .execute(&pool)
    .await
    .expect("ledger table");
    let relay = Relay::connect(
        "test",
        &url,
        RelaySettings::default(),
        broker.outlet().await,
    )
    .expect("relay");
    Setup {
        pool: pool.clone(),
        relay,
        ledger: Ledger {
            pool,
            fail: Arc::default(),
            pause: Duration::ZERO,
        },
        shutdown: CancellationToken::new(),
    }
}

impl Setup {
    async fn write(&self, steps: &[Stepped]) {
        let writer = outbox::Writer::default();
        let mut tx = self.pool.begin().await.unwrap();
        for step in steps {
            writer.write_in_tx(&mut tx, step, None).await.unwrap();
        }
        writer.commit(tx, &self.pool).await.unwrap();
    }

    /// What the ledger applied, per aggregate in the order applied.
    async fn applied(&self) -> HashMap<String, Vec<i32>> {
        let rows: Vec<(String, i32)> =
            sqlx::query_as("select aggregate, n from ledger order by seq")
                .fetch_all(&self.pool)
                .await
                .unwrap();
        let mut out: HashMap<String, Vec<i32>> = HashMap::new();
        for (aggregate, n) in rows {
            out.entry(aggregate).or_default().push(n);
        }
        out
    }

    async fn wait_applied(&self, count: usize) -> HashMap<String, Vec<i32>> {
        testkit::eventually(WAIT, || async {
            let applied = self.applied().await;
            (applied.values().map(Vec::len).sum::<usize>() >= count).then_some(applied)
        })
        .await
        .unwrap_or_else(|| panic!("{count} steps applied in time; have {:?}", 0))
    }
}

fn steps(aggregates: usize, per_aggregate: i32) -> Vec<Stepped> {
    (0..per_aggregate)
        .flat_map(|n| {
            (0..aggregates).map(move |a| Stepped {
                aggregate: format!("agg-{a}"),
                n,
            })
        })
        .collect()
}

/// Every event reaches the consumer once and in order per aggregate, also when the relay
/// publishes every row a second time.
async fn every_event_is_applied_once_and_in_order(broker: Broker) {
    let s = setup(&broker).await;
    let written = steps(6, 10);
    s.write(&written).await;
    let running = s.relay.start(&s.shutdown);
    let consumer = broker.consume(s.ledger.clone(), s.shutdown.clone());
    let applied = s.wait_applied(written.len()).await;

    // A relay that died after the broker's acks and before its marks: every row again.
    sqlx::query("update outbox set published_at = null")
        .execute(&s.pool)
        .await
        .unwrap();
    outbox::wake_relay(&s.pool).await;
    testkit::eventually(WAIT, || async {
        let pending: i64 =
            sqlx::query_scalar("select count(*) from outbox where published_at is null")
                .fetch_one(&s.pool)
                .await
                .unwrap();
        (pending == 0).then_some(())
    })
    .await
    .expect("the rows published again");
    // One more event after the re-published ones: once it is applied, the duplicates before it
    // have been seen.
    s.write(&[Stepped {
        aggregate: "agg-0".into(),
        n: 10,
    }])
    .await;
    let after = s.wait_applied(written.len() + 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.applied().await, after, "nothing applied late");

    assert_eq!(applied.len(), 6);
    for (aggregate, ns) in &after {
        let expected: Vec<i32> = if aggregate == "agg-0" {
            (0..=10).collect()
        } else {
            (0..10).collect()
        };
        assert_eq!(ns, &expected, "{aggregate}: once each, in order");
    }
    s.shutdown.cancel();
    running.stopped().await;
    consumer.await.unwrap();
}

/// A failing step is retried on the same message; the steps after it wait for it.
async fn a_failing_event_is_retried_and_nothing_overtakes_it(broker: Broker) {
    let s = setup(&broker).await;
    s.ledger.fail.lock().unwrap().insert(("agg-1".into(), 2), 3);
    let written = steps(3, 5);
    s.write(&written).await;
    let _running = s.relay.start(&s.shutdown);
    let _consumer = broker.consume(s.ledger.clone(), s.shutdown.clone());
    let applied = s.wait_applied(written.len()).await;
    for ns in applied.values() {
        assert_eq!(ns, &(0..5).collect::<Vec<_>>());
    }
    assert_eq!(s.ledger.fail.lock().unwrap()[&("agg-1".into(), 2)], 0);
}

/// A message that is not an event and an event that fails for good are dead-lettered with
/// their reasons; the events after them are handled.
async fn what_cannot_be_handled_is_dead_lettered(broker: Broker) {
    let s = setup(&broker).await;
    broker.publish_garbage(b"not an event").await;
    s.write(&[
        Stepped {
            aggregate: "agg-0".into(),
            n: -1,
        },
        Stepped {
            aggregate: "agg-0".into(),
            n: 0,
        },
        Stepped {
            aggregate: "agg-1".into(),
            n: 0,
        },
    ])
    .await;
    let _running = s.relay.start(&s.shutdown);
    let _consumer = broker.consume(s.ledger.clone(), s.shutdown.clone());
    let applied = s.wait_applied(2).await;
    assert_eq!(applied["agg-0"], vec![0]);
    assert_eq!(applied["agg-1"], vec![0]);

    let dead = broker.dead_letters(2).await;
    let reasons: HashSet<&str> = dead.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(reasons.contains("missing header \"id\""), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("step -1 is negative")),
        "{reasons:?}"
    );
    assert!(dead.iter().any(|(_, p)| p == b"not an event"));
}

/// Two instances of one consumer group share the work, and every aggregate's events are still
/// applied once and in order.
async fn two_instances_of_a_group_keep_every_aggregate_in_order(broker: Broker) {
    let s = setup(&broker).await;
    let ledger = Ledger {
        pause: Duration::from_millis(20),
        ..s.ledger.clone()
    };
    let _first = broker.consume(ledger.clone(), s.shutdown.clone());
    let _second = broker.consume(ledger, s.shutdown.clone());
    let _running = s.relay.start(&s.shutdown);
    // Written a step of every aggregate at a time, while both instances wait for messages.
    let written = steps(8, 12);
    for round in written.chunks(8) {
        s.write(round).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let applied = s.wait_applied(written.len()).await;
    assert_eq!(applied.len(), 8);
    for (aggregate, ns) in &applied {
        assert_eq!(ns, &(0..12).collect::<Vec<_>>(), "{aggregate}");
    }
}

#[tokio::test]
async fn kafka_two_instances_of_a_group_keep_every_aggregate_in_order() {
    two_instances_of_a_group_keep_every_aggregate_in_order(Broker::kafka()).await;
}

#[tokio::test]
async fn nats_two_instances_of_a_group_keep_every_aggregate_in_order() {
    two_instances_of_a_group_keep_every_aggregate_in_order(Broker::nats()).await;
}

#[tokio::test]
async fn kafka_every_event_is_applied_once_and_in_order() {
    every_event_is_applied_once_and_in_order(Broker::kafka()).await;
}

#[tokio::test]
async fn nats_every_event_is_applied_once_and_in_order() {
    every_event_is_applied_once_and_in_order(Broker::nats()).await;
}

#[tokio::test]
async fn kafka_a_failing_event_is_retried_and_nothing_overtakes_it() {
    a_failing_event_is_retried_and_nothing_overtakes_it(Broker::kafka()).await;
}

#[tokio::test]
async fn nats_a_failing_event_is_retried_and_nothing_overtakes_it() {
    a_failing_event_is_retried_and_nothing_overtakes_it(Broker::nats()).await;
}

#[tokio::test]
async fn kafka_what_cannot_be_handled_is_dead_lettered() {
    what_cannot_be_handled_is_dead_lettered(Broker::kafka()).await;
}

#[tokio::test]
async fn nats_what_cannot_be_handled_is_dead_lettered() {
    what_cannot_be_handled_is_dead_lettered(Broker::nats()).await;
}
