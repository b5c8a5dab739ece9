//! How the shop's relays read their outboxes (`RELAY_MODE`), for the standalone relay and the
//! one embedded in order-service alike: polling the `outbox` table, or tailing the database's
//! WAL through a replication slot (`outbox::wal`). The relay's guarantees and operations are
//! the same in both; `docs/wal-relay.md` says what differs and when to pick which.

use std::time::Duration;

use outbox::{
    relay::Relays,
    wal::{slot, StreamConfig, WalSettings, WalSource},
};
use secrecy::SecretString;

use crate::{
    config::{millis, string, var, ConfigError, FromEnv},
    StartupError,
};

/// `RELAY_MODE`: `polling` (the default) or `wal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayMode {
    /// Claim rows of the `outbox` table under row locks.
    Polling,
    /// Tail the WAL: one slot and publication per database.
    Wal(WalMode),
}

/// The WAL mode's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalMode {
    /// `RELAY_WAL_SLOT_PREFIX` (`outbox_relay`): a database named `orders` is read through the
    /// slot and publication `outbox_relay_orders`. Slot names are the cluster's, so two
    /// relays of one cluster need different names or prefixes.
    pub slot_prefix: String,
    /// `RELAY_WAL_WINDOW`: events read ahead of the broker at most.
    pub window: usize,
    /// `RELAY_WAL_HEARTBEAT_MS`: how often an idle slot is moved on.
    pub heartbeat: Duration,
    /// `RELAY_WAL_STANDBY_RETRY_MS`: how often a standby instance tries to take the slot.
    pub standby_retry: Duration,
}

impl WalMode {
    /// The slot (and publication) of the database called `name`.
    pub fn slot(&self, name: &str) -> String {
        format!("{}_{name}", self.slot_prefix)
    }
}

impl FromEnv for RelayMode {
    fn from_env() -> Result<Self, ConfigError> {
        let mode = string("RELAY_MODE", "polling");
        match mode.as_str() {
            "polling" => Ok(Self::Polling),
            "wal" => {
                let window = var("RELAY_WAL_WINDOW", WalSettings::DEFAULT_WINDOW)?;
                if window == 0 {
                    return Err(ConfigError {
                        name: "RELAY_WAL_WINDOW".into(),
                        value: "0".into(),
                        reason: "the window must hold at least one event".into(),
                    });
                }
                Ok(Self::Wal(WalMode {
                    slot_prefix: string("RELAY_WAL_SLOT_PREFIX", "outbox_relay"),
                    window,
                    heartbeat: millis("RELAY_WAL_HEARTBEAT_MS", WalSettings::DEFAULT_HEARTBEAT)?,
                    standby_retry: millis(
                        "RELAY_WAL_STANDBY_RETRY_MS",
                        WalSettings::DEFAULT_STANDBY_RETRY,
                    )?,
                }))
            }
            _ => Err(ConfigError {
                name: "RELAY_MODE".into(),
                value: mode,
                reason: "expected polling or wal".into(),
            }),
        }
    }
}

impl RelayMode {
    /// As `RELAY_MODE` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Polling => "polling",
            Self::Wal(_) => "wal",
        }
    }

    /// Adds the database called `name` at `url` to `relays`, read the way this mode reads.
    pub fn add(
        &self,
        relays: Relays,
        name: &str,
        url: &SecretString,
    ) -> Result<Relays, StartupError> {
        let Self::Wal(wal) = self else {
            return Ok(relays.database(name, url)?);
        };
        let slot = wal.slot(name);
        slot::check_name(&slot).map_err(|error| ConfigError {
            name: "RELAY_WAL_SLOT_PREFIX".into(),
            value: wal.slot_prefix.clone(),
            reason: format!("for database {name:?}: {error}"),
        })?;
        let mut settings = WalSettings::new(StreamConfig::new(url.clone(), slot));
        settings.window = wal.window;
        settings.heartbeat = wal.heartbeat;
        settings.standby_retry = wal.standby_retry;
        Ok(relays.database_with(name, url, |pool| WalSource::new(pool, settings))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_database_gets_its_own_slot() {
        let wal = WalMode {
            slot_prefix: "outbox_relay".into(),
            window: 1,
            heartbeat: Duration::from_secs(1),
            standby_retry: Duration::from_secs(1),
        };
        assert_eq!(wal.slot("orders"), "outbox_relay_orders");
        assert_ne!(wal.slot("orders"), wal.slot("inventory"));
    }
}
