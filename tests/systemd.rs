//! The real binary under a stand-in for systemd: a datagram socket in the test's temp dir is its
//! `NOTIFY_SOCKET`. `READY=1` once everything answers, `WATCHDOG=1` while the heartbeat passes,
//! `STOPPING=1` on SIGTERM, and SIGHUP reloads the configuration without a restart.

mod support;

use std::ffi::OsString;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use parley::platform::sign_hex;
use support::*;

/// A stand-in for systemd's notify socket.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
    /// Every datagram received so far, each split into its `KEY=VALUE` lines.
    received: Vec<Vec<String>>,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        NotifySocket { socket, path, _dir: dir, received: Vec::new() }
    }

    fn env(&self) -> (&'static str, OsString) {
        ("NOTIFY_SOCKET", self.path.clone().into_os_string())
    }

    /// Reads one datagram, waiting at most `timeout`.
    fn receive(&mut self, timeout: Duration) -> Option<Vec<String>> {
        self.socket.set_read_timeout(Some(timeout.max(Duration::from_millis(1)))).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        let lines: Vec<String> = String::from_utf8_lossy(&buf[..n]).lines().map(str::to_owned).collect();
        self.received.push(lines.clone());
        Some(lines)
    }

    /// Waits for the next datagram with the line `wanted`; returns it.
    fn wait_for(&mut self, wanted: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {wanted} within {within:?}; received {:?}", self.received);
            if let Some(lines) = self.receive(left)
                && lines.iter().any(|l| l == wanted)
            {
                return lines;
            }
        }
    }

    /// Everything that arrived until the socket stays quiet for `quiet`.
    fn drain(&mut self, quiet: Duration) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        while let Some(lines) = self.receive(quiet) {
            out.push(lines);
        }
        out
    }
}

/// The value of `KEY=` in a datagram.
fn field<'a>(lines: &'a [String], key: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

fn count(datagrams: &[Vec<String>], line: &str) -> usize {
    datagrams.iter().filter(|d| d.iter().any(|l| l == line)).count()
}

/// A GET over a plain socket: the status code, or the error.
fn get_status(addr: &str, path: &str) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0))
}

/// Rewrites the daemon's config file with `edit` applied to the base config.
fn rewrite_config(daemon: &Daemon, edit: impl Fn(String) -> String) {
    let text = edit(base_config(&daemon.dir.join("store")));
    std::fs::write(&daemon.config_path, text).unwrap();
}

/// Sends SIGHUP and waits until the reload is over (`RELOADING=1`, then `READY=1`); returns the
/// status line of the `READY=1`.
fn reload(daemon: &Daemon, notify: &mut NotifySocket) -> String {
    daemon.hangup();
    notify.wait_for("RELOADING=1", Duration::from_secs(30));
    let ready = notify.wait_for("READY=1", Duration::from_secs(30));
    field(&ready, "STATUS").unwrap_or_default().to_owned()
}

fn messenger_body(mid: &str) -> String {
    serde_json::json!({"object":"page","entry":[{"id":PAGE_ID,"time":1718000000123_i64,"messaging":[
        {"sender":{"id":"7212345678901234"},"recipient":{"id":PAGE_ID},"timestamp":1718000000045_i64,
         "message":{"mid":mid,"text":"Is my order on its way?"}}]}]})
    .to_string()
}

