//! The database's side of a WAL relay: the publication that says which changes reach the
//! slot (inserts into `outbox`, nothing else), the replication slot that keeps WAL until the
//! relay confirmed it, and what the slot costs the database meanwhile.
//!
//! A slot holds WAL until it is confirmed, whether anyone reads it or not: a forgotten slot
//! fills the disk. [`SlotState::retained_bytes`] is the number to watch, and
//! [`wal_keep_limit`] says whether PostgreSQL would ever give up on the slot to save itself.

use sqlx::PgPool;

use super::{Lsn, WalError};

/// Whether [`ensure_slot`] made the slot or found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotCreated {
    /// Made now: it starts at the current end of the WAL, so nothing committed before it is
    /// in it. The relay's first start, or a recovery (see the module doc of `wal`).
    Created,
    /// It was there: the relay resumes from what it confirmed last.
    Existing,
}

/// A slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    /// Whether a walsender holds it now, and which backend.
    pub active_pid: Option<i32>,
    /// `reserved`, `extended`, `unreserved`, or `lost`: PostgreSQL removed WAL the slot still
    /// needed (`max_slot_wal_keep_size`), and the slot can never be read again.
    pub wal_status: Option<String>,
    /// WAL the slot keeps from being removed, in bytes.
    pub retained_bytes: i64,
    /// WAL written since the position the relay confirmed, in bytes: its lag.
    pub unconfirmed_bytes: i64,
    /// The position the relay confirmed last: a restart reads what committed after it.
    pub confirmed: Option<Lsn>,
}

/// How much WAL PostgreSQL keeps for a slot before it invalidates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalKeep {
    /// `max_slot_wal_keep_size = -1`: a stuck relay keeps WAL until the disk is full.
    Unlimited,
    /// Past this (as PostgreSQL prints it, e.g. `10GB`), the slot is invalidated instead.
    Limited(String),
}

/// Names PostgreSQL accepts for a slot: lower-case letters, digits and underscores, at most
/// 63, not starting with a digit. The publication gets the same name, so both are safe to
/// put into SQL (quoted all the same, so that a word such as `order` works too).
pub fn check_name(name: &str) -> Result<(), WalError> {
    let valid = name.len() <= 63
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(WalError::BadName(name.to_owned()))
    }
}

/// Creates the publication `name` on the outbox table, for inserts only, unless it exists.
/// Deletes (the writer's `AfterInsert::Remove`) and the relay's own updates never reach the
/// slot.
pub async fn ensure_publication(pool: &PgPool, name: &str) -> Result<(), WalError> {
    check_name(name)?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_publication where pubname = $1)")
            .bind(name)
            .fetch_one(pool)
            .await?;
    if !exists {
        let create =
            format!("create publication \"{name}\" for table outbox with (publish = 'insert')");
        if let Err(error) = sqlx::query(&create).execute(pool).await {
            // Another instance made it first.
            if !is_duplicate(&error) {
                return Err(error.into());
            }
        }
    }
    Ok(())
}

/// Creates the logical slot `name` (plugin `pgoutput`) unless it exists. Creating waits for
/// the transactions running at that moment to end.
pub async fn ensure_slot(pool: &PgPool, name: &str) -> Result<SlotCreated, WalError> {
    check_name(name)?;
    if slot_state(pool, name).await?.is_some() {
        return Ok(SlotCreated::Existing);
    }
    match sqlx::query("select pg_create_logical_replication_slot($1, 'pgoutput')")
        .bind(name)
        .execute(pool)
        .await
    {
        Ok(_) => Ok(SlotCreated::Created),
        Err(error) if is_duplicate(&error) => match slot_state(pool, name).await? {
            // Another instance made it first.
            Some(_) => Ok(SlotCreated::Existing),
            // Slot names are the cluster's: this one belongs to another database.
            None => Err(WalError::SlotElsewhere(name.to_owned())),
        },
        Err(error) => Err(error.into()),
    }
}

/// The slot `name` of this database, or `None` when there is none.
pub async fn slot_state(pool: &PgPool, name: &str) -> Result<Option<SlotState>, WalError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        active_pid: Option<i32>,
        wal_status: Option<String>,
        retained: Option<i64>,
        unconfirmed: Option<i64>,
        confirmed: Option<String>,
    }
    let row: Option<Row> = sqlx::query_as(
        "select active_pid, wal_status,
                pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint as retained,
                pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint as unconfirmed,
                confirmed_flush_lsn::text as confirmed
         from pg_replication_slots where slot_name = $1 and database = current_database()",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        let confirmed = row
            .confirmed
            .map(|text| {
                text.parse()
                    .map_err(|_| WalError::BadValue("confirmed_flush_lsn", text))
            })
            .transpose()?;
        Ok(SlotState {
            active_pid: row.active_pid,
            wal_status: row.wal_status,
            retained_bytes: row.retained.unwrap_or(0),
            unconfirmed_bytes: row.unconfirmed.unwrap_or(0),
            confirmed,
        })
    })
    .transpose()
}

/// Drops the slot `name` and then the publication of that name, when they exist. A slot
/// that is not dropped keeps WAL forever. A walsender lets go of the slot shortly after its
/// reader stopped: this waits up to 10 s for that, then fails with [`WalError::SlotInUse`].
pub async fn drop_slot(pool: &PgPool, name: &str) -> Result<(), WalError> {
    check_name(name)?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Some(state) = slot_state(pool, name).await? {
        if state.active_pid.is_none() {
            sqlx::query("select pg_drop_replication_slot($1)")
                .bind(name)
                .execute(pool)
                .await?;
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(WalError::SlotInUse(format!(
                "slot {name} is still held by backend {:?} after 10 s",
                state.active_pid
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    sqlx::query(&format!("drop publication if exists \"{name}\""))
        .execute(pool)
        .await?;
    Ok(())
}

/// `max_slot_wal_keep_size`: the relay warns at start when it is unlimited.
pub async fn wal_keep_limit(pool: &PgPool) -> Result<WalKeep, WalError> {
    let setting: String = sqlx::query_scalar("select current_setting('max_slot_wal_keep_size')")
        .fetch_one(pool)
        .await?;
    Ok(if setting == "-1" {
        WalKeep::Unlimited
    } else {
        WalKeep::Limited(setting)
    })
}

/// Writes a logical message into the WAL outside any transaction, and returns its position:
/// a slot whose tables are quiet still gets something to confirm, so it does not hold the
/// WAL that other databases of the cluster write.
pub async fn heartbeat(pool: &PgPool) -> Result<Lsn, WalError> {
    let position: String =
        sqlx::query_scalar("select pg_logical_emit_message(false, 'outbox.heartbeat', '')::text")
            .fetch_one(pool)
            .await?;
    position
        .parse()
        .map_err(|_| WalError::BadValue("pg_logical_emit_message", position))
}

fn is_duplicate(error: &sqlx::Error) -> bool {
    // 42710: duplicate_object.
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "42710")
}
