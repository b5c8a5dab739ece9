//! The processes a benchmark runs or watches: our release binaries as children, and the
//! servers of the local stack, found by name, for what they cost in CPU and memory. Starting,
//! waiting for health and stopping are `process_kit`'s, as they are for `scripts/stack`.

use std::{collections::HashMap, path::PathBuf, time::Duration, time::Instant};

use process_kit::{Launch, Output, Stopped};
use tokio::process::{Child, Command};
use uuid::Uuid;

/// A binary built next to this one (`cargo build --release --workspace --bins`).
pub fn binary(name: &str) -> PathBuf {
    let path = std::env::current_exe()
        .expect("own path")
        .with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --release --workspace --bins` first",
        path.display()
    );
    path
}

/// Starts one of our services. `BENCH_RUST_LOG` overrides the services' log filter, e.g.
/// `outbox_processor=debug` for the relay's per-batch timings.
pub fn spawn(name: &str, env: &[(&str, String)]) -> Child {
    let filter = std::env::var("BENCH_RUST_LOG").ok().unwrap_or_else(|| {
        env.iter()
            .find(|(k, _)| *k == "RUST_LOG")
            .map_or("warn", |(_, v)| v.as_str())
            .to_owned()
    });
    let launch = env
        .iter()
        .fold(Launch::new(binary(name)), |launch, (k, v)| launch.env(k, v))
        .env("RUST_LOG", filter);
    start(name, launch)
}

/// Starts a program as a child that dies with the bench. Its output is dropped (its errors
/// shown) unless `BENCH_LOGS` names a directory to keep it in, as `<name>-<uuid>.log`.
pub fn start(name: &str, launch: Launch) -> Child {
    let output = match std::env::var_os("BENCH_LOGS").map(PathBuf::from) {
        Some(dir) => {
            let path = dir.join(format!("{name}-{}.log", Uuid::new_v4().simple()));
            eprintln!("  {name} logs to {}", path.display());
            Output::Append(path)
        }
        None => Output::Quiet,
    };
    let command = launch
        .output(output)
        .command()
        .unwrap_or_else(|e| panic!("{name}: cannot open its log: {e}"));
    Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
}

/// How long a service of ours may take to start.
pub const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

/// Until the child answers `GET /health` on `port` with 200; panics when it exits first or
/// `within` passes.
pub async fn wait_healthy(child: &Child, port: u16, within: Duration) {
    let pid = child.id();
    let waited =
        tokio::task::spawn_blocking(move || process_kit::wait_for_health(port, pid, within))
            .await
            .expect("the health wait panicked");
    if waited != process_kit::Waited::Ready {
        panic!("the service on port {port} did not become healthy: {waited:?}");
    }
}

/// Stops a child as a deployment does (SIGTERM, then SIGKILL after `grace`), and reaps it.
pub async fn stop(mut child: Child, grace: Duration) -> Stopped {
    let stopped = match child.id() {
        Some(pid) => tokio::task::spawn_blocking(move || process_kit::stop(pid, grace))
            .await
            .expect("the stop panicked"),
        None => Stopped::NotRunning,
    };
    let _ = child.wait().await;
    stopped
}

/// A free port on 127.0.0.1, for a service to listen on.
pub fn free_port() -> u16 {
    process_kit::free_port().expect("free port")
}

/// Peak resident set size of a process, from /proc (kB).
pub fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time a process has used so far (user + system), from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let ticks = process_kit::proc_stat(pid)?.cpu_ticks;
    Some(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second(),
    ))
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// The pids of running processes whose command line contains `needle` in its program name
/// (first word, or the script a Python interpreter runs).
pub fn pids_named(needle: &str) -> Vec<u32> {
    process_kit::pids()
        .into_iter()
        .filter(|pid| {
            process_kit::cmdline(*pid).is_some_and(|words| {
                words
                    .iter()
                    .take(2)
                    .any(|w| w.rsplit('/').next().is_some_and(|n| n.contains(needle)))
            })
        })
        .collect()
}

/// `root` and the processes whose parent it is.
fn children_of(root: u32) -> Vec<u32> {
    process_kit::pids()
        .into_iter()
        .filter(|pid| {
            *pid == root || process_kit::proc_stat(*pid).is_some_and(|stat| stat.parent == root)
        })
        .collect()
}

/// A named group of processes whose CPU use is watched: one service, or a server with all its
/// processes (PostgreSQL's backends).
#[derive(Debug, Clone)]
pub enum Watched {
    Pid(u32),
    /// Every process whose program name contains this; processes that start while it is
    /// watched are counted from their start.
    Named(&'static str),
    /// A process and its children, such as a PostgreSQL cluster's postmaster and every
    /// backend of that cluster (and no other cluster's).
    Tree(u32),
}

/// CPU use of several processes over a window, as a share of one core.
pub struct CpuMeter {
    watched: Vec<(String, Watched)>,
    started: Instant,
    before: Vec<HashMap<u32, Duration>>,
}

impl CpuMeter {
    pub fn start(watched: Vec<(String, Watched)>) -> Self {
        let before = watched.iter().map(|(_, w)| snapshot(w)).collect();
        Self {
            watched,
            started: Instant::now(),
            before,
        }
    }

    /// Per watched group: its CPU time in the window divided by the window (1.0 = one core).
    /// Groups with no process at all (a server on another machine) are left out.
    pub fn stop(self) -> Vec<(String, f64)> {
        let window = self.started.elapsed().as_secs_f64();
        self.watched
            .into_iter()
            .zip(self.before)
            .filter_map(|((label, w), before)| {
                let after = snapshot(&w);
                if after.is_empty() && before.is_empty() {
                    return None;
                }
                let used: f64 = after
                    .iter()
                    .map(|(pid, t)| {
                        let from = before.get(pid).copied().unwrap_or_default();
                        t.saturating_sub(from).as_secs_f64()
                    })
                    .sum();
                Some((label, used / window))
            })
            .collect()
    }
}

fn snapshot(watched: &Watched) -> HashMap<u32, Duration> {
    let pids = match watched {
        Watched::Pid(pid) => vec![*pid],
        Watched::Named(name) => pids_named(name),
        Watched::Tree(root) => children_of(*root),
    };
    pids.into_iter()
        .filter_map(|pid| Some((pid, cpu_time(pid)?)))
        .collect()
}

/// The Kafka-protocol broker running on this machine, by program name.
pub fn broker_name() -> &'static str {
    ["nisshi", "tansu"]
        .into_iter()
        .find(|name| !pids_named(name).is_empty())
        .unwrap_or("a broker not on this machine")
}

/// The servers of the local stack, by program name: what else runs while we measure. The
/// broker comes first.
pub fn servers() -> Vec<(String, Watched)> {
    let broker = broker_name();
    vec![
        (format!("broker ({broker})"), Watched::Named(broker)),
        (
            "PostgreSQL (all backends)".into(),
            Watched::Named("postgres"),
        ),
        ("SecantusDB".into(), Watched::Named("secantusd")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_grows_with_work() {
        let pid = std::process::id();
        let before = cpu_time(pid).expect("own /proc stat");
        let mut x = 0u64;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let after = cpu_time(pid).expect("own /proc stat");
        assert!(
            after - before >= Duration::from_millis(100),
            "{before:?} -> {after:?}"
        );
        // The test binary is `bench-<hash>`.
        assert!(pids_named("bench").contains(&pid));
    }
}
