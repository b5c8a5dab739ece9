//! W3C trace context (`traceparent`), carried from the HTTP request that created an event,
//! through the outbox row (`tracingspancontext`, the column Debezium reads too) and the Kafka
//! header, to every consumer and the events they write in turn. Grep one trace id in the
//! logs of every service to follow one order.

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, not all-zero ids.
pub fn is_valid(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    parts.len() == 4
        && [2, 32, 16, 2]
            .iter()
            .zip(&parts)
            .all(|(len, p)| p.len() == *len && p.bytes().all(|b| b.is_ascii_hexdigit()))
        && parts[1].bytes().any(|b| b != b'0')
        && parts[2].bytes().any(|b| b != b'0')
}

/// A new trace, for a request that arrived without one.
pub fn new_root() -> String {
    let trace: u128 = rand::random::<u128>().max(1);
    let span: u64 = rand::random::<u64>().max(1);
    format!("00-{trace:032x}-{span:016x}-01")
}

/// The trace id part, for logs.
pub fn trace_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_traceparents() {
        assert!(is_valid(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!is_valid("00-xyz-00f067aa0ba902b7-01"));
        assert!(!is_valid(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!is_valid("garbage"));
    }

    #[test]
    fn new_roots_are_valid_and_distinct() {
        let (a, b) = (new_root(), new_root());
        assert!(is_valid(&a), "{a}");
        assert_ne!(trace_id(&a), trace_id(&b));
        assert_eq!(trace_id(&a).len(), 32);
    }
}
