//! The relay service's settings, from the environment: which databases, which broker, the
//! relay's own settings (`RELAY_*`, read by [`RelaySettings::from_env`]), how it reads the
//! outboxes (`RELAY_MODE`, [`RelayMode`]) and the admin token.

use outbox::{kafka::KafkaConfig, relay::RelaySettings};
use secrecy::SecretString;
use service_kit::config::FromEnv;
use service_kit::config::{self, ConfigError, HttpConfig};
use service_kit::relay_mode::RelayMode;

/// A database whose outbox this relay publishes.
#[derive(Debug, Clone)]
pub struct SourceDatabase {
    /// A short name for logs and metrics (`orders`).
    pub name: String,
    pub url: SecretString,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub databases: Vec<SourceDatabase>,
    pub kafka: KafkaConfig,
    pub relay: RelaySettings,
    pub mode: RelayMode,
    /// Bearer token for `/admin/*`; without one the admin API is off.
    pub admin_token: Option<secrecy::SecretString>,
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
        Ok(Self {
            http: HttpConfig::from_env(8080)?,
            databases,
            kafka: KafkaConfig::from_env()?,
            relay: RelaySettings::from_env()?,
            mode: RelayMode::from_env()?,
            admin_token: std::env::var("RELAY_ADMIN_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty())
                .map(secrecy::SecretString::from),
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
