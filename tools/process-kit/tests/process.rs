//! The process control the stack and the bench share, on real processes and sockets.

use std::{
    io::{Read, Write},
    net::TcpListener,
    path::PathBuf,
    sync::atomic::{AtomicU16, Ordering},
    sync::Arc,
    time::{Duration, Instant},
};

use process_kit::{
    alive, free_port, pid_from_file, stop, wait_for_health, wait_for_port, Launch, Output, Stopped,
    Waited,
};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("process-kit-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The pid a test's shell script wrote into `file`, once it is there.
fn worker_pid(file: &std::path::Path) -> u32 {
    let waited = Instant::now();
    loop {
        if let Ok(Ok(worker)) = std::fs::read_to_string(file).map(|s| s.trim().parse::<u32>()) {
            return worker;
        }
        assert!(waited.elapsed() < Duration::from_secs(5), "no worker");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sh(script: &str) -> Launch {
    Launch::new("sh").args(["-c", script])
}

#[test]
fn a_daemon_leads_its_own_session_logs_and_stops_on_sigterm() {
    let dir = scratch("daemon");
    let log = dir.join("it.log");
    let pid = sh("echo \"cwd=$(pwd)\"; exec sleep 30")
        .dir(&dir)
        .output(Output::Append(log.clone()))
        .daemon()
        .unwrap();
    assert!(alive(pid));
    // SAFETY: getsid only reads.
    assert_eq!(
        unsafe { libc::getsid(pid as i32) },
        pid as i32,
        "its own session"
    );
    let cwd = format!("cwd={}", dir.display());
    let waited = Instant::now();
    while !std::fs::read_to_string(&log).unwrap().contains(&cwd) {
        assert!(waited.elapsed() < Duration::from_secs(5), "nothing logged");
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(": starting sh -c echo"), "{text}");

    assert_eq!(stop(pid, Duration::from_secs(5)), Stopped::Terminated);
    assert!(!alive(pid));
    assert_eq!(stop(pid, Duration::from_secs(5)), Stopped::NotRunning);
}

#[test]
fn a_restarted_process_appends_to_its_log() {
    let dir = scratch("append");
    let log = dir.join("it.log");
    for run in ["first", "second"] {
        let mut child = sh(&format!("echo {run} run"))
            .output(Output::Append(log.clone()))
            .child()
            .unwrap();
        assert!(child.wait().unwrap().success());
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let first = text.find("first run").expect("first run kept");
    let second = text.find("second run").expect("second run logged");
    assert!(first < second);
    assert_eq!(text.matches("===== ").count(), 2, "{text}");
}

#[test]
fn what_ignores_sigterm_is_killed_with_its_whole_group() {
    // The shell ignores SIGTERM, and so does the sleep it starts (ignored signals are
    // inherited): only SIGKILL, sent to the group, stops both.
    let dir = scratch("group");
    let worker_file = dir.join("worker.pid");
    let script = format!(
        "trap '' TERM; sleep 30 & echo $! > {}; wait",
        worker_file.display()
    );
    let pid = sh(&script).daemon().unwrap();
    let worker = worker_pid(&worker_file);
    let grace = Duration::from_millis(400);
    let started = Instant::now();
    assert_eq!(stop(pid, grace), Stopped::Killed);
    assert!(
        started.elapsed() >= grace,
        "SIGKILL before the grace period ended"
    );
    let waited = Instant::now();
    while alive(worker) {
        assert!(
            waited.elapsed() < Duration::from_secs(5),
            "the group's worker survived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_port_wait_ends_when_it_opens_when_the_process_exits_or_at_the_limit() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    assert_eq!(
        wait_for_port(open, None, Duration::from_secs(2)),
        Waited::Ready
    );

    let closed = free_port().unwrap();
    let mut exits = sh("sleep 0.3").child().unwrap();
    let started = Instant::now();
    assert_eq!(
        wait_for_port(closed, Some(exits.id()), Duration::from_secs(20)),
        // Exited once the kernel calls it a zombie: its parent has not waited yet.
        Waited::Exited
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    exits.wait().unwrap();

    let limit = Duration::from_millis(600);
    let started = Instant::now();
    assert_eq!(
        wait_for_port(closed, None, limit),
        Waited::TimedOut { last: None }
    );
    assert!(started.elapsed() >= limit);
}

/// An HTTP server that answers every request with the status `status` holds at the time.
fn health_server(status: Arc<AtomicU16>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let code = status.load(Ordering::SeqCst);
            let _ = write!(stream, "HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
        }
    });
    port
}

#[test]
fn a_health_wait_reads_the_status_and_reports_the_last_one() {
    let status = Arc::new(AtomicU16::new(503));
    let port = health_server(status.clone());

    let limit = Duration::from_millis(700);
    assert_eq!(
        wait_for_health(port, None, limit),
        Waited::TimedOut { last: Some(503) }
    );

    let flip = status.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        flip.store(200, Ordering::SeqCst);
    });
    let started = Instant::now();
    assert_eq!(
        wait_for_health(port, None, Duration::from_secs(10)),
        Waited::Ready
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "ready before it answered 200"
    );
}

#[test]
fn a_pid_file_names_a_process_only_while_it_runs_that_program() {
    let dir = scratch("pidfile");
    let file = dir.join("it.pid");
    let mut child = Launch::new("sleep").args(["30"]).child().unwrap();
    std::fs::write(&file, format!("{}\n", child.id())).unwrap();
    assert_eq!(pid_from_file(&file, "sleep 30"), Some(child.id()));
    assert_eq!(
        pid_from_file(&file, "nisshi broker"),
        None,
        "another program's pid"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(pid_from_file(&file, "sleep 30"), None, "a pid that is gone");
    std::fs::write(&file, "not a pid").unwrap();
    assert_eq!(pid_from_file(&file, "sleep"), None);
    assert_eq!(pid_from_file(&dir.join("missing.pid"), "sleep"), None);
}

#[test]
fn what_outlives_its_leader_after_sigterm_is_killed_too() {
    // The shell exits on SIGTERM; the worker it started ignores it and would keep running
    // (and keep its ports) without the group's SIGKILL.
    let dir = scratch("orphan");
    let worker_file = dir.join("worker.pid");
    let script = format!(
        "(trap '' TERM; exec sleep 30) & echo $! > {}; wait",
        worker_file.display()
    );
    let pid = sh(&script).daemon().unwrap();
    let worker = worker_pid(&worker_file);
    // Time for the worker to ignore SIGTERM before it comes.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(stop(pid, Duration::from_secs(5)), Stopped::Terminated);
    let waited = Instant::now();
    while alive(worker) {
        assert!(
            waited.elapsed() < Duration::from_secs(5),
            "the worker outlived its group's stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pid_1_is_never_signalled() {
    assert_eq!(stop(1, Duration::from_millis(10)), Stopped::NotRunning);
    assert_eq!(stop(0, Duration::from_millis(10)), Stopped::NotRunning);
}

#[test]
fn proc_stat_reads_state_parent_and_cpu_past_an_odd_command_name() {
    // A command name with a space and a parenthesis: the fields after it still parse.
    let dir = scratch("odd-name");
    let program = dir.join("odd ) name");
    std::fs::copy("/bin/sleep", &program).unwrap();
    let mut child = Launch::new(&program).args(["30"]).child().unwrap();
    let pid = child.id();
    let waited = Instant::now();
    let stat = loop {
        let stat = process_kit::proc_stat(pid).expect("a running child has a stat");
        if stat.state == 'S' {
            break stat;
        }
        assert!(waited.elapsed() < Duration::from_secs(5), "{stat:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(stat.parent, std::process::id());
    assert!(process_kit::pids().contains(&pid));
    assert_eq!(
        process_kit::cmdline(pid).unwrap(),
        vec![program.display().to_string(), "30".to_owned()]
    );
    child.kill().unwrap();
    let waited = Instant::now();
    while process_kit::proc_stat(pid).map(|s| s.state) != Some('Z') {
        assert!(waited.elapsed() < Duration::from_secs(5), "no zombie");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "a zombie is not alive");
    child.wait().unwrap();
    assert_eq!(process_kit::proc_stat(pid), None);
}
