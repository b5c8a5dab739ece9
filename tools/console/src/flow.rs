//! One snapshot of the flow, and how an order's steps are read off the rows of its way.
//!
//! Every step's time is a time some service wrote down in its own transaction; nothing here
//! is measured by the console:
//!
//! | step | written by | where |
//! |---|---|---|
//! | order committed | order-service, with its `OrderPlaced` | `orders.created_at` |
//! | `OrderPlaced` published | the relay, after the broker's ack | its outbox row's `published_at` |
//! | stock reserved / rejected | inventory-service, with its inbox row and its answer | the answer's outbox row `created_at` |
//! | answer published | the relay | the answer's `published_at` |
//! | order confirmed / rejected | order-service, with `OrderConfirmed` / `OrderRejected` | that outbox row's `created_at` |
//! | invoiced | invoice-service | the invoice's `issued_at` (MongoDB) |
//!
//! A step shows as done only once the steps before it are. A publication is also known by its
//! effect: the relay marks a row published *after* the broker acknowledged it, so a quick
//! consumer may act on a message before the mark lands (the window in which a relay crash
//! would publish the row again: why delivery is at least once), and Debezium
//! (the compose profile `debezium`) marks nothing at all. A publish step whose next step
//! happened is therefore done, without a time until a mark gives it one. Every time shown is
//! the one its writer recorded.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// What the page shows at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub at: DateTime<Utc>,
    /// The newest orders first.
    pub orders: Vec<OrderFlow>,
    pub outboxes: Vec<OutboxCounts>,
    pub consumers: Vec<ConsumerLag>,
    /// Sources that could not be read this time (the console's log says why).
    pub unavailable: Vec<String>,
}

impl Snapshot {
    /// Whether anything but the time differs: only a change is worth sending to the pages.
    pub fn same_flow(&self, other: &Self) -> bool {
        self.orders == other.orders
            && self.outboxes == other.outboxes
            && self.consumers == other.consumers
            && self.unavailable == other.unavailable
    }
}

/// What waits in one database's outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxCounts {
    pub database: String,
    /// Not yet published, not parked: the relay will send them.
    pub pending: i64,
    /// Given up on after the relay's attempts; an operator retries or skips them.
    pub parked: i64,
}

/// How far one consumer group is behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerLag {
    pub group: String,
    pub topics: Vec<String>,
    /// Messages not yet committed by the group; `None` when Kafka could not be asked.
    pub lag: Option<i64>,
    pub error: Option<String>,
}

/// One order's way through the system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderFlow {
    pub order_id: Uuid,
    pub customer_id: String,
    pub status: String,
    /// Always six, in the order they happen.
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKey {
    Committed,
    Published,
    Reserved,
    AnswerPublished,
    Confirmed,
    Invoiced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Done,
    Waiting,
    /// Will not happen: a rejected order is never invoiced.
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub step: StepKey,
    pub label: &'static str,
    pub state: StepState,
    /// A rejection: "stock rejected" or "order rejected".
    pub rejected: bool,
    pub at: Option<DateTime<Utc>>,
    /// Milliseconds since the order was committed.
    pub elapsed_ms: Option<i64>,
}

/// Inventory's answer to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Reserved,
    Rejected,
}

/// What the sources hold about one order, each time as its writer recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub order_id: Uuid,
    pub customer_id: String,
    pub status: String,
    pub committed_at: DateTime<Utc>,
    pub placed_published_at: Option<DateTime<Utc>>,
    pub answer: Option<AnswerRecord>,
    /// When order-service wrote `OrderConfirmed` or `OrderRejected` (the status flip).
    pub settled_at: Option<DateTime<Utc>>,
    pub invoiced_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerRecord {
    pub decision: Decision,
    pub at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
}

