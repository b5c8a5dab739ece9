//! **The anti-pattern, on purpose.** `dual-write naive` places orders the way the outbox exists
//! to prevent: it commits the order, then publishes `OrderPlaced` straight to Kafka. Two writes,
//! two systems, no transaction spanning them; a process that dies between them, or a broker
//! that is down when the second one runs, loses the event while the order stays committed.
//! `dual-write report` then counts, for the orders of one customer, how many of their events
//! reached the topic.
//!
//! It is never a way to place orders: `scripts/stack dual-write` runs it against a database and
//! a topic prefix of its own, beside the real path (order-service and its outbox) under the
//! same faults, and prints both reports (docs/testing.md, "Watch the dual write lose events").
//!
//! ```text
//! dual-write naive COUNT PAUSE_MS   place COUNT orders; PAUSE_MS between commit and publish
//! dual-write report lost|none       count; exit 0 when events were lost (lost) or none were (none)
//! ```
//! Settings: `DATABASE_URL`, `KAFKA_BROKERS`, `KAFKA_TOPIC_PREFIX`, `DEMO_CUSTOMER` (whose orders),
//! `REPORT_SETTLE_MS` (how long `report none` waits for a relay to catch up, default 60000).

use service_kit::config::FromEnv;
use std::{collections::HashSet, process::ExitCode, time::Duration};

use contracts::{DomainEvent, OrderPlaced, ORDER};
use order_service::domain::{CreateOrderRequest, NewOrder};
use outbox::{envelope::EventHeaders, kafka::KafkaConfig};
use rdkafka::producer::{FutureProducer, FutureRecord};
use service_kit::config;
use sqlx::PgPool;
use uuid::Uuid;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// How long the naive publish may take before it gives up (the broker is down).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = match args.as_slice() {
        ["naive", count, pause_ms] => match (count.parse(), pause_ms.parse()) {
            (Ok(count), Ok(pause_ms)) => naive(count, Duration::from_millis(pause_ms)).await,
            _ => Err("COUNT and PAUSE_MS are numbers".into()),
        },
        ["report", "lost"] => report(Expect::Lost).await,
        ["report", "none"] => report(Expect::NoneLost).await,
        _ => Err("usage: dual-write naive COUNT PAUSE_MS | dual-write report lost|none".into()),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("dual-write: {error}");
            ExitCode::from(2)
        }
    }
}

struct Settings {
    database: PgPool,
    kafka: KafkaConfig,
    customer: String,
}

async fn settings() -> Result<Settings, Error> {
    let url = config::secret(
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/dual_write",
    );
    let database = outbox::db::connect(&url, 2).await?;
    outbox::db::migrate(&database, &order_service::db::MIGRATOR).await?;
    Ok(Settings {
        database,
        kafka: KafkaConfig::from_env()?,
        customer: config::string("DEMO_CUSTOMER", "dual-write"),
    })
}

/// COUNT orders, each committed and then published, with `pause` between the two writes: the
/// work a handler does there (a response to build, a log line, a slow network), and the window
/// in which a crash loses the event.
async fn naive(count: u32, pause: Duration) -> Result<bool, Error> {
    let s = settings().await?;
    let topic = s.kafka.topic_for(ORDER);
    let created = outbox::kafka::ensure_topics(&s.kafka, std::slice::from_ref(&topic));
    match tokio::time::timeout(PUBLISH_TIMEOUT, created).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => println!("topic {topic} not created ({error}); publishing anyway"),
        Err(_) => println!("topic {topic} not created (no answer); publishing anyway"),
    }
    let mut producer = outbox::kafka::producer_config(&s.kafka);
    producer.set(
        "message.timeout.ms",
        PUBLISH_TIMEOUT.as_millis().to_string(),
    );
    let producer: FutureProducer = producer.create()?;
    for _ in 0..count {
        let placed = commit_order(&s.database, &s.customer).await?;
        println!("committed {}", placed.order_id);
        // ---- the dual write: the order is committed, its event is nowhere yet ----
        tokio::time::sleep(pause).await;
        match publish(&producer, &topic, &placed).await {
            Ok(()) => println!("published {}", placed.order_id),
            // A naive service logs this and moves on: the order stays, its event is gone.
            Err(error) => println!("LOST {}: {error}", placed.order_id),
        }
    }
    Ok(true)
}

