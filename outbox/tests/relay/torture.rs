//! The randomized torture test: the relay's promises under every ordering of failures we can
//! generate, checked on what reached the broker and what the outbox says.
//!
//! A round runs, for a while: several relay instances on one database, writers on hundreds of
//! aggregates with skewed backlogs (a few hot ones, one whose topic can never be created), some
//! transactions held open so rows commit out of `seq` order, injected publish failures (the
//! event's fault, or a broker outage window), delays and hangs, relay instances killed and
//! restarted, and an operator retrying and skipping parked events. Then the faults stop, the
//! relays drain, and the properties are checked:
//!
//! - **no stall**: a probe event on a fresh aggregate is published within a bound whenever no
//!   outage window was open, and after the faults stop the outbox drains;
//! - **poison parks, outages do not**: every parked event had a fault of its own injected;
//! - **every event not behind a parked or skipped one is published**;
//! - **nothing lost**: every row marked published is on the broker;
//! - **order**: per aggregate, the events' first appearances on the broker follow the commit
//!   order, and none appears before all earlier, unskipped events of its aggregate did.
//!
//! `TORTURE_SECONDS` (default 40) bounds the whole test: rounds run, each with the next seed,
//! until it is spent. `TORTURE_SEED` sets the first seed (random by default; every round
//! prints its seed, and a failure names it). A seed replays the same schedule of writes,
//! faults, kills and operator actions; thread timing still varies from run to run.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use contracts::DomainEvent;
use outbox::kafka::KafkaConfig;
use outbox::relay::admin::{self, Acted};
use outbox::{
    relay::Relay,
    relay::RelaySettings,
    relay::{Outgoing, SendError},
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    message::OwnedMessage,
    ClientConfig, Message, Offset, TopicPartitionList,
};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::faults::{Faulty, Injected};

const INSTANCES: usize = 3;
const AGGREGATES: u32 = 300;
const HOT: u32 = 5;
/// A probe written while no outage window was open is published within this.
const PROGRESS_BOUND: Duration = Duration::from_secs(8);

#[derive(Debug, Serialize, Deserialize)]
struct Tortured {
    aggregate: String,
}

impl DomainEvent for Tortured {
    const TYPE: &'static str = "Tortured";
    const AGGREGATE_TYPE: &'static str = "tortured";
    fn aggregate_id(&self) -> String {
        self.aggregate.clone()
    }
}

/// Events whose topic the broker refuses to create: they can only park.
#[derive(Debug, Serialize, Deserialize)]
struct Forbidden {
    aggregate: String,
}

impl DomainEvent for Forbidden {
    const TYPE: &'static str = "Forbidden";
    const AGGREGATE_TYPE: &'static str = "forbidden";
    fn aggregate_id(&self) -> String {
        self.aggregate.clone()
    }
}

/// The injected faults, decided from the seed.
struct Chaos {
    rng: StdRng,
    /// While set and in the future, every send fails as if the broker were away.
    outage_until: Option<Instant>,
    /// Outage windows, for the progress check: (start, end).
    outages: Vec<(Instant, Instant)>,
    /// Events that had a fault of their own injected (a rejection, a delay or a hang).
    own_faults: HashSet<String>,
    injected: u64,
}

impl Chaos {
    fn in_outage(&self) -> bool {
        self.outage_until
            .is_some_and(|until| Instant::now() < until)
    }

    fn on_send(&mut self, event: &Outgoing<'_>) -> Option<Injected> {
        if self.in_outage() {
            return Some(Injected::Fail(SendError::outage("injected: broker away")));
        }
        let roll: f64 = self.rng.random();
        let injected = if roll < 0.01 {
            Injected::Fail(SendError::event("injected: rejected"))
        } else if roll < 0.013 {
            Injected::Hang
        } else if roll < 0.05 {
            Injected::Delay(Duration::from_millis(self.rng.random_range(0..400)))
        } else {
            return None;
        };
        self.injected += 1;
        self.own_faults.insert(event.headers.id.to_owned());
        Some(injected)
    }
}

