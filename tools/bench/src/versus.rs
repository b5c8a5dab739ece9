//! Our relay beside Debezium, in one run: raw produce, outbox-processor polling, outbox-processor
//! reading the WAL (`RELAY_MODE=wal`), and Debezium with the settings users copy
//! (`deploy/debezium`) and tuned as far as it goes, against the same broker and the same
//! PostgreSQL (the stack's cluster with `wal_level=logical`, which both WAL readers need).
//!
//! Each relay gets a fresh database and topic, starts, and is warmed up (a JVM runs its first
//! events slower while it compiles them). Then, with the relay running:
//! - **backlog**: 100,000 rows committed in one transaction, timed until the last is on the topic;
//! - **streaming**: 50,000 rows committed by four writers in transactions of ten, timed from the
//!   first commit until the last row is on the topic;
//! - **latency**: one row a transaction at 200 rows/s, from each commit to a consumer's receipt,
//!   and when the slowest 1 % were committed ([`Latency`]);
//! - **idle**: CPU while nothing is written.
//!
//! "On the topic" is counted from the partitions' end offsets, the same way for every relay and
//! for raw produce. CPU is the relay process's plus PostgreSQL's share (every process of the
//! cluster: our claims and marks, Debezium's walsender), per 1,000 events. Debezium runs from the
//! stack's install (`scripts/stack bench` sets `BENCH_DEBEZIUM_*`).

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use outbox::kafka::KafkaConfig;
use process_kit::Launch;
use rdkafka::{
    consumer::{BaseConsumer, Consumer, StreamConsumer},
    message::Headers,
    Message, Offset, TopicPartitionList,
};
use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::process::Child;
use uuid::Uuid;

use crate::{
    process::{
        free_port, peak_rss_kb, spawn, start, stop, wait_healthy, CpuMeter, Watched, HEALTHY_WITHIN,
    },
    relay::raw_produce,
    stats::{met, Summary},
    Results,
};

const WARM_UP: usize = 20_000;
const BACKLOG: usize = 100_000;
const STREAM: usize = 50_000;
const STREAM_WRITERS: usize = 4;
const STREAM_TX_ROWS: usize = 10;
const LATENCY_RATE: u64 = 200;
const LATENCY_SECONDS: u64 = 20;
const IDLE_SECONDS: u64 = 10;
/// After the last write, before idle CPU is measured: autovacuum's visit to the table the
/// phases filled is over by then.
const IDLE_SETTLE: Duration = Duration::from_secs(20);
/// Our relay's targets against Debezium at its best, in the same run.
const TARGET_RATE_SHARE: f64 = 0.95;
const TARGET_MEMORY_SHARE: f64 = 0.1;
/// The WAL mode's own targets (issue 27): its backlog against raw produce, its CPU against
/// polling's, its memory and its idle CPU.
const TARGET_WAL_RAW_SHARE: f64 = 0.95;
const TARGET_WAL_CPU_SHARE: f64 = 0.5;
const TARGET_WAL_RSS_MB: f64 = 50.0;
const TARGET_WAL_IDLE: f64 = 0.02;

/// How Debezium runs: the settings, beyond deploy/debezium's, and the JVM's options.
#[derive(Debug, Clone)]
struct Tuning {
    name: String,
    settings: Vec<(&'static str, &'static str)>,
    jvm: Vec<&'static str>,
}

impl Tuning {
    /// `deploy/debezium` as it is, on a JVM left to its defaults.
    fn shipped() -> Self {
        Self {
            name: "Debezium, deploy/debezium settings".into(),
            settings: Vec::new(),
            jvm: Vec::new(),
        }
    }

    /// Every setting that made it faster or smaller here.
    fn tuned() -> Self {
        Self {
            name: "Debezium, tuned".into(),
            settings: TUNED.iter().flat_map(|(_, s)| s.iter().copied()).collect(),
            jvm: vec!["-Xmx512m"],
        }
    }

