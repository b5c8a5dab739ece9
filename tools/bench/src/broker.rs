//! The broker under the system, measured alone with the services' client settings: how long a
//! consumer takes to join its group, how long a dead member's partitions take to move to the
//! survivor and to be shared again when it returns, and what a fetch wait buys in latency
//! against what it costs the broker in CPU while nothing happens.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use outbox::kafka::KafkaConfig;
use rdkafka::{
    consumer::{Consumer, StreamConsumer},
    producer::FutureRecord,
    Message,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use uuid::Uuid;

use crate::{
    process::{servers, CpuMeter},
    stats::Summary,
    Results,
};

/// The fetch waits compared (ms).
const WAITS: [u32; 5] = [10, 25, 50, 100, 250];
/// Idle consumers while the broker's idle CPU is measured: one per consumer of the local stack
/// (inventory, invoice and order-service each consume one topic of three partitions).
const IDLE_CONSUMERS: usize = 3;
const IDLE_SECONDS: u64 = 10;
const HOP_RATE: u64 = 200;
const HOP_SECONDS: u64 = 5;

pub async fn broker(results: &mut Results) {
    let kafka = testkit::kafka();
    let join = join_time(&kafka).await;
    results.add(
        "broker: group join, one new member",
        format!("{:.1} s", join.as_secs_f64()),
        "subscribe to first assignment".into(),
        "-".into(),
    );
    let failover = failover(&kafka).await;
    let seconds = |d: Option<Duration>| match d {
        Some(d) => format!("{:.1} s", d.as_secs_f64()),
        None => format!("never (watched {} s)", FAILOVER_WATCH.as_secs()),
    };
    results.add(
        "broker: a member SIGKILLed, survivor takes over",
        seconds(failover.takeover),
        format!("session.timeout.ms={}", outbox::kafka::SESSION_TIMEOUT_MS),
        "-".into(),
    );
    results.add(
        "broker: the member restarted, partitions shared",
        seconds(failover.shared_again),
        "start to first assignment".into(),
        "-".into(),
    );
    for wait in WAITS {
        let kafka = KafkaConfig {
            fetch_wait_ms: wait,
            ..testkit::kafka()
        };
        let idle = idle_broker_cpu(&kafka).await;
        let hop = hop(&kafka, HOP_RATE, HOP_SECONDS).await;
        results.add(
            &format!("broker hop, fetch.wait.max.ms={wait}"),
            hop.to_string(),
            match idle {
                Some(cpu) => format!(
                    "broker CPU, {IDLE_CONSUMERS} idle consumers: {:.0} %",
                    cpu * 100.0
                ),
                None => "broker CPU: not on this machine".into(),
            },
            "-".into(),
        );
    }
}

/// The floor under any event's latency: one message through the broker, from the producer's
/// send to a consumer with the services' settings, at a steady rate and with the relay's
/// producer settings. An order reaches inventory in one such hop; the invoice in three.
pub async fn hop(kafka: &KafkaConfig, rate: u64, seconds: u64) -> Summary {
    let (topic, consumer) = subscribed(kafka, "hop").await;
    let producer = outbox::kafka::producer(kafka).expect("producer");
    let total = (rate * seconds) as usize;
    let receiving = consumer.clone();
    let receiver = tokio::spawn(async move {
        let mut ms = Vec::with_capacity(total);
        while ms.len() < total {
            let Ok(Ok(message)) =
                tokio::time::timeout(Duration::from_secs(30), receiving.recv()).await
            else {
                break;
            };
            let sent = message
                .payload()
                .and_then(|p| std::str::from_utf8(p).ok())
                .and_then(|p| p.parse::<i64>().ok());
            if let Some(sent) = sent {
                ms.push((chrono::Utc::now().timestamp_micros() - sent) as f64 / 1000.0);
            }
        }
        ms
    });
    // The clock starts once the consumer owns its partitions, not while it is joining.
    wait_for_assignment(&consumer, Duration::from_secs(60)).await;
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut sends = Vec::with_capacity(total);
    for i in 0..total {
        ticker.tick().await;
        let (producer, topic) = (producer.clone(), topic.clone());
        sends.push(tokio::spawn(async move {
            let key = format!("agg-{i}");
            let sent = chrono::Utc::now().timestamp_micros().to_string();
            let record = FutureRecord::to(&topic).key(&key).payload(&sent);
            producer.send(record, Duration::from_secs(10)).await.is_ok()
        }));
    }
    for send in sends {
        let _ = send.await;
    }
    Summary::of(receiver.await.expect("receiver"))
}

/// A new topic named after `what`, and a consumer with the services' settings, alone in a
/// new group, subscribed to it.
async fn subscribed(kafka: &KafkaConfig, what: &str) -> (String, Arc<StreamConsumer>) {
    let topic = kafka.topic_for(&format!("{what}-{}", Uuid::new_v4().simple()));
    outbox::kafka::ensure_topics(kafka, std::slice::from_ref(&topic))
        .await
        .expect("topic");
    let consumer: StreamConsumer =
        outbox::kafka::consumer_config(kafka, &format!("bench-{}", Uuid::new_v4().simple()))
            .create()
            .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    (topic, Arc::new(consumer))
}

/// Waits until `consumer` (polled by another task) owns at least one partition.
async fn wait_for_assignment(consumer: &StreamConsumer, timeout: Duration) -> Duration {
    let started = Instant::now();
    testkit::eventually(timeout, || async {
        consumer
            .assignment()
            .is_ok_and(|a| a.count() > 0)
            .then_some(())
    })
    .await
    .expect("the consumer got partitions");
    started.elapsed()
}

/// From `subscribe` to the first assignment of a new group's only member.
async fn join_time(kafka: &KafkaConfig) -> Duration {
    let topic = kafka.topic_for("join");
    outbox::kafka::ensure_topics(kafka, std::slice::from_ref(&topic))
        .await
        .expect("topic");
    let consumer: StreamConsumer = outbox::kafka::consumer_config(kafka, "bench-join")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let consumer = Arc::new(consumer);
    let polling = consumer.clone();
    let poller = tokio::spawn(async move {
        loop {
            let _ = polling.recv().await;
        }
    });
    let took = wait_for_assignment(&consumer, Duration::from_secs(60)).await;
    poller.abort();
    took
}

/// How a group reacts to losing a member and getting it back.
struct Failover {
    /// From the SIGKILL until the survivor owns every partition; `None`: not within
    /// [`FAILOVER_WATCH`].
    takeover: Option<Duration>,
    /// From the restart until the partitions are shared by both again.
    shared_again: Option<Duration>,
}

/// How long a failover step is watched before it counts as never happening.
const FAILOVER_WATCH: Duration = Duration::from_secs(60);

/// Two member processes in one group; one is SIGKILLed, then started again.
async fn failover(kafka: &KafkaConfig) -> Failover {
    let topic = kafka.topic_for("failover");
    outbox::kafka::ensure_topics(kafka, std::slice::from_ref(&topic))
        .await
        .expect("topic");
    let group = format!("bench-failover-{}", Uuid::new_v4().simple());
    let owned = Arc::new(Mutex::new([0usize; 2]));
    let (mut first, _a) = member(&topic, &group, 0, owned.clone());
    let (_second, _b) = member(&topic, &group, 1, owned.clone());
    let all = kafka.partitions as usize;
    let shared = move |[a, b]: [usize; 2]| a > 0 && b > 0 && a + b == all;
    wait_shares(&owned, shared)
        .await
        .expect("two members of a new group share its partitions");
    first.start_kill().expect("SIGKILL the first member");
    let takeover = wait_shares(&owned, |[_, b]| b == all).await;
    owned.lock().expect("not poisoned")[0] = 0;
    let (_again, _c) = member(&topic, &group, 0, owned.clone());
    let shared_again = wait_shares(&owned, shared).await;
    Failover {
        takeover,
        shared_again,
    }
}

/// Waits until the members' shares satisfy `done`: how long that took, or `None` after
/// [`FAILOVER_WATCH`].
async fn wait_shares(
    owned: &Mutex<[usize; 2]>,
    done: impl Fn([usize; 2]) -> bool,
) -> Option<Duration> {
    let started = Instant::now();
    let shares = || *owned.lock().expect("not poisoned");
    testkit::eventually(FAILOVER_WATCH, || async { done(shares()).then_some(()) })
        .await
        .map(|()| started.elapsed())
}

/// Starts `bench member` as a child process and records, in `owned[slot]`, how many
/// partitions it says it owns. The second value reads its output until it exits.
fn member(
    topic: &str,
    group: &str,
    slot: usize,
    owned: Arc<Mutex<[usize; 2]>>,
) -> (Child, tokio::task::JoinHandle<()>) {
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .args(["member", topic, group])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn member");
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(n) = line
                .strip_prefix("owned ")
                .and_then(|n| n.parse::<usize>().ok())
            {
                owned.lock().expect("not poisoned")[slot] = n;
            }
        }
    });
    (child, reader)
}