/// POSTs a Messenger webhook signed with `secret`; returns the status.
async fn post_messenger(client: &reqwest::Client, daemon: &Daemon, secret: &str, mid: &str) -> u16 {
    let body = messenger_body(mid);
    let signature = format!("sha256={}", sign_hex(secret.as_bytes(), &[body.as_bytes()]));
    let response = client
        .post(daemon.url("/webhooks/facebook"))
        .header("X-Hub-Signature-256", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    response.status().as_u16()
}

#[test]
fn ready_is_sent_once_the_listener_the_store_and_every_channel_answer() {
    let mut notify = NotifySocket::bind();
    let mut daemon = Daemon::launch_with_env(base_config, &[notify.env()]);
    let ready = notify.wait_for("READY=1", Duration::from_secs(30));
    let status = field(&ready, "STATUS").expect("a status line with READY=1").to_owned();
    assert!(status.contains("4 channels (facebook, whatsapp, viber, linkedin)"), "{status}");
    // The address in the status line is the bound one (port 0 was asked for, so only a READY sent
    // after binding can name it), and at this moment everything /ready checks is up.
    let addr = status.strip_prefix("listening on ").and_then(|rest| rest.split(',').next()).unwrap().to_owned();
    assert_eq!(get_status(&addr, "/ready").expect("the listener answers at READY=1"), 200);
    daemon.addr = addr;
    assert_eq!(count(&notify.received, "READY=1"), 1);
    assert!(daemon.log().contains("Listening."));
}

#[test]
fn watchdog_beats_arrive_repeatedly_when_systemd_asks_for_them() {
    let mut notify = NotifySocket::bind();
    let daemon = Daemon::start_with_env(base_config, &[notify.env(), ("WATCHDOG_USEC", "2000000".into())]);
    notify.wait_for("READY=1", Duration::from_secs(30));
    for _ in 0..3 {
        notify.wait_for("WATCHDOG=1", Duration::from_secs(30));
    }
    assert!(daemon.log().contains("Watchdog on"), "{}", daemon.log());
    assert!(!daemon.log().contains("Heartbeat failed"), "{}", daemon.log());
}

#[test]
fn no_watchdog_beats_without_watchdog_usec_or_when_the_watchdog_is_another_process() {
    let mut plain = NotifySocket::bind();
    let mut elsewhere = NotifySocket::bind();
    let mut without = Daemon::start_with_env(base_config, &[plain.env()]);
    // WATCHDOG_PID names another process (pid 1 is never a test's child).
    let mut foreign = Daemon::start_with_env(
        base_config,
        &[elsewhere.env(), ("WATCHDOG_USEC", "2000000".into()), ("WATCHDOG_PID", "1".into())],
    );
    plain.wait_for("READY=1", Duration::from_secs(30));
    elsewhere.wait_for("READY=1", Duration::from_secs(30));
    // Were the heartbeat on, its first beat would follow READY at once and then one every second.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(count(&plain.drain(Duration::from_millis(100)), "WATCHDOG=1"), 0);
    assert_eq!(count(&elsewhere.drain(Duration::from_millis(100)), "WATCHDOG=1"), 0);
    assert!(without.is_running() && foreign.is_running());
    assert!(!foreign.log().contains("Watchdog on"));
}

#[test]
fn sigterm_sends_stopping_before_the_daemon_exits() {
    let mut notify = NotifySocket::bind();
    let mut daemon = Daemon::start_with_env(base_config, &[notify.env()]);
    notify.wait_for("READY=1", Duration::from_secs(30));
    let status = daemon.terminate();
    assert!(status.success(), "{status:?}\n{}", daemon.log());
    let after = notify.drain(Duration::from_millis(200));
    let stopping = after.iter().find(|d| d.iter().any(|l| l == "STOPPING=1")).expect("STOPPING=1 was sent");
    assert_eq!(field(stopping, "STATUS"), Some("shutting down"));
    assert_eq!(count(&after, "READY=1"), 0, "nothing claims readiness after STOPPING=1: {after:?}");
}

#[tokio::test]
async fn sighup_puts_a_new_signing_secret_in_force_without_a_restart() {
    const NEW_SECRET: &str = "rotated-facebook-app-secret";
    let mut notify = NotifySocket::bind();
    let mut daemon = Daemon::start_with_env(base_config, &[notify.env()]);
    notify.wait_for("READY=1", Duration::from_secs(30));
    let client = client();
    let pid = daemon.pid();
    assert_eq!(post_messenger(&client, &daemon, FACEBOOK_SECRET, "m_before").await, 200);

    rewrite_config(&daemon, |c| c.replace(FACEBOOK_SECRET, NEW_SECRET));
    let status = reload(&daemon, &mut notify);
    assert!(status.contains("configuration reloaded (1 changed settings applied)"), "{status}");

    assert_eq!(post_messenger(&client, &daemon, NEW_SECRET, "m_after").await, 200);
    assert_eq!(post_messenger(&client, &daemon, FACEBOOK_SECRET, "m_old_secret").await, 401);
    assert_eq!(daemon.pid(), pid);
    assert!(daemon.is_running());
    let applied = daemon.wait_for_log(&["Configuration reloaded.", "applied="], Duration::from_secs(10));
    assert!(applied.ends_with("applied=facebook.app_secret"), "{applied}");
    let log = daemon.log();
    assert!(!log.contains(NEW_SECRET) && !log.contains(FACEBOOK_SECRET), "a secret reached the log");
    // The other platforms are untouched.
    let (status, _) = post_signed(&client, &daemon, "viber", r#"{"event":"webhook","timestamp":1718000000123}"#).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn sighup_with_an_invalid_config_keeps_the_old_one_and_logs_the_problem() {
    let mut notify = NotifySocket::bind();
    let mut daemon = Daemon::start_with_env(base_config, &[notify.env()]);
    notify.wait_for("READY=1", Duration::from_secs(30));
    let client = client();

    // Blanking a signing secret while its platform stays on is a configuration error.
    rewrite_config(&daemon, |c| {
        c.replace(&format!("app_secret = \"{FACEBOOK_SECRET}\""), "app_secret = \"\"")
            .replace(API_TOKEN, "new-api-token")
    });
    let status = reload(&daemon, &mut notify);
    assert!(status.starts_with("running on the previous configuration"), "{status}");
    let problem = daemon.wait_for_log(&["Configuration problem.", "facebook.app_secret"], Duration::from_secs(10));
    assert!(problem.contains("required while facebook.enabled = true"), "{problem}");
    daemon.wait_for_log(&["Configuration reload refused"], Duration::from_secs(10));

    // Still the old configuration: the old secret signs, and the old API token (not the new one) works.
    assert_eq!(post_messenger(&client, &daemon, FACEBOOK_SECRET, "m_kept").await, 200);
    assert_eq!(api_get(&client, &daemon, "/api/conversations").await.0, 200);
    assert!(daemon.is_running());
}

#[tokio::test]
async fn a_changed_listen_address_is_logged_as_needing_a_restart() {
    let mut notify = NotifySocket::bind();
    let mut daemon = Daemon::start_with_env(base_config, &[notify.env()]);
    notify.wait_for("READY=1", Duration::from_secs(30));

    rewrite_config(&daemon, |c| {
        c.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"").replace(API_TOKEN, "next-token")
    });
    let status = reload(&daemon, &mut notify);
    assert!(status.contains("restart to apply server.listen"), "{status}");
    let line = daemon.wait_for_log(&["take effect only after a restart"], Duration::from_secs(10));
    assert!(line.ends_with("keys=server.listen"), "{line}");
    let applied = daemon.wait_for_log(&["Configuration reloaded.", "applied="], Duration::from_secs(10));
    assert!(applied.ends_with("applied=api.token"), "{applied}");

    // Still listening where it was; the API token that could change live did.
    let client = client();
    let response = client.get(daemon.url("/api/conversations")).bearer_auth("next-token").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(api_get(&client, &daemon, "/api/conversations").await.0, 401, "the old token is out");
    assert!(daemon.is_running());
}

#[tokio::test]
async fn a_reloaded_log_level_takes_effect_at_once() {
    let mut notify = NotifySocket::bind();
    let daemon = Daemon::start_with_env(base_config, &[notify.env()]);
    notify.wait_for("READY=1", Duration::from_secs(30));
    let client = client();
    assert_eq!(post_messenger(&client, &daemon, FACEBOOK_SECRET, "m_at_info").await, 200);

    rewrite_config(&daemon, |c| c.replace("level = \"info\"", "level = \"parley=debug,info\""));
    let status = reload(&daemon, &mut notify);
    assert!(status.contains("(1 changed settings applied)"), "{status}");
    daemon.wait_for_log(&["Configuration reloaded.", "applied=log.level"], Duration::from_secs(10));
    assert!(!daemon.log().contains("Webhook stored."), "a debug line before the reload");

    assert_eq!(post_messenger(&client, &daemon, FACEBOOK_SECRET, "m_at_debug").await, 200);
    daemon.wait_for_log(&["Webhook stored.", "platform=facebook"], Duration::from_secs(10));
}