    /// Tuned, less one of its settings: what that setting bought.
    fn tuned_without(what: &str) -> Self {
        let mut t = Self::tuned();
        t.name = format!("Debezium, tuned but {what}");
        if what == "-Xmx512m" {
            t.jvm.clear();
        } else {
            let drop: Vec<_> = TUNED
                .iter()
                .filter(|(name, _)| *name == what)
                .flat_map(|(_, s)| s.iter().copied())
                .collect();
            t.settings.retain(|s| !drop.contains(s));
        }
        t
    }
}

/// The tuning, one named step at a time (the ablation takes each away in turn).
const TUNED: &[(&str, &[(&str, &str)])] = &[
    (
        "extended.headers.enabled",
        &[("extended.headers.enabled", "false")],
    ),
    (
        "max.batch.size",
        &[("max.batch.size", "10000"), ("max.queue.size", "40000")],
    ),
    ("poll.interval.ms", &[("poll.interval.ms", "10")]),
    ("producer.batch.size", &[("producer.batch.size", "1048576")]),
];

/// Which relay a run measures.
#[derive(Debug, Clone)]
enum Contender {
    Ours,
    /// Ours with `RELAY_MODE=wal`.
    OursWal,
    Debezium(Tuning),
}

impl Contender {
    fn name(&self) -> String {
        match self {
            Self::Ours => "outbox-processor (ours)".into(),
            Self::OursWal => "outbox-processor, RELAY_MODE=wal (ours)".into(),
            Self::Debezium(t) => t.name.clone(),
        }
    }
}

/// What one relay did in one run.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    backlog_rate: f64,
    stream_rate: f64,
    /// Per 1,000 events of the backlog: the relay process, and PostgreSQL.
    relay_cpu_ms: f64,
    postgres_cpu_ms: f64,
    peak_rss_mb: f64,
    latency: Option<Latency>,
    /// Shares of one core, the relay's and PostgreSQL's, while nothing is written.
    idle_cpu: (f64, f64),
}

/// Commit-to-consumer latency, and when the slowest 1 % were committed: a tail whose events
/// were committed within a fraction of a second of each other is one stall, where one spread
/// over the whole run is a cost that recurs (a missed wake-up, a poll).
#[derive(Debug, Clone, Copy)]
struct Latency {
    summary: Summary,
    /// Seconds into the run of the first and the last commit of the events at or above p99.
    tail: (f64, f64),
}

impl Latency {
    /// From (seconds into the run of each commit, its latency in ms).
    fn of(events: &[(f64, f64)]) -> Self {
        let summary = Summary::of(events.iter().map(|(_, ms)| *ms).collect());
        let tail = events
            .iter()
            .filter(|(_, ms)| *ms >= summary.p99)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (at, _)| {
                (lo.min(*at), hi.max(*at))
            });
        Self { summary, tail }
    }
}

/// Where Debezium is installed and where the logical cluster is: from `scripts/stack bench`.
struct Install {
    admin_url: String,
    classpath: String,
    log_config: String,
    connector: PathBuf,
}

impl Install {
    fn from_env() -> Option<Self> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        Some(Self {
            admin_url: var("BENCH_LOGICAL_DATABASE_URL")?,
            classpath: var("BENCH_DEBEZIUM_CLASSPATH")?,
            log_config: var("BENCH_DEBEZIUM_LOG_CONFIG")?,
            connector: PathBuf::from(var("BENCH_DEBEZIUM_CONNECTOR")?),
        })
    }
}