async fn commit_order(database: &PgPool, customer: &str) -> Result<OrderPlaced, Error> {
    let request: CreateOrderRequest = serde_json::from_value(serde_json::json!({
        "customer_id": customer,
        "items": [{"sku": "CABLE-USBC", "quantity": 1}],
    }))?;
    let order = NewOrder::try_from(request).map_err(|e| format!("{e:?}"))?;
    let mut tx = database.begin().await?;
    let created = order_service::db::insert_order(&mut tx, &order, None)
        .await?
        .ok_or("no idempotency key, so no conflict")?;
    tx.commit().await?;
    Ok(created.placed())
}

async fn publish(
    producer: &FutureProducer,
    topic: &str,
    placed: &OrderPlaced,
) -> Result<(), Error> {
    let id = Uuid::now_v7().to_string();
    let key = placed.aggregate_id();
    let payload = serde_json::to_string(placed)?;
    let version = OrderPlaced::SCHEMA_VERSION.to_string();
    let headers = EventHeaders {
        id: &id,
        event_type: OrderPlaced::TYPE,
        aggregate_type: OrderPlaced::AGGREGATE_TYPE,
        aggregate_id: &key,
        schema_version: &version,
        traceparent: None,
    };
    let record = FutureRecord::to(topic)
        .key(&key)
        .payload(&payload)
        .headers(outbox::kafka::record_headers(&headers));
    producer
        .send(record, PUBLISH_TIMEOUT)
        .await
        .map(|_| ())
        .map_err(|(error, _)| error.into())
}

#[derive(Clone, Copy)]
enum Expect {
    /// The naive path under a fault: at least one event lost.
    Lost,
    /// The outbox under the same fault: none, once the relay has caught up.
    NoneLost,
}

/// Counts the customer's orders, and how many of them have events on the order topic (its key
/// is the order id). With `Expect::NoneLost` it waits up to `REPORT_SETTLE_MS` for them.
async fn report(expect: Expect) -> Result<bool, Error> {
    let s = settings().await?;
    let settle = config::millis("REPORT_SETTLE_MS", Duration::from_secs(60))?;
    let deadline = tokio::time::Instant::now() + settle;
    loop {
        let counts = count(&s).await?;
        let settled = counts.lost == 0 || tokio::time::Instant::now() >= deadline;
        if matches!(expect, Expect::Lost) || settled {
            println!("  customer                 {}", s.customer);
            println!("  topic                    {}", s.kafka.topic_for(ORDER));
            println!("  orders committed         {}", counts.orders);
            println!("  events on the topic      {}", counts.published);
            println!("  events lost              {}", counts.lost);
            println!("  orders PENDING for good  {}", counts.stuck);
            return Ok(match expect {
                Expect::Lost => counts.lost > 0,
                Expect::NoneLost => counts.lost == 0,
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

struct Counts {
    orders: usize,
    published: usize,
    lost: usize,
    /// Lost and still PENDING: no event will ever come to move them on.
    stuck: usize,
}

async fn count(s: &Settings) -> Result<Counts, Error> {
    let orders: Vec<(Uuid, String)> =
        sqlx::query_as("select id, status from orders where customer_id = $1")
            .bind(&s.customer)
            .fetch_all(&s.database)
            .await?;
    let kafka = s.kafka.clone();
    let topic = s.kafka.topic_for(ORDER);
    let keys: HashSet<Vec<u8>> =
        tokio::task::spawn_blocking(move || verify::read_all(&kafka, &topic))
            .await??
            .into_iter()
            .map(|delivery| delivery.key)
            .collect();
    let lost: Vec<&(Uuid, String)> = orders
        .iter()
        .filter(|(id, _)| !keys.contains(id.to_string().as_bytes()))
        .collect();
    Ok(Counts {
        orders: orders.len(),
        published: orders.len() - lost.len(),
        lost: lost.len(),
        stuck: lost
            .iter()
            .filter(|(_, status)| status == "PENDING")
            .count(),
    })
}
