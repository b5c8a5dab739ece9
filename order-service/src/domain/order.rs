//! An order as stored and shown, its life cycle, and how inventory's prices become totals.

use chrono::{DateTime, Utc};
use contracts::{OrderLine, OrderPlaced, PricedLine, RejectionReason, StockReserved};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// PENDING until inventory answers; then CONFIRMED or REJECTED, never back.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrderItem {
    pub sku: String,
    pub quantity: u32,
    pub unit_price_cents: Option<i64>,
    pub line_total_cents: Option<i64>,
}

/// An order. Prices, totals and currency are `null` until inventory reserved the stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "id": "01a208a8-821e-7361-be6f-66d7a0c09f70", "customer_id": "cust-42", "status": "CONFIRMED",
    "items": [
        {"sku": "KEYBOARD-01", "quantity": 2, "unit_price_cents": 8999, "line_total_cents": 17998},
        {"sku": "MOUSE-01", "quantity": 1, "unit_price_cents": 2999, "line_total_cents": 2999}
    ],
    "currency": "EUR", "total_cents": 20997, "rejection_reason": null,
    "created_at": "2026-11-23T13:46:30.814466Z", "updated_at": "2026-11-23T13:46:31.153375Z"
}))]
pub struct Order {
    pub id: Uuid,
    pub customer_id: String,
    pub status: OrderStatus,
    pub items: Vec<OrderItem>,
    pub currency: Option<String>,
    pub total_cents: Option<i64>,
    pub rejection_reason: Option<RejectionReason>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Order {
    /// Was this order created from the same request? (An idempotency key may only be
    /// replayed with the request it was first used with.)
    pub fn was_created_from(&self, request: &super::NewOrder) -> bool {
        self.customer_id == request.customer_id.as_str()
            && self.items.len() == request.items.len()
            && self.items.iter().zip(&request.items).all(|(have, want)| {
                have.sku == want.sku.as_str() && have.quantity == want.quantity.get()
            })
    }

    /// The event that announces this order, written to the outbox in the transaction that
    /// created it.
    pub fn placed(&self) -> OrderPlaced {
        OrderPlaced {
            order_id: self.id,
            customer_id: self.customer_id.clone(),
            items: self
                .items
                .iter()
                .map(|i| OrderLine {
                    sku: i.sku.clone(),
                    quantity: i.quantity,
                })
                .collect(),
            placed_at: Utc::now(),
        }
    }
}

/// The `Idempotency-Key` header (IETF draft): 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > 255 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("Idempotency-Key must be 1 to 255 visible ASCII characters".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Prices the order's lines at the prices inventory reserved at.
///
/// The order's own quantities are authoritative; a line without a reserved price, or a total
/// that overflows, means the event does not fit this order, which is a permanent error.
pub fn price(
    items: &[OrderItem],
    reserved: &StockReserved,
) -> Result<(Vec<PricedLine>, i64), String> {
    let mut lines = Vec::with_capacity(items.len());
    let mut total: i64 = 0;
    for item in items {
        let unit = reserved
            .lines
            .iter()
            .find(|l| l.sku == item.sku)
            .ok_or_else(|| format!("StockReserved has no price for {}", item.sku))?
            .unit_price_cents;
        let line_total = unit
            .checked_mul(i64::from(item.quantity))
            .ok_or_else(|| format!("line total of {} overflows", item.sku))?;
        total = total
            .checked_add(line_total)
            .ok_or("order total overflows")?;
        lines.push(PricedLine {
            sku: item.sku.clone(),
            quantity: item.quantity,
            unit_price_cents: unit,
            line_total_cents: line_total,
        });
    }
    Ok((lines, total))
}

#[cfg(test)]
mod tests {
    use contracts::ReservedLine;

    use super::*;

    fn item(sku: &str, quantity: u32) -> OrderItem {
        OrderItem {
            sku: sku.into(),
            quantity,
            unit_price_cents: None,
            line_total_cents: None,
        }
    }

    fn reserved(prices: &[(&str, i64)]) -> StockReserved {
        StockReserved {
            order_id: Uuid::now_v7(),
            currency: "EUR".into(),
            lines: prices
                .iter()
                .map(|(sku, p)| ReservedLine {
                    sku: (*sku).into(),
                    quantity: 1,
                    unit_price_cents: *p,
                })
                .collect(),
        }
    }

    #[test]
    fn totals_are_quantity_times_reserved_price() {
        let (lines, total) = price(
            &[item("A", 2), item("B", 1)],
            &reserved(&[("B", 2999), ("A", 8999)]),
        )
        .unwrap();
        assert_eq!(lines[0].line_total_cents, 17998);
        assert_eq!(lines[1].line_total_cents, 2999);
        assert_eq!(total, 20997);
    }

    #[test]
    fn a_missing_price_or_an_overflow_is_an_error() {
        assert!(price(&[item("A", 1)], &reserved(&[("B", 1)]))
            .unwrap_err()
            .contains("no price for A"));
        assert!(price(&[item("A", 2)], &reserved(&[("A", i64::MAX)])).is_err());
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        assert!(IdempotencyKey::parse("abc-123").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }
}
