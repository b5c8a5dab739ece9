//! Relay throughput: a backlog drained by 1, 2 or 4 relay processes, against producing the
//! same messages straight to the broker, and what each costs in CPU per 1,000 events.

use std::time::{Duration, Instant};

use futures::{stream::FuturesUnordered, StreamExt};
use outbox::envelope::EventHeaders;
use outbox::kafka::KafkaConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    process::{cpu_time, free_port, peak_rss_kb, spawn},
    stats::{median, met, spread},
    Results,
};

const BACKLOG: usize = 100_000;
/// Runs of the single relay (and of its baseline) whose median is reported.
const TRIALS: usize = 3;
/// Sends the raw-produce baseline keeps in flight.
const RAW_WINDOW: usize = 10_000;
/// The single relay's target, as a share of raw produce on the same broker.
const TARGET_RATIO: f64 = 0.85;

/// What one run moved, how fast, and at what cost.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Events (or messages) per second.
    pub rate: f64,
    /// CPU time of the publishing process(es) per 1,000 events.
    pub cpu_per_1000: Duration,
    /// The largest peak RSS among the processes (kB); 0 for the in-process baseline.
    pub peak_rss_kb: u64,
}

pub async fn relay_throughput(results: &mut Results, instances: &[usize]) {
    let kafka = testkit::kafka();
    // The single relay, the one with a target, runs TRIALS times, each right after a baseline
    // run of its own: one trial on a shared 2-core machine can be off by a fifth (a checkpoint,
    // a build finishing), and pairing makes drift hit a relay run and its baseline alike.
    let trials = if instances.contains(&1) { TRIALS } else { 1 };
    let mut baselines = Vec::new();
    let mut singles = Vec::new();
    for _ in 0..trials {
        baselines.push(raw_produce(&kafka, BACKLOG).await);
        if instances.contains(&1) {
            singles.push(relay_run(&kafka, 1).await);
        }
    }
    let raw_rates: Vec<f64> = baselines.iter().map(|t| t.rate).collect();
    let baseline = median(&raw_rates);
    let raw_cpu = median_cpu(&baselines);
    results.add(
        &format!("raw produce, {BACKLOG} x 300 B (baseline)"),
        format!("{baseline:.0} msg/s{}", spread(&raw_rates, 0)),
        "-".into(),
        "-".into(),
    );
    for &n in instances {
        let (rate, ratio, run, note) = if n == 1 {
            let rates: Vec<f64> = singles.iter().map(|t| t.rate).collect();
            let ratios: Vec<f64> = rates.iter().zip(&raw_rates).map(|(r, b)| r / b).collect();
            let run = Throughput {
                rate: median(&rates),
                cpu_per_1000: median_cpu(&singles),
                peak_rss_kb: singles.iter().map(|t| t.peak_rss_kb).max().unwrap_or(0),
            };
            (run.rate, median(&ratios), run, spread(&ratios, 2))
        } else {
            let run = relay_run(&kafka, n).await;
            (run.rate, run.rate / baseline, run, String::new())
        };
        let verdict = if n == 1 {
            format!(
                "ratio {ratio:.2}{note}, >= {TARGET_RATIO:.2}: {}",
                met(ratio >= TARGET_RATIO)
            )
        } else {
            format!("ratio {ratio:.2}")
        };
        results.add(
            &format!("relay, {n} instance(s), {BACKLOG} rows"),
            format!("{rate:.0} ev/s"),
            format!("{baseline:.0} msg/s raw"),
            verdict,
        );
        results.add(
            &format!("relay CPU per 1000 events, {n} instance(s)"),
            format!("{:.0} ms", run.cpu_per_1000.as_secs_f64() * 1000.0),
            format!("raw producer: {:.0} ms", raw_cpu.as_secs_f64() * 1000.0),
            format!(
                "{:.1} x the raw producer",
                run.cpu_per_1000.as_secs_f64() / raw_cpu.as_secs_f64()
            ),
        );
        let mb = run.peak_rss_kb as f64 / 1024.0;
        results.add(
            &format!("relay peak RSS, {n} instance(s)"),
            format!("{mb:.1} MB (largest instance)"),
            "-".into(),
            format!("< 100 MB: {}", met(mb < 100.0)),
        );
    }
}

fn median_cpu(runs: &[Throughput]) -> Duration {
    let secs: Vec<f64> = runs.iter().map(|t| t.cpu_per_1000.as_secs_f64()).collect();
    Duration::from_secs_f64(median(&secs))
}

/// One drain of a fresh backlog by `n` relays.
async fn relay_run(kafka: &KafkaConfig, n: usize) -> Throughput {
    let (url, pool) = backlog(BACKLOG).await;
    // The topic exists before the clock starts, as the baseline's does and as a production
    // cluster's topics do (Compose creates them first): creating it took the relay's first
    // batches a second, a tenth of a run.
    outbox::kafka::ensure_topics(kafka, &[kafka.topic_for("bench")])
        .await
        .expect("topic");
    let run = drain_with_relays(&url, &pool, kafka, n).await;
    pool.close().await;
    testkit::drop_database(&url).await;
    run
}

