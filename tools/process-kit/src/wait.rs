//! Waiting until a process serves: its port accepts connections, or its `GET /health` answers
//! 200. A process that exits meanwhile ends the wait at once, instead of at the time limit.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use crate::alive;

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waited {
    Ready,
    /// The process it watched exited first.
    Exited,
    /// The time limit passed. `last` is the last answer to `GET /health` (an HTTP status), or
    /// `None` when nothing answered.
    TimedOut {
        last: Option<u16>,
    },
}

/// How long one attempt may take, and the pause between attempts.
const ATTEMPT: Duration = Duration::from_secs(2);
const PAUSE: Duration = Duration::from_millis(200);

/// Until a TCP connection to 127.0.0.1:`port` is accepted, `pid` (when given) exits, or
/// `within` passes.
pub fn wait_for_port(port: u16, pid: Option<u32>, within: Duration) -> Waited {
    wait(pid, within, || connect(port).ok().map(|_| 200))
}

/// Until `GET http://127.0.0.1:<port>/health` answers 200, `pid` (when given) exits, or
/// `within` passes.
pub fn wait_for_health(port: u16, pid: Option<u32>, within: Duration) -> Waited {
    wait(pid, within, || health_status(port))
}

fn wait(pid: Option<u32>, within: Duration, mut probe: impl FnMut() -> Option<u16>) -> Waited {
    let deadline = Instant::now() + within;
    let mut last = None;
    loop {
        last = probe().or(last);
        if last == Some(200) {
            return Waited::Ready;
        }
        if pid.is_some_and(|pid| !alive(pid)) {
            return Waited::Exited;
        }
        if Instant::now() >= deadline {
            return Waited::TimedOut { last };
        }
        std::thread::sleep(PAUSE);
    }
}

fn connect(port: u16) -> std::io::Result<TcpStream> {
    TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), ATTEMPT)
}

/// The status of one `GET /health`, or `None` when nothing answered with HTTP within an
/// attempt's time.
fn health_status(port: u16) -> Option<u16> {
    /// More than a status line and headers ever need: past it, it is not a health answer.
    const MAX_HEAD: usize = 16 * 1024;
    let deadline = Instant::now() + ATTEMPT;
    let mut stream = connect(port).ok()?;
    stream.set_write_timeout(Some(ATTEMPT)).ok()?;
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&answer) {
            Ok(httparse::Status::Complete(_)) => return response.code,
            Ok(httparse::Status::Partial) if answer.len() < MAX_HEAD => {}
            // Not HTTP, or a head no health answer has.
            _ => return None,
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        match stream.read(&mut chunk).ok()? {
            0 => return None,
            n => answer.extend_from_slice(&chunk[..n]),
        }
    }
}
