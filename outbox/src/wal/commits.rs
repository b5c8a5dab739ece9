//! How far the WAL relay may confirm its slot: the transactions read and not yet released, in
//! commit order, each with the number of its events not yet safe. The slot moves to the end
//! of the last transaction that is done with all before it; a transaction whose Commit was not
//! read yet (a large one, still arriving) holds it back, whatever is done after it.

use std::collections::VecDeque;

use super::Lsn;

/// A transaction, as the window names it.
pub(super) type TxnId = u64;

#[derive(Debug)]
struct Txn {
    id: TxnId,
    /// Known once its Commit was read.
    end: Option<Lsn>,
    /// Its events not done yet.
    outstanding: usize,
}

#[derive(Debug, Default)]
pub(super) struct Commits {
    open: VecDeque<Txn>,
    next: TxnId,
}

impl Commits {
    /// Nothing read is unreleased.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    pub fn begin(&mut self) {
        self.open.push_back(Txn {
            id: self.next,
            end: None,
            outstanding: 0,
        });
        self.next += 1;
    }

    /// One more event of the transaction being read; which one it is.
    pub fn event(&mut self) -> Option<TxnId> {
        self.open.back_mut().map(|txn| {
            txn.outstanding += 1;
            txn.id
        })
    }

    pub fn commit(&mut self, end: Lsn) {
        if let Some(txn) = self.open.back_mut() {
            txn.end = Some(end);
        }
    }

    /// One event of `id` is safe.
    pub fn done(&mut self, id: TxnId) {
        if let Some(txn) = self.open.iter_mut().find(|t| t.id == id) {
            txn.outstanding = txn.outstanding.saturating_sub(1);
        }
    }

    /// The end of the last transaction done with all before it, when that moved; those
    /// transactions are released.
    pub fn confirmable(&mut self) -> Option<Lsn> {
        let mut end = None;
        while let Some(txn) = self.open.front() {
            match txn.end {
                Some(at) if txn.outstanding == 0 => {
                    end = Some(at);
                    self.open.pop_front();
                }
                _ => break,
            }
        }
        end
    }

    /// Forgets every transaction: the stream reads them again.
    pub fn clear(&mut self) {
        self.open.clear();
    }
}
