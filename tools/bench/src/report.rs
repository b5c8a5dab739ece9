//! docs/benchmarks.md: the machine, the command, every figure beside its baseline, and the
//! notes (how each figure is measured, what each change bought, the gaps) from
//! `tools/bench/notes.md.in`, Markdown whose links are relative to `docs/`, where it lands.

use crate::Results;

/// The hand-written part of docs/benchmarks.md, kept beside the code that measures.
const NOTES: &str = include_str!("../notes.md.in");

/// Where the report goes, from the workspace root (where `scripts/stack bench` runs).
const REPORT: &str = "docs/benchmarks.md";

pub fn write_markdown(results: &Results) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .map(|kb| format!("{:.0} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let mut md = format!(
        "# Benchmarks\n\nMeasured {} on {cores} cores ({cpu}), {memory} RAM, against the local stack \
         (PostgreSQL, {broker} with SQLite storage, SecantusDB), all on one machine; consumers use \
         `fetch.wait.max.ms={wait}`.\n\n\
         Reproduce (the first installs what is missing and starts the servers it needs, then stops \
         them; the second runs against servers already up):\n\n```sh\nscripts/stack bench\n\
         cargo build --release --workspace --bins && target/release/bench all\n```\n\n\
         | measure | figure | baseline (same run) | target |\n|---|---|---|---|\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        broker = crate::process::broker_name(),
        wait = testkit::kafka().fetch_wait_ms,
    );
    for (what, figure, baseline, verdict) in &results.rows {
        md.push_str(&format!("| {what} | {figure} | {baseline} | {verdict} |\n"));
    }
    md.push('\n');
    md.push_str(NOTES);
    std::fs::write(REPORT, md).unwrap_or_else(|e| panic!("write {REPORT}: {e}"));
    println!("\nwrote {REPORT}");
}
