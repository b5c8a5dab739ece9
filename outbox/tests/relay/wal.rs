//! The relay in WAL mode (`outbox::wal::WalSource`), on the logical cluster and the real
//! broker: what it sends is what the polling relay sends, in commit order; a poison event is
//! held and parks without stalling other aggregates, and an operator's retry lets its
//! aggregate go on; a relay killed at any step repeats only what was not confirmed; a second
//! instance takes over the slot; a 100k-row transaction goes through a small window; the
//! status page's counts and retention read the held table and the window.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{future::BoxFuture, FutureExt};
use outbox::{
    relay::{
        admin::{self, Acted},
        Broker, Outgoing, Outlet, Relay, RelaySettings, SendError, Source,
    },
    wal::{slot, ReaderState, StreamConfig, WalSettings, WalSource},
    AfterInsert, DomainEvent, Writer,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::relay::WAIT;

#[derive(Debug, Serialize, Deserialize)]
struct Stepped {
    account: String,
    n: usize,
}

impl DomainEvent for Stepped {
    const TYPE: &'static str = "Stepped";
    const AGGREGATE_TYPE: &'static str = "walk";
    fn aggregate_id(&self) -> String {
        self.account.clone()
    }
}

const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// One send the broker acknowledged, as it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    topic: String,
    key: String,
    payload: String,
    headers: Vec<(String, String)>,
}

impl Sent {
    fn id(&self) -> Uuid {
        let id = self
            .headers
            .iter()
            .find(|(k, _)| k == "id")
            .expect("an id header");
        id.1.parse().expect("a uuid")
    }
}

type Refusal = Box<dyn Fn(&Outgoing<'_>) -> Option<SendError> + Send + Sync>;

/// The real Kafka broker, recording what it acknowledged and refusing what `refuse` says.
struct Recorder {
    kafka: outbox::kafka::KafkaConfig,
    real: Arc<dyn Broker>,
    sent: Mutex<Vec<Sent>>,
    refuse: Mutex<Option<Refusal>>,
}

impl Recorder {
    fn kafka() -> Arc<Self> {
        Self::on(testkit::kafka())
    }

    /// On the topics of `kafka` (each `testkit::kafka()` has a prefix of its own).
    fn on(kafka: outbox::kafka::KafkaConfig) -> Arc<Self> {
        Arc::new(Self {
            real: Arc::new(crate::faults::kafka_broker(&kafka)),
            kafka,
            sent: Mutex::new(Vec::new()),
            refuse: Mutex::new(None),
        })
    }

    fn outlet(self: &Arc<Self>) -> Outlet {
        Outlet::new(self.clone(), self.kafka.topics())
    }

    fn refuse(&self, rule: impl Fn(&Outgoing<'_>) -> Option<SendError> + Send + Sync + 'static) {
        *self.refuse.lock().unwrap() = Some(Box::new(rule));
    }

    /// Refuses, as the event's fault, the one event whose id is put into the returned slot.
    fn poison(&self, reason: &'static str) -> Arc<Mutex<Option<Uuid>>> {
        let poison = Arc::new(Mutex::new(None::<Uuid>));
        let rule = poison.clone();
        self.refuse(move |event| {
            let poisoned = rule.lock().unwrap().map(|id| id.to_string());
            (poisoned.as_deref() == Some(event.headers.id)).then(|| SendError::event(reason))
        });
        poison
    }

    fn heal(&self) {
        *self.refuse.lock().unwrap() = None;
    }

    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    fn ids(&self) -> Vec<Uuid> {
        self.sent().iter().map(Sent::id).collect()
    }
}

impl Broker for Recorder {
    fn send<'a>(&'a self, event: Outgoing<'a>) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            let refused = self.refuse.lock().unwrap().as_ref().and_then(|r| r(&event));
            if let Some(error) = refused {
                return Err(error);
            }
            let sent = Sent {
                topic: event.topic.into(),
                key: event.key.into(),
                payload: event.payload.into(),
                headers: event
                    .headers
                    .pairs()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            };
            self.real.send(event).await?;
            self.sent.lock().unwrap().push(sent);
            Ok(())
        }
        .boxed()
    }

    fn create_topic<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), SendError>> {
        self.real.create_topic(topic)
    }
}

struct Database {
    url: SecretString,
    pool: PgPool,
    slot: String,
}

