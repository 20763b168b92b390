//! `parley sandbox` started as a real process for the tests, its address read from its log.

use std::io::{BufRead, BufReader};
use std::path::Path;

use super::{
    API_TOKEN, FACEBOOK_SECRET, FACEBOOK_VERIFY, LINKEDIN_SECRET, PAGE_ID, PHONE_NUMBER_ID, VIBER_TOKEN,
    WHATSAPP_SECRET, WHATSAPP_VERIFY,
};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// A running sandbox. Killed on drop.
pub struct Sandbox {
    pub addr: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Sandbox {
    /// Starts a sandbox on a config file in `dir`, which it keeps alive.
    pub fn start_owning(config_path: &Path, extra_args: &[&str], dir: tempfile::TempDir) -> Sandbox {
        let mut sandbox = Sandbox::start_with(config_path, extra_args);
        sandbox._dir = Some(dir);
        sandbox
    }

    /// Starts a sandbox on an existing config file.
    pub fn start_with(config_path: &Path, extra_args: &[&str]) -> Sandbox {
        let mut child = Command::new(env!("CARGO_BIN_EXE_parley"))
            .args(["sandbox", "--listen", "127.0.0.1:0", "--config"])
            .arg(config_path)
            .args(extra_args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start parley sandbox");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Sandbox listening.")
                    && let Some(addr) = line.split("addr=").nth(1).and_then(|rest| rest.split_whitespace().next())
                {
                    let _ = addr_tx.send(addr.to_owned());
                }
                writer.lock().unwrap().push(line);
            }
        });
        let addr = match addr_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("sandbox did not start; log:\n{}", log.lock().unwrap().join("\n"));
            }
        };
        Sandbox { addr, child, log, _dir: None }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The sandbox answers the next `count` requests to `platform` with a fault of `kind`.
    pub async fn fault(&self, client: &reqwest::Client, platform: &str, kind: &str, count: u32) {
        let response = client
            .post(self.url("/_sandbox/faults"))
            .json(&serde_json::json!({ "platform": platform, "kind": kind, "count": count }))
            .send()
            .await
            .expect("the sandbox answers");
        assert_eq!(response.status(), 200, "the sandbox took the fault");
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon and the sandbox, each pointed at the other

/// The tokens the daemon sends with (the sandbox accepts them).
pub const PAGE_TOKEN: &str = "test-page-token";
pub const LI_TOKEN: &str = "test-linkedin-token";

/// A daemon and a sandbox, each pointed at the other: the sandbox answers the daemon's sends and
/// posts its receipts back to it (`sandbox_args` add to `--parley-url`: delays, faults, ...).
pub fn start_loop(rates: Rates, sandbox_args: &[&str]) -> (super::Daemon, Sandbox) {
    // The sandbox must know where to post receipts before the daemon exists: reserve a port.
    let daemon_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let sandbox_config = dir.path().join("sandbox.toml");
    std::fs::write(&sandbox_config, loop_config(&dir.path().join("unused"), daemon_port, "127.0.0.1:9", rates))
        .unwrap();
    let parley_url = format!("http://127.0.0.1:{daemon_port}");
    let mut args = vec!["--parley-url", parley_url.as_str()];
    args.extend_from_slice(sandbox_args);
    let sandbox = Sandbox::start_owning(&sandbox_config, &args, dir);
    let sandbox_addr = sandbox.addr.clone();
    let daemon = super::Daemon::start_with(|store| loop_config(store, daemon_port, &sandbox_addr, rates));
    (daemon, sandbox)
}

/// Knobs a test turns.
#[derive(Clone, Copy)]
pub struct Rates {
    pub facebook_per_second: u32,
    pub max_in_flight: u32,
}

impl Default for Rates {
    fn default() -> Self {
        Rates { facebook_per_second: 40, max_in_flight: 8 }
    }
}

/// The daemon and sandbox configuration: every platform on, every API base at the sandbox.
pub fn loop_config(store: &Path, daemon_port: u16, sandbox: &str, rates: Rates) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{daemon_port}"
shutdown_grace_secs = 5

[storage]
path = "{store}"
cache_bytes = 16777216

[api]
token = "{API_TOKEN}"

[outbound]
max_in_flight = {max_in_flight}
initial_backoff_ms = 50
max_backoff_ms = 2000
retry_deadline_secs = 120
token_check_interval_secs = 3600

[facebook]
enabled = true
app_id = "1234567890"
app_secret = "{FACEBOOK_SECRET}"
verify_token = "{FACEBOOK_VERIFY}"
page_id = "{PAGE_ID}"
page_access_token = "{PAGE_TOKEN}"
api_base = "http://{sandbox}/v23.0"
rate_per_second = {facebook_rate}

[whatsapp]
enabled = true
app_secret = "{WHATSAPP_SECRET}"
verify_token = "{WHATSAPP_VERIFY}"
phone_number_id = "{PHONE_NUMBER_ID}"
access_token = "test-wa-token"
api_base = "http://{sandbox}/v23.0"

[viber]
enabled = true
bot_token = "{VIBER_TOKEN}"
bot_name = "Acme Support"
api_base = "http://{sandbox}/pa"

[linkedin]
enabled = true
client_id = "test-linkedin-client"
client_secret = "{LINKEDIN_SECRET}"
access_token = "{LI_TOKEN}"
refresh_token = "test-linkedin-refresh"
organization_id = "2414183"
api_base = "http://{sandbox}"
oauth_base = "http://{sandbox}/oauth/v2"
rate_per_minute = 600
"#,
        store = store.display(),
        facebook_rate = rates.facebook_per_second,
        max_in_flight = rates.max_in_flight,
    )
}