/// Counts of one round, printed at its end.
#[derive(Debug, Default)]
struct Counts {
    written: u64,
    published: i64,
    parked: i64,
    skipped: i64,
    on_broker: usize,
    duplicates: usize,
    kills: u64,
    outages: usize,
    injected: u64,
    retried: u64,
    probes: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_keeps_its_promises_under_random_faults() {
    let budget = Duration::from_secs(env_u64("TORTURE_SECONDS").unwrap_or(40));
    let first_seed = env_u64("TORTURE_SEED").unwrap_or_else(rand::random);
    let started = Instant::now();
    let mut seed = first_seed;
    let mut rounds = 0;
    // A round takes its writing time plus about 15 s of draining and checking.
    while rounds == 0 || started.elapsed() + Duration::from_secs(45) < budget {
        let writing = Duration::from_secs(20);
        println!("torture: round {rounds}, seed {seed}");
        let counts = round(seed, writing).await;
        println!("torture: seed {seed} passed: {counts:?}");
        seed = seed.wrapping_add(1);
        rounds += 1;
    }
    println!(
        "torture: {rounds} round(s), seeds {first_seed}..={}, {:?}",
        seed.wrapping_sub(1),
        started.elapsed()
    );
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

async fn round(seed: u64, writing: Duration) -> Counts {
    let (url, pool) = testkit::fresh_outbox_database().await;
    let kafka = testkit::kafka();
    let mut rng = StdRng::seed_from_u64(seed);
    let chaos = Arc::new(Mutex::new(Chaos {
        rng: StdRng::seed_from_u64(rng.random()),
        outage_until: None,
        outages: Vec::new(),
        own_faults: HashSet::new(),
        injected: 0,
    }));
    let faulty = Faulty::kafka(&kafka);
    {
        let chaos = chaos.clone();
        faulty.on_send(move |event| chaos.lock().unwrap().on_send(event));
    }
    {
        let (chaos, forbidden) = (chaos.clone(), kafka.topic_for(Forbidden::AGGREGATE_TYPE));
        faulty.on_create_topic(move |topic| {
            if topic == forbidden {
                Some(Injected::Fail(SendError::event(
                    "injected: topic refused by policy",
                )))
            } else if chaos.lock().unwrap().in_outage() {
                Some(Injected::Fail(SendError::outage("injected: broker away")))
            } else {
                None
            }
        });
    }
    let settings = RelaySettings {
        batch_size: rng.random_range(10..=80),
        pipeline: rng.random_range(1..=2),
        poll_interval: Duration::from_millis(100),
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(300),
        max_attempts: 3,
        lease: Duration::from_secs(3),
        ..RelaySettings::default()
    };
    let mut counts = Counts::default();
    let stop = CancellationToken::new();

    // The relay instances, each with its own pool (a process of its own), killed and restarted.
    let start_instance = |url: secrecy::SecretString| {
        let (faulty, kafka, settings) = (faulty.clone(), kafka.clone(), settings.clone());
        async move {
            // As the relay's own pool: the lease is the claim's idle-in-transaction timeout.
            let pool = outbox::db::connect_lazy(&url, 8, settings.lease).expect("relay pool");
            let relay = Relay::new("torture".into(), pool, settings, faulty.outlet(&kafka));
            let shutdown = CancellationToken::new();
            (shutdown.clone(), tokio::spawn(relay.run(shutdown)))
        }
    };
    let mut instances = Vec::new();
    for _ in 0..INSTANCES {
        instances.push(start_instance(url.clone()).await);
    }

    // Writers: skewed aggregates, some transactions held open so commits overtake seq order.
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (pool, stop) = (pool.clone(), stop.clone());
        let mut rng = StdRng::seed_from_u64(rng.random::<u64>() ^ w);
        writers.push(tokio::spawn(async move {
            let mut written = 0u64;
            while !stop.is_cancelled() {
                let roll: f64 = rng.random();
                let hold = (rng.random::<f64>() < 0.2)
                    .then(|| Duration::from_millis(rng.random_range(1..60)));
                if roll < 0.2 {
                    write(
                        &pool,
                        &Forbidden {
                            aggregate: "f-0".into(),
                        },
                        hold,
                    )
                    .await;
                } else {
                    let aggregate = if roll < 0.6 {
                        rng.random_range(0..HOT)
                    } else {
                        rng.random_range(0..AGGREGATES)
                    };
                    let event = Tortured {
                        aggregate: format!("a-{aggregate}"),
                    };
                    write(&pool, &event, hold).await;
                }
                written += 1;
                tokio::time::sleep(Duration::from_millis(rng.random_range(5..40))).await;
            }
            written
        }));
    }

    // The schedule: kills, outage windows, operator actions and probes, until writing ends.
    let mut probes: Vec<(Uuid, Instant)> = Vec::new();
    let end = Instant::now() + writing;
    let mut next_kill = Instant::now() + jitter(&mut rng, 2_000, 5_000);
    let mut next_outage = Instant::now() + jitter(&mut rng, 3_000, 8_000);
    let mut next_operator = Instant::now() + jitter(&mut rng, 3_000, 6_000);
    let mut next_probe = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = Instant::now();
        if now >= next_kill {
            let victim = rng.random_range(0..INSTANCES);
            // Killed: its claim's transaction and connections are dropped mid-batch.
            instances[victim].1.abort();
            tokio::time::sleep(jitter(&mut rng, 0, 1_500)).await;
            instances[victim] = start_instance(url.clone()).await;
            counts.kills += 1;
            next_kill = Instant::now() + jitter(&mut rng, 2_000, 5_000);
        }
        if now >= next_outage {
            let length = jitter(&mut rng, 1_000, 4_000);
            let mut chaos = chaos.lock().unwrap();
            chaos.outage_until = Some(now + length);
            chaos.outages.push((now, now + length));
            next_outage = now + length + jitter(&mut rng, 4_000, 9_000);
        }
        if now >= next_operator {
            counts.retried += operate(&pool, &mut rng).await;
            next_operator = Instant::now() + jitter(&mut rng, 3_000, 6_000);
        }
        if now >= next_probe {
            let aggregate = format!("probe-{}", probes.len());
            let id = write(&pool, &Tortured { aggregate }, None).await;
            probes.push((id, Instant::now()));
            next_probe = Instant::now() + Duration::from_secs(2);
        }
    }
    stop.cancel();
    for writer in writers {
        counts.written += writer.await.expect("writer");
    }