async fn database() -> Database {
    let (url, pool) = testkit::fresh_logical_outbox_database().await;
    let slot = format!("test_{}", Uuid::new_v4().simple());
    Database { url, pool, slot }
}

impl Database {
    fn source(&self, window: usize) -> WalSource {
        let mut settings = WalSettings::new(StreamConfig::new(self.url.clone(), &self.slot));
        settings.window = window;
        settings.standby_retry = Duration::from_millis(200);
        WalSource::new(self.pool.clone(), settings)
    }

    fn relay(
        &self,
        source: WalSource,
        broker: &Arc<Recorder>,
        settings: RelaySettings,
    ) -> Relay<WalSource> {
        Relay::with_source(
            "wal".into(),
            self.pool.clone(),
            source,
            settings,
            broker.outlet(),
        )
    }

    /// Events of `accounts`, `per_account` each, in transactions that interleave them.
    async fn write_interleaved(
        &self,
        writer: Writer,
        accounts: &[&str],
        per_account: usize,
    ) -> Vec<Uuid> {
        let mut ids = Vec::new();
        for n in 0..per_account {
            let mut tx = self.pool.begin().await.unwrap();
            for account in accounts {
                let event = Stepped {
                    account: (*account).into(),
                    n,
                };
                ids.push(
                    writer
                        .write_in_tx(&mut tx, &event, Some(TRACE))
                        .await
                        .unwrap(),
                );
            }
            tx.commit().await.unwrap();
        }
        ids
    }

    /// A WAL relay on `broker`, started, once a reader streams from the slot.
    async fn started(
        &self,
        source: WalSource,
        broker: &Arc<Recorder>,
        settings: RelaySettings,
    ) -> Started {
        let shutdown = CancellationToken::new();
        let running = self.relay(source, broker, settings).start(&shutdown);
        self.streaming().await;
        Started { shutdown, running }
    }

    /// Stops the relay, then drops the slot.
    async fn finish(&self, started: Started) {
        started.stop().await;
        self.drop_slot().await;
    }

    /// Events `n` of `account` in one transaction; `before_commit` sees their ids first.
    async fn write_one_transaction(
        &self,
        account: &str,
        n: std::ops::Range<usize>,
        before_commit: impl FnOnce(&[Uuid]),
    ) -> Vec<Uuid> {
        let mut tx = self.pool.begin().await.unwrap();
        let mut ids = Vec::new();
        for n in n {
            let event = Stepped {
                account: account.into(),
                n,
            };
            ids.push(
                Writer::default()
                    .write_in_tx(&mut tx, &event, None)
                    .await
                    .unwrap(),
            );
        }
        before_commit(&ids);
        tx.commit().await.unwrap();
        ids
    }

