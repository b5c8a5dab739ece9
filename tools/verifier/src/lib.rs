//! The verifier: reads every database and topic of the system and checks, after the fact,
//! that no event was lost and none was applied twice.
//!
//! It is what the failure lab and the chaos demo end with. The invariants:
//! 1. every order has exactly one `OrderPlaced`, applied by inventory exactly once (one inbox
//!    record, one answer: `StockReserved` or `StockRejected`). An event counts as written when
//!    its outbox row or its message exists: a writer may delete each row right after its insert
//!    for Debezium (`OUTBOX_REMOVE_AFTER_INSERT`), so the topic can be the only trace of it;
//! 2. the order's status matches that answer, and order-service recorded the answer once;
//! 3. every confirmed order has exactly one invoice, with the order's total; a rejected
//!    order has none; no invoice belongs to an unknown order;
//! 4. stock: `on_hand + reserved = received` and `reserved` = the sum of the reservations;
//! 5. on every topic, the first delivery of each event of one key comes in the order the
//!    events were written (event ids are UUIDv7, so written order is id order);
//!    later re-deliveries are counted as "duplicates delivered", which is allowed.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use outbox::kafka::KafkaConfig;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

mod topic;
pub use topic::{messages_with_key, placements, read_all, Delivery, Peeked, Placement};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("kafka: {topic} partition {partition} read to offset {read_to} of {end} within the time allowed")]
    Incomplete {
        topic: String,
        partition: i32,
        read_to: i64,
        end: i64,
    },
}

/// Where to look.
#[derive(Debug, Clone)]
pub struct Sources {
    pub orders: SecretString,
    pub inventory: SecretString,
    pub mongodb_uri: SecretString,
    pub mongodb_database: String,
    pub kafka: KafkaConfig,
    /// How long to wait for the system to settle (no pending order, empty outboxes).
    pub settle: Duration,
    /// Which relay publishes the outboxes: whether a published row is marked.
    pub relay: Relay,
}

/// The relay that publishes the outboxes, as far as the verifier must know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Relay {
    /// Our relay marks each row it published (`published_at`): an empty outbox is a settled one.
    #[default]
    OutboxProcessor,
    /// Debezium reads the inserts from the WAL and marks nothing, so no row ever looks
    /// published: only the orders' outcomes say the system has settled.
    Debezium,
    /// Our relay in WAL mode (`RELAY_MODE=wal`) marks no outbox row either; the events it
    /// holds after a failure wait in `outbox_wal_held`, which must be empty of pending ones.
    Wal,
}

impl std::str::FromStr for Relay {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "outbox-processor" => Ok(Self::OutboxProcessor),
            "debezium" => Ok(Self::Debezium),
            "wal" => Ok(Self::Wal),
            other => Err(format!(
                "{other:?} is none of outbox-processor, wal and debezium"
            )),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub orders: u64,
    pub confirmed: u64,
    pub rejected: u64,
    pub pending: u64,
    pub order_placed_applied: u64,
    pub invoices: u64,
    pub messages: u64,
    pub duplicates_delivered: u64,
    pub duplicates_applied: u64,
    pub dead_letters: u64,
    pub violations: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    fn violation(&mut self, text: String) {
        // A broken system can break every order; the first ones say enough.
        if self.violations.len() < 50 {
            self.violations.push(text);
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "orders                 {} ({} confirmed, {} rejected, {} pending)",
            self.orders, self.confirmed, self.rejected, self.pending
        )?;
        writeln!(f, "OrderPlaced applied    {}", self.order_placed_applied)?;
        writeln!(f, "invoices               {}", self.invoices)?;
        writeln!(f, "messages on topics     {}", self.messages)?;
        writeln!(
            f,
            "duplicates delivered   {} (allowed: at least once)",
            self.duplicates_delivered
        )?;
        writeln!(f, "duplicates applied     {}", self.duplicates_applied)?;
        writeln!(f, "dead letters           {}", self.dead_letters)?;
        if self.ok() {
            writeln!(
                f,
                "verdict                OK: nothing lost, nothing applied twice, order kept"
            )
        } else {
            writeln!(
                f,
                "verdict                {} VIOLATION(S):",
                self.violations.len()
            )?;
            for v in &self.violations {
                writeln!(f, "  - {v}")?;
            }
            Ok(())
        }
    }
}