    // The faults stop (the forbidden topic stays refused); the relays drain the outbox.
    {
        let mut chaos = chaos.lock().unwrap();
        chaos.outage_until = None;
        counts.outages = chaos.outages.len();
        counts.injected = chaos.injected;
    }
    let forbidden = kafka.topic_for(Forbidden::AGGREGATE_TYPE);
    faulty.on_send(|_| None);
    faulty.on_create_topic(move |topic| {
        (topic == forbidden)
            .then(|| Injected::Fail(SendError::event("injected: topic refused by policy")))
    });
    let drained = testkit::eventually(Duration::from_secs(30), || async {
        (publishable(&pool).await == 0).then_some(())
    })
    .await;
    // A relay finishes its batch and stops: bounded by the batch deadline, whatever hangs.
    let mut stuck = 0;
    for (shutdown, mut task) in instances {
        shutdown.cancel();
        if tokio::time::timeout(Duration::from_secs(10), &mut task)
            .await
            .is_err()
        {
            task.abort();
            stuck += 1;
        }
    }
    assert_eq!(
        stuck, 0,
        "seed {seed}: relay instances still busy 10 s after their shutdown"
    );
    assert!(
        drained.is_some(),
        "seed {seed}: {} publishable events still unpublished 30 s after the faults stopped",
        publishable(&pool).await
    );

    let (own_faults, outages) = {
        let chaos = chaos.lock().unwrap();
        (chaos.own_faults.clone(), chaos.outages.clone())
    };
    check_parked(seed, &pool, &own_faults).await;
    check_progress(seed, &pool, &probes, &outages, &own_faults).await;
    counts.probes = probes.len();
    check_broker(seed, &pool, &kafka, &mut counts).await;
    counts
}

fn jitter(rng: &mut StdRng, from_ms: u64, to_ms: u64) -> Duration {
    Duration::from_millis(rng.random_range(from_ms..=to_ms))
}

