//! order-service settings, from the environment (`PORT`, `DATABASE_URL`, `KAFKA_BROKERS`, …).

use shared::config::{ConfigError, PostgresServiceConfig};

pub type Config = PostgresServiceConfig;

/// Port 9000 and database `orders` unless the environment says otherwise.
pub fn from_env() -> Result<Config, ConfigError> {
    Config::from_env(9000, "orders")
}
