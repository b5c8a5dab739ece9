//! Which process a pid names, and whether it still runs. A pid file outlives its process, and
//! the kernel reuses pids: a live pid is that component only if its command line says so.

use std::{io, path::Path};

/// Whether `pid` runs: it exists and is not a zombie (a zombie has exited; only its parent has
/// not read its status yet).
pub fn alive(pid: u32) -> bool {
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    if unsafe { libc::kill(pid_t, 0) } != 0
        && io::Error::last_os_error().raw_os_error() != Some(libc::EPERM)
    {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the command name, which may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// The pid recorded in `file`, when that process runs and its command line contains `matching`.
pub fn pid_from_file(file: &Path, matching: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
    if !alive(pid) {
        return None;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => {
            let words: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect();
            words.join(" ").contains(matching).then_some(pid)
        }
        // Not ours to read: trust the file, as `kill -0` does.
        Err(_) => Some(pid),
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
