//! The error of settings that cannot work: a value that does not parse, or settings that
//! would stall the relay ([`crate::relay::RelaySettings::validate`]).
//!
//! The crate reads no environment variable itself: its settings are plain structs with
//! defaults for the local stack, and the process that embeds it fills them from wherever it
//! keeps its configuration (the shop's services: `service_kit::config::FromEnv`).

/// A setting that cannot work, named by the environment variable it is read from.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    pub name: String,
    pub value: String,
    pub reason: String,
}