/// Writes one event as the services do: under a lock on its aggregate (so one aggregate's
/// rows commit in `seq` order), sometimes holding the transaction open after the insert.
async fn write<E: DomainEvent>(pool: &PgPool, event: &E, hold: Option<Duration>) -> Uuid {
    let writer = outbox::Writer::default();
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("select pg_advisory_xact_lock(hashtext($1))")
        .bind(event.aggregate_id())
        .execute(&mut *tx)
        .await
        .expect("aggregate lock");
    let id = writer
        .write_in_tx(&mut tx, event, None)
        .await
        .expect("outbox write");
    if let Some(hold) = hold {
        tokio::time::sleep(hold).await;
    }
    writer.commit(tx, pool).await.expect("commit");
    id
}

/// The operator: retries or skips a few parked events, through the admin API's functions.
/// Returns how many were retried.
async fn operate(pool: &PgPool, rng: &mut StdRng) -> u64 {
    let parked: Vec<Uuid> =
        sqlx::query_scalar("select id from outbox where parked_at is not null and published_at is null and skipped_at is null order by seq")
            .fetch_all(pool)
            .await
            .expect("parked");
    let mut retried = 0;
    for id in parked {
        match rng.random_range(0..10) {
            0..=4 => {
                retried += u64::from(admin::retry(pool, id).await.expect("retry") == Acted::Done)
            }
            5..=7 => {
                let _ = admin::skip(pool, id).await.expect("skip");
            }
            _ => {}
        }
    }
    retried
}

/// Pending rows with nothing parked before them in their aggregate: what must go out.
async fn publishable(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "select count(*) from outbox o
         where o.published_at is null and o.skipped_at is null and o.parked_at is null
           and not exists (
               select 1 from outbox p
               where p.aggregatetype = o.aggregatetype and p.aggregateid = o.aggregateid
                 and p.seq < o.seq and p.parked_at is not null
                 and p.published_at is null and p.skipped_at is null)",
    )
    .fetch_one(pool)
    .await
    .expect("publishable")
}

/// Poison parks, outages do not: a parked event had a fault of its own.
async fn check_parked(seed: u64, pool: &PgPool, own_faults: &HashSet<String>) {
    let parked: Vec<(Uuid, String, Option<String>)> = sqlx::query_as(
        "select id, aggregatetype, last_error from outbox
         where parked_at is not null and published_at is null and skipped_at is null",
    )
    .fetch_all(pool)
    .await
    .expect("parked");
    for (id, aggregatetype, error) in parked {
        assert!(
            aggregatetype == Forbidden::AGGREGATE_TYPE || own_faults.contains(&id.to_string()),
            "seed {seed}: {id} was parked ({error:?}) without a fault of its own"
        );
    }
}

/// The relay always made progress on aggregates that are not stuck.
async fn check_progress(
    seed: u64,
    pool: &PgPool,
    probes: &[(Uuid, Instant)],
    outages: &[(Instant, Instant)],
    own_faults: &HashSet<String>,
) {
    let published: HashMap<Uuid, Option<f64>> = sqlx::query_as::<_, (Uuid, Option<f64>)>(
        "select id, extract(epoch from published_at - created_at)::float8 from outbox
         where aggregateid like 'probe-%'",
    )
    .fetch_all(pool)
    .await
    .expect("probes")
    .into_iter()
    .collect();
    for (id, at) in probes {
        // Any outage open in the probe's window, or ending just before it, excuses a delay.
        let window_end = *at + PROGRESS_BOUND;
        let excused = outages
            .iter()
            .any(|(start, end)| *start < window_end && *end + Duration::from_secs(6) > *at);
        let took = published.get(id).copied().flatten();
        // A probe with a fault of its own waits for its retries, or parks.
        if !excused && !own_faults.contains(&id.to_string()) {
            assert!(
                took.is_some_and(|s| s <= PROGRESS_BOUND.as_secs_f64()),
                "seed {seed}: probe {id} took {took:?} s with no outage open"
            );
        }
    }
}

