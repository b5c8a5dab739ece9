//! The reservation decision: given an order's lines and the products they name, reserve all of
//! it or none of it. Pure, so every rule is tested without a database.

use std::collections::BTreeMap;

use contracts::{OrderLine, RejectionCode, RejectionReason, ReservedLine};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(example = json!({
    "sku": "KEYBOARD-01", "name": "Mechanical keyboard", "unit_price_cents": 8999,
    "currency": "EUR", "on_hand": 98, "reserved": 2
}))]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub unit_price_cents: i64,
    pub currency: String,
    /// Units available to reserve.
    pub on_hand: i32,
    /// Units held for orders.
    pub reserved: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Reserve {
        currency: String,
        lines: Vec<ReservedLine>,
    },
    Reject(RejectionReason),
}

/// All or nothing. Lines naming one SKU twice are summed first (order-service merges them
/// already, but an event is input too).
pub fn decide(lines: &[OrderLine], products: &[Product]) -> Decision {
    let mut wanted: BTreeMap<&str, u64> = BTreeMap::new();
    for line in lines {
        *wanted.entry(line.sku.as_str()).or_default() += u64::from(line.quantity);
    }
    if wanted.is_empty() {
        return Decision::Reject(reason(
            RejectionCode::UnknownSku,
            "the order has no lines",
            None,
        ));
    }
    let mut currency: Option<&str> = None;
    let mut reserved = Vec::with_capacity(wanted.len());
    for (sku, quantity) in wanted {
        let Some(product) = products.iter().find(|p| p.sku == sku) else {
            return Decision::Reject(reason(
                RejectionCode::UnknownSku,
                &format!("unknown SKU {sku}"),
                Some(sku),
            ));
        };
        let available = u64::try_from(product.on_hand).unwrap_or(0);
        if quantity > available {
            return Decision::Reject(reason(
                RejectionCode::InsufficientStock,
                &format!(
                    "insufficient stock for {sku}: requested {quantity}, available {available}"
                ),
                Some(sku),
            ));
        }
        match currency {
            Some(c) if c != product.currency => {
                return Decision::Reject(reason(
                    RejectionCode::MixedCurrency,
                    "the order mixes products priced in different currencies",
                    Some(sku),
                ))
            }
            _ => currency = Some(&product.currency),
        }
        reserved.push(ReservedLine {
            sku: sku.to_owned(),
            // Bounded by `available`, an i32.
            quantity: u32::try_from(quantity).unwrap_or(u32::MAX),
            unit_price_cents: product.unit_price_cents,
        });
    }
    Decision::Reserve {
        currency: currency.unwrap_or_default().to_owned(),
        lines: reserved,
    }
}

fn reason(code: RejectionCode, message: &str, sku: Option<&str>) -> RejectionReason {
    RejectionReason {
        code,
        message: message.to_owned(),
        sku: sku.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(sku: &str, on_hand: i32, price: i64, currency: &str) -> Product {
        Product {
            sku: sku.into(),
            name: sku.into(),
            unit_price_cents: price,
            currency: currency.into(),
            on_hand,
            reserved: 0,
        }
    }

    fn line(sku: &str, quantity: u32) -> OrderLine {
        OrderLine {
            sku: sku.into(),
            quantity,
        }
    }

    #[test]
    fn reserves_everything_at_the_current_price() {
        let products = [product("A", 5, 100, "EUR"), product("B", 1, 250, "EUR")];
        let Decision::Reserve { currency, lines } =
            decide(&[line("B", 1), line("A", 5)], &products)
        else {
            panic!("expected a reservation");
        };
        assert_eq!(currency, "EUR");
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (
                lines[0].sku.as_str(),
                lines[0].quantity,
                lines[0].unit_price_cents
            ),
            ("A", 5, 100)
        );
    }

    #[test]
    fn rejects_unknown_skus_and_short_stock_with_a_reason() {
        let products = [product("A", 5, 100, "EUR")];
        let Decision::Reject(r) = decide(&[line("A", 1), line("Z", 1)], &products) else {
            panic!()
        };
        assert_eq!(
            (r.code, r.sku.as_deref()),
            (RejectionCode::UnknownSku, Some("Z"))
        );
        let Decision::Reject(r) = decide(&[line("A", 3), line("A", 3)], &products) else {
            panic!()
        };
        assert_eq!(r.code, RejectionCode::InsufficientStock);
        assert!(
            r.message.contains("requested 6, available 5"),
            "{}",
            r.message
        );
    }

    #[test]
    fn rejects_mixed_currencies() {
        let products = [product("A", 5, 100, "EUR"), product("B", 5, 100, "USD")];
        let Decision::Reject(r) = decide(&[line("A", 1), line("B", 1)], &products) else {
            panic!()
        };
        assert_eq!(r.code, RejectionCode::MixedCurrency);
    }
}
