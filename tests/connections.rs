//! The real binary under connection abuse: idle and slow connections cannot shut out webhooks,
//! every wait has a timeout, and a request in progress is never cut off to make room.
//!
//! Timing bounds are wide on purpose (the machine is shared): the timeouts under test are 1–2 s,
//! a close is awaited for up to 20 s, and "not before the timeout" is checked against the client's
//! own clock, which can only make the connection look older than the daemon thinks it is.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The generous deadline for anything that must happen.
const DEADLINE: Duration = Duration::from_secs(20);

/// The base config with `extra` lines added to `[server]`.
fn config_with(store: &Path, extra: &str) -> String {
    base_config(store).replace("[server]\n", &format!("[server]\n{extra}\n"))
}

/// Waits until the peer closes `stream` (end of file or reset); when that was seen, or `None` if
/// it was still open after `deadline`. Anything the daemon writes first is read and ignored.
async fn closed_within(stream: &mut TcpStream, deadline: Duration) -> Option<Instant> {
    let mut buf = [0u8; 4096];
    let wait = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(deadline, wait).await.ok()
}

/// Reads one HTTP/1.1 response (head and a `Content-Length` body); returns its status.
async fn read_response(stream: &mut TcpStream) -> u16 {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).await.expect("read a response");
        assert!(n > 0, "connection closed before a response; got {:?}", String::from_utf8_lossy(&data));
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().expect("a numeric content-length"))
        .unwrap_or(0);
    while data.len() < head_end + length {
        let n = stream.read(&mut buf).await.expect("read a response body");
        assert!(n > 0, "connection closed inside a response body");
        data.extend_from_slice(&buf[..n]);
    }
    head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status line")
}

/// A kept-alive connection that has been answered one `GET /health`, and when that request was
/// sent (before the daemon's idle clock starts).
async fn kept_alive(daemon: &Daemon) -> (TcpStream, Instant) {
    let mut stream = TcpStream::connect(&daemon.addr).await.expect("connect");
    let sent = Instant::now();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n").await.expect("write");
    let status = tokio::time::timeout(DEADLINE, read_response(&mut stream)).await.expect("a /health answer in time");
    assert_eq!(status, 200);
    (stream, sent)
}

/// A client with no pooled connections: each request opens its own.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).pool_max_idle_per_host(0).build().expect("client")
}