impl OrderFlow {
    pub fn of(record: &OrderRecord) -> Self {
        let rejected = record.answer.as_ref().map(|a| a.decision) == Some(Decision::Rejected)
            || record.status == "REJECTED";
        let answer = record.answer.as_ref();
        let known = [
            (
                StepKey::Committed,
                "order committed",
                Some(record.committed_at),
            ),
            (
                StepKey::Published,
                "OrderPlaced published",
                record.placed_published_at,
            ),
            (
                StepKey::Reserved,
                if rejected {
                    "stock rejected"
                } else {
                    "stock reserved"
                },
                answer.map(|a| a.at),
            ),
            (
                StepKey::AnswerPublished,
                "answer published",
                answer.and_then(|a| a.published_at),
            ),
            (
                StepKey::Confirmed,
                if rejected {
                    "order rejected"
                } else {
                    "order confirmed"
                },
                record.settled_at,
            ),
            (StepKey::Invoiced, "invoiced", record.invoiced_at),
        ];
        let mut before_done = true;
        let steps = known
            .iter()
            .enumerate()
            .map(|(i, &(step, label, at))| {
                // A publication nobody marked (Debezium) is known by the step it caused.
                let publish_seen = matches!(step, StepKey::Published | StepKey::AnswerPublished)
                    && known.get(i + 1).is_some_and(|next| next.2.is_some());
                let state = if step == StepKey::Invoiced && rejected {
                    StepState::Never
                } else if before_done && (at.is_some() || publish_seen) {
                    StepState::Done
                } else {
                    StepState::Waiting
                };
                before_done = state == StepState::Done;
                let at = at.filter(|_| state == StepState::Done);
                Step {
                    step,
                    label,
                    state,
                    rejected: rejected && matches!(step, StepKey::Reserved | StepKey::Confirmed),
                    at,
                    elapsed_ms: at.map(|at| (at - record.committed_at).num_milliseconds()),
                }
            })
            .collect();
        Self {
            order_id: record.order_id,
            customer_id: record.customer_id.clone(),
            status: record.status.clone(),
            steps,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn record(status: &str) -> OrderRecord {
        let t0 = DateTime::parse_from_rfc3339("2026-11-26T13:00:00Z")
            .unwrap()
            .to_utc();
        OrderRecord {
            order_id: Uuid::now_v7(),
            customer_id: "c".to_owned(),
            status: status.to_owned(),
            committed_at: t0,
            placed_published_at: Some(t0 + Duration::milliseconds(5)),
            answer: Some(AnswerRecord {
                decision: Decision::Reserved,
                at: t0 + Duration::milliseconds(20),
                published_at: Some(t0 + Duration::milliseconds(25)),
            }),
            settled_at: Some(t0 + Duration::milliseconds(40)),
            invoiced_at: Some(t0 + Duration::milliseconds(60)),
        }
    }

    fn states(flow: &OrderFlow) -> Vec<StepState> {
        flow.steps.iter().map(|s| s.state).collect()
    }

    #[test]
    fn a_confirmed_order_has_six_done_steps_with_their_times() {
        let flow = OrderFlow::of(&record("CONFIRMED"));
        assert_eq!(states(&flow), vec![StepState::Done; 6]);
        let elapsed: Vec<_> = flow.steps.iter().map(|s| s.elapsed_ms).collect();
        assert_eq!(
            elapsed,
            vec![Some(0), Some(5), Some(20), Some(25), Some(40), Some(60)]
        );
    }

    #[test]
    fn a_step_waits_for_the_steps_before_it() {
        // Nothing from inventory yet: what comes after its answer waits for it, whatever
        // else is written.
        let mut r = record("PENDING");
        r.answer = None;
        let flow = OrderFlow::of(&r);
        assert_eq!(
            states(&flow),
            [StepState::Done; 2]
                .into_iter()
                .chain([StepState::Waiting; 4])
                .collect::<Vec<_>>()
        );
        assert!(flow.steps[4].at.is_none(), "a waiting step shows no time");
    }

    #[test]
    fn a_publication_inventory_acted_on_is_done_before_its_mark_lands() {
        let mut r = record("PENDING");
        r.placed_published_at = None;
        r.settled_at = None;
        r.invoiced_at = None;
        let flow = OrderFlow::of(&r);
        assert_eq!(
            states(&flow),
            [StepState::Done; 4]
                .into_iter()
                .chain([StepState::Waiting; 2])
                .collect::<Vec<_>>()
        );
        assert_eq!(flow.steps[1].at, None, "no mark, no time");
        assert_eq!(flow.steps[3].elapsed_ms, Some(25));
    }

    #[test]
    fn an_unmarked_publication_is_known_by_its_effect() {
        // Under Debezium nothing sets published_at.
        let mut r = record("CONFIRMED");
        r.placed_published_at = None;
        r.answer.as_mut().unwrap().published_at = None;
        let flow = OrderFlow::of(&r);
        assert_eq!(states(&flow), vec![StepState::Done; 6]);
        assert_eq!(flow.steps[1].at, None);
        assert_eq!(flow.steps[3].at, None);
        assert_eq!(flow.steps[2].elapsed_ms, Some(20));
    }

    #[test]
    fn a_rejected_order_is_never_invoiced() {
        let mut r = record("REJECTED");
        r.answer.as_mut().unwrap().decision = Decision::Rejected;
        r.invoiced_at = None;
        let flow = OrderFlow::of(&r);
        assert_eq!(
            states(&flow),
            [StepState::Done; 5]
                .into_iter()
                .chain([StepState::Never])
                .collect::<Vec<_>>()
        );
        assert_eq!(flow.steps[2].label, "stock rejected");
        assert_eq!(flow.steps[4].label, "order rejected");
        let rejections: Vec<_> = flow.steps.iter().map(|s| s.rejected).collect();
        assert_eq!(rejections, [false, false, true, false, true, false]);
    }
}