/// A fresh outbox holding `n` unpublished rows of about 300 bytes over 10,000 aggregates.
async fn backlog(n: usize) -> (SecretString, PgPool) {
    let (url, pool) = testkit::fresh_outbox_database().await;
    sqlx::query(
        "insert into outbox (id, aggregatetype, aggregateid, type, payload)
         select gen_random_uuid(), 'bench', 'agg-' || (i % 10000), 'Benched',
                jsonb_build_object('n', i, 'padding', repeat('x', 270))
         from generate_series(1, $1) as i",
    )
    .bind(n as i64)
    .execute(&pool)
    .await
    .expect("backlog");
    // A table that grew by 100,000 rows at once has stale statistics until autovacuum's
    // analyze runs (within a minute in a live system); without them the claim query is
    // planned as a scan of every pending row. Measure the steady state, not that minute.
    sqlx::query("analyze outbox")
        .execute(&pool)
        .await
        .expect("analyze");
    (url, pool)
}

/// Starts `n` relay processes on the backlog and waits until every row is published.
async fn drain_with_relays(
    url: &SecretString,
    pool: &PgPool,
    kafka: &KafkaConfig,
    n: usize,
) -> Throughput {
    let started = Instant::now();
    let mut relays = Vec::new();
    for _ in 0..n {
        let port = free_port();
        relays.push(spawn(
            "outbox-processor",
            &[
                ("PORT", port.to_string()),
                ("OUTBOX_DATABASES", format!("bench={}", url.expose_secret())),
                ("KAFKA_BROKERS", kafka.brokers.clone()),
                ("KAFKA_TOPIC_PREFIX", kafka.topic_prefix.clone()),
                (
                    "RELAY_BATCH_SIZE",
                    std::env::var("RELAY_BATCH_SIZE").unwrap_or_else(|_| "1000".into()),
                ),
            ],
        ));
    }
    // Is anything left? Asked so that the partial index of pending rows answers it: a
    // `count(*)` scanned the whole table 20 times a second and took CPU from the relay.
    loop {
        let left: bool = sqlx::query_scalar(
            "select exists (select 1 from outbox
                            where published_at is null and skipped_at is null)",
        )
        .fetch_one(pool)
        .await
        .expect("pending rows");
        if !left {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let pids: Vec<u32> = relays.iter().filter_map(|c| c.id()).collect();
    // Everything the relays did: start-up, claims, sends and marks.
    let cpu: Duration = pids.iter().filter_map(|pid| cpu_time(*pid)).sum();
    Throughput {
        rate: BACKLOG as f64 / elapsed.as_secs_f64(),
        cpu_per_1000: cpu.mul_f64(1000.0 / BACKLOG as f64),
        peak_rss_kb: pids.into_iter().map(peak_rss_kb).max().unwrap_or(0),
    }
}

/// The baseline: the same number and size of messages, same producer settings and headers,
/// produced straight to the broker with [`RAW_WINDOW`] sends in flight at all times. Its CPU
/// is this process's during the run (the producer's threads and the tasks feeding it; the
/// benchmark does nothing else meanwhile).
pub async fn raw_produce(kafka: &KafkaConfig, n: usize) -> Throughput {
    let topic = kafka.topic_for("raw");
    outbox::kafka::ensure_topics(kafka, std::slice::from_ref(&topic))
        .await
        .expect("topic");
    let producer: FutureProducer = outbox::kafka::producer_config(kafka)
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let payload = serde_json::json!({"n": 0, "padding": "x".repeat(270)}).to_string();
    let own_cpu = || cpu_time(std::process::id()).unwrap_or_default();
    let (started, cpu_before) = (Instant::now(), own_cpu());
    let send = |i: usize| {
        let (producer, topic, payload) = (producer.clone(), topic.clone(), payload.clone());
        async move {
            let id = Uuid::now_v7().to_string();
            let key = format!("agg-{}", i % 10_000);
            // The headers the relay sends (no traceparent: the backlog rows have none).
            let headers = outbox::kafka::record_headers(&EventHeaders {
                id: &id,
                event_type: "Benched",
                aggregate_type: "bench",
                aggregate_id: &key,
                schema_version: "1",
                traceparent: None,
            });
            producer
                .send(
                    FutureRecord::to(&topic)
                        .key(&key)
                        .payload(&payload)
                        .headers(headers),
                    Duration::from_secs(30),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        }
    };
    // A window of sends in flight: far more than a relay batch, so the producer always has full
    // batches to send, yet few enough that none waits past `message.timeout.ms` in the queue.
    let mut inflight = FuturesUnordered::new();
    let mut next = 0;
    while next < n || !inflight.is_empty() {
        while next < n && inflight.len() < RAW_WINDOW {
            inflight.push(send(next));
            next += 1;
        }
        if let Some(result) = inflight.next().await {
            result.expect("raw produce");
        }
    }
    let cpu = own_cpu() - cpu_before;
    Throughput {
        rate: n as f64 / started.elapsed().as_secs_f64(),
        cpu_per_1000: cpu.mul_f64(1000.0 / n as f64),
        peak_rss_kb: 0,
    }
}
