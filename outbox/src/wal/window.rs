//! The WAL relay's read-ahead: the events read off the slot and not yet done, in commit order,
//! and the transactions they came in. It decides three things, without any I/O:
//!
//! - which events a batch may claim: per aggregate, its events in order, and none of an
//!   aggregate that another batch holds, so two batches never reorder an aggregate;
//! - how far the slot may be confirmed: to the end of the last transaction whose events are
//!   all done (published, or kept in the held table), and everything before it;
//! - when the reader must wait: the window holds at most `capacity` live events, whatever a
//!   transaction's size.
//!
//! A reconnect reads again from the last confirmed position, so [`Window::restart`] forgets
//! what was read and not claimed; events still in a batch finish without moving the slot.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{
    commits::{Commits, TxnId},
    Lsn,
};
use crate::relay::PendingEvent;

/// An aggregate: its type and id.
pub(super) type Aggregate = (String, String);

/// Where an event was read, for the claim that holds it.
pub(super) type Ordinal = u64;

#[derive(Debug)]
struct Entry {
    /// Its aggregate, made once: every claim looks it up.
    aggregate: Aggregate,
    event: PendingEvent,
    /// Its transaction; `None` once a restart dropped the transactions read before it.
    txn: Option<TxnId>,
    claimed: bool,
}

/// What one claim took from the window.
#[derive(Debug, Default)]
pub(super) struct Taken {
    /// Per aggregate, its events in commit order, with where they were read.
    pub chains: Vec<Vec<(Ordinal, PendingEvent)>>,
    /// Events left because their aggregate is in another batch.
    pub deferred: usize,
}

#[derive(Debug)]
pub(super) struct Window {
    entries: BTreeMap<Ordinal, Entry>,
    next: Ordinal,
    commits: Commits,
    /// Claimed events per aggregate.
    in_flight: HashMap<Aggregate, usize>,
    capacity: usize,
}

impl Window {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            next: 0,
            commits: Commits::default(),
            in_flight: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether the reader may read another event.
    pub fn has_room(&self) -> bool {
        self.entries.len() < self.capacity
    }

    /// Events read and not done.
    pub fn live(&self) -> usize {
        self.entries.len()
    }

    /// When the oldest event read and not done was written.
    pub fn oldest(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.entries
            .values()
            .next()
            .map(|entry| entry.event.created_at)
    }

    /// Whether nothing read is still to be done: an idle position may then be confirmed.
    pub fn is_settled(&self) -> bool {
        self.commits.is_empty()
    }

    pub fn begin(&mut self) {
        self.commits.begin();
    }

    pub fn push(&mut self, event: PendingEvent) {
        let txn = self.commits.event();
        self.entries.insert(
            self.next,
            Entry {
                aggregate: (event.aggregatetype.clone(), event.aggregateid.clone()),
                event,
                txn,
                claimed: false,
            },
        );
        self.next += 1;
    }

    pub fn commit(&mut self, end: Lsn) {
        self.commits.commit(end);
    }

    /// Up to `limit` events in commit order, grouped per aggregate, skipping aggregates that
    /// another batch holds and those `held_elsewhere` names (the held table has them).
    pub fn claim(&mut self, limit: usize, held_elsewhere: &HashSet<Aggregate>) -> Taken {
        let mut chains: HashMap<Aggregate, Vec<(Ordinal, PendingEvent)>> = HashMap::new();
        let mut order = Vec::new();
        let mut taken = 0;
        let mut deferred = 0;
        for (ordinal, entry) in &mut self.entries {
            if entry.claimed {
                continue;
            }
            let key = &entry.aggregate;
            if held_elsewhere.contains(key) {
                continue;
            }
            if self.in_flight.contains_key(key) {
                deferred += 1;
                continue;
            }
            if taken == limit {
                break;
            }
            entry.claimed = true;
            taken += 1;
            let chain = chains.entry(key.clone()).or_insert_with(|| {
                order.push(key.clone());
                Vec::new()
            });
            chain.push((*ordinal, entry.event.clone()));
        }
        let mut taken = Taken {
            chains: Vec::with_capacity(order.len()),
            deferred,
        };
        for key in order {
            let chain = chains.remove(&key).unwrap_or_default();
            self.in_flight.insert(key, chain.len());
            taken.chains.push(chain);
        }
        taken
    }

