//! invoice-service settings, from the environment.

use outbox::kafka::KafkaConfig;
use service_kit::config::FromEnv;
use service_kit::config::{self, ConfigError, HttpConfig};

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub mongodb_uri: secrecy::SecretString,
    pub mongodb_database: String,
    pub kafka: KafkaConfig,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            http: HttpConfig::from_env(8001)?,
            mongodb_uri: config::secret("MONGODB_URI", "mongodb://127.0.0.1:27017"),
            mongodb_database: config::string("MONGODB_DATABASE", "invoices"),
            kafka: KafkaConfig::from_env()?,
        })
    }
}
