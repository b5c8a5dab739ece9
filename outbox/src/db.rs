//! PostgreSQL connection pools and the pattern's tables.
//!
//! The outbox and inbox tables are defined once, here (`migrations/`), and every service
//! database gets them next to its own tables. This crate's migrations and a service's share
//! sqlx's bookkeeping table, so each is told to ignore the other's versions: ours are 1..99,
//! a service's start at 100.

use std::{str::FromStr, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use sqlx::{
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool,
};

/// The outbox and inbox tables.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

pub async fn connect(url: &SecretString, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        // Fail a request quickly when the database is gone instead of queueing forever.
        .acquire_timeout(Duration::from_secs(5))
        .connect(url.expose_secret())
        .await
}

/// Creates or updates the outbox and inbox tables, next to whatever migrations of its own the
/// database has (numbered from 100).
pub async fn migrate_outbox(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    migrate(pool, &Migrator::DEFAULT).await
}

/// Runs this crate's migrations, then the service's own.
pub async fn migrate(pool: &PgPool, service: &Migrator) -> Result<(), sqlx::migrate::MigrateError> {
    for source in [&MIGRATOR, service] {
        let mut migrator = Migrator {
            migrations: source.migrations.clone(),
            ..Migrator::DEFAULT
        };
        migrator.set_ignore_missing(true);
        migrator.run(pool).await?;
    }
    Ok(())
}

/// A pool that connects on first use: the relay starts, and serves its other databases, even
/// while one of them is down. Its sessions end a transaction that stays idle for longer than
/// `idle_transaction_timeout` (the relay's lease).
pub fn connect_lazy(
    url: &SecretString,
    max_connections: u32,
    idle_transaction_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    let timeout_ms = idle_transaction_timeout.as_millis().to_string();
    let options = PgConnectOptions::from_str(url.expose_secret())?
        .options([("idle_in_transaction_session_timeout", timeout_ms.as_str())]);
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}