/// Waits for the system to settle, then checks every invariant. The system is eventually
/// consistent (a consumer may still be catching up after a restart), so a failed check is
/// repeated until `settle` has passed; only then does a violation stand.
pub async fn verify(sources: &Sources) -> Result<Report, VerifyError> {
    let orders = outbox::db::connect(&sources.orders, 2).await?;
    let inventory = outbox::db::connect(&sources.inventory, 2).await?;
    let deadline = tokio::time::Instant::now() + sources.settle;
    settle(&orders, &inventory, sources.relay, sources.settle).await?;
    loop {
        let report = check(sources, &orders, &inventory).await?;
        if report.ok() || tokio::time::Instant::now() >= deadline {
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn check(
    sources: &Sources,
    orders: &PgPool,
    inventory: &PgPool,
) -> Result<Report, VerifyError> {
    let mut report = Report::default();

    // 1 and 2: every order, its OrderPlaced, inventory's answer, the final status.
    let all: Vec<(Uuid, String, Option<i64>)> =
        sqlx::query_as("select id, status, total_cents from orders")
            .fetch_all(orders)
            .await?;
    let order_topic = read_all(&sources.kafka, &sources.kafka.topic_for(contracts::ORDER))?;
    let reservation_topic = read_all(
        &sources.kafka,
        &sources.kafka.topic_for(contracts::RESERVATION),
    )?;
    let placed: HashMap<String, Vec<(Uuid, String)>> = written(
        sqlx::query_as("select aggregateid, id, type from outbox where type = 'OrderPlaced'")
            .fetch_all(orders)
            .await?,
        &order_topic,
        &["OrderPlaced"],
    );
    let applied_by_inventory: HashSet<Uuid> = sqlx::query_scalar(
        "select event_id from processed_events where consumer = 'inventory-service' and event_type = 'OrderPlaced'",
    )
    .fetch_all(inventory)
    .await?
    .into_iter()
    .collect();
    let answers: HashMap<String, Vec<(Uuid, String)>> = written(
        sqlx::query_as(
            "select aggregateid, id, type from outbox where type in ('StockReserved', 'StockRejected')",
        )
        .fetch_all(inventory)
        .await?,
        &reservation_topic,
        &["StockReserved", "StockRejected"],
    );
    let applied_by_orders: HashSet<Uuid> = sqlx::query_scalar(
        "select event_id from processed_events where consumer = 'order-service'",
    )
    .fetch_all(orders)
    .await?
    .into_iter()
    .collect();
    let invoices = invoices(sources).await?;
    report.invoices = invoices.values().map(|v| v.len() as u64).sum();

    let mut order_ids = HashSet::new();
    for (id, status, total) in &all {
        let key = id.to_string();
        order_ids.insert(key.clone());
        report.orders += 1;
        match status.as_str() {
            "CONFIRMED" => report.confirmed += 1,
            "REJECTED" => report.rejected += 1,
            _ => report.pending += 1,
        }
        let events = placed.get(&key).map(Vec::as_slice).unwrap_or_default();
        if events.len() != 1 {
            report.violation(format!(
                "order {id}: {} OrderPlaced events written (its outbox rows and messages), expected 1",
                events.len()
            ));
        }
        for (e, _) in events {
            if applied_by_inventory.contains(e) {
                report.order_placed_applied += 1;
            } else {
                report.violation(format!(
                    "order {id}: OrderPlaced {e} was never applied by inventory (lost)"
                ));
            }
        }
        let answer = answers.get(&key).map(Vec::as_slice).unwrap_or_default();
        if answer.len() > 1 {
            report.duplicates_applied += answer.len() as u64 - 1;
            report.violation(format!(
                "order {id}: inventory answered {} times (applied twice)",
                answer.len()
            ));
        }
        let expected_status = match answer.first().map(|(_, kind)| kind.as_str()) {
            Some("StockReserved") => "CONFIRMED",
            Some(_) => "REJECTED",
            None => {
                report.violation(format!("order {id}: no answer from inventory (lost)"));
                continue;
            }
        };
        if status != expected_status {
            report.violation(format!(
                "order {id} is {status}, but inventory answered {}",
                answer[0].1
            ));
        }
        if !applied_by_orders.contains(&answer[0].0) {
            report.violation(format!(
                "order {id}: inventory's answer {} never applied by order-service",
                answer[0].0
            ));
        }
        // 3: invoices.
        let invoiced = invoices.get(&key).map(Vec::as_slice).unwrap_or_default();
        match (status.as_str(), invoiced) {
            ("CONFIRMED", [one]) if Some(*one) != *total => {
                report.violation(format!(
                    "order {id}: invoice total {one} differs from order total {total:?}"
                ));
            }
            ("CONFIRMED", [_]) => {}
            ("CONFIRMED", []) => {
                report.violation(format!("order {id} is confirmed but has no invoice (lost)"))
            }
            ("CONFIRMED", many) => {
                report.duplicates_applied += many.len() as u64 - 1;
                report.violation(format!(
                    "order {id} has {} invoices (applied twice)",
                    many.len()
                ));
            }
            (_, []) => {}
            (other, _) => report.violation(format!("order {id} is {other} but has an invoice")),
        }
    }
    for order in invoices.keys().filter(|o| !order_ids.contains(*o)) {
        report.violation(format!("invoice for unknown order {order}"));
    }

    // 4: stock.
    let stock: Vec<(String, i32, i32, i32, Option<i64>)> = sqlx::query_as(
        "select p.sku, p.on_hand, p.reserved, p.received, (select sum(quantity) from reservations r where r.sku = p.sku)
         from products p",
    )
    .fetch_all(inventory)
    .await?;
    for (sku, on_hand, reserved, received, reservations) in stock {
        if on_hand + reserved != received {
            report.violation(format!(
                "{sku}: on_hand {on_hand} + reserved {reserved} != received {received}"
            ));
        }
        if i64::from(reserved) != reservations.unwrap_or(0) {
            report.violation(format!(
                "{sku}: reserved {reserved} != sum of reservations {reservations:?}"
            ));
        }
    }

    // 5: the topics.
    check_topic(
        &sources.kafka.topic_for(contracts::ORDER),
        &order_topic,
        &mut report,
    );
    check_topic(
        &sources.kafka.topic_for(contracts::RESERVATION),
        &reservation_topic,
        &mut report,
    );
    for consumer in ["order-service", "inventory-service", "invoice-service"] {
        let topic = sources.kafka.dead_letter_topic(consumer);
        report.dead_letters += read_all(&sources.kafka, &topic)?.len() as u64;
    }
    Ok(report)
}

/// Waits until no order is pending and both outboxes are drained (with a relay that marks its
/// rows), or `timeout` passes.
async fn settle(
    orders: &PgPool,
    inventory: &PgPool,
    relay: Relay,
    timeout: Duration,
) -> Result<(), sqlx::Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    let pending = "select count(*) from outbox where published_at is null and skipped_at is null";
    let held =
        "select count(*) from outbox_wal_held where published_at is null and skipped_at is null";
    loop {
        let open: i64 = sqlx::query_scalar("select count(*) from orders where status = 'PENDING'")
            .fetch_one(orders)
            .await?;
        let (a, b): (i64, i64) = match relay {
            Relay::OutboxProcessor => (
                sqlx::query_scalar(pending).fetch_one(orders).await?,
                sqlx::query_scalar(pending).fetch_one(inventory).await?,
            ),
            Relay::Wal => (
                sqlx::query_scalar(held).fetch_one(orders).await?,
                sqlx::query_scalar(held).fetch_one(inventory).await?,
            ),
            Relay::Debezium => (0, 0),
        };
        if open + a + b == 0 || tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Invoice totals per order id.
async fn invoices(sources: &Sources) -> Result<HashMap<String, Vec<i64>>, VerifyError> {
    let client = mongodb::Client::with_uri_str(sources.mongodb_uri.expose_secret()).await?;
    let docs: Vec<Document> = client
        .database(&sources.mongodb_database)
        .collection::<Document>("invoices")
        .find(doc! {})
        .await?
        .try_collect()
        .await?;
    let mut out: HashMap<String, Vec<i64>> = HashMap::new();
    for d in docs {
        let order = d.get_str("order_id").unwrap_or_default().to_owned();
        let total = d.get_i64("total_cents").unwrap_or(-1);
        out.entry(order).or_default().push(total);
    }
    Ok(out)
}

fn check_topic(topic: &str, messages: &[Delivery], report: &mut Report) {
    let mut seen: HashSet<Uuid> = HashSet::new();
    let mut last_per_key: HashMap<&[u8], Uuid> = HashMap::new();
    for message in messages {
        report.messages += 1;
        let Some(id) = message.id else {
            report.violation(format!("{topic}: a message without an id header"));
            continue;
        };
        if !seen.insert(id) {
            report.duplicates_delivered += 1;
            continue;
        }
        if let Some(previous) = last_per_key.insert(&message.key, id) {
            if previous > id {
                report.violation(format!(
                    "{topic}: key {} delivered {id} after the later event {previous} (order broken)",
                    String::from_utf8_lossy(&message.key)
                ));
            }
        }
    }
}

/// The events of `types` per aggregate id, each once: the outbox `rows` (aggregate id, event
/// id, type) together with the messages of its topic, since either may be all that is left of
/// an event (a removed row; a message not yet published).
fn written(
    rows: Vec<(String, Uuid, String)>,
    messages: &[Delivery],
    types: &[&str],
) -> HashMap<String, Vec<(Uuid, String)>> {
    let delivered = messages.iter().filter_map(|m| {
        let event_type = m.event_type.as_deref().filter(|t| types.contains(t))?;
        Some((
            String::from_utf8_lossy(&m.key).into_owned(),
            m.id?,
            event_type.to_owned(),
        ))
    });
    let mut seen = HashSet::new();
    let mut out: HashMap<String, Vec<(Uuid, String)>> = HashMap::new();
    for (aggregate, id, event_type) in rows.into_iter().chain(delivered) {
        if seen.insert(id) {
            out.entry(aggregate).or_default().push((id, event_type));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(key: &str, id: Uuid, event_type: &str) -> Delivery {
        Delivery {
            key: key.as_bytes().to_vec(),
            id: Some(id),
            event_type: Some(event_type.to_owned()),
        }
    }

    #[test]
    fn an_event_is_written_once_whether_its_row_its_message_or_both_remain() {
        let (kept, removed, unpublished, other) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let rows = vec![
            ("a".to_owned(), kept, "OrderPlaced".to_owned()),
            ("c".to_owned(), unpublished, "OrderPlaced".to_owned()),
        ];
        let messages = [
            message("a", kept, "OrderPlaced"),
            message("a", kept, "OrderPlaced"), // delivered twice
            message("b", removed, "OrderPlaced"),
            message("b", other, "OrderConfirmed"),
        ];

        let placed = written(rows, &messages, &["OrderPlaced"]);

        let ids = |key: &str| -> Vec<Uuid> { placed[key].iter().map(|(id, _)| *id).collect() };
        assert_eq!(ids("a"), [kept]);
        assert_eq!(ids("b"), [removed]);
        assert_eq!(ids("c"), [unpublished]);
        assert_eq!(placed.len(), 3);
    }
}