    /// The event read at `ordinal`, while it is live.
    pub fn event(&self, ordinal: Ordinal) -> Option<&PendingEvent> {
        self.entries.get(&ordinal).map(|entry| &entry.event)
    }

    /// The live events of `aggregate`, claimed or not, in commit order: what goes to the held
    /// table with a failed event of it.
    pub fn of_aggregate(&self, aggregate: &Aggregate) -> Vec<(Ordinal, PendingEvent)> {
        self.entries
            .iter()
            .filter(|(_, e)| &e.aggregate == aggregate)
            .map(|(ordinal, e)| (*ordinal, e.event.clone()))
            .collect()
    }

    /// The unclaimed events of the aggregates in `held`, claimed now for the held table.
    pub fn claim_held(&mut self, held: &HashSet<Aggregate>) -> Vec<(Ordinal, PendingEvent)> {
        let mut moved = Vec::new();
        for (ordinal, entry) in &mut self.entries {
            if entry.claimed || !held.contains(&entry.aggregate) {
                continue;
            }
            entry.claimed = true;
            *self.in_flight.entry(entry.aggregate.clone()).or_default() += 1;
            moved.push((*ordinal, entry.event.clone()));
        }
        moved
    }

    /// The event is safe: acknowledged by the broker, or in the held table.
    pub fn done(&mut self, ordinal: Ordinal) {
        let Some(entry) = self.entries.remove(&ordinal) else {
            return;
        };
        if entry.claimed {
            unclaim(&mut self.in_flight, &entry.aggregate);
        }
        if let Some(txn) = entry.txn {
            self.commits.done(txn);
        }
    }

    /// A claimed event goes back, for a later claim (it was neither published nor failed).
    /// One read before a restart is dropped: the new stream brings it again.
    pub fn release(&mut self, ordinal: Ordinal) {
        let Some(entry) = self.entries.get_mut(&ordinal) else {
            return;
        };
        if !entry.claimed {
            return;
        }
        entry.claimed = false;
        unclaim(&mut self.in_flight, &entry.aggregate);
        if entry.txn.is_none() {
            self.entries.remove(&ordinal);
        }
    }

    /// How far the slot may be confirmed now, when that moved: the end of the last
    /// transaction that is done with all before it.
    pub fn confirmable(&mut self) -> Option<Lsn> {
        self.commits.confirmable()
    }

    /// The stream starts again from the slot's confirmed position: what was read and not
    /// claimed is dropped (it comes again); claimed events finish, but no longer count for a
    /// transaction, and their aggregates stay held until then.
    pub fn restart(&mut self) {
        self.entries.retain(|_, entry| entry.claimed);
        for entry in self.entries.values_mut() {
            entry.txn = None;
        }
        self.commits.clear();
    }
}

