//! flow-console settings, from the environment, with the local stack's values as defaults.

use service_kit::config::FromEnv;
use std::time::Duration;

use outbox::kafka::KafkaConfig;
use secrecy::SecretString;
use service_kit::config::{self, ConfigError, HttpConfig};
use service_kit::relay_mode::RelayMode;

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub orders_database_url: SecretString,
    pub inventory_database_url: SecretString,
    pub mongodb_uri: SecretString,
    pub mongodb_database: String,
    pub kafka: KafkaConfig,
    /// How often the databases are read (`CONSOLE_POLL_MS`, default 300); Kafka's offsets are
    /// read once a second whatever this is.
    pub poll: Duration,
    /// How many of the newest orders the page shows (`CONSOLE_ORDERS`, default 20).
    pub orders: i64,
    /// How the relay reads the outboxes (`RELAY_MODE`), which says where a pending event is.
    pub relay_mode: RelayMode,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let orders: i64 = config::var("CONSOLE_ORDERS", 20)?;
        if !(1..=200).contains(&orders) {
            return Err(ConfigError {
                name: "CONSOLE_ORDERS".to_owned(),
                value: orders.to_string(),
                reason: "a number from 1 to 200".to_owned(),
            });
        }
        Ok(Self {
            http: HttpConfig::from_env(8090)?,
            orders_database_url: config::secret(
                "ORDERS_DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/orders",
            ),
            inventory_database_url: config::secret(
                "INVENTORY_DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/inventory",
            ),
            mongodb_uri: config::secret("MONGODB_URI", "mongodb://127.0.0.1:27017"),
            mongodb_database: config::string("MONGODB_DATABASE", "invoices"),
            kafka: KafkaConfig::from_env()?,
            poll: config::millis("CONSOLE_POLL_MS", Duration::from_millis(300))?,
            orders,
            relay_mode: RelayMode::from_env()?,
        })
    }
}
