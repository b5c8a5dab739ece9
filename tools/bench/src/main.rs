//! Benchmarks of the outbox system, against the local stack (`scripts/stack infra-up`).
//!
//! Every figure is printed next to a baseline measured in the same run on the same servers,
//! and the ratio between them is what the targets in docs/benchmarks.md are about: absolute
//! numbers depend on the machine, ratios much less. The services under test run as real
//! release binaries (child processes), so what is measured is what is deployed.
//!
//! ```sh
//! scripts/stack bench            # or, with the stack's servers up:
//! cargo build --release --workspace --bins && target/release/bench all
//! ```
//!
//! # Layout
//! - [`relay`]: throughput against raw produce, and CPU per 1,000 events.
//! - [`versus`]: our relay beside Debezium (as shipped, and tuned), in one run.
//! - [`intake`]: `POST /orders` against bare transactions.
//! - [`latency`]: end to end at 200 orders/s, with every process's CPU.
//! - [`broker`]: the broker alone: group join, failover, fetch wait against idle CPU.
//! - [`process`], [`stats`], [`report`]: children and /proc, percentiles, docs/benchmarks.md.

mod broker;
mod intake;
mod latency;
mod process;
mod relay;
mod report;
mod stats;
mod versus;

/// The table every measurement adds a row to: what, figure, same-run baseline, verdict.
#[derive(Default)]
pub struct Results {
    rows: Vec<(String, String, String, String)>,
}

impl Results {
    pub fn add(&mut self, what: &str, figure: String, baseline: String, verdict: String) {
        println!("{what:<44} {figure:<34} {baseline:<34} {verdict}");
        self.rows.push((what.into(), figure, baseline, verdict));
    }
}

const USAGE: &str = "usage: bench [all|raw|relay|debezium|scaling|intake|latency|broker]";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map_or("all", String::as_str);
    if what == "member" {
        // A child of the broker benchmark's failover measurement, not a measurement itself.
        let [_, topic, group] = args.as_slice() else {
            eprintln!("usage: bench member <topic> <group>");
            std::process::exit(2);
        };
        broker::run_member(topic, group).await;
        return;
    }
    let mut results = Results::default();
    println!(
        "{:<44} {:<34} {:<34} target",
        "measure", "figure", "baseline (same run)"
    );
    match what {
        "relay" => {
            relay::relay_throughput(&mut results, &[1]).await;
            versus::versus(&mut results).await;
        }
        "debezium" => versus::versus(&mut results).await,
        "raw" => relay::relay_throughput(&mut results, &[]).await,
        "scaling" => relay::relay_throughput(&mut results, &[1, 2, 4]).await,
        "intake" => intake::intake(&mut results).await,
        "latency" => latency::latency(&mut results).await,
        "broker" => broker::broker(&mut results).await,
        "all" => {
            relay::relay_throughput(&mut results, &[1, 2, 4]).await;
            versus::versus(&mut results).await;
            intake::intake(&mut results).await;
            latency::latency(&mut results).await;
            broker::broker(&mut results).await;
            report::write_markdown(&results);
        }
        other => {
            eprintln!("{USAGE} (got {other:?})");
            std::process::exit(2);
        }
    }
}