/// One claimed event of `aggregate` fewer.
fn unclaim(in_flight: &mut HashMap<Aggregate, usize>, aggregate: &Aggregate) {
    if let Some(count) = in_flight.get_mut(aggregate) {
        *count -= 1;
        if *count == 0 {
            in_flight.remove(aggregate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(aggregate: &str, n: i64) -> PendingEvent {
        PendingEvent {
            id: uuid::Uuid::new_v4(),
            aggregatetype: "order".into(),
            aggregateid: aggregate.into(),
            event_type: "t".into(),
            payload: "{}".into(),
            tracingspancontext: None,
            schema_version: 1,
            seq: n,
            attempts: 0,
            created_at: chrono::Utc::now(),
        }
    }

    fn lsn(n: u64) -> Lsn {
        Lsn::from(n)
    }

    fn ids(chain: &[(Ordinal, PendingEvent)]) -> Vec<(String, i64)> {
        chain
            .iter()
            .map(|(_, e)| (e.aggregateid.clone(), e.seq))
            .collect()
    }

    /// Three transactions over two aggregates.
    fn three_transactions() -> Window {
        let mut window = Window::new(100);
        for (t, events) in [
            [("a", 1), ("b", 2)],
            [("a", 3), ("a", 4)],
            [("b", 5), ("c", 6)],
        ]
        .iter()
        .enumerate()
        {
            window.begin();
            for (aggregate, n) in events {
                window.push(event(aggregate, *n));
            }
            window.commit(lsn(100 * (t as u64 + 1)));
        }
        window
    }

    #[test]
    fn a_claim_keeps_each_aggregate_in_order_and_out_of_other_batches() {
        let mut window = three_transactions();
        let first = window.claim(3, &HashSet::new());
        assert_eq!(
            first.chains.iter().map(|c| ids(c)).collect::<Vec<_>>(),
            vec![
                vec![("a".into(), 1), ("a".into(), 3)],
                vec![("b".into(), 2)]
            ]
        );
        // a and b are in the first batch: only c may go, the rest is deferred.
        let second = window.claim(10, &HashSet::new());
        assert_eq!(
            second.chains.iter().map(|c| ids(c)).collect::<Vec<_>>(),
            vec![vec![("c".into(), 6)]]
        );
        assert_eq!(second.deferred, 2);
    }

    #[test]
    fn the_slot_moves_only_past_transactions_done_with_all_before_them() {
        let mut window = three_transactions();
        // The first two transactions; b 5 then waits for b's batch, and c 6 goes alone.
        let first = window.claim(4, &HashSet::new());
        let second = window.claim(10, &HashSet::new());
        assert_eq!(second.deferred, 1);
        assert_eq!(ids(&second.chains[0]), vec![("c".into(), 6)]);
        let ordinal = |aggregate: &str, n: i64| {
            first
                .chains
                .iter()
                .flatten()
                .find(|(_, e)| e.aggregateid == aggregate && e.seq == n)
                .map(|(o, _)| *o)
                .unwrap()
        };
        // The third transaction's c 6 done first: nothing may be confirmed yet.
        window.done(second.chains[0][0].0);
        assert_eq!(window.confirmable(), None);
        window.done(ordinal("a", 1));
        window.done(ordinal("b", 2));
        assert_eq!(window.confirmable(), Some(lsn(100)));
        window.done(ordinal("a", 3));
        window.done(ordinal("a", 4));
        assert_eq!(window.confirmable(), Some(lsn(200)));
        assert!(!window.is_settled());
        let last = window.claim(10, &HashSet::new());
        assert_eq!(ids(&last.chains[0]), vec![("b".into(), 5)]);
        window.done(last.chains[0][0].0);
        assert_eq!(window.confirmable(), Some(lsn(300)));
        assert!(window.is_settled());
    }

    #[test]
    fn a_transaction_still_being_read_is_never_confirmed() {
        let mut window = Window::new(10);
        window.begin();
        window.push(event("a", 1));
        let batch = window.claim(10, &HashSet::new());
        window.done(batch.chains[0][0].0);
        assert_eq!(window.confirmable(), None, "its Commit is not read yet");
        window.commit(lsn(7));
        assert_eq!(window.confirmable(), Some(lsn(7)));
    }

    #[test]
    fn released_events_go_again_in_order_and_held_aggregates_are_left() {
        let mut window = three_transactions();
        let batch = window.claim(10, &HashSet::new());
        for (ordinal, _) in batch.chains.iter().flatten() {
            window.release(*ordinal);
        }
        let held: HashSet<Aggregate> = [("order".to_string(), "a".to_string())].into();
        let again = window.claim(10, &held);
        let mut seen: Vec<_> = again.chains.iter().flat_map(|c| ids(c)).collect();
        seen.sort();
        assert_eq!(
            seen,
            vec![("b".into(), 2), ("b".into(), 5), ("c".into(), 6)]
        );
        let moved = window.claim_held(&held);
        assert_eq!(
            ids(&moved),
            vec![("a".into(), 1), ("a".into(), 3), ("a".into(), 4)]
        );
    }

    #[test]
    fn the_window_is_bounded_and_a_restart_drops_what_comes_again() {
        let mut window = Window::new(2);
        window.begin();
        window.push(event("a", 1));
        assert!(window.has_room());
        window.push(event("b", 2));
        assert!(!window.has_room());
        let batch = window.claim(1, &HashSet::new());
        window.restart();
        assert_eq!(window.live(), 1, "only the claimed event is left");
        assert!(window.is_settled());
        // Its batch ends without moving the slot, and its aggregate is free again.
        window.release(batch.chains[0][0].0);
        assert_eq!(window.live(), 0);
        assert_eq!(window.confirmable(), None);
    }
}
