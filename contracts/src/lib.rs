//! The shop's contract between services: every event type, its aggregate and its payload.
//! Each implements [`outbox::DomainEvent`], so the outbox writer knows its columns.
//!
//! An event is a fact in the past tense ("OrderPlaced"). Its *aggregate* is the thing it is
//! about; the relay uses the aggregate id as the Kafka key, so all events of one order land in
//! one partition, in order. Money is in integer minor units (cents) with an ISO 4217 currency.

use chrono::{DateTime, Utc};
pub use outbox::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Aggregate type of the events order-service publishes (topic `outbox.event.order`).
pub const ORDER: &str = "order";
/// Aggregate type of inventory's answers, one reservation per order (`outbox.event.reservation`).
pub const RESERVATION: &str = "reservation";

/// The shop's consumers by name: each is its consumer group (after the topic prefix), its
/// dead-letter topic (`<name>.dlq`) and its name in its inbox. Here, not in each service, so
/// that whoever watches the groups (the flow console) names them as the services do.
pub mod consumer {
    pub const ORDER_SERVICE: &str = "order-service";
    pub const INVENTORY_SERVICE: &str = "inventory-service";
    pub const INVOICE_SERVICE: &str = "invoice-service";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: Uuid,
    pub customer_id: String,
    pub items: Vec<OrderLine>,
    pub placed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservedLine {
    pub sku: String,
    pub quantity: u32,
    /// The price inventory reserved at; the order and the invoice keep it.
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReserved {
    pub order_id: Uuid,
    pub currency: String,
    pub lines: Vec<ReservedLine>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RejectionCode {
    UnknownSku,
    InsufficientStock,
    MixedCurrency,
}

/// Why inventory turned an order down; the order shows it to the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RejectionReason {
    pub code: RejectionCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRejected {
    pub order_id: Uuid,
    pub reason: RejectionReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedLine {
    pub sku: String,
    pub quantity: u32,
    pub unit_price_cents: i64,
    pub line_total_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderConfirmed {
    pub order_id: Uuid,
    pub customer_id: String,
    pub currency: String,
    pub lines: Vec<PricedLine>,
    pub total_cents: i64,
    pub confirmed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRejected {
    pub order_id: Uuid,
    pub customer_id: String,
    pub reason: RejectionReason,
}

macro_rules! domain_event {
    ($ty:ident, $aggregate:expr) => {
        impl DomainEvent for $ty {
            const TYPE: &'static str = stringify!($ty);
            const AGGREGATE_TYPE: &'static str = $aggregate;
            fn aggregate_id(&self) -> String {
                self.order_id.to_string()
            }
        }
    };
}

domain_event!(OrderPlaced, ORDER);
domain_event!(OrderConfirmed, ORDER);
domain_event!(OrderRejected, ORDER);
domain_event!(StockReserved, RESERVATION);
domain_event!(StockRejected, RESERVATION);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_and_keys_come_from_the_payload() {
        let id = Uuid::now_v7();
        let e = StockRejected {
            order_id: id,
            reason: RejectionReason {
                code: RejectionCode::UnknownSku,
                message: "no such sku".into(),
                sku: Some("X".into()),
            },
        };
        assert_eq!(StockRejected::TYPE, "StockRejected");
        assert_eq!(StockRejected::AGGREGATE_TYPE, "reservation");
        assert_eq!(e.aggregate_id(), id.to_string());
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["reason"]["code"], "UNKNOWN_SKU");
    }
}
