//! Settings from environment variables, with defaults that match the local stack.
//!
//! Every setting has a default so a service runs on a laptop with the local stack up; production
//! overrides them through the environment (12-factor style). The library's own settings
//! ([`crate::relay::RelaySettings`], `kafka::KafkaConfig`) are read with these helpers, and so
//! are the services' settings.

use std::{fmt::Display, str::FromStr, time::Duration};

use secrecy::SecretString;

#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    pub name: String,
    pub value: String,
    pub reason: String,
}

/// Reads `name` and parses it, or returns `default` when it is unset or empty.
pub fn var<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => {
            value.trim().parse().map_err(|e: T::Err| ConfigError {
                name: name.to_owned(),
                value,
                reason: e.to_string(),
            })
        }
        _ => Ok(default),
    }
}

/// A string setting (no parsing needed).
pub fn string(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// A setting that may hold a password (database URLs): it never shows up in logs or `Debug`.
pub fn secret(name: &str, default: &str) -> SecretString {
    SecretString::from(string(name, default))
}

/// A duration given in milliseconds, e.g. `RELAY_POLL_INTERVAL_MS=250`.
pub fn millis(name: &str, default: Duration) -> Result<Duration, ConfigError> {
    let default_ms = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
    var(name, default_ms).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_values_are_reported_with_their_name() {
        std::env::set_var("OUTBOX_CONFIG_TEST_PORT", "nine");
        let err = var::<u16>("OUTBOX_CONFIG_TEST_PORT", 1).unwrap_err();
        assert_eq!(err.name, "OUTBOX_CONFIG_TEST_PORT");
        assert!(err.to_string().contains("nine"));
        std::env::set_var("OUTBOX_CONFIG_TEST_PORT", "");
        assert_eq!(var::<u16>("OUTBOX_CONFIG_TEST_PORT", 7).unwrap(), 7);
    }
}
