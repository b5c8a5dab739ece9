//! Stopping a process as an operator would: SIGTERM, so that it drains and commits what it
//! holds, and SIGKILL only when it has not exited within its grace period.

use std::time::{Duration, Instant};

use crate::alive;

/// How a [`stop`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Nothing ran under that pid.
    NotRunning,
    /// It exited after SIGTERM, within the grace period.
    Terminated,
    /// It was still running after the grace period and exited after SIGKILL.
    Killed,
    /// It still runs even after SIGKILL (stuck in the kernel, or not ours to signal).
    Survived,
}

/// How long a process has to exit after SIGKILL before [`Stopped::Survived`].
const AFTER_KILL: Duration = Duration::from_secs(5);

/// Stops `pid`, and everything it started when it leads a process group (a daemon started by
/// [`Launch::daemon`](crate::Launch::daemon) does, a Python or Java server's workers with it).
pub fn stop(pid: u32, grace: Duration) -> Stopped {
    // Never pid 0 or 1: as a group, they would name every process we may signal.
    let Some(pid_t) = libc::pid_t::try_from(pid).ok().filter(|pid| *pid > 1) else {
        return Stopped::NotRunning;
    };
    if !alive(pid) {
        return Stopped::NotRunning;
    }
    // SAFETY: getpgid reads a process's group; it fails harmlessly for a pid that is gone.
    let leads_group = unsafe { libc::getpgid(pid_t) } == pid_t;
    let target = if leads_group { -pid_t } else { pid_t };
    // SAFETY: kill only sends a signal; a pid that is gone makes it fail with ESRCH.
    unsafe { libc::kill(target, libc::SIGTERM) };
    if exited_within(pid, grace) {
        if leads_group && group_remains(pid_t) {
            // The leader went, something it started did not: it would keep the ports.
            // SAFETY: as above.
            unsafe { libc::kill(target, libc::SIGKILL) };
        }
        return Stopped::Terminated;
    }
    // SAFETY: as above.
    unsafe { libc::kill(target, libc::SIGKILL) };
    if exited_within(pid, AFTER_KILL) {
        Stopped::Killed
    } else {
        Stopped::Survived
    }
}

/// Whether any process of the group `pgid` still runs.
fn group_remains(pgid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the group has a member that may be signalled.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

fn exited_within(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}
