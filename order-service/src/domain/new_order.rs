//! `POST /orders` input, parsed ("parse, don't validate"): a `NewOrder` can only be built
//! from a request that passed every rule, so no later code re-checks.

use serde::Deserialize;
use shared::http::FieldError;

/// The raw request body, as a client sends it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "customer_id": "cust-42",
    "items": [{"sku": "KEYBOARD-01", "quantity": 2}, {"sku": "MOUSE-01", "quantity": 1}]
}))]
pub struct CreateOrderRequest {
    /// 1 to 64 letters, digits, `-`, `_` or `.`.
    pub customer_id: String,
    pub items: Vec<CreateOrderItem>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct CreateOrderItem {
    /// A product's SKU (case-insensitive); each SKU at most once per order.
    pub sku: String,
    /// 1 to 1,000,000. (Signed, so that `-1` gets a clear validation message.)
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerId(String);

impl CustomerId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.chars().count() > 64 {
            return Err("must be at most 64 characters".into());
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err("may contain only letters, digits, '-', '_' and '.'".into());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stock-keeping unit: upper-case letters, digits and dashes, as inventory names them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sku(String);

impl Sku {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim().to_ascii_uppercase();
        if s.is_empty() || s.len() > 32 {
            return Err("must be 1 to 32 characters".into());
        }
        if !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err("may contain only letters, digits and '-'".into());
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(u32);

impl Quantity {
    pub const MAX: u32 = 1_000_000;

    pub fn parse(raw: i64) -> Result<Self, String> {
        match u32::try_from(raw) {
            Ok(q) if (1..=Self::MAX).contains(&q) => Ok(Self(q)),
            _ => Err(format!("must be between 1 and {}", Self::MAX)),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrderItem {
    pub sku: Sku,
    pub quantity: Quantity,
}

/// An order that passed every input rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub customer_id: CustomerId,
    pub items: Vec<NewOrderItem>,
}

impl NewOrder {
    pub const MAX_ITEMS: usize = 50;
}

impl TryFrom<CreateOrderRequest> for NewOrder {
    /// Every problem at once, so a client can fix its request in one go.
    type Error = Vec<FieldError>;

    fn try_from(request: CreateOrderRequest) -> Result<Self, Self::Error> {
        let mut errors = Vec::new();
        let customer_id = CustomerId::parse(&request.customer_id)
            .map_err(|m| errors.push(FieldError::new("customer_id", m)))
            .ok();
        if request.items.is_empty() || request.items.len() > Self::MAX_ITEMS {
            errors.push(FieldError::new(
                "items",
                format!("must hold 1 to {} lines", Self::MAX_ITEMS),
            ));
        }
        let mut items: Vec<NewOrderItem> = Vec::with_capacity(request.items.len());
        for (i, item) in request.items.iter().enumerate() {
            let sku = Sku::parse(&item.sku)
                .map_err(|m| errors.push(FieldError::new(format!("items[{i}].sku"), m)))
                .ok();
            let quantity = Quantity::parse(item.quantity)
                .map_err(|m| errors.push(FieldError::new(format!("items[{i}].quantity"), m)))
                .ok();
            if let (Some(sku), Some(quantity)) = (sku, quantity) {
                if items.iter().any(|existing| existing.sku == sku) {
                    errors.push(FieldError::new(
                        format!("items[{i}].sku"),
                        format!(
                            "{} appears twice; use one line with the total quantity",
                            sku.as_str()
                        ),
                    ));
                } else {
                    items.push(NewOrderItem { sku, quantity });
                }
            }
        }
        match customer_id {
            Some(customer_id) if errors.is_empty() => Ok(Self { customer_id, items }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(customer: &str, items: &[(&str, i64)]) -> CreateOrderRequest {
        CreateOrderRequest {
            customer_id: customer.into(),
            items: items
                .iter()
                .map(|(sku, quantity)| CreateOrderItem {
                    sku: (*sku).into(),
                    quantity: *quantity,
                })
                .collect(),
        }
    }

    #[test]
    fn a_valid_request_parses_and_skus_are_normalised() {
        let order = NewOrder::try_from(request(" cust-42 ", &[("keyboard-01", 2)])).unwrap();
        assert_eq!(order.customer_id.as_str(), "cust-42");
        assert_eq!(order.items[0].sku.as_str(), "KEYBOARD-01");
        assert_eq!(order.items[0].quantity.get(), 2);
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let errors =
            NewOrder::try_from(request("", &[("ok", 0), ("bad sku!", 1), ("OK", 1)])).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["customer_id", "items[0].quantity", "items[1].sku"]);

        let errors = NewOrder::try_from(request("c", &[("A", 1), ("a", 2)])).unwrap_err();
        assert_eq!(errors[0].field, "items[1].sku");
        assert!(errors[0].message.contains("twice"));
    }

    #[test]
    fn empty_and_oversized_orders_are_rejected() {
        assert_eq!(
            NewOrder::try_from(request("c", &[])).unwrap_err()[0].field,
            "items"
        );
        assert!(Quantity::parse(-1).is_err());
        assert!(Quantity::parse(i64::from(Quantity::MAX) + 1).is_err());
        assert!(CustomerId::parse(&"x".repeat(65)).is_err());
        assert!(Sku::parse(&"X".repeat(33)).is_err());
    }
}