/// What reached the broker against what the outbox says.
async fn check_broker(seed: u64, pool: &PgPool, kafka: &KafkaConfig, counts: &mut Counts) {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: Uuid,
        aggregateid: String,
        seq: i64,
        published: bool,
        skipped: bool,
        parked: bool,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "select id, aggregateid, seq, published_at is not null as published,
                skipped_at is not null as skipped, parked_at is not null as parked
         from outbox where aggregatetype = $1 order by seq",
    )
    .bind(Tortured::AGGREGATE_TYPE)
    .fetch_all(pool)
    .await
    .expect("rows");
    let (published, parked, skipped) = sqlx::query_as::<_, (i64, i64, i64)>(
        "select count(*) filter (where published_at is not null),
                count(*) filter (where parked_at is not null and published_at is null and skipped_at is null),
                count(*) filter (where skipped_at is not null)
         from outbox",
    )
    .fetch_one(pool)
    .await
    .expect("counts");
    (counts.published, counts.parked, counts.skipped) = (published, parked, skipped);

    let messages = read_all(kafka, &kafka.topic_for(Tortured::AGGREGATE_TYPE)).await;
    counts.on_broker = messages.len();
    let by_id: HashMap<Uuid, &Row> = rows.iter().map(|r| (r.id, r)).collect();
    // Per aggregate: first appearances in partition order.
    let mut firsts: HashMap<&str, Vec<&Row>> = HashMap::new();
    let mut seen: HashSet<Uuid> = HashSet::new();
    for message in &messages {
        let id: Uuid = testkit::header(message, "id")
            .and_then(|id| id.parse().ok())
            .expect("id header");
        let row: &Row = by_id
            .get(&id)
            .copied()
            .unwrap_or_else(|| panic!("seed {seed}: {id} on the broker is not in the outbox"));
        if seen.insert(id) {
            firsts
                .entry(row.aggregateid.as_str())
                .or_default()
                .push(row);
        } else {
            counts.duplicates += 1;
        }
    }
    for row in &rows {
        assert!(
            !row.published || seen.contains(&row.id),
            "seed {seed}: {} is marked published but is not on the broker",
            row.id
        );
    }
    let mut by_aggregate: HashMap<&str, Vec<&Row>> = HashMap::new();
    for row in &rows {
        by_aggregate
            .entry(row.aggregateid.as_str())
            .or_default()
            .push(row);
    }
    for (aggregate, appeared) in firsts {
        let all = &by_aggregate[aggregate];
        for (i, row) in appeared.iter().enumerate() {
            if i > 0 {
                assert!(
                    appeared[i - 1].seq < row.seq,
                    "seed {seed}: {aggregate}: seq {} appeared after seq {}",
                    row.seq,
                    appeared[i - 1].seq
                );
            }
            // Nothing after a gap: every earlier event appeared before it, or was skipped.
            for earlier in all.iter().take_while(|r| r.seq < row.seq) {
                assert!(
                    earlier.skipped || seen.contains(&earlier.id),
                    "seed {seed}: {aggregate}: seq {} went out while seq {} (parked: {}) had not",
                    row.seq,
                    earlier.seq,
                    earlier.parked
                );
            }
        }
    }
}

/// Every message on `topic`, each partition read from the start to its end.
async fn read_all(kafka: &KafkaConfig, topic: &str) -> Vec<OwnedMessage> {
    let (kafka, topic) = (kafka.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &kafka.brokers)
            .set("group.id", format!("torture-reader-{}", Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .create()
            .expect("reader");
        let timeout = Duration::from_secs(10);
        let mut assignment = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for partition in 0..kafka.partitions {
            let (low, high) = consumer
                .fetch_watermarks(&topic, partition, timeout)
                .expect("watermarks");
            if high > low {
                ends.insert(partition, high);
                assignment
                    .add_partition_offset(&topic, partition, Offset::Beginning)
                    .expect("assignment");
            }
        }
        consumer.assign(&assignment).expect("assign");
        let mut messages = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !ends.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "reading {topic} timed out"
            );
            let Some(message) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let message = message.expect("read").detach();
            if ends
                .get(&message.partition())
                .is_some_and(|end| message.offset() + 1 >= *end)
            {
                ends.remove(&message.partition());
            }
            messages.push(message);
        }
        messages
    })
    .await
    .expect("reader task")
}