pub async fn versus(results: &mut Results) {
    let Some(install) = Install::from_env() else {
        eprintln!(
            "bench: our relay against Debezium needs the stack's install: run `scripts/stack bench relay`"
        );
        std::process::exit(2);
    };
    let kafka = KafkaConfig {
        topic_prefix: String::new(),
        ..testkit::kafka()
    };
    let raw = raw_produce(&testkit::kafka(), BACKLOG).await;
    let raw_cpu_ms = raw.cpu_per_1000.as_secs_f64() * 1000.0;
    results.add(
        &format!("raw produce, {BACKLOG} x 300 B (baseline)"),
        format!("{:.0} msg/s", raw.rate),
        "-".into(),
        "-".into(),
    );
    let contenders = [
        Contender::Ours,
        Contender::OursWal,
        Contender::Debezium(Tuning::shipped()),
        Contender::Debezium(Tuning::tuned()),
    ];
    let mut figures = Vec::new();
    for c in &contenders {
        let f = run(&install, &kafka, c, Phases::All).await;
        report(results, &c.name(), &f, raw.rate, raw_cpu_ms);
        figures.push(f);
    }
    let (ours, wal, best) = (figures[0], figures[1], figures[3]);
    wal_targets(results, &wal, &ours, &best, raw.rate);
    let rate_share = |what: &str, ours: f64, best: f64, results: &mut Results| {
        compare(
            results,
            &format!("ours against Debezium tuned: {what}"),
            (format!("{ours:.0} ev/s"), format!("{best:.0} ev/s")),
            ours / best,
            (
                &format!(">= {TARGET_RATE_SHARE}"),
                ours >= TARGET_RATE_SHARE * best,
            ),
        );
    };
    rate_share("backlog", ours.backlog_rate, best.backlog_rate, results);
    rate_share("streaming", ours.stream_rate, best.stream_rate, results);
    compare(
        results,
        "ours against Debezium tuned: peak RSS",
        (
            format!("{:.0} MB", ours.peak_rss_mb),
            format!("{:.0} MB", best.peak_rss_mb),
        ),
        ours.peak_rss_mb / best.peak_rss_mb,
        (
            &format!("<= {TARGET_MEMORY_SHARE}"),
            ours.peak_rss_mb <= TARGET_MEMORY_SHARE * best.peak_rss_mb,
        ),
    );
    if let (Some(Latency { summary: a, .. }), Some(Latency { summary: b, .. })) =
        (ours.latency, best.latency)
    {
        results.add(
            "ours against Debezium tuned: p99 at 200/s",
            format!("{:.0} ms", a.p99),
            format!("{:.0} ms", b.p99),
            format!("no higher: {}", met(a.p99 <= b.p99)),
        );
    }
    let total = |f: &Figures| f.relay_cpu_ms + f.postgres_cpu_ms;
    results.add(
        "ours against Debezium tuned: CPU per 1000",
        format!("{:.0} ms", total(&ours)),
        format!("{:.0} ms", total(&best)),
        format!(
            "{:.2} x (relay and PostgreSQL)",
            total(&ours) / total(&best)
        ),
    );
    // What each setting of the tuning bought: the backlog without it.
    for what in TUNED.iter().map(|(name, _)| *name).chain(["-Xmx512m"]) {
        let c = Contender::Debezium(Tuning::tuned_without(what));
        let f = run(&install, &kafka, &c, Phases::Backlog).await;
        results.add(
            &format!("Debezium tuned, less {what}: backlog"),
            format!("{:.0} ev/s, {:.0} MB", f.backlog_rate, f.peak_rss_mb),
            format!("tuned: {:.0} ev/s", best.backlog_rate),
            format!(
                "the setting bought {:+.0} %",
                (best.backlog_rate / f.backlog_rate - 1.0) * 100.0
            ),
        );
    }
}

/// One row that sets ours beside a baseline: both figures, their ratio, and whether the ratio
/// meets its bound (said as the row prints it).
fn compare(
    results: &mut Results,
    what: &str,
    (ours, baseline): (String, String),
    ratio: f64,
    (bound, within): (&str, bool),
) {
    results.add(
        what,
        ours,
        baseline,
        format!("{ratio:.2} x, {bound}: {}", met(within)),
    );
}

