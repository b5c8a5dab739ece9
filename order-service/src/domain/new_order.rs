//! `POST /orders` input, parsed ("parse, don't validate"): a `NewOrder` can only be built
//! from a request that passed every rule, so no later code re-checks.

use serde::Deserialize;
use service_kit::http::FieldError;

/// The raw request body, as a client sends it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "customer_id": "cust-42",
    "items": [{"sku": "KEYBOARD-01", "quantity": 2}, {"sku": "MOUSE-01", "quantity": 1}]
}))]
pub struct CreateOrderRequest {
    /// 1 to 64 letters, digits, `-`, `_` or `.`.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub customer_id: String,
    /// 1 to 50 lines.
    #[schema(min_items = 1, max_items = 50)]
    pub items: Vec<CreateOrderItem>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct CreateOrderItem {
    /// A product's SKU (case-insensitive). Lines naming one SKU are one line: their
    /// quantities add up.
    #[schema(min_length = 1, max_length = 32, pattern = "^[A-Za-z0-9-]+$")]
    pub sku: String,
    /// 1 to 1,000,000. (Signed, so that `-1` gets a clear validation message.)
    #[schema(minimum = 1, maximum = 1_000_000)]
    #[serde(deserialize_with = "integer")]
    pub quantity: i64,
}

/// Any JSON number without a fraction: JSON Schema counts `2.0` as the integer 2, so a client
/// following the schema may send it. Out of `i64`'s range it saturates, for the range check.
fn integer<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(n) = number.as_i64() {
        return Ok(n);
    }
    if number.as_u64().is_some() {
        return Ok(i64::MAX);
    }
    match number.as_f64() {
        // `as` saturates at i64's bounds.
        Some(f) if f.fract() == 0.0 => Ok(f as i64),
        _ => Err(serde::de::Error::custom(format!(
            "expected an integer, got {number}"
        ))),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerId(String);

impl CustomerId {
    pub fn parse(s: &str) -> Result<Self, String> {
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
        let s = raw.to_ascii_uppercase();
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

    /// Two lines of one SKU as one. The limit is per line as sent, so a sum may pass it; at
    /// most 50 lines of 1,000,000 cannot overflow.
    pub fn plus(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
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
    /// Every problem at once, so a client can fix its request in one go; at most two per line,
    /// and lines are only looked at when there are no more than [`NewOrder::MAX_ITEMS`].
    type Error = Vec<FieldError>;

    fn try_from(request: CreateOrderRequest) -> Result<Self, Self::Error> {
        let mut errors = Vec::new();
        let customer_id = CustomerId::parse(&request.customer_id)
            .map_err(|m| errors.push(FieldError::new("customer_id", m)))
            .ok();
        // The cheap limit first: an order with too many lines is refused before any line is
        // read, so neither the work nor the error list grows with what a client sends.
        if request.items.is_empty() || request.items.len() > Self::MAX_ITEMS {
            errors.push(FieldError::new(
                "items",
                format!("must hold 1 to {} lines", Self::MAX_ITEMS),
            ));
            return Err(errors);
        }
        let mut items: Vec<NewOrderItem> = Vec::with_capacity(request.items.len());
        // Where each SKU's line is in `items`.
        let mut line_of = std::collections::HashMap::new();
        for (i, item) in request.items.iter().enumerate() {
            let sku = Sku::parse(&item.sku)
                .map_err(|m| errors.push(FieldError::new(format!("items[{i}].sku"), m)))
                .ok();
            let quantity = Quantity::parse(item.quantity)
                .map_err(|m| errors.push(FieldError::new(format!("items[{i}].quantity"), m)))
                .ok();
            if let (Some(sku), Some(quantity)) = (sku, quantity) {
                match line_of.get(&sku) {
                    Some(&line) => {
                        let merged: &mut NewOrderItem = &mut items[line];
                        merged.quantity = merged.quantity.plus(quantity);
                    }
                    None => {
                        line_of.insert(sku.clone(), items.len());
                        items.push(NewOrderItem { sku, quantity });
                    }
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
        let order = NewOrder::try_from(request("cust-42", &[("keyboard-01", 2)])).unwrap();
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
    }

    #[test]
    fn lines_naming_one_sku_are_one_line() {
        let max = i64::from(Quantity::MAX);
        let order =
            NewOrder::try_from(request("c", &[("A", 1), ("b", 5), ("a", 2), ("A", max)])).unwrap();
        let lines: Vec<(&str, u32)> = order
            .items
            .iter()
            .map(|l| (l.sku.as_str(), l.quantity.get()))
            .collect();
        assert_eq!(lines, [("A", 3 + Quantity::MAX), ("B", 5)]);
    }

    #[test]
    fn an_order_over_the_line_limit_is_refused_without_reading_its_lines() {
        let lines: Vec<(String, i64)> = (0..20_000).map(|i| (format!("bad sku {i}"), 0)).collect();
        let lines: Vec<(&str, i64)> = lines.iter().map(|(s, q)| (s.as_str(), *q)).collect();
        let errors = NewOrder::try_from(request("", &lines)).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["customer_id", "items"]);
    }

    #[test]
    fn a_quantity_is_any_number_without_a_fraction() {
        let line = |quantity: &str| {
            serde_json::from_str::<CreateOrderItem>(&format!(
                r#"{{"sku": "A", "quantity": {quantity}}}"#
            ))
            .map(|l| l.quantity)
        };
        assert_eq!(line("2").unwrap(), 2);
        assert_eq!(line("2.0").unwrap(), 2);
        assert_eq!(line("1e3").unwrap(), 1000);
        assert_eq!(line("18446744073709551615").unwrap(), i64::MAX);
        assert!(line("2.5").is_err());
        assert!(line("\"2\"").is_err());
    }

    #[test]
    fn whitespace_is_not_trimmed_away() {
        assert!(CustomerId::parse(" cust-42").is_err());
        assert!(Sku::parse("KEYBOARD-01 ").is_err());
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
