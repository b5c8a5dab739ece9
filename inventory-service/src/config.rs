//! inventory-service settings, from the environment (`PORT`, `DATABASE_URL`, `KAFKA_BROKERS`, …).

use service_kit::config::{ConfigError, PostgresServiceConfig};

pub type Config = PostgresServiceConfig;

/// Port 8000 and database `inventory` unless the environment says otherwise.
pub fn from_env() -> Result<Config, ConfigError> {
    Config::from_env(8000, "inventory")
}
