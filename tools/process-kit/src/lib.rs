//! Process control for the local stack and the bench, written once.
//!
//! The outbox pattern's claims are tested by killing and restarting real processes: the
//! broker, PostgreSQL, the relay and the consumers. `scripts/stack` starts them as daemons that
//! outlive it (through this crate's binary, `process-kit`), the bench as children that die with
//! it; both wait for them the same way and stop them the same way.
//!
//! - [`Launch`]: what to run, where, with which environment, and where its output goes.
//! - [`wait_for_port`] and [`wait_for_health`]: until it answers, or [`Waited`] says why not.
//! - [`stop`]: SIGTERM, a grace period, then SIGKILL; [`Stopped`] says which it took.
//! - [`alive`], [`pid_from_file`]: which process a pid file names, if it still runs; and
//!   what `/proc` says of processes ([`proc_stat`], [`cmdline`], [`pids`]), which the bench
//!   measures with.

mod launch;
mod pid;
mod stop;
mod wait;

pub use launch::{Launch, Output};
pub use pid::{alive, cmdline, free_port, pid_from_file, pids, proc_stat, ProcStat};
pub use stop::{stop, Stopped};
pub use wait::{wait_for_health, wait_for_port, Waited};
