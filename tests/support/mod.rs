//! Shared by the integration tests: start the real `parley` binary on a free loopback port with a
//! temporary config and store, sign webhooks the way each platform does, and call the API.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod browser;
pub mod sandbox;
pub mod tmpfs;

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use parley::platform::sign_hex;
use serde_json::{Value, json};

pub const API_TOKEN: &str = "test-api-token-5b1f";
pub const FACEBOOK_SECRET: &str = "test-facebook-app-secret";
pub const FACEBOOK_VERIFY: &str = "test-facebook-verify";
pub const WHATSAPP_SECRET: &str = "test-whatsapp-app-secret";
pub const WHATSAPP_VERIFY: &str = "test-whatsapp-verify";
pub const VIBER_TOKEN: &str = "test-viber-bot-token";
pub const LINKEDIN_SECRET: &str = "test-linkedin-client-secret";
pub const PAGE_ID: &str = "104857600123456";
pub const PHONE_NUMBER_ID: &str = "106540352242922";
/// Where the real-world webhook corpus is: `PARLEY_REALWORLD_WEBHOOKS`, else
/// `../shared/realworld-webhooks` beside the repository (read at run time, never copied in).
pub fn realworld_dir() -> PathBuf {
    match std::env::var_os("PARLEY_REALWORLD_WEBHOOKS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/realworld-webhooks"),
    }
}

/// The customers of the inbound bodies below.
pub const PSID: &str = "7212345678901234";
pub const VIBER_USER: &str = "pttm25kSGUo1919sBORWyA==";
pub const POST: &str = "urn:li:activity:7190000000000000001";

/// The config every test starts from: all four platforms on, test secrets, loopback port 0.
pub fn base_config(store: &Path) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 65536
shutdown_grace_secs = 5

[storage]
path = "{store}"
cache_bytes = 16777216

[api]
token = "{API_TOKEN}"

[log]
level = "info"

[facebook]
enabled = true
app_secret = "{FACEBOOK_SECRET}"
verify_token = "{FACEBOOK_VERIFY}"
page_id = "{PAGE_ID}"
page_access_token = "test-page-token"
api_base = "http://127.0.0.1:9/v23.0"

[whatsapp]
enabled = true
app_secret = "{WHATSAPP_SECRET}"
verify_token = "{WHATSAPP_VERIFY}"
phone_number_id = "{PHONE_NUMBER_ID}"
access_token = "test-wa-token"
api_base = "http://127.0.0.1:9/v23.0"

[viber]
enabled = true
bot_token = "{VIBER_TOKEN}"
bot_name = "Acme Support"
api_base = "http://127.0.0.1:9/pa"

[linkedin]
enabled = true
client_secret = "{LINKEDIN_SECRET}"
organization_id = "2414183"
api_base = "http://127.0.0.1:9"
oauth_base = "http://127.0.0.1:9/oauth/v2"
"#,
        store = store.display()
    )
}

/// A running daemon. Killed on drop.
pub struct Daemon {
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub addr: String,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    _tempdir: Option<tempfile::TempDir>,
}

