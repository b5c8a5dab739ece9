//! `outbox-verify`: checks the whole system's invariants and exits non-zero on a violation.
//! `outbox-verify messages TOPIC KEY [SINCE]` prints, as a JSON array, every message of TOPIC with
//! that key (only those stamped at or after SINCE, an RFC 3339 time, when given):
//! partition, offset, headers and payload (the walkthrough shows an order's event with it).
//! `outbox-verify partitions TOPIC` prints, as a JSON array, the partition, key and id of every
//! message of TOPIC (the test that both relays put a key on the same partition reads it).
//! Settings come from the environment, with the local stack's values as defaults.

use service_kit::config::FromEnv;
use std::process::ExitCode;

use outbox::kafka::KafkaConfig;
use service_kit::config;
use verify::{messages_with_key, placements, verify, Relay, Sources};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            service_kit::telemetry::init("outbox-verify");
            check().await
        }
        // No log lines: its standard output is the JSON, for people and for scripts alike.
        [command, topic, key] if command == "messages" => messages(topic, key, None),
        [command, topic] if command == "partitions" => partitions(topic),
        [command, topic, key, since] if command == "messages" => {
            match chrono::DateTime::parse_from_rfc3339(since) {
                Ok(since) => messages(topic, key, Some(since.to_utc())),
                Err(e) => {
                    eprintln!("outbox-verify: SINCE {since:?} is not an RFC 3339 time: {e}");
                    ExitCode::from(2)
                }
            }
        }
        _ => {
            eprintln!(
                "usage: outbox-verify | outbox-verify messages TOPIC KEY [SINCE] | outbox-verify partitions TOPIC"
            );
            ExitCode::from(2)
        }
    }
}

/// Prints the messages of `topic` with key `key`; exits 1 when there is none.
fn messages(topic: &str, key: &str, since: Option<chrono::DateTime<chrono::Utc>>) -> ExitCode {
    let found = KafkaConfig::from_env()
        .map_err(|e| e.to_string())
        .and_then(|kafka| messages_with_key(&kafka, topic, key, since).map_err(|e| e.to_string()));
    match found {
        Ok(found) => {
            match serde_json::to_string_pretty(&found) {
                Ok(json) => println!("{json}"),
                Err(e) => eprintln!("outbox-verify: {e}"),
            }
            if found.is_empty() {
                eprintln!("outbox-verify: no message with key {key:?} on {topic}");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("outbox-verify: could not read {topic}: {e}");
            ExitCode::from(2)
        }
    }
}

/// Prints where every message of `topic` landed.
fn partitions(topic: &str) -> ExitCode {
    let found = KafkaConfig::from_env()
        .map_err(|e| e.to_string())
        .and_then(|kafka| placements(&kafka, topic).map_err(|e| e.to_string()))
        .and_then(|found| serde_json::to_string(&found).map_err(|e| e.to_string()));
    match found {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("outbox-verify: could not read {topic}: {e}");
            ExitCode::from(2)
        }
    }
}

/// Checks every invariant; exits 1 on a violation.
async fn check() -> ExitCode {
    let sources = match sources() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("outbox-verify: {e}");
            return ExitCode::from(2);
        }
    };
    match verify(&sources).await {
        Ok(report) => {
            print!("{report}");
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("outbox-verify: could not read the system: {e}");
            ExitCode::from(2)
        }
    }
}

fn sources() -> Result<Sources, config::ConfigError> {
    Ok(Sources {
        orders: config::secret(
            "ORDERS_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/orders",
        ),
        inventory: config::secret(
            "INVENTORY_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/inventory",
        ),
        mongodb_uri: config::secret("MONGODB_URI", "mongodb://127.0.0.1:27017"),
        mongodb_database: config::string("MONGODB_DATABASE", "invoices"),
        kafka: KafkaConfig::from_env()?,
        settle: config::millis("VERIFY_SETTLE_MS", std::time::Duration::from_secs(30))?,
        relay: config::var("VERIFY_RELAY", Relay::OutboxProcessor)?,
    })
}
