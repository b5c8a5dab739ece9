//! `outbox-verify`: checks the whole system's invariants and exits non-zero on a violation.
//! Settings come from the environment, with the local stack's values as defaults.

use std::process::ExitCode;

use outbox::kafka::KafkaConfig;
use service_kit::config;
use verify::{verify, Sources};

#[tokio::main]
async fn main() -> ExitCode {
    service_kit::telemetry::init("outbox-verify");
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
    })
}