impl Daemon {
    /// Starts a daemon on a fresh store with `config` (see [`base_config`]).
    pub fn start_with(config: impl FnOnce(&Path) -> String) -> Daemon {
        let tempdir = tempfile::tempdir().expect("temp dir");
        let dir = tempdir.path().to_path_buf();
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config(&dir.join("store"))).expect("write config");
        let mut daemon = Daemon::spawn(dir, config_path);
        daemon._tempdir = Some(tempdir);
        daemon
    }

    /// Starts a daemon with the base config.
    pub fn start() -> Daemon {
        Daemon::start_with(base_config)
    }

    /// Like [`Daemon::start_with`], with extra environment variables (`NOTIFY_SOCKET`, ...).
    pub fn start_with_env(config: impl FnOnce(&Path) -> String, env: &[(&str, OsString)]) -> Daemon {
        Daemon::start_in_tempdir(config, env, true)
    }

    /// Starts the process and returns at once, waiting for nothing: `addr` stays empty until the
    /// test sets it (from the `READY=1` status line, say).
    pub fn launch_with_env(config: impl FnOnce(&Path) -> String, env: &[(&str, OsString)]) -> Daemon {
        Daemon::start_in_tempdir(config, env, false)
    }

    fn start_in_tempdir(config: impl FnOnce(&Path) -> String, env: &[(&str, OsString)], wait: bool) -> Daemon {
        let tempdir = tempfile::tempdir().expect("temp dir");
        let dir = tempdir.path().to_path_buf();
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config(&dir.join("store"))).expect("write config");
        let mut daemon = Daemon::spawn_with(dir, config_path, env, wait);
        daemon._tempdir = Some(tempdir);
        daemon
    }

    fn spawn(dir: PathBuf, config_path: PathBuf) -> Daemon {
        Daemon::spawn_with(dir, config_path, &[], true)
    }

    fn spawn_with(dir: PathBuf, config_path: PathBuf, env: &[(&str, OsString)], wait: bool) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_parley"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .env_remove("RUST_LOG")
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start parley");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let log_writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Listening.")
                    && let Some(addr) = line.split("addr=").nth(1).and_then(|rest| rest.split_whitespace().next())
                {
                    let _ = addr_tx.send(addr.to_owned());
                }
                log_writer.lock().unwrap().push(line);
            }
        });
        if !wait {
            return Daemon { dir, config_path, addr: String::new(), child: Some(child), log, _tempdir: None };
        }
        let addr = match addr_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("daemon did not start; log:\n{}", log.lock().unwrap().join("\n"));
            }
        };
        let daemon = Daemon { dir, config_path, addr, child: Some(child), log, _tempdir: None };
        daemon.wait_ready();
        daemon
    }

    /// Starts a second daemon on the same config and store (after the first stopped).
    pub fn restart(mut self) -> Daemon {
        assert!(self.child.is_none(), "stop or kill the daemon before restarting it");
        let tempdir = self._tempdir.take();
        let mut next = Daemon::spawn(self.dir.clone(), self.config_path.clone());
        next._tempdir = tempdir;
        next
    }

    /// Starts the daemon again on the same config and store, in place (after `kill9` or `terminate`).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "stop or kill the daemon before restarting it");
        let mut next = Daemon::spawn(self.dir.clone(), self.config_path.clone());
        self.child = next.child.take();
        self.addr = next.addr.clone();
        self.log = next.log.clone();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(status) = blocking_get_status(&self.addr, "/ready")
                && status == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "daemon never became ready; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The base URL.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon is running").id()
    }

    /// Sends SIGHUP (reload the configuration).
    pub fn hangup(&self) {
        let status = Command::new("kill").args(["-HUP", &self.pid().to_string()]).status().expect("run kill");
        assert!(status.success());
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| child.try_wait().expect("wait").is_none())
    }

    /// Polls the log until a line contains every one of `parts`; returns that line.
    pub fn wait_for_log(&self, parts: &[&str], within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) =
                self.log.lock().unwrap().iter().find(|line| parts.iter().all(|part| line.contains(part)))
            {
                return line.clone();
            }
            assert!(Instant::now() < deadline, "no log line with {parts:?}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no shutdown, no final flush.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon is running");
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
        assert!(status.success());
        wait_with_deadline(&mut child, Duration::from_secs(30))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits for a child to exit, killing it past the deadline.
pub fn wait_with_deadline(child: &mut Child, deadline: Duration) -> ExitStatus {
    let end = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("process did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A GET without an async runtime, for readiness polling.
fn blocking_get_status(addr: &str, path: &str) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok(code)
}

/// The platforms' signature headers over `body`, computed independently of the daemon's code.
pub fn signature_header(platform: &str, body: &[u8]) -> (&'static str, String) {
    match platform {
        "facebook" => ("X-Hub-Signature-256", format!("sha256={}", sign_hex(FACEBOOK_SECRET.as_bytes(), &[body]))),
        "whatsapp" => ("X-Hub-Signature-256", format!("sha256={}", sign_hex(WHATSAPP_SECRET.as_bytes(), &[body]))),
        "viber" => ("X-Viber-Content-Signature", sign_hex(VIBER_TOKEN.as_bytes(), &[body])),
        // The documentation's literal form: HMAC over "hmacsha256=" + body, bare hex.
        "linkedin" => ("X-LI-Signature", sign_hex(LINKEDIN_SECRET.as_bytes(), &[b"hmacsha256=", body])),
        other => panic!("unknown platform {other}"),
    }
}

/// An HTTP client for the tests.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client")
}

