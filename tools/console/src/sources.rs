//! Reading what the services wrote: the orders and their outbox rows, inventory's answers in
//! its outbox, the invoices, the outboxes' backlog and the consumer groups' offsets.
//!
//! Read-only, and each source on its own: a database that is away leaves its part of the
//! snapshot empty and its name in [`Snapshot::unavailable`] (a broker that is away, its error
//! in each consumer's row), and the rest still shows.
//! Every query is bounded (`statement_timeout`), the sources are read side by side, and
//! Kafka's offsets are read by a task of their own, so one slow source never stalls the page.

use std::{
    collections::{BTreeSet, HashMap},
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use contracts::{
    consumer, DomainEvent, OrderConfirmed, OrderPlaced, OrderRejected, StockRejected,
    StockReserved, ORDER, RESERVATION,
};
use futures::TryStreamExt;
use mongodb::{
    bson::{doc, Document},
    options::ClientOptions,
    Client, Database,
};
use outbox::kafka::{KafkaConfig, LagProbe};
use secrecy::{ExposeSecret, SecretString};
use service_kit::{relay_mode::RelayMode, StartupError};
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    config::Config,
    flow::{AnswerRecord, ConsumerLag, Decision, OrderFlow, OrderRecord, OutboxCounts, Snapshot},
};

/// How long one read of one source may take.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the consumer groups' lag is asked for: the consumers commit their offsets once a
/// second, so asking the broker more often would cost it requests and show nothing new.
const LAG_EVERY: Duration = Duration::from_secs(1);

/// The consumers the shop runs, and the aggregate whose topic each reads.
const CONSUMERS: [(&str, &str); 3] = [
    (consumer::INVENTORY_SERVICE, ORDER),
    (consumer::ORDER_SERVICE, RESERVATION),
    (consumer::INVOICE_SERVICE, ORDER),
];

const ORDERS_DB: &str = "orders database";
const INVENTORY_DB: &str = "inventory database";
const MONGODB: &str = "mongodb";

#[derive(Clone)]
pub struct Sources {
    pub orders: PgPool,
    pub inventory: PgPool,
    pub mongo: Database,
    probes: Arc<Vec<Arc<LagProbe>>>,
    /// The latest lag the reader task got (`spawn_lag_reader`).
    lag: Arc<Mutex<Vec<ConsumerLag>>>,
    recent: i64,
    /// Where pending events are counted: the polling relay marks every row of `outbox`; in
    /// WAL mode no row is marked, and only the events the relay holds wait in a table (those
    /// in its stream are on its status page).
    pending_table: &'static str,
}

impl Sources {
    pub async fn connect(config: &Config) -> Result<Self, StartupError> {
        let mongo = |e| StartupError::store("mongodb", e);
        let mut options = ClientOptions::parse(config.mongodb_uri.expose_secret())
            .await
            .map_err(mongo)?;
        options.app_name = Some("flow-console".to_owned());
        options.server_selection_timeout = Some(READ_TIMEOUT);
        let probes = probes(&config.kafka)?;
        let lag = probes
            .iter()
            .map(|probe| ConsumerLag {
                group: probe.group().to_owned(),
                topics: probe.topics().to_vec(),
                lag: None,
                error: Some("not read yet".to_owned()),
            })
            .collect();
        Ok(Self {
            orders: pool(&config.orders_database_url)?,
            inventory: pool(&config.inventory_database_url)?,
            mongo: Client::with_options(options)
                .map_err(mongo)?
                .database(&config.mongodb_database),
            probes: Arc::new(probes),
            lag: Arc::new(Mutex::new(lag)),
            recent: config.orders,
            pending_table: match config.relay_mode {
                RelayMode::Polling => "outbox",
                RelayMode::Wal(_) => "outbox_wal_held",
            },
        })
    }

