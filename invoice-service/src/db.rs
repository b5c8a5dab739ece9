//! The `invoices` collection: one document per confirmed order.

use futures::TryStreamExt;
use mongodb::{
    bson::{doc, DateTime},
    error::{ErrorKind, WriteFailure},
    options::IndexOptions,
    Collection, Database, IndexModel,
};
use outbox::inbox::Recorded;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InvoiceLine {
    pub sku: String,
    pub quantity: u32,
    pub unit_price_cents: i64,
    pub line_total_cents: i64,
}

/// The stored document. Ids are strings so the collection reads well in a Mongo shell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invoice {
    pub order_id: String,
    pub customer_id: String,
    pub currency: String,
    pub lines: Vec<InvoiceLine>,
    pub total_cents: i64,
    pub issued_at: DateTime,
    /// The `OrderConfirmed` event this invoice was made from.
    pub event_id: String,
}

pub fn invoices(db: &Database) -> Collection<Invoice> {
    db.collection("invoices")
}

/// The unique index that makes a redelivered `OrderConfirmed` a no-op.
pub async fn ensure_indexes(db: &Database) -> Result<(), mongodb::error::Error> {
    let index = IndexModel::builder()
        .keys(doc! { "order_id": 1 })
        .options(
            IndexOptions::builder()
                .unique(true)
                .name("order_id_unique".to_owned())
                .build(),
        )
        .build();
    invoices(db).create_index(index).await.map(|_| ())
}

/// Inserts the invoice, unless this order already has one. The unique index on `order_id` is
/// this service's inbox: it answers like [`outbox::inbox::record`] does.
pub async fn insert(db: &Database, invoice: &Invoice) -> Result<Recorded, mongodb::error::Error> {
    match invoices(db).insert_one(invoice).await {
        Ok(_) => Ok(Recorded::First),
        Err(e) if is_duplicate_key(&e) => Ok(Recorded::Duplicate),
        Err(e) => Err(e),
    }
}

fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    const DUPLICATE_KEY: i32 = 11000;
    matches!(
        error.kind.as_ref(),
        ErrorKind::Write(WriteFailure::WriteError(e)) if e.code == DUPLICATE_KEY
    )
}

pub async fn find(db: &Database, order_id: &str) -> Result<Option<Invoice>, mongodb::error::Error> {
    invoices(db).find_one(doc! { "order_id": order_id }).await
}

/// Newest first.
pub async fn list(db: &Database, limit: i64) -> Result<Vec<Invoice>, mongodb::error::Error> {
    invoices(db)
        .find(doc! {})
        .sort(doc! { "issued_at": -1 })
        .limit(limit)
        .await?
        .try_collect()
        .await
}

/// The readiness check: MongoDB answers a ping.
pub async fn ping(db: &Database) -> Result<(), mongodb::error::Error> {
    let ping = || db.run_command(mongodb::bson::doc! { "ping": 1 });
    match ping().await {
        // A pooled connection the server has closed fails once ("broken pipe"), and the driver
        // drops it; that is no outage (the fuzzer caught /health flapping on it), so a network
        // error gets one more try, on a fresh connection.
        Err(error) if matches!(*error.kind, mongodb::error::ErrorKind::Io(_)) => {
            ping().await.map(|_| ())
        }
        other => other.map(|_| ()),
    }
}