    /// Until the slot is confirmed past everything written so far.
    async fn confirmed_past_now(&self, what: &str) {
        let end: String = sqlx::query_scalar("select pg_current_wal_lsn()::text")
            .fetch_one(&self.pool)
            .await
            .unwrap();
        let end: outbox::wal::Lsn = end.parse().unwrap();
        testkit::eventually(WAIT, || async {
            let state = slot::slot_state(&self.pool, &self.slot).await.unwrap()?;
            (state.confirmed? >= end).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("the slot is confirmed past {what}"));
    }

    /// Until a reader streams from the slot: only what commits after the slot exists is in it.
    async fn streaming(&self) {
        testkit::eventually(WAIT, || async {
            slot::slot_state(&self.pool, &self.slot)
                .await
                .unwrap()
                .and_then(|s| s.active_pid)
        })
        .await
        .expect("a reader holds the slot");
    }

    async fn held_count(&self, condition: &str) -> i64 {
        sqlx::query_scalar(&format!(
            "select count(*) from outbox_wal_held where {condition}"
        ))
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    async fn drop_slot(&self) {
        let released = testkit::eventually(WAIT, || async {
            slot::drop_slot(&self.pool, &self.slot).await.ok()
        })
        .await;
        assert!(released.is_some(), "the slot could be dropped");
    }
}

/// A running relay, and how to stop it.
struct Started {
    shutdown: CancellationToken,
    running: outbox::relay::Running,
}

impl Started {
    async fn stop(self) {
        self.shutdown.cancel();
        self.running.stopped().await;
    }
}

fn settings() -> RelaySettings {
    RelaySettings {
        batch_size: 100,
        max_attempts: 2,
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        poll_interval: Duration::from_millis(200),
        ..RelaySettings::default()
    }
}

/// Waits until the broker acknowledged every one of `ids`.
async fn all_sent(broker: &Recorder, ids: &[Uuid]) {
    let wanted: HashSet<Uuid> = ids.iter().copied().collect();
    let done = testkit::eventually(WAIT, || async {
        let sent: HashSet<Uuid> = broker.ids().into_iter().collect();
        wanted.is_subset(&sent).then_some(())
    })
    .await;
    let missing = wanted.len()
        - wanted
            .intersection(&broker.ids().into_iter().collect())
            .count();
    assert!(
        done.is_some(),
        "{missing} of {} events never sent",
        wanted.len()
    );
}

/// Per aggregate, the event ids in the order the broker first acknowledged them.
fn first_sends_per_key(sent: &[Sent]) -> HashMap<String, Vec<Uuid>> {
    let mut seen = HashSet::new();
    let mut per_key: HashMap<String, Vec<Uuid>> = HashMap::new();
    for s in sent {
        if seen.insert(s.id()) {
            per_key.entry(s.key.clone()).or_default().push(s.id());
        }
    }
    per_key
}

/// Per aggregate, the ids written, in the order written (each transaction committed before
/// the next began, so this is commit order).
fn written_per_key(pool_rows: &[(String, Uuid)]) -> HashMap<String, Vec<Uuid>> {
    let mut per_key: HashMap<String, Vec<Uuid>> = HashMap::new();
    for (key, id) in pool_rows {
        per_key.entry(key.clone()).or_default().push(*id);
    }
    per_key
}

async fn written(pool: &PgPool) -> Vec<(String, Uuid)> {
    sqlx::query_as("select aggregateid, id from outbox order by seq")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn what_the_wal_relay_sends_is_what_polling_sends_in_commit_order() {
    let db = database().await;
    let wal_broker = Recorder::kafka();
    let relay = db.started(db.source(64), &wal_broker, settings()).await;

    let ids = db
        .write_interleaved(Writer::default(), &["a", "b", "c"], 20)
        .await;
    all_sent(&wal_broker, &ids).await;
    let order = written(&db.pool).await;
    assert_eq!(
        first_sends_per_key(&wal_broker.sent()),
        written_per_key(&order)
    );

    // The slot moves past everything the broker acknowledged.
    db.confirmed_past_now("the last commit").await;
    relay.stop().await;

    // The polling relay, on the same rows: the same topics, keys, payloads and headers.
    let polling_broker = Recorder::on(wal_broker.kafka.clone());
    let polling = Relay::new(
        "poll".into(),
        db.pool.clone(),
        settings(),
        polling_broker.outlet(),
    );
    while polling.relay_batch().await.unwrap().claimed > 0 {}
    let by_id = |sent: Vec<Sent>| -> HashMap<Uuid, Sent> {
        sent.into_iter().map(|s| (s.id(), s)).collect()
    };
    let (wal, polled) = (by_id(wal_broker.sent()), by_id(polling_broker.sent()));
    assert_eq!(wal.len(), polled.len());
    for (id, sent) in &wal {
        assert_eq!(
            Some(sent),
            polled.get(id),
            "the WAL relay's send of {id} and polling's"
        );
    }
    db.drop_slot().await;
}

#[tokio::test]
async fn rows_the_writer_removes_at_once_are_relayed_from_the_wal() {
    let db = database().await;
    let broker = Recorder::kafka();
    // Removed rows are only in the WAL: what commits before the slot exists is in no slot.
    let relay = db.started(db.source(64), &broker, settings()).await;
    let ids = db
        .write_interleaved(Writer::new(AfterInsert::Remove), &["x", "y"], 10)
        .await;
    let left: i64 = sqlx::query_scalar("select count(*) from outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "the writer removed every row");
    all_sent(&broker, &ids).await;
    let sent = broker.ids();
    assert_eq!(
        first_sends_per_key(&broker.sent())["x"],
        ids.iter().step_by(2).copied().collect::<Vec<_>>()
    );
    assert_eq!(sent.len(), ids.len(), "nothing twice without a crash");
    db.finish(relay).await;
}

#[tokio::test]
async fn a_poison_event_parks_in_the_held_table_and_the_rest_goes_on() {
    let db = database().await;
    let broker = Recorder::kafka();
    let relay = db.started(db.source(64), &broker, settings()).await;

    // The poison is the third event of "sick"; what follows it must wait, in order.
    let poison = broker.poison("the broker refuses this one");
    let mut sick = db
        .write_one_transaction("sick", 0..6, |ids| {
            *poison.lock().unwrap() = Some(ids[2]);
        })
        .await;
    let healthy = db
        .write_interleaved(Writer::default(), &["h1", "h2", "h3"], 15)
        .await;

    all_sent(&broker, &healthy).await;
    all_sent(&broker, &sick[..2]).await;
    testkit::eventually(WAIT, || async {
        (db.held_count("parked_at is not null").await == 1).then_some(())
    })
    .await
    .expect("the poison event parks after its attempts");
    // Its aggregate's later events are held behind it, the others' are not.
    assert_eq!(db.held_count("true").await, 4);
    let sent: HashSet<Uuid> = broker.ids().into_iter().collect();
    assert!(
        sick[2..].iter().all(|id| !sent.contains(id)),
        "nothing of sick after the poison went"
    );

    // The slot does not wait for the operator: it moves past the held events.
    db.confirmed_past_now("the held events").await;

    // A new event of the held aggregate joins the queue behind the poison.
    sick.extend(db.write_one_transaction("sick", 6..7, |_| ()).await);
    testkit::eventually(WAIT, || async {
        (db.held_count("true").await == 5).then_some(())
    })
    .await
    .expect("the late event is held too");

    // The operator's list and retry see the held table.
    let parked = admin::parked(&db.pool, "wal", &admin::ParkedFilter::default())
        .await
        .unwrap();
    assert_eq!(
        parked.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![sick[2]]
    );
    broker.heal();
    assert_eq!(admin::retry(&db.pool, sick[2]).await.unwrap(), Acted::Done);
    all_sent(&broker, &sick).await;
    assert_eq!(first_sends_per_key(&broker.sent())["sick"], sick);
    testkit::eventually(WAIT, || async {
        (db.held_count("published_at is null").await == 0).then_some(())
    })
    .await
    .expect("every held event is marked published");

    // Once nothing of it is held, the aggregate streams again.
    let after = db.write_one_transaction("sick", 7..8, |_| ()).await;
    all_sent(&broker, &after).await;
    assert_eq!(db.held_count("true").await, 5, "it was not held");
    db.finish(relay).await;
}

#[tokio::test]
async fn a_skipped_poison_lets_its_aggregate_go_on_without_it() {
    let db = database().await;
    let broker = Recorder::kafka();
    let relay = db.started(db.source(64), &broker, settings()).await;
    let poison = broker.poison("refused");
    let ids = db
        .write_one_transaction("s", 0..3, |ids| {
            *poison.lock().unwrap() = Some(ids[0]);
        })
        .await;
    testkit::eventually(WAIT, || async {
        (db.held_count("parked_at is not null").await == 1).then_some(())
    })
    .await
    .expect("the first event parks");
    assert_eq!(admin::skip(&db.pool, ids[0]).await.unwrap(), Acted::Done);
    all_sent(&broker, &ids[1..]).await;
    assert!(
        !broker.ids().contains(&ids[0]),
        "a skipped event is never sent"
    );
    assert_eq!(first_sends_per_key(&broker.sent())["s"], ids[1..].to_vec());
    db.finish(relay).await;
}

/// Where a relay dies in one batch.
#[derive(Debug, Clone, Copy)]
enum Death {
    /// Claimed, nothing sent.
    Claimed,
    /// Sent and acknowledged, not marked.
    Sent,
    /// Marked, so the slot may move, but perhaps not told to the server yet.
    Marked,
}

/// A reader that dies: its task dropped mid-stream, its connection closed without
/// [`OutboxStream::stop`](outbox::wal::OutboxStream::stop) waiting for the last position to
/// be reported. (The lab's SIGKILLs do the same to a whole process.)
fn kill(reader: tokio::task::JoinHandle<()>) {
    reader.abort();
}

#[tokio::test]
async fn a_relay_killed_at_any_step_loses_nothing_and_the_standby_takes_over() {
    for death in [Death::Claimed, Death::Sent, Death::Marked] {
        let db = database().await;
        let broker = Recorder::kafka();
        let first = db.source(1000);
        // A claim takes part of what is read, so that the slot can move past some of it.
        let small = RelaySettings {
            batch_size: 30,
            ..settings()
        };
        let first_relay = db.relay(first.clone(), &broker, small);
        let reader = tokio::spawn(first.clone().run(CancellationToken::new()));
        db.streaming().await;
        // A second instance for the same slot stands by.
        let second = db.source(1000);
        let second_relay = db.started(second.clone(), &broker, settings()).await;

        let ids = db
            .write_interleaved(Writer::default(), &["k1", "k2", "k3", "k4"], 25)
            .await;
        testkit::eventually(WAIT, || async {
            (first.in_window() == ids.len()).then_some(())
        })
        .await
        .expect("the first instance streams everything");
        assert_eq!(second.state(), ReaderState::Standby, "{death:?}");

        let claim = first_relay.claim().await.unwrap().expect("a claim");
        match death {
            Death::Claimed => drop(claim),
            Death::Sent => {
                let _sent = first_relay.publish(&claim).await;
                // Dies with the claim unmarked.
                std::mem::forget(claim);
            }
            Death::Marked => {
                let sent = first_relay.publish(&claim).await;
                first_relay.mark(claim, sent).await.unwrap();
            }
        }
        let before = broker.ids().len();
        kill(reader);
        testkit::eventually(WAIT, || async {
            (second.state() == ReaderState::Streaming).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{death:?}: the standby takes the slot over"));
        all_sent(&broker, &ids).await;
        let order = written(&db.pool).await;
        assert_eq!(
            first_sends_per_key(&broker.sent()),
            written_per_key(&order),
            "{death:?}"
        );
        if !matches!(death, Death::Marked) {
            // Nothing was confirmed: the standby sends everything, also what the first
            // instance had sent.
            let again: HashSet<Uuid> = broker.ids()[before..].iter().copied().collect();
            assert!(ids.iter().all(|id| again.contains(id)), "{death:?}");
        }
        db.finish(second_relay).await;
    }
}

#[tokio::test]
async fn a_100k_row_transaction_goes_through_a_small_window() {
    const ROWS: i64 = 100_000;
    const WINDOW: usize = 512;
    let db = database().await;
    let broker = Recorder::kafka();
    let source = db.source(WINDOW);
    let settings = RelaySettings {
        batch_size: 500,
        ..settings()
    };
    let relay = db.started(source.clone(), &broker, settings).await;
    sqlx::query(
        "insert into outbox (id, aggregatetype, aggregateid, type, payload)
         select gen_random_uuid(), 'bulk', 'b' || (n % 100), 'Filled', jsonb_build_object('n', n)
         from generate_series(1, $1) n",
    )
    .bind(ROWS)
    .execute(&db.pool)
    .await
    .unwrap();
    let mut most = 0;
    let done = testkit::eventually(Duration::from_secs(180), || {
        most = most.max(source.in_window());
        let sent = broker.sent.lock().unwrap().len();
        async move { (sent as i64 >= ROWS).then_some(()) }
    })
    .await;
    assert!(
        done.is_some(),
        "{} of {ROWS} sent in 180 s",
        broker.sent().len()
    );
    assert!(most <= WINDOW, "the window held {most} events");
    // Per aggregate, in the order inserted.
    let order = written(&db.pool).await;
    assert_eq!(first_sends_per_key(&broker.sent()), written_per_key(&order));
    db.finish(relay).await;
}

#[tokio::test]
async fn a_polling_backlog_goes_out_first_when_the_wal_relay_takes_over() {
    let db = database().await;
    // Rows the polling relay has not published: one of them parked, and so its aggregate's
    // later row waits behind it.
    let backlog = db
        .write_interleaved(Writer::default(), &["p", "q"], 3)
        .await;
    sqlx::query(
        "update outbox set parked_at = now(), attempts = 5, last_error = 'refused' where id = $1",
    )
    .bind(backlog[2])
    .execute(&db.pool)
    .await
    .unwrap();
    let broker = Recorder::kafka();
    let relay = db.started(db.source(64), &broker, settings()).await;
    let later = db
        .write_interleaved(Writer::default(), &["p", "q"], 2)
        .await;

    // q goes on in order; p waits behind its parked event, also with the WAL relay.
    let q: Vec<Uuid> = backlog
        .iter()
        .chain(&later)
        .skip(1)
        .step_by(2)
        .copied()
        .collect();
    all_sent(&broker, &q).await;
    assert_eq!(first_sends_per_key(&broker.sent())["q"], q);
    assert_eq!(first_sends_per_key(&broker.sent())["p"], vec![backlog[0]]);
    let parked = admin::parked(&db.pool, "wal", &admin::ParkedFilter::default())
        .await
        .unwrap();
    assert_eq!(
        parked.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![backlog[2]],
        "listed once"
    );
    assert_eq!(
        admin::retry(&db.pool, backlog[2]).await.unwrap(),
        Acted::Done
    );
    let p: Vec<Uuid> = backlog.iter().chain(&later).step_by(2).copied().collect();
    all_sent(&broker, &p).await;
    assert_eq!(first_sends_per_key(&broker.sent())["p"], p);
    db.finish(relay).await;
}

#[tokio::test]
async fn a_broker_outage_pauses_the_wal_relay_and_holds_nothing() {
    let db = database().await;
    let broker = Recorder::kafka();
    broker.refuse(|_| Some(SendError::outage("the broker is away")));
    let relay = db.started(db.source(64), &broker, settings()).await;
    let ids = db
        .write_interleaved(Writer::default(), &["o1", "o2"], 10)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(broker.ids().is_empty());
    assert_eq!(
        db.held_count("true").await,
        0,
        "an outage is no event's fault"
    );
    broker.heal();
    all_sent(&broker, &ids).await;
    let order = written(&db.pool).await;
    assert_eq!(first_sends_per_key(&broker.sent()), written_per_key(&order));
    db.finish(relay).await;
}

#[tokio::test]
async fn the_wal_relays_stats_count_what_waits_and_retention_keeps_what_is_young() {
    let db = database().await;
    let broker = Recorder::kafka();
    let source = db.source(64);
    let relay = db.started(source.clone(), &broker, settings()).await;
    let poison = broker.poison("the broker refuses this one");
    let sick = db
        .write_one_transaction("sick", 0..4, |ids| {
            *poison.lock().unwrap() = Some(ids[1]);
        })
        .await;
    let healthy = db
        .write_interleaved(Writer::default(), &["a", "b", "c"], 12)
        .await;
    all_sent(&broker, &healthy).await;
    let stats = testkit::eventually(WAIT, || async {
        let stats = source.stats().await.unwrap();
        (stats.parked == 1 && stats.pending == 2).then_some(stats)
    })
    .await
    .expect("one parked, the two behind it pending, nothing else");
    let log = stats
        .log
        .clone()
        .expect("a WAL source says where its slot stands");
    assert_eq!(log.reader, outbox::relay::Reading::Streaming);
    assert_eq!(log.read_ahead, 0, "every streamed event is done");
    assert!(stats.published_per_second > 0.0, "{stats:?}");

    // A long retention deletes nothing; none at all deletes every kept row, a few per
    // transaction, and of the held table only what is done with: not the parked event or
    // those behind it.
    assert_eq!(
        source
            .delete_expired(Duration::from_secs(3600), 5)
            .await
            .unwrap(),
        0
    );
    let deleted = source.delete_expired(Duration::ZERO, 5).await.unwrap();
    let written = u64::try_from(sick.len() + healthy.len()).unwrap();
    assert_eq!(deleted, written, "every outbox row, none of the held table");
    let outbox_left: i64 = sqlx::query_scalar("select count(*) from outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(outbox_left, 0);
    assert_eq!(db.held_count("true").await, 3, "the parked one and its two");

    // Once the operator's retry got them out, they are done with too.
    broker.heal();
    assert_eq!(admin::retry(&db.pool, sick[1]).await.unwrap(), Acted::Done);
    all_sent(&broker, &sick).await;
    testkit::eventually(WAIT, || async {
        (db.held_count("published_at is null").await == 0).then_some(())
    })
    .await
    .expect("the held events are marked published");
    assert_eq!(source.delete_expired(Duration::ZERO, 5).await.unwrap(), 3);
    assert_eq!(db.held_count("true").await, 0);
    db.finish(relay).await;
}