    /// Reads every consumer group's lag once a second until `shutdown`; snapshots take the
    /// latest reading, so a broker that is away never slows them down.
    pub fn spawn_lag_reader(&self, shutdown: CancellationToken) {
        let sources = self.clone();
        tokio::spawn(async move {
            loop {
                let lag = sources.read_lag().await;
                *sources.lag.lock().unwrap_or_else(|e| e.into_inner()) = lag;
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(LAG_EVERY) => {}
                }
            }
        });
    }

    /// Reads everything once.
    pub async fn snapshot(&self) -> Snapshot {
        let (orders, orders_outbox, inventory_outbox) = tokio::join!(
            self.orders(),
            outbox_counts(&self.orders, "orders", self.pending_table),
            outbox_counts(&self.inventory, "inventory", self.pending_table),
        );
        let (orders, mut unavailable) = orders;
        let mut outboxes = Vec::new();
        for (counted, source) in [(orders_outbox, ORDERS_DB), (inventory_outbox, INVENTORY_DB)] {
            match counted {
                Some(counts) => outboxes.push(counts),
                None => {
                    unavailable.insert(source);
                }
            }
        }
        Snapshot {
            at: Utc::now(),
            orders: orders.iter().map(OrderFlow::of).collect(),
            outboxes,
            consumers: self.lag.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            unavailable: unavailable.into_iter().map(str::to_owned).collect(),
        }
    }

    /// The newest orders with every time of their way, and the sources that could not be
    /// read (the orders show how far they got without them).
    async fn orders(&self) -> (Vec<OrderRecord>, BTreeSet<&'static str>) {
        let mut unavailable = BTreeSet::new();
        let orders: Vec<(Uuid, String, String, DateTime<Utc>)> = match sqlx::query_as(
            "select id, customer_id, status, created_at from orders
             order by created_at desc, id desc limit $1",
        )
        .bind(self.recent)
        .fetch_all(&self.orders)
        .await
        {
            Ok(orders) => orders,
            Err(error) => {
                unavailable.insert(failed(ORDERS_DB, &error));
                return (Vec::new(), unavailable);
            }
        };
        let Some(oldest) = orders.iter().map(|o| o.3).min() else {
            return (Vec::new(), unavailable);
        };
        let ids: Vec<String> = orders.iter().map(|o| o.0.to_string()).collect();
        let since = first_id_written_after(oldest);
        let (placed, answers, invoiced) = tokio::join!(
            events(&self.orders, &ids, since),
            events(&self.inventory, &ids, since),
            self.invoiced(&ids),
        );
        let placed = or_none(placed, ORDERS_DB, &mut unavailable);
        let answers = or_none(answers, INVENTORY_DB, &mut unavailable);
        let invoiced = or_none(invoiced, MONGODB, &mut unavailable);
        let records = orders
            .into_iter()
            .map(|(order_id, customer_id, status, committed_at)| {
                let key = order_id.to_string();
                let of = |events: &HashMap<String, Vec<EventRow>>, types: &[&str]| {
                    events
                        .get(&key)
                        .and_then(|rows| rows.iter().find(|e| types.contains(&e.kind.as_str())))
                        .cloned()
                };
                OrderRecord {
                    order_id,
                    customer_id,
                    status,
                    committed_at,
                    placed_published_at: of(&placed, &[OrderPlaced::TYPE])
                        .and_then(|e| e.published_at),
                    answer: of(&answers, &[StockReserved::TYPE, StockRejected::TYPE]).map(|e| {
                        AnswerRecord {
                            decision: if e.kind == StockReserved::TYPE {
                                Decision::Reserved
                            } else {
                                Decision::Rejected
                            },
                            at: e.created_at,
                            published_at: e.published_at,
                        }
                    }),
                    settled_at: of(&placed, &[OrderConfirmed::TYPE, OrderRejected::TYPE])
                        .map(|e| e.created_at),
                    invoiced_at: invoiced.get(&key).copied(),
                }
            })
            .collect();
        (records, unavailable)
    }

    /// `issued_at` of the invoices of these orders.
    async fn invoiced(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, DateTime<Utc>>, mongodb::error::Error> {
        let invoices: Vec<Document> = self
            .mongo
            .collection::<Document>("invoices")
            .find(doc! { "order_id": { "$in": ids } })
            .projection(doc! { "order_id": 1, "issued_at": 1 })
            .max_time(READ_TIMEOUT)
            .await?
            .try_collect()
            .await?;
        Ok(invoices
            .iter()
            .filter_map(|d| {
                let order = d.get_str("order_id").ok()?;
                let issued = d.get_datetime("issued_at").ok()?;
                let issued = DateTime::from_timestamp_millis(issued.timestamp_millis())?;
                Some((order.to_owned(), issued))
            })
            .collect())
    }

    /// Every consumer group's lag, read side by side off the async runtime.
    async fn read_lag(&self) -> Vec<ConsumerLag> {
        let reads = self.probes.iter().map(|probe| {
            let probe = probe.clone();
            async move {
                let group = probe.group().to_owned();
                let topics = probe.topics().to_vec();
                let read = tokio::task::spawn_blocking(move || probe.read(READ_TIMEOUT)).await;
                let (lag, error) = match read {
                    Ok(Ok(lag)) => (Some(lag.total), None),
                    Ok(Err(error)) => {
                        tracing::debug!(%group, %error, "cannot read the group's lag");
                        (None, Some(error.to_string()))
                    }
                    Err(error) => (None, Some(error.to_string())),
                };
                ConsumerLag {
                    group,
                    topics,
                    lag,
                    error,
                }
            }
        });
        futures::future::join_all(reads).await
    }
}