/// The WAL mode against raw produce, polling and Debezium at its best, from the same run.
fn wal_targets(results: &mut Results, wal: &Figures, polling: &Figures, best: &Figures, raw: f64) {
    let total = |f: &Figures| f.relay_cpu_ms + f.postgres_cpu_ms;
    let rate = |f: &Figures| format!("{:.0} ev/s", f.backlog_rate);
    let cpu = |f: &Figures| format!("{:.0} ms", total(f));
    compare(
        results,
        "WAL mode: backlog against raw produce",
        (rate(wal), format!("{raw:.0} msg/s")),
        wal.backlog_rate / raw,
        (
            &format!(">= {TARGET_WAL_RAW_SHARE}"),
            wal.backlog_rate >= TARGET_WAL_RAW_SHARE * raw,
        ),
    );
    compare(
        results,
        "WAL mode: backlog against Debezium tuned",
        (rate(wal), rate(best)),
        wal.backlog_rate / best.backlog_rate,
        (">= 1", wal.backlog_rate >= best.backlog_rate),
    );
    compare(
        results,
        "WAL mode: CPU per 1000 against polling",
        (cpu(wal), cpu(polling)),
        total(wal) / total(polling),
        (
            &format!("<= {TARGET_WAL_CPU_SHARE}"),
            total(wal) <= TARGET_WAL_CPU_SHARE * total(polling),
        ),
    );
    compare(
        results,
        "WAL mode: CPU per 1000 against Debezium tuned",
        (cpu(wal), cpu(best)),
        total(wal) / total(best),
        ("< 1", total(wal) < total(best)),
    );
    results.add(
        "WAL mode: peak RSS",
        format!("{:.0} MB", wal.peak_rss_mb),
        format!("Debezium tuned: {:.0} MB", best.peak_rss_mb),
        format!(
            "< {TARGET_WAL_RSS_MB} MB: {}",
            met(wal.peak_rss_mb < TARGET_WAL_RSS_MB)
        ),
    );
    results.add(
        "WAL mode: idle CPU",
        format!("{:.1} % of a core", wal.idle_cpu.0 * 100.0),
        format!("Debezium tuned: {:.1} %", best.idle_cpu.0 * 100.0),
        format!(
            "< {:.0} %: {}",
            TARGET_WAL_IDLE * 100.0,
            met(wal.idle_cpu.0 < TARGET_WAL_IDLE)
        ),
    );
    if let (Some(w), Some(p)) = (wal.latency, polling.latency) {
        results.add(
            "WAL mode: p99 commit -> consumer at 200/s, against polling",
            format!("{:.0} ms", w.summary.p99),
            format!("{:.0} ms", p.summary.p99),
            format!("{:.2} x", w.summary.p99 / p.summary.p99),
        );
    }
}

