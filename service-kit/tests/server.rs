//! Hostile clients against the server every service runs: sockets left idle, headers and
//! bodies trickled a byte at a time. Each is closed (or answered 408) within the configured
//! timeouts, while ordinary requests on other connections go on being answered.

use std::time::{Duration, Instant};

use axum::{routing::get, Router};
use serde_json::Value;
use service_kit::{
    config::HttpConfig,
    http::{Json, Server},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;

const HEADER_READ: Duration = Duration::from_millis(600);
const REQUEST: Duration = Duration::from_millis(1500);

/// A server with short timeouts; answers `GET /ok` and `POST /echo` (a JSON object).
async fn start() -> (String, CancellationToken) {
    let config = HttpConfig {
        header_read_timeout: HEADER_READ,
        request_timeout: REQUEST,
        ..HttpConfig::local(0)
    };
    let server = Server::bind(&config).await.unwrap();
    let address = server.local_addr().unwrap();
    assert!(address.ip().is_loopback(), "binds 127.0.0.1 unless told");
    let app = Router::new().route("/ok", get(|| async { "ok" })).route(
        "/echo",
        axum::routing::post(|Json(body): Json<Value>| async move { Json(body) }),
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(server.serve(app, shutdown.clone()));
    (address.to_string(), shutdown)
}

/// Reads until the server closes the connection (or `bound` passes); what it sent, and when
/// it closed.
async fn read_until_closed(
    stream: &mut (impl AsyncRead + Unpin),
    bound: Duration,
) -> (String, Option<Instant>) {
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + bound;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&received).into(),
                    Some(Instant::now()),
                )
            }
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&received).into(), None),
        }
    }
}

/// Writes `bytes` one at a time, `every` apart, until the server stops taking them.
fn trickle(mut writer: tokio::net::tcp::OwnedWriteHalf, bytes: Vec<u8>, every: Duration) {
    tokio::spawn(async move {
        for byte in bytes {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    });
}

#[tokio::test]
async fn idle_and_trickling_connections_are_closed_while_requests_are_answered() {
    let (address, shutdown) = start().await;
    let opened = Instant::now();
    // Sockets that never send a byte.
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(TcpStream::connect(&address).await.unwrap());
    }
    // A client sending its headers a byte every 100 ms: it would need seconds.
    let (mut trickled_reader, writer) = TcpStream::connect(&address).await.unwrap().into_split();
    trickle(
        writer,
        b"GET /ok HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"
            .to_vec(),
        Duration::from_millis(100),
    );
    // A kept-alive connection, left idle after its answer.
    let mut kept = TcpStream::connect(&address).await.unwrap();
    kept.write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();

    // Meanwhile, ordinary requests are answered.
    let client = testkit::http();
    let mut answered = 0;
    while opened.elapsed() < HEADER_READ * 3 {
        let response = client
            .get(format!("http://{address}/ok"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        answered += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered > 10, "{answered} answered");

    // Each was closed by the server, not before the timeout and within four times of it
    // (measured from when the connection was opened, so these are upper bounds).
    let bound = HEADER_READ * 4;
    for stream in &mut idle {
        let (_, closed) = read_until_closed(stream, bound).await;
        let closed = closed.expect("an idle connection is closed");
        assert!(closed - opened >= HEADER_READ, "closed early");
    }
    let (_, closed) = read_until_closed(&mut trickled_reader, bound).await;
    assert!(
        closed.is_some(),
        "a connection trickling its headers is closed"
    );
    let (answer, closed) = read_until_closed(&mut kept, bound).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed.is_some(), "an idle kept-alive connection is closed");
    shutdown.cancel();
}

#[tokio::test]
async fn a_body_trickled_past_the_request_timeout_is_answered_408_problem() {
    let (address, shutdown) = start().await;
    let started = Instant::now();
    let (mut reader, mut writer) = TcpStream::connect(&address).await.unwrap().into_split();
    writer
        .write_all(
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{",
        )
        .await
        .unwrap();
    trickle(writer, vec![b' '; 199], Duration::from_millis(100));
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&received).contains("}") {
        let n = tokio::time::timeout(REQUEST * 3, reader.read(&mut buf))
            .await
            .expect("answered within the request timeout")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        received.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&received);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert!(started.elapsed() >= REQUEST, "answered early");
    shutdown.cancel();
}
