//! Where events go: one topic per aggregate type, named the way Debezium's Outbox Event Router
//! names them, so that Debezium can replace this crate's relay without a consumer noticing. The
//! names are the same whatever the broker (on NATS JetStream they are subjects).

/// Topic names, with an optional prefix. Tests give each run a unique prefix so that they
/// share one broker without seeing each other's events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicNames {
    prefix: String,
}

impl TopicNames {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The topic an aggregate type's events go to: Debezium's default
    /// (`outbox.event.${routedByValue}`).
    pub fn topic_for(&self, aggregate_type: &str) -> String {
        format!("{}outbox.event.{aggregate_type}", self.prefix)
    }

    /// Where a consumer group parks messages it can never process.
    pub fn dead_letter_topic(&self, group_id: &str) -> String {
        format!("{}{group_id}.dlq", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_debezium_naming_and_prefix() {
        let names = TopicNames::new("t1.");
        assert_eq!(names.topic_for("order"), "t1.outbox.event.order");
        assert_eq!(
            names.dead_letter_topic("inventory-service"),
            "t1.inventory-service.dlq"
        );
        assert_eq!(
            TopicNames::default().topic_for("order"),
            "outbox.event.order"
        );
    }
}
