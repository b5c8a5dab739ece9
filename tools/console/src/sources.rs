//! Reading what the services wrote: the orders and their outbox rows, inventory's answers in
//! its outbox, the invoices, the outboxes' backlog and the consumer groups' offsets.
//!
//! Read-only, and each source on its own: a database or broker that is away leaves its part
//! of the snapshot empty and its name in [`Snapshot::unavailable`], the rest still shows.

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use contracts::{
    DomainEvent, OrderConfirmed, OrderPlaced, OrderRejected, StockRejected, StockReserved, ORDER,
    RESERVATION,
};
use futures::TryStreamExt;
use mongodb::{
    bson::{doc, Document},
    options::ClientOptions,
    Client, Database,
};
use outbox::kafka::{KafkaConfig, LagProbe};
use secrecy::ExposeSecret;
use service_kit::StartupError;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    config::Config,
    flow::{AnswerRecord, ConsumerLag, Decision, OrderFlow, OrderRecord, OutboxCounts, Snapshot},
};

/// How long one read of one source may take.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The consumers the shop runs (each service's `consumer::CONSUMER`), and the aggregate
/// whose topic each reads.
const CONSUMERS: [(&str, &str); 3] = [
    ("inventory-service", ORDER),
    ("order-service", RESERVATION),
    ("invoice-service", ORDER),
];

#[derive(Clone)]
pub struct Sources {
    pub orders: PgPool,
    pub inventory: PgPool,
    pub mongo: Database,
    probes: Arc<Vec<Arc<LagProbe>>>,
    recent: i64,
}

impl Sources {
    pub async fn connect(config: &Config) -> Result<Self, StartupError> {
        let pool = |url| outbox::db::connect_lazy(url, 2, READ_TIMEOUT);
        let mongo = |e| StartupError::store("mongodb", e);
        let mut options = ClientOptions::parse(config.mongodb_uri.expose_secret())
            .await
            .map_err(mongo)?;
        options.app_name = Some("flow-console".to_owned());
        options.server_selection_timeout = Some(READ_TIMEOUT);
        Ok(Self {
            orders: pool(&config.orders_database_url)?,
            inventory: pool(&config.inventory_database_url)?,
            mongo: Client::with_options(options)
                .map_err(mongo)?
                .database(&config.mongodb_database),
            probes: Arc::new(probes(&config.kafka)?),
            recent: config.orders,
        })
    }

    /// Reads everything once.
    pub async fn snapshot(&self) -> Snapshot {
        let mut unavailable = Vec::new();
        let orders = match self.orders().await {
            Ok(orders) => orders,
            Err(source) => {
                unavailable.push(source);
                Vec::new()
            }
        };
        let mut outboxes = Vec::new();
        for (database, pool) in [("orders", &self.orders), ("inventory", &self.inventory)] {
            match outbox_counts(pool).await {
                Ok((pending, parked)) => outboxes.push(OutboxCounts {
                    database: database.to_owned(),
                    pending,
                    parked,
                }),
                Err(error) => {
                    tracing::warn!(database, %error, "cannot count the outbox");
                    unavailable.push(format!("{database} database"));
                }
            }
        }
        Snapshot {
            at: Utc::now(),
            orders: orders.iter().map(OrderFlow::of).collect(),
            outboxes,
            consumers: self.lag().await,
            unavailable,
        }
    }

    /// The newest orders with every time of their way; `Err` names the source that failed.
    async fn orders(&self) -> Result<Vec<OrderRecord>, String> {
        let orders: Vec<(Uuid, String, String, DateTime<Utc>)> = sqlx::query_as(
            "select id, customer_id, status, created_at from orders
             order by created_at desc, id desc limit $1",
        )
        .bind(self.recent)
        .fetch_all(&self.orders)
        .await
        .map_err(|error| failed("orders database", &error))?;
        let ids: Vec<String> = orders.iter().map(|o| o.0.to_string()).collect();
        let placed = events(&self.orders, &ids)
            .await
            .map_err(|error| failed("orders database", &error))?;
        // Inventory, Kafka and MongoDB may be away while orders still show how far they got.
        let answers = events(&self.inventory, &ids)
            .await
            .map_err(|error| failed("inventory database", &error))
            .unwrap_or_default();
        let invoiced = self
            .invoiced(&ids)
            .await
            .map_err(|error| failed("mongodb", &error))
            .unwrap_or_default();
        Ok(orders
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
            .collect())
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
    async fn lag(&self) -> Vec<ConsumerLag> {
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
                        (None, Some("Kafka did not answer".to_owned()))
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

fn probes(kafka: &KafkaConfig) -> Result<Vec<Arc<LagProbe>>, StartupError> {
    CONSUMERS
        .iter()
        .map(|(name, aggregate)| {
            let probe = LagProbe::new(kafka, name, vec![kafka.topic_for(aggregate)])?;
            Ok(Arc::new(probe))
        })
        .collect()
}

fn failed(source: &str, error: &dyn std::fmt::Display) -> String {
    tracing::warn!(source, %error, "cannot read");
    source.to_owned()
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
) -> Result<HashMap<String, Vec<EventRow>>, sqlx::Error> {
    let rows: Vec<EventRow> = sqlx::query_as(
        "select aggregateid, type, created_at, published_at from outbox
         where aggregateid = any($1) order by seq",
    )
    .bind(aggregate_ids)
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

/// (pending, parked) of one outbox: what the relay has yet to send, and what it gave up on.
async fn outbox_counts(pool: &PgPool) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "select count(*) filter (where parked_at is null),
                count(*) filter (where parked_at is not null)
         from outbox where published_at is null and skipped_at is null",
    )
    .fetch_one(pool)
    .await
}