/// `bench member <topic> <group>`: a consumer group member that prints `owned <n>` whenever
/// the number of partitions it owns changes. The failover measurement runs two of them.
pub async fn run_member(topic: &str, group: &str) {
    let kafka = testkit::kafka();
    let consumer: StreamConsumer = outbox::kafka::consumer_config(&kafka, group)
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut last = usize::MAX;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = consumer.recv() => {}
            _ = tick.tick() => {
                let owned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
                if owned != last {
                    println!("owned {owned}");
                    last = owned;
                }
            }
        }
    }
}

/// The broker's CPU (share of one core) while `IDLE_CONSUMERS` group members wait for data
/// that does not come: what the fetch wait costs when nothing happens. `None` when the broker
/// does not run on this machine.
async fn idle_broker_cpu(kafka: &KafkaConfig) -> Option<f64> {
    let mut consumers = Vec::new();
    for _ in 0..IDLE_CONSUMERS {
        consumers.push(subscribed(kafka, "idle").await.1);
    }
    let pollers: Vec<_> = consumers
        .iter()
        .map(|c| {
            let c = c.clone();
            tokio::spawn(async move {
                loop {
                    let _ = c.recv().await;
                }
            })
        })
        .collect();
    for c in &consumers {
        wait_for_assignment(c, Duration::from_secs(60)).await;
    }
    let broker = servers().into_iter().take(1).collect();
    let meter = CpuMeter::start(broker);
    tokio::time::sleep(Duration::from_secs(IDLE_SECONDS)).await;
    let cpu = meter.stop().into_iter().next().map(|(_, share)| share);
    for p in pollers {
        p.abort();
    }
    cpu
}
