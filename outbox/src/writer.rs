//! The producing side of the pattern: write an event into the caller's open transaction.
//!
//! There is deliberately no "publish" here. [`Writer::write_in_tx`] takes the transaction the
//! business change is in, so the event exists if and only if that change commits. Publishing
//! is the relay's job ([`crate::relay`]), which reads these rows later, or Debezium's, which
//! reads their inserts from the WAL.
//!
//! [`Writer::commit`] then commits that transaction and wakes the relay, so it publishes at
//! once instead of at its next poll. The wake-up is a hint sent *after* the commit, never
//! inside the transaction: a NOTIFY inside it would hold a cluster-wide lock until the commit
//! is on disk and so make every writer wait for every other (see migration 0004). A lost hint
//! (a crash right after the commit) costs one poll interval, never an event.
//!
//! # Rows kept, or removed right after their insert
//! A relay that polls the table (ours) needs the row until it has published and marked it; its
//! retention deletes it later ([`crate::relay::RelaySettings::retention`]). A relay that tails
//! the WAL (Debezium's Outbox Event Router) needs only the insert, which the log holds once the
//! transaction commits: with [`AfterInsert::Remove`] the writer deletes the row again in the
//! same transaction, as the Debezium Quarkus extension's `remove-after-insert` does, and the
//! table stays empty with nothing to clean up. The price: the replication slot is then the only
//! copy of an event not yet published, so a lost slot loses those events, where kept rows would
//! be snapshotted again; and the polling relay, which finds no row, must not run.

use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::DomainEvent;

/// What becomes of an outbox row once its insert is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AfterInsert {
    /// The row stays for the polling relay, which marks it published. The default.
    #[default]
    Keep,
    /// The row is deleted in the transaction that inserted it: for a relay that reads the
    /// insert from the WAL (Debezium) only.
    Remove,
}

/// Writes events into the outbox, keeping or removing each row ([`AfterInsert`]). Cheap to
/// copy: a service builds one from its settings and hands it to whatever writes events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Writer {
    after_insert: AfterInsert,
}

impl Writer {
    pub const fn new(after_insert: AfterInsert) -> Self {
        Self { after_insert }
    }

    pub const fn after_insert(&self) -> AfterInsert {
        self.after_insert
    }

    /// Appends `event` to the outbox inside the caller's transaction and returns its event id.
    ///
    /// The id is a UUIDv7 (time-ordered) so the primary-key index stays append-mostly.
    /// `traceparent` (W3C) lets one trace span the request, the relay and the consumer;
    /// Debezium reads the same column (`tracingspancontext`).
    pub async fn write_in_tx<E: DomainEvent>(
        &self,
        tx: &mut PgConnection,
        event: &E,
        traceparent: Option<&str>,
    ) -> Result<Uuid, sqlx::Error> {
        let id = Uuid::now_v7();
        let payload = serde_json::to_value(event)
            .map_err(|e| sqlx::Error::Encode(format!("event {} to JSON: {e}", E::TYPE).into()))?;
        sqlx::query(
            "insert into outbox
                 (id, aggregatetype, aggregateid, type, payload, tracingspancontext, schema_version)
             values ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(E::AGGREGATE_TYPE)
        .bind(event.aggregate_id())
        .bind(E::TYPE)
        .bind(payload)
        .bind(traceparent)
        .bind(E::SCHEMA_VERSION)
        .execute(&mut *tx)
        .await?;
        if self.after_insert == AfterInsert::Remove {
            // The insert is in the WAL whatever follows it; Debezium's router ignores deletes.
            sqlx::query("delete from outbox where id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        Ok(id)
    }

    /// Commits `tx`, which wrote events with [`Writer::write_in_tx`], then wakes the relay
    /// (kept rows only: nobody polls for removed ones). Only the commit can fail: once it
    /// succeeded the events are safe, and a wake-up that fails is logged, not returned, since
    /// the relay's poll finds the rows anyway.
    pub async fn commit(
        &self,
        tx: Transaction<'_, Postgres>,
        pool: &PgPool,
    ) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        if self.after_insert == AfterInsert::Keep {
            wake_relay(pool).await;
        }
        Ok(())
    }
}

/// The channel the relay listens on.
pub const WAKE_CHANNEL: &str = "outbox";

/// Sends the relay its wake-up (`NOTIFY outbox`) in a transaction of its own.
pub async fn wake_relay(pool: &PgPool) {
    if let Err(error) = sqlx::query("select pg_notify($1, '')")
        .bind(WAKE_CHANNEL)
        .execute(pool)
        .await
    {
        tracing::warn!(%error, "could not wake the relay; it will find the events at its next poll");
    }
}