/// POSTs a correctly signed webhook; returns the status and body.
pub async fn post_signed(client: &reqwest::Client, daemon: &Daemon, platform: &str, body: &str) -> (u16, String) {
    let (header, value) = signature_header(platform, body.as_bytes());
    let response = client
        .post(daemon.url(&format!("/webhooks/{platform}")))
        .header(header, value)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// GETs an API path with the bearer token; returns status and JSON (Null when not JSON).
pub async fn api_get(client: &reqwest::Client, daemon: &Daemon, path: &str) -> (u16, Value) {
    let response = client.get(daemon.url(path)).bearer_auth(API_TOKEN).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// One JSON page of the live feed (`GET /api/events{query}` with `accept: application/json`):
/// status and body.
pub async fn events_page(client: &reqwest::Client, daemon: &Daemon, query: &str) -> (u16, Value) {
    let response = client
        .get(daemon.url(&format!("/api/events{query}")))
        .bearer_auth(API_TOKEN)
        .header("accept", "application/json")
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Every message of every conversation, following cursors.
pub async fn all_messages(client: &reqwest::Client, daemon: &Daemon) -> Vec<Value> {
    let mut messages = Vec::new();
    let mut conversations_cursor: Option<String> = None;
    loop {
        let path = match &conversations_cursor {
            Some(c) => format!("/api/conversations?limit=200&before={c}"),
            None => "/api/conversations?limit=200".to_owned(),
        };
        let (status, page) = api_get(client, daemon, &path).await;
        assert_eq!(status, 200, "{page}");
        for conversation in page["conversations"].as_array().unwrap() {
            let id = conversation["id"].as_str().unwrap();
            let mut cursor: Option<String> = None;
            loop {
                let path = match &cursor {
                    Some(c) => format!("/api/conversations/{id}/messages?limit=200&before={c}"),
                    None => format!("/api/conversations/{id}/messages?limit=200"),
                };
                let (status, page) = api_get(client, daemon, &path).await;
                assert_eq!(status, 200, "{page}");
                messages.extend(page["messages"].as_array().unwrap().iter().cloned());
                match page["next"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => break,
                }
            }
        }
        match page["next"].as_str() {
            Some(next) => conversations_cursor = Some(next.to_owned()),
            None => break,
        }
    }
    messages
}

/// The time now in milliseconds since the epoch: inbound test messages are sent now, so that
/// the messaging windows (WhatsApp's and Messenger's 24 hours) are open for the replies to them.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The time now in seconds since the epoch (WhatsApp's unit).
pub fn now_secs() -> i64 {
    now_millis() / 1000
}

/// A WhatsApp body with one text message per (wamid, sender, name, text), sent now.
pub fn whatsapp_messages(messages: &[(&str, &str, &str, &str)]) -> String {
    whatsapp_messages_at(messages, now_secs())
}

/// A WhatsApp body with one text message per (wamid, sender, name, text), sent at `secs`.
pub fn whatsapp_messages_at(messages: &[(&str, &str, &str, &str)], secs: i64) -> String {
    let contacts: Vec<Value> = messages
        .iter()
        .map(|(_, from, name, _)| serde_json::json!({ "profile": { "name": name }, "wa_id": from }))
        .collect();
    let items: Vec<Value> = messages
        .iter()
        .map(|(id, from, _, text)| {
            serde_json::json!({ "from": from, "id": id, "timestamp": secs.to_string(), "type": "text", "text": { "body": text } })
        })
        .collect();
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550001111", "phone_number_id": PHONE_NUMBER_ID },
            "contacts": contacts,
            "messages": items
        }}]}]
    })
    .to_string()
}

/// A Messenger text from `PSID` with message id `mid`.
pub fn messenger_inbound(mid: &str) -> String {
    messenger_text_from(PSID, mid, "Where is my order?")
}

/// A Messenger text from `psid`, sent now.
pub fn messenger_text_from(psid: &str, mid: &str, text: &str) -> String {
    let now = now_millis();
    json!({"object":"page","entry":[{"id":PAGE_ID,"time":now,"messaging":[
        {"sender":{"id":psid},"recipient":{"id":PAGE_ID},"timestamp":now,"message":{"mid":mid,"text":text}}]}]})
    .to_string()
}

/// The customer `contact` writes on `platform` (WhatsApp or Messenger), so that its messaging
/// window is open for replies (a business cannot start these conversations with free text).
pub async fn customer_writes(client: &reqwest::Client, daemon: &Daemon, platform: &str, contact: &str) {
    let id = format!("in.{platform}.{contact}.{}", now_millis());
    let body = match platform {
        "whatsapp" => {
            let digits: String = contact.chars().filter(char::is_ascii_digit).collect();
            let number = if digits.is_empty() { contact.to_owned() } else { digits };
            whatsapp_messages(&[(&id, &number, "Customer", "Hello")])
        }
        "facebook" => messenger_text_from(contact, &id, "Hello"),
        other => panic!("{other} has no messaging window"),
    };
    let (status, answer) = post_signed(client, daemon, platform, &body).await;
    assert_eq!(status, 200, "{answer}");
}

/// A Viber text from `VIBER_USER`.
pub fn viber_inbound() -> String {
    format!(
        r#"{{"event":"message","timestamp":{},"message_token":5741311803571721088,"sender":{{"id":"{VIBER_USER}","name":"Ivan P."}},"message":{{"type":"text","text":"Привіт"}}}}"#,
        now_millis()
    )
}

/// A LinkedIn comment on `POST`.
pub fn linkedin_inbound() -> String {
    json!({"type":"ORGANIZATION_SOCIAL_ACTION_NOTIFICATIONS","notifications":[{
        "notificationId": 8812345001_i64, "organizationalEntity": "urn:li:organization:2414183", "action": "COMMENT",
        "sourcePost": POST,
        "generatedActivity": "urn:li:comment:(urn:li:activity:7190000000000000001,7190000000000000099)",
        "decoratedGeneratedActivity": {"comment": {"entity": "urn:li:comment:(urn:li:activity:7190000000000000001,7190000000000000099)",
            "owner": "urn:li:person:AbC123xYz", "object": POST, "text": "Do you ship to Portugal?"}},
        "lastModifiedAt": 1718000000123_i64}]})
    .to_string()
}
