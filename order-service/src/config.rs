//! order-service settings, from the environment.

use secrecy::SecretString;
use shared::config::{self, ConfigError, KafkaConfig};

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub database_url: SecretString,
    pub database_max_connections: u32,
    pub kafka: KafkaConfig,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            port: config::var("PORT", 9000)?,
            database_url: config::secret(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/orders",
            ),
            database_max_connections: config::var("DATABASE_MAX_CONNECTIONS", 10)?,
            kafka: KafkaConfig::from_env()?,
        })
    }
}
