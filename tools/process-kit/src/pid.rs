//! Which process a pid names, and whether it still runs. A pid file outlives its process, and
//! the kernel reuses pids: a live pid is that component only if its command line says so.

use std::{
    io,
    path::Path,
    time::{Duration, Instant},
};

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
    proc_stat(pid).is_some_and(|stat| stat.state != 'Z')
}

/// What `/proc/<pid>/stat` says of a process, as far as the stack and the bench ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// `R`, `S`, `D`, `T` (stopped), `Z` (zombie), ...
    pub state: char,
    pub parent: u32,
    /// CPU time used so far, user and system, in clock ticks (`sysconf(_SC_CLK_TCK)`).
    pub cpu_ticks: u64,
}

/// `/proc/<pid>/stat` of a process, or `None` when it is gone.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; the fields after its last
    // ')' are fixed: state, parent, ..., utime (14th of the line), stime (15th).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        parent: fields.get(1)?.parse().ok()?,
        cpu_ticks: utime + stime,
    })
}

/// A process's command line, word by word, or `None` when it is gone or not ours to read.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect(),
    )
}

/// Every process running now.
pub fn pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The pid recorded in `file`, when that process runs and its command line contains `matching`.
pub fn pid_from_file(file: &Path, matching: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
    if !alive(pid) {
        return None;
    }
    match settled_cmdline(pid) {
        Some(words) => words.join(" ").contains(matching).then_some(pid),
        // Not ours to read: trust the file, as `kill -0` does.
        None => Some(pid),
    }
}

/// The command line of a process that may be inside `execve` right now: the kernel lets a
/// vfork parent (and so `Command::spawn`) go on before the new program's arguments are in
/// place, and meanwhile `/proc/<pid>/cmdline` reads empty. An empty line that stays empty for
/// 100 ms is a kernel thread's or a zombie's, and names no program.
fn settled_cmdline(pid: u32) -> Option<Vec<String>> {
    let give_up = Instant::now() + Duration::from_millis(100);
    loop {
        let words = cmdline(pid)?;
        if !words.is_empty() || Instant::now() >= give_up {
            return Some(words);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