/// One value from `/metrics`, by its full series name.
async fn metric(daemon: &Daemon, series: &str) -> u64 {
    let text = fresh_client().get(daemon.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{series} missing from /metrics:\n{text}"))
}

#[tokio::test]
async fn webhooks_and_health_are_answered_while_more_idle_connections_than_the_cap_are_open() {
    // Timeouts far away: only the cap policy can make room here.
    let daemon = Daemon::start_with(|store| {
        config_with(store, "max_connections = 50\nheader_read_timeout_secs = 600\nidle_timeout_secs = 600")
    });
    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(TcpStream::connect(&daemon.addr).await.expect("connect"));
    }
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(kept_alive(&daemon).await.0);
    }

    let client = fresh_client();
    let body = whatsapp_messages(&[("wamid.cap-1", "5511900000001", "Ana", "still there?")]);
    let (header, signature) = signature_header("whatsapp", body.as_bytes());
    let answer = client
        .post(daemon.url("/webhooks/whatsapp"))
        .header(header, signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the webhook is answered while 80 idle connections are open");
    assert_eq!(answer.status(), 200);
    let health = client.get(daemon.url("/health")).send().await.expect("/health is answered");
    assert_eq!(health.status(), 200);

    let shed = metric(&daemon, r#"parley_connections_shed_total{reason="idle"}"#).await
        + metric(&daemon, r#"parley_connections_shed_total{reason="slow_headers"}"#).await;
    assert!(shed >= 30, "80 idle connections, a cap of 50: at least 30 shed, got {shed}");
    assert!(metric(&daemon, "parley_connections_open").await <= 50);
    assert_eq!(metric(&daemon, r#"parley_connections_shed_total{reason="at_cap"}"#).await, 0);
}

#[tokio::test]
async fn a_connection_that_sends_nothing_or_trickles_is_closed_at_the_header_timeout_from_accept() {
    let daemon =
        Daemon::start_with(|store| config_with(store, "header_read_timeout_secs = 1\nidle_timeout_secs = 600"));
    let silent_from = Instant::now();
    let mut silent = TcpStream::connect(&daemon.addr).await.expect("connect");
    // The HTTP/2 client preface, a byte every 200 ms (4.8 s): it never completes a request.
    let trickle_from = Instant::now();
    let mut trickle = TcpStream::connect(&daemon.addr).await.expect("connect");
    let trickler = tokio::spawn(async move {
        for byte in b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" {
            if trickle.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        closed_within(&mut trickle, DEADLINE).await
    });

    let silent_closed = closed_within(&mut silent, DEADLINE).await.expect("a silent connection is closed");
    let open_for = silent_closed - silent_from;
    assert!(open_for >= Duration::from_millis(900), "closed before the header timeout: {open_for:?}");
    let trickle_closed = trickler.await.unwrap().expect("a trickling connection is closed");
    let open_for = trickle_closed - trickle_from;
    assert!(open_for >= Duration::from_millis(900), "closed before the header timeout: {open_for:?}");
    assert!(metric(&daemon, r#"parley_connections_timed_out_total{timeout="header"}"#).await >= 2);
}

#[tokio::test]
async fn a_kept_alive_connection_outlives_the_header_timeout() {
    let daemon =
        Daemon::start_with(|store| config_with(store, "header_read_timeout_secs = 1\nidle_timeout_secs = 600"));
    let (mut stream, _) = kept_alive(&daemon).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n").await.expect("write");
    let status = tokio::time::timeout(DEADLINE, read_response(&mut stream)).await.expect("answered in time");
    assert_eq!(status, 200, "a kept-alive connection idle for 3 s is still served (idle timeout 600 s)");
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_at_the_idle_timeout() {
    let daemon =
        Daemon::start_with(|store| config_with(store, "header_read_timeout_secs = 600\nidle_timeout_secs = 2"));
    let (mut stream, sent) = kept_alive(&daemon).await;
    let closed = closed_within(&mut stream, DEADLINE).await.expect("an idle connection is closed");
    let open_for = closed - sent;
    assert!(open_for >= Duration::from_millis(1_900), "closed before the idle timeout: {open_for:?}");
    assert_eq!(metric(&daemon, r#"parley_connections_timed_out_total{timeout="idle"}"#).await, 1);
}

#[tokio::test]
async fn a_kept_alive_connection_that_trickles_its_next_request_is_closed_at_the_header_timeout() {
    let daemon =
        Daemon::start_with(|store| config_with(store, "header_read_timeout_secs = 1\nidle_timeout_secs = 600"));
    let (mut stream, _) = kept_alive(&daemon).await;
    let started = Instant::now();
    stream.write_all(b"GET /hea").await.expect("write");
    let (mut read, mut write) = stream.into_split();
    let trickler = tokio::spawn(async move {
        for byte in b"lth HTTP/1.1\r\nHost: test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if write.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        write
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("a slow next request is cut off");
    assert!(closed >= Duration::from_millis(900), "closed before the header timeout: {closed:?}");
    drop(trickler.await);
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_at_the_idle_timeout() {
    let daemon =
        Daemon::start_with(|store| config_with(store, "header_read_timeout_secs = 600\nidle_timeout_secs = 2"));
    let stream = TcpStream::connect(&daemon.addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get(daemon.url("/health")).body(Empty::<Bytes>::new()).expect("a request");
    let sent = Instant::now();
    let response = sender.send_request(request).await.expect("an h2 answer");
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.expect("the body");
    let ended = tokio::time::timeout(DEADLINE, connection).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection was still open after {DEADLINE:?}");
    assert!(sent.elapsed() >= Duration::from_millis(1_900), "closed before the idle timeout");
}

#[tokio::test]
async fn at_the_cap_waiting_connections_are_shed_but_not_one_in_the_middle_of_a_slow_body() {
    let daemon = Daemon::start_with(|store| {
        config_with(
            store,
            "max_connections = 5\nheader_read_timeout_secs = 600\nidle_timeout_secs = 600\nrequest_timeout_secs = 120",
        )
    });
    let body = whatsapp_messages(&[("wamid.slow-body-1", "5511900000002", "Bruno", "a slow upload")]);
    let (header, signature) = signature_header("whatsapp", body.as_bytes());
    let mut slow = TcpStream::connect(&daemon.addr).await.expect("connect");
    let head = format!(
        "POST /webhooks/whatsapp HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{header}: {signature}\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.expect("write");
    // hyper sends 100 Continue when the handler starts reading the body: the request is running.
    let mut continued = Vec::new();
    let mut buf = [0u8; 256];
    tokio::time::timeout(DEADLINE, async {
        while !continued.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = slow.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before 100 Continue");
            continued.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("100 Continue in time");
    assert!(continued.starts_with(b"HTTP/1.1 100"), "{}", String::from_utf8_lossy(&continued));

    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(&daemon.addr).await.expect("connect"));
    }
    let health = fresh_client().get(daemon.url("/health")).send().await.expect("/health is answered at the cap");
    assert_eq!(health.status(), 200);

    for chunk in body.as_bytes().chunks(body.len().div_ceil(10)) {
        slow.write_all(chunk).await.expect("the slow request's connection is still open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = tokio::time::timeout(DEADLINE, read_response(&mut slow)).await.expect("answered in time");
    assert_eq!(status, 200, "the slow webhook is stored");
    let shed = metric(&daemon, r#"parley_connections_shed_total{reason="slow_headers"}"#).await;
    assert!(shed >= 16, "20 silent connections at a cap of 5: at least 16 shed, got {shed}");
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit_and_a_cap_above_it_is_warned_about() {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    let Some(hard) = hard.filter(|&h| h > 512) else {
        panic!("this test needs a finite hard open-file limit above 512, not {hard:?}");
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("config.toml");
    let cap = hard + 1_000;
    std::fs::write(&config_path, config_with(&dir.path().join("store"), &format!("max_connections = {cap}")))
        .expect("write config");
    let mut child = Command::new("sh")
        .args(["-c", r#"ulimit -Sn 512 && exec "$0" serve --config "$1""#])
        .arg(env!("CARGO_BIN_EXE_parley"))
        .arg(&config_path)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start parley with a soft limit of 512");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let end = Instant::now() + DEADLINE;
    while !log.iter().any(|l: &String| l.contains("Listening.")) {
        match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(line) => log.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = log.join("\n");
    let limit =
        log.lines().find(|l| l.contains("Open-file limit.")).unwrap_or_else(|| panic!("no limit logged:\n{log}"));
    assert!(limit.contains(&format!("soft={hard}")) && limit.contains("raised_from=512"), "{limit}");
    assert!(
        log.lines()
            .any(|l| l.contains("server.max_connections is above") && l.contains(&format!("max_connections={cap}"))),
        "no warning about max_connections {cap}:\n{log}"
    );
}
