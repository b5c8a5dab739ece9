//! order-service settings, from the environment (`PORT`, `DATABASE_URL`, `KAFKA_BROKERS`,
//! `RELAY_EMBEDDED`, `RELAY_MODE`, …).

use outbox::relay::RelaySettings;
use service_kit::config::FromEnv;
use service_kit::config::{self, ConfigError, PostgresServiceConfig};
use service_kit::relay_mode::RelayMode;

#[derive(Debug, Clone)]
pub struct Config {
    pub service: PostgresServiceConfig,
    pub relay: Publisher,
}

/// Who publishes this service's outbox.
#[derive(Debug, Clone, Default)]
pub enum Publisher {
    /// The standalone relay (`outbox-processor`) does. The default, in the local stack and
    /// under Compose.
    #[default]
    Standalone,
    /// This process does, with the same relay code and settings (`RELAY_*`, `RELAY_MODE`),
    /// for its own database only: `RELAY_EMBEDDED=true`.
    Embedded(Box<EmbeddedRelayConfig>),
}

/// The embedded relay's settings, and how it reads the outbox.
#[derive(Debug, Clone)]
pub struct EmbeddedRelayConfig {
    pub settings: RelaySettings,
    pub mode: RelayMode,
}

impl From<PostgresServiceConfig> for Config {
    fn from(service: PostgresServiceConfig) -> Self {
        Self {
            service,
            relay: Publisher::Standalone,
        }
    }
}

/// Port 9000 and database `orders` unless the environment says otherwise; the relay embedded
/// when `RELAY_EMBEDDED=true`.
pub fn from_env() -> Result<Config, ConfigError> {
    let relay = if config::var("RELAY_EMBEDDED", false)? {
        Publisher::Embedded(Box::new(EmbeddedRelayConfig {
            settings: RelaySettings::from_env()?,
            mode: RelayMode::from_env()?,
        }))
    } else {
        Publisher::Standalone
    };
    Ok(Config {
        service: PostgresServiceConfig::from_env(9000, "orders")?,
        relay,
    })
}
