//! order-service settings, from the environment (`PORT`, `DATABASE_URL`, `KAFKA_BROKERS`,
//! `RELAY_EMBEDDED`, …).

use outbox::relay::RelaySettings;
use service_kit::config::FromEnv;
use service_kit::config::{self, ConfigError, PostgresServiceConfig};

#[derive(Debug, Clone)]
pub struct Config {
    pub service: PostgresServiceConfig,
    pub relay: RelayMode,
}

/// Who publishes this service's outbox.
#[derive(Debug, Clone, Default)]
pub enum RelayMode {
    /// The standalone relay (`outbox-processor`) does. The default, in the local stack and
    /// under Compose.
    #[default]
    Standalone,
    /// This process does, with the same relay code and settings (`RELAY_*`), for its own
    /// database only: `RELAY_EMBEDDED=true`.
    Embedded(RelaySettings),
}

impl From<PostgresServiceConfig> for Config {
    fn from(service: PostgresServiceConfig) -> Self {
        Self {
            service,
            relay: RelayMode::Standalone,
        }
    }
}

/// Port 9000 and database `orders` unless the environment says otherwise; the relay embedded
/// when `RELAY_EMBEDDED=true`.
pub fn from_env() -> Result<Config, ConfigError> {
    let relay = if config::var("RELAY_EMBEDDED", false)? {
        RelayMode::Embedded(RelaySettings::from_env()?)
    } else {
        RelayMode::Standalone
    };
    Ok(Config {
        service: PostgresServiceConfig::from_env(9000, "orders")?,
        relay,
    })
}
