//! Relay settings, from the environment.

use std::time::Duration;

use secrecy::SecretString;
use shared::config::{self, ConfigError, KafkaConfig};

/// A database whose outbox this relay publishes.
#[derive(Debug, Clone)]
pub struct SourceDatabase {
    /// A short name for logs and metrics (`orders`).
    pub name: String,
    pub url: SecretString,
}

#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Rows claimed per transaction.
    pub batch_size: i64,
    /// How often to look for rows when no notification arrives (the fallback for a lost
    /// `NOTIFY`, e.g. while the listening connection was reconnecting).
    pub poll_interval: Duration,
    /// First retry delay after a failed publish; doubles per attempt up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub databases: Vec<SourceDatabase>,
    pub kafka: KafkaConfig,
    pub relay: RelaySettings,
}

const DEFAULT_DATABASES: &str = "orders=postgres://postgres@127.0.0.1:5432/orders,\
                                 inventory=postgres://postgres@127.0.0.1:5432/inventory";

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let raw = config::string("OUTBOX_DATABASES", DEFAULT_DATABASES);
        let databases = parse_databases(&raw).map_err(|reason| ConfigError {
            name: "OUTBOX_DATABASES".into(),
            value: "(hidden: may hold passwords)".into(),
            reason,
        })?;
        let defaults = RelaySettings::default();
        Ok(Self {
            port: config::var("PORT", 8080)?,
            databases,
            kafka: KafkaConfig::from_env()?,
            relay: RelaySettings {
                batch_size: config::var("RELAY_BATCH_SIZE", defaults.batch_size)?,
                poll_interval: config::millis("RELAY_POLL_INTERVAL_MS", 500)?,
                retry_base: config::millis("RELAY_RETRY_BASE_MS", 500)?,
                retry_max: config::millis("RELAY_RETRY_MAX_MS", 60_000)?,
            },
        })
    }
}

/// `name=url[,name=url...]`.
pub fn parse_databases(raw: &str) -> Result<Vec<SourceDatabase>, String> {
    let mut out: Vec<SourceDatabase> = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, url) = entry.split_once('=').ok_or_else(|| {
            format!(
                "entry {:?} is not name=url",
                entry.split('=').next().unwrap_or("")
            )
        })?;
        let name = name.trim();
        if name.is_empty() || !url.starts_with("postgres") {
            return Err(format!(
                "entry for {name:?} needs a name and a postgres:// URL"
            ));
        }
        if out.iter().any(|d| d.name == name) {
            return Err(format!("database name {name:?} appears twice"));
        }
        out.push(SourceDatabase {
            name: name.to_owned(),
            url: SecretString::from(url.trim().to_owned()),
        });
    }
    if out.is_empty() {
        return Err("no database given".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn parses_named_databases() {
        let dbs = parse_databases(DEFAULT_DATABASES).unwrap();
        assert_eq!(dbs.len(), 2);
        assert_eq!(dbs[1].name, "inventory");
        assert_eq!(
            dbs[1].url.expose_secret(),
            "postgres://postgres@127.0.0.1:5432/inventory"
        );
    }

    #[test]
    fn rejects_bad_lists() {
        assert!(parse_databases("").is_err());
        assert!(parse_databases("orders").is_err());
        assert!(parse_databases("a=postgres://x,a=postgres://y")
            .unwrap_err()
            .contains("twice"));
        assert!(parse_databases("a=mysql://x").is_err());
    }
}