/// A small pool whose every statement is bounded by [`READ_TIMEOUT`]; it connects on first use,
/// so the console starts while a database is away.
fn pool(url: &SecretString) -> Result<PgPool, sqlx::Error> {
    let timeout_ms = READ_TIMEOUT.as_millis().to_string();
    let options = PgConnectOptions::from_str(url.expose_secret())?
        .options([("statement_timeout", timeout_ms.as_str())]);
    Ok(PgPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(READ_TIMEOUT)
        .connect_lazy_with(options))
}

fn probes(kafka: &KafkaConfig) -> Result<Vec<Arc<LagProbe>>, StartupError> {
    CONSUMERS
        .iter()
        .map(|(name, aggregate)| {
            let probe = LagProbe::new(kafka, name, vec![kafka.topic_for(aggregate)])?;
            Ok(Arc::new(probe))
        })
        .collect()
}

/// What a read gave, or nothing with its source noted as unavailable.
fn or_none<T: Default, E: std::fmt::Display>(
    read: Result<T, E>,
    source: &'static str,
    unavailable: &mut BTreeSet<&'static str>,
) -> T {
    read.unwrap_or_else(|error| {
        unavailable.insert(failed(source, &error));
        T::default()
    })
}

fn failed(source: &'static str, error: &dyn std::fmt::Display) -> &'static str {
    tracing::warn!(source, %error, "cannot read");
    source
}

/// The smallest UUIDv7 of a millisecond a minute before `time`. Outbox ids are UUIDv7 made when
/// the row is written, never before the order it belongs to, so `id >= this` keeps every row
/// of these orders and lets PostgreSQL read only the newest part of the primary key's index,
/// however long the outbox is. The minute covers the clocks of the writers.
fn first_id_written_after(time: DateTime<Utc>) -> Uuid {
    let ms = (time - chrono::Duration::minutes(1))
        .timestamp_millis()
        .max(0);
    Uuid::from_u128(u128::from(ms as u64) << 80)
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct EventRow {
    aggregateid: String,
    #[sqlx(rename = "type")]
    kind: String,
    created_at: DateTime<Utc>,
    published_at: Option<DateTime<Utc>>,
}

/// The outbox rows of these aggregates, oldest first, by aggregate.
async fn events(
    pool: &PgPool,
    aggregate_ids: &[String],
    since: Uuid,
) -> Result<HashMap<String, Vec<EventRow>>, sqlx::Error> {
    let rows: Vec<EventRow> = sqlx::query_as(
        "select aggregateid, type, created_at, published_at from outbox
         where id >= $2 and aggregateid = any($1) order by seq",
    )
    .bind(aggregate_ids)
    .bind(since)
    .fetch_all(pool)
    .await?;
    let mut by_aggregate: HashMap<String, Vec<EventRow>> = HashMap::new();
    for row in rows {
        by_aggregate
            .entry(row.aggregateid.clone())
            .or_default()
            .push(row);
    }
    Ok(by_aggregate)
}

/// What waits in one outbox: what the relay has yet to send, and what it gave up on.
async fn outbox_counts(pool: &PgPool, database: &str, table: &str) -> Option<OutboxCounts> {
    let counted: Result<(i64, i64), _> = sqlx::query_as(&format!(
        "select count(*) filter (where parked_at is null),
                count(*) filter (where parked_at is not null)
         from {table} where published_at is null and skipped_at is null"
    ))
    .fetch_one(pool)
    .await;
    match counted {
        Ok((pending, parked)) => Some(OutboxCounts {
            database: database.to_owned(),
            pending,
            parked,
        }),
        Err(error) => {
            tracing::warn!(database, %error, "cannot count the outbox");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_sorts_before_every_uuid_v7_of_the_minute_before() {
        let time = DateTime::parse_from_rfc3339("2026-11-26T13:00:00.500Z")
            .unwrap()
            .to_utc();
        let floor = first_id_written_after(time);
        let ts = |t: DateTime<Utc>| {
            let ms = t.timestamp_millis() as u64;
            uuid::Timestamp::from_unix(
                uuid::NoContext,
                ms / 1000,
                u32::try_from(ms % 1000).unwrap() * 1_000_000,
            )
        };
        for back_ms in [0, 1, 59_999, 60_000] {
            let written = Uuid::new_v7(ts(time - chrono::Duration::milliseconds(back_ms)));
            assert!(written >= floor, "{back_ms} ms before: {written} < {floor}");
        }
        let too_old = Uuid::new_v7(ts(time - chrono::Duration::milliseconds(60_001)));
        assert!(too_old < floor);
    }
}