fn report(results: &mut Results, name: &str, f: &Figures, raw_rate: f64, raw_cpu_ms: f64) {
    results.add(
        &format!("{name}: backlog {BACKLOG}"),
        format!("{:.0} ev/s", f.backlog_rate),
        format!("{raw_rate:.0} msg/s raw"),
        format!("ratio {:.2}", f.backlog_rate / raw_rate),
    );
    results.add(
        &format!("{name}: streaming {STREAM}"),
        format!("{:.0} ev/s", f.stream_rate),
        format!("{raw_rate:.0} msg/s raw"),
        format!("ratio {:.2}", f.stream_rate / raw_rate),
    );
    results.add(
        &format!("{name}: CPU per 1000 (backlog)"),
        format!(
            "{:.0} ms relay + {:.0} ms PostgreSQL",
            f.relay_cpu_ms, f.postgres_cpu_ms
        ),
        format!("raw producer: {raw_cpu_ms:.0} ms"),
        format!(
            "{:.1} x the raw producer",
            (f.relay_cpu_ms + f.postgres_cpu_ms) / raw_cpu_ms
        ),
    );
    results.add(
        &format!("{name}: peak RSS"),
        format!("{:.0} MB", f.peak_rss_mb),
        "-".into(),
        "-".into(),
    );
    if let Some(l) = f.latency {
        results.add(
            &format!("{name}: commit -> consumer"),
            l.summary.to_string(),
            format!("{LATENCY_RATE} rows/s for {LATENCY_SECONDS} s"),
            format!("slowest 1 % committed {:.2}-{:.2} s in", l.tail.0, l.tail.1),
        );
    }
    results.add(
        &format!("{name}: idle CPU"),
        format!(
            "{:.1} % of a core relay + {:.1} % PostgreSQL",
            f.idle_cpu.0 * 100.0,
            f.idle_cpu.1 * 100.0
        ),
        format!(
            "{IDLE_SECONDS} s, {} s after the last write",
            IDLE_SETTLE.as_secs()
        ),
        "-".into(),
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phases {
    All,
    Backlog,
}

/// One relay on a fresh database and topic through the phases.
async fn run(install: &Install, kafka: &KafkaConfig, who: &Contender, phases: Phases) -> Figures {
    eprintln!("bench: {}", who.name());
    let db = Database::fresh(&install.admin_url).await;
    let aggregate = format!("bench-{}", Uuid::new_v4().simple());
    let topic = kafka.topic_for(&aggregate);
    outbox::kafka::ensure_topics(kafka, std::slice::from_ref(&topic))
        .await
        .expect("topic");
    let counter = TopicCount::new(kafka, &topic);
    let relay = Relay::start(install, kafka, &db, who).await;
    let postgres = Watched::Tree(db.postmaster_pid().await);

    db.insert(&aggregate, WARM_UP).await;
    counter.wait_for(WARM_UP).await;

    let mut f = Figures::default();
    // The clock starts once the backlog is committed: no relay can read it before.
    db.insert(&aggregate, BACKLOG).await;
    let meter = CpuMeter::start(vec![
        ("relay".into(), Watched::Pid(relay.pid)),
        ("postgres".into(), postgres.clone()),
    ]);
    let started = Instant::now();
    counter.wait_for(WARM_UP + BACKLOG).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = meter.stop();
    f.backlog_rate = BACKLOG as f64 / elapsed;
    let per_1000 = |share: f64| share * elapsed * 1000.0 * 1000.0 / BACKLOG as f64;
    f.relay_cpu_ms = per_1000(cpu[0].1);
    f.postgres_cpu_ms = cpu.get(1).map_or(0.0, |c| per_1000(c.1));

    if phases == Phases::All {
        let started = Instant::now();
        db.stream(&aggregate, STREAM).await;
        counter.wait_for(WARM_UP + BACKLOG + STREAM).await;
        f.stream_rate = STREAM as f64 / started.elapsed().as_secs_f64();
        f.latency = Some(latency(kafka, &db, &aggregate, &topic).await);
        tokio::time::sleep(IDLE_SETTLE).await;
        let meter = CpuMeter::start(vec![
            ("relay".into(), Watched::Pid(relay.pid)),
            ("postgres".into(), postgres),
        ]);
        tokio::time::sleep(Duration::from_secs(IDLE_SECONDS)).await;
        let idle = meter.stop();
        f.idle_cpu = (
            idle.first().map_or(0.0, |c| c.1),
            idle.get(1).map_or(0.0, |c| c.1),
        );
    }
    f.peak_rss_mb = peak_rss_kb(relay.pid) as f64 / 1024.0;
    relay.stop().await;
    db.drop().await;
    f
}

/// A fresh database with the outbox table, on the logical cluster.
struct Database {
    admin_url: String,
    name: String,
    url: SecretString,
    pool: PgPool,
}

impl Database {
    async fn fresh(admin_url: &str) -> Self {
        let name = format!("outbox_test_versus_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(admin_url)
            .await
            .expect("the logical cluster (scripts/stack bench starts it)");
        sqlx::query(&format!("create database {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
        let url = SecretString::from(format!("{base}/{name}"));
        let pool = outbox::db::connect(&url, STREAM_WRITERS as u32 + 2)
            .await
            .expect("connect");
        outbox::db::migrate_outbox(&pool).await.expect("migrate");
        Self {
            admin_url: admin_url.to_owned(),
            name,
            url,
            pool,
        }
    }

    /// The cluster's postmaster, whose children are every PostgreSQL process of it.
    async fn postmaster_pid(&self) -> u32 {
        let dir: String = sqlx::query_scalar("select current_setting('data_directory')")
            .fetch_one(&self.pool)
            .await
            .expect("data_directory");
        let pidfile = std::fs::read_to_string(format!("{dir}/postmaster.pid"))
            .expect("postmaster.pid (run the bench on the database's machine, as root)");
        pidfile
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("a pid in postmaster.pid")
    }

    /// `n` rows of about 300 bytes over 10,000 aggregates, in one transaction, then the
    /// statistics brought up to date (as autovacuum does within a minute: before that, our
    /// claim is planned as a scan of every pending row) and the relay woken.
    async fn insert(&self, aggregate: &str, n: usize) {
        sqlx::query(
            "insert into outbox (id, aggregatetype, aggregateid, type, payload)
             select gen_random_uuid(), $1, 'agg-' || (i % 10000), 'Benched',
                    jsonb_build_object('n', i, 'padding', repeat('x', 270))
             from generate_series(1, $2) as i",
        )
        .bind(aggregate)
        .bind(n as i64)
        .execute(&self.pool)
        .await
        .expect("insert");
        sqlx::query("analyze outbox")
            .execute(&self.pool)
            .await
            .expect("analyze");
        outbox::wake_relay(&self.pool).await;
    }

    /// `n` rows from several writers, in small transactions, as fast as they go.
    async fn stream(&self, aggregate: &str, n: usize) {
        let per_writer = n / STREAM_WRITERS;
        let writers = (0..STREAM_WRITERS).map(|w| {
            let (pool, aggregate) = (self.pool.clone(), aggregate.to_owned());
            tokio::spawn(async move {
                for start in (0..per_writer).step_by(STREAM_TX_ROWS) {
                    let mut tx = pool.begin().await.expect("begin");
                    sqlx::query(
                        "insert into outbox (id, aggregatetype, aggregateid, type, payload)
                         select gen_random_uuid(), $1, 'agg-' || ((i + $3) % 10000), 'Benched',
                                jsonb_build_object('n', i, 'padding', repeat('x', 270))
                         from generate_series($2, $2 + $4 - 1) as i",
                    )
                    .bind(&aggregate)
                    .bind(start as i64)
                    .bind((w * per_writer) as i64)
                    .bind(STREAM_TX_ROWS as i64)
                    .execute(&mut *tx)
                    .await
                    .expect("insert");
                    outbox::Writer::default()
                        .commit(tx, &pool)
                        .await
                        .expect("commit");
                }
            })
        });
        for w in writers.collect::<Vec<_>>() {
            w.await.expect("writer");
        }
    }

    async fn drop(self) {
        self.pool.close().await;
        if let Ok(mut admin) = PgConnection::connect(&self.admin_url).await {
            // Dropping the database drops the slot Debezium made in it, once Debezium is gone.
            let _ = sqlx::query(&format!(
                "drop database if exists \"{}\" with (force)",
                self.name
            ))
            .execute(&mut admin)
            .await;
        }
    }
}

/// A relay process on one database.
struct Relay {
    child: Child,
    pid: u32,
    slot: Option<(String, String)>,
    _state: Option<PathBuf>,
}

impl Relay {
    async fn start(install: &Install, kafka: &KafkaConfig, db: &Database, who: &Contender) -> Self {
        let port = free_port();
        match who {
            Contender::Ours | Contender::OursWal => {
                // Slot names are the cluster's: each run's own prefix.
                let prefix = format!("bench_{}", Uuid::new_v4().simple());
                let mode = if matches!(who, Contender::OursWal) {
                    "wal"
                } else {
                    "polling"
                };
                let child = spawn(
                    "outbox-processor",
                    &[
                        ("PORT", port.to_string()),
                        (
                            "OUTBOX_DATABASES",
                            format!("bench={}", db.url.expose_secret()),
                        ),
                        ("KAFKA_BROKERS", kafka.brokers.clone()),
                        ("KAFKA_TOPIC_PREFIX", String::new()),
                        ("RELAY_BATCH_SIZE", "1000".into()),
                        ("RELAY_MODE", mode.into()),
                        ("RELAY_WAL_SLOT_PREFIX", prefix.clone()),
                    ],
                );
                wait_healthy(&child, port, HEALTHY_WITHIN).await;
                let pid = child.id().expect("pid");
                let slot = matches!(who, Contender::OursWal)
                    .then(|| (db.url.expose_secret().to_owned(), format!("{prefix}_bench")));
                Self {
                    child,
                    pid,
                    slot,
                    _state: None,
                }
            }
            Contender::Debezium(tuning) => {
                let id = Uuid::new_v4().simple().to_string();
                let slot = format!("bench_{id}");
                let state = std::env::temp_dir().join(format!("bench-debezium-{id}"));
                std::fs::create_dir_all(&state).expect("state dir");
                let base = install
                    .admin_url
                    .rsplit_once('/')
                    .map_or(install.admin_url.as_str(), |(b, _)| b);
                let (host, port_pg) = host_port(base);
                let mut args: Vec<String> = tuning.jvm.iter().map(|s| s.to_string()).collect();
                args.push(format!("-Dlog4j2.configurationFile={}", install.log_config));
                args.extend([
                    "-cp".into(),
                    install.classpath.clone(),
                    "DebeziumRelay".into(),
                ]);
                for (k, v) in [
                    ("database.hostname", host.as_str()),
                    ("database.port", port_pg.as_str()),
                    ("database.user", "postgres"),
                    ("database.password", ""),
                    ("database.dbname", db.name.as_str()),
                    ("slot.name", slot.as_str()),
                    ("publication.name", slot.as_str()),
                ]
                .into_iter()
                .chain(tuning.settings.iter().copied())
                {
                    args.extend(["--set".into(), format!("{k}={v}")]);
                }
                args.push(install.connector.display().to_string());
                let child = start(
                    "debezium",
                    Launch::new("java")
                        .args(args)
                        .env("PORT", port.to_string())
                        .env("KAFKA_BROKERS", &kafka.brokers)
                        .env("DEBEZIUM_STATE_DIR", &state),
                );
                let pid = child.id().expect("pid");
                // The JVM starts, and the connector creates its slot, in 10 to 20 s.
                wait_healthy(&child, port, Duration::from_secs(120)).await;
                Self {
                    child,
                    pid,
                    slot: Some((db.url.expose_secret().to_owned(), slot)),
                    _state: Some(state),
                }
            }
        }
    }

    async fn stop(self) {
        // SIGTERM, as a deployment stops it; SIGKILL if it does not go.
        stop(self.child, Duration::from_secs(20)).await;
        if let Some((url, slot)) = &self.slot {
            if let Ok(mut conn) = PgConnection::connect(url).await {
                let _ = sqlx::query("select pg_drop_replication_slot($1)")
                    .bind(slot)
                    .execute(&mut conn)
                    .await;
            }
        }
        if let Some(state) = &self._state {
            let _ = std::fs::remove_dir_all(state);
        }
    }
}

fn host_port(base: &str) -> (String, String) {
    let authority = base.rsplit_once('@').map_or(base, |(_, a)| a);
    let authority = authority.trim_start_matches("postgres://");
    match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.to_owned()),
        None => (authority.to_owned(), "5432".to_owned()),
    }
}

/// How many messages a topic holds, from its partitions' offsets.
struct TopicCount {
    consumer: BaseConsumer,
    topic: String,
    partitions: i32,
}

impl TopicCount {
    fn new(kafka: &KafkaConfig, topic: &str) -> Self {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &kafka.brokers)
            .set("group.id", format!("bench-count-{}", Uuid::new_v4()))
            .create()
            .expect("consumer");
        Self {
            consumer,
            topic: topic.to_owned(),
            partitions: kafka.partitions,
        }
    }

    fn count(&self) -> usize {
        (0..self.partitions)
            .map(|p| {
                self.consumer
                    .fetch_watermarks(&self.topic, p, Duration::from_secs(10))
                    .map_or(0, |(low, high)| (high - low).max(0) as usize)
            })
            .sum()
    }

    async fn wait_for(&self, n: usize) {
        let started = Instant::now();
        let mut last = (0, Instant::now());
        loop {
            let now = self.count();
            if now >= n {
                return;
            }
            if now != last.0 {
                last = (now, Instant::now());
            }
            assert!(
                last.1.elapsed() < Duration::from_secs(120),
                "{}: {now} of {n} messages, and none more for 120 s ({} s in all)",
                self.topic,
                started.elapsed().as_secs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One row a transaction at LATENCY_RATE, from each commit to a consumer's receipt.
async fn latency(kafka: &KafkaConfig, db: &Database, aggregate: &str, topic: &str) -> Latency {
    let consumer: StreamConsumer =
        outbox::kafka::consumer_config(kafka, &format!("bench-{}", Uuid::new_v4().simple()))
            .create()
            .expect("consumer");
    // Only what comes after now: each partition from its end.
    let mut from_end = TopicPartitionList::new();
    for p in 0..kafka.partitions {
        from_end
            .add_partition_offset(topic, p, Offset::End)
            .expect("partition");
    }
    consumer.assign(&from_end).expect("assign");
    let received: Arc<Mutex<HashMap<Uuid, Instant>>> = Arc::default();
    let total = (LATENCY_RATE * LATENCY_SECONDS) as usize;
    let reader = {
        let received = received.clone();
        tokio::spawn(async move {
            let mut stream = consumer.stream();
            while let Some(Ok(m)) = stream.next().await {
                let id = m.headers().and_then(|h| {
                    h.iter()
                        .find(|x| x.key == outbox::envelope::header::ID)
                        .and_then(|x| x.value)
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|v| Uuid::parse_str(v.trim_matches('"')).ok())
                });
                if let Some(id) = id {
                    let mut r = received.lock().expect("lock");
                    r.entry(id).or_insert_with(Instant::now);
                    if r.len() >= total {
                        return;
                    }
                }
            }
        })
    };
    // The consumer's first fetch, before the clock starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut committed = HashMap::new();
    let clock = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / LATENCY_RATE));
    for i in 0..total {
        tick.tick().await;
        let id = Uuid::now_v7();
        let mut tx = db.pool.begin().await.expect("begin");
        sqlx::query(
            "insert into outbox (id, aggregatetype, aggregateid, type, payload)
             values ($1, $2, $3, 'Benched', jsonb_build_object('padding', repeat('x', 270)))",
        )
        .bind(id)
        .bind(aggregate)
        .bind(format!("agg-{}", i % 10_000))
        .execute(&mut *tx)
        .await
        .expect("insert");
        outbox::Writer::default()
            .commit(tx, &db.pool)
            .await
            .expect("commit");
        committed.insert(id, Instant::now());
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), reader).await;
    let received = received.lock().expect("lock");
    let events: Vec<(f64, f64)> = committed
        .iter()
        .filter_map(|(id, at)| {
            received.get(id).map(|r| {
                (
                    at.saturating_duration_since(clock).as_secs_f64(),
                    r.saturating_duration_since(*at).as_secs_f64() * 1000.0,
                )
            })
        })
        .collect();
    assert_eq!(
        events.len(),
        total,
        "{} of {total} events reached the consumer",
        events.len()
    );
    Latency::of(&events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_says_when_the_slowest_events_were_committed() {
        // 1,000 events 10 ms apart at 30 ms, but the 20 committed 5.00-5.19 s in waited 600 ms.
        let events: Vec<(f64, f64)> = (0..1000)
            .map(|i| {
                let at = f64::from(i) / 100.0;
                (
                    at,
                    if (5.0..5.195).contains(&at) {
                        600.0
                    } else {
                        30.0
                    },
                )
            })
            .collect();

        let latency = Latency::of(&events);

        assert_eq!(latency.summary.max, 600.0);
        assert_eq!(latency.summary.p99, 600.0);
        assert_eq!(latency.tail, (5.0, 5.19));
    }
}
