//! Slow and greedy clients (issue 19, item 19 and part of 20): a request head must arrive within
//! the header read timeout, a body within the body read timeout (408), at most `max_connections`
//! are served at once, and what is answered without reading the whole body closes the connection.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Reads until the peer closes (Ok) or `within` passes (Err); returns what was read.
async fn read_to_close(s: &mut TcpStream, within: Duration) -> Result<String, String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + within;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return Err(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_client_dribbling_its_headers_is_disconnected() {
    let app = TestApp::spawn_with(|c| c.header_read_timeout_secs = 1).await;
    let mut socks = Vec::new();
    for _ in 0..30 {
        let mut s = TcpStream::connect(addr(&app)).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        socks.push(s);
    }
    // A header line every 300 ms, as a slowloris does: never a complete head.
    let started = Instant::now();
    let mut open = socks.len();
    while open > 0 && started.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        open = 0;
        for s in &mut socks {
            if s.write_all(b"X-Slow: 1\r\n").await.is_ok() && s.flush().await.is_ok() {
                let mut b = [0u8; 256];
                match tokio::time::timeout(Duration::from_millis(1), s.read(&mut b)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => {}
                    _ => open += 1,
                }
            }
        }
    }
    assert_eq!(open, 0, "{open} slow connections still open after {:?}", started.elapsed());
    // An idle kept-alive connection is closed too; a prompt client is served as ever.
    let mut s = TcpStream::connect(addr(&app)).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let got = read_to_close(&mut s, Duration::from_secs(5)).await.expect("the idle connection is closed");
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408_and_closes() {
    let app = TestApp::spawn_with(|c| c.body_read_timeout_secs = 1).await;
    let mut s = TcpStream::connect(addr(&app)).await.unwrap();
    let head = format!(
        "POST /admin/v1/psps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nAudit-Reason: test\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"name\":"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // Dribble a byte now and then: the deadline counts from the head, not from the last byte.
    let dribble = async {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if s.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1500), dribble).await;
    let got = read_to_close(&mut s, Duration::from_secs(5)).await.expect("the connection is closed");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.to_ascii_lowercase().contains("connection: close"), "{got}");
    assert!(got.contains("\"request_timeout\""), "{got}");
    // Nothing was created.
    let psps = app.send(app.admin(reqwest::Method::GET, "/admin/v1/psps")).await;
    assert_eq!(psps.json()["data"].as_array().map(Vec::len), Some(0), "{}", psps.text());
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let app = TestApp::spawn_with(|c| {
        c.max_connections = 3;
        c.header_read_timeout_secs = 30;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr(&app)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = TcpStream::connect(addr(&app)).await.unwrap();
    fourth.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut b = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(800), fourth.read(&mut b)).await;
    assert!(early.is_err(), "a fourth connection was served while three were open");
    drop(held.pop());
    let got = read_to_close(&mut fourth, Duration::from_secs(5)).await.expect("served once a slot is free");
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
}

#[tokio::test]
async fn answers_given_before_the_body_was_read_close_the_connection() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 2048).await;
    let big = "x".repeat(10_000);
    let r = app
        .send(
            app.admin(reqwest::Method::POST, "/admin/v1/psps")
                .header("content-type", "application/json")
                .body(format!("{{\"name\":\"{big}\"}}")),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.headers.get("connection").map(|v| v.to_str().unwrap()), Some("close"));
    let r = app
        .send(
            app.client
                .post(app.url("/admin/v1/psps"))
                .bearer_auth("wrong-token-wrong-token")
                .header("content-type", "application/json")
                .body("{\"name\":\"x\"}"),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.headers.get("connection").map(|v| v.to_str().unwrap()), Some("close"));
    // A normal answer keeps the connection.
    let r = app.send(app.client.get(app.url("/healthz"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get("connection"), None);
}
