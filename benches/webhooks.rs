//! Outgoing webhooks benchmark: how fast the real `parley` binary delivers events to a local
//! receiver (the real `parley sandbox`'s `/receiver/{name}`, which verifies every signature), and
//! how long a backlog takes to drain once a receiver comes back.
//!
//! Run by hand, never in CI:
//!
//! ```text
//! cargo bench --bench webhooks -- [--live N] [--backlog N] [--per-webhook N] [--contacts N]
//! ```
//!
//! Both the daemon and the sandbox are the release binary, each its own process; the client (one
//! tokio thread) posts signed WhatsApp webhooks of `--per-webhook` messages each (default 10),
//! from `--contacts` senders (default 2,000, so as many conversations). The receiver takes
//! `message.received` only: one delivery per message.
//!
//! - Live: `--live` messages (default 20,000) are posted at full speed while the receiver is up;
//!   deliveries per second is the accepted count over the time from the first webhook posted to
//!   the last delivery accepted (ingest and delivery overlap, so it is bounded by both).
//! - Backlog: the receiver answers one 410 (the daemon disables it), `--backlog` messages
//!   (default 100,000) are posted and stored, then `POST /api/webhooks/bench/enable`; the drain
//!   time runs from that call until the sandbox has accepted all of them, and its rate is the
//!   receiver-bound delivery rate.
//!
//! Numbers are printed, nothing is asserted.

mod common;
use common::daemon::Daemon;
use common::{client_runtime, cpu_seconds, flag_pairs, percentile, positive, resident_text};

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;

const API_TOKEN: &str = "bench-api-token-0a41";
const WHATSAPP_SECRET: &str = "bench-whatsapp-app-secret";
const PHONE_NUMBER_ID: &str = "106540352242922";
/// A fake receiver secret: `whsec_` + base64 of the 32 bytes "bench-outgoing-webhook-secret-01".
const RECEIVER_SECRET: &str = "whsec_YmVuY2gtb3V0Z29pbmctd2ViaG9vay1zZWNyZXQtMDE=";
/// Webhook POSTs in flight from the client.
const CLIENT_CONCURRENCY: usize = 32;
const POLL: Duration = Duration::from_millis(50);

struct Options {
    live: usize,
    backlog: usize,
    per_webhook: usize,
    contacts: usize,
}

fn main() {
    let mut options = Options { live: 20_000, backlog: 100_000, per_webhook: 10, contacts: 2_000 };
    let pairs = flag_pairs(std::env::args().skip(1)).unwrap_or_else(|e| exit_with(&e));
    for (flag, value) in pairs {
        let n = positive(&flag, &value).unwrap_or_else(|e| exit_with(&e));
        match flag.as_str() {
            "--live" => options.live = n,
            "--backlog" => options.backlog = n,
            "--per-webhook" => options.per_webhook = n,
            "--contacts" => options.contacts = n,
            other => exit_with(&format!("unknown option {other}")),
        }
    }
    client_runtime().block_on(run(options));
}

fn exit_with(problem: &str) -> ! {
    eprintln!("webhooks bench: {problem}");
    std::process::exit(1)
}

/// `parley sandbox` on a free port, killed on drop.
struct Sandbox {
    addr: String,
    child: Child,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sandbox(config: &Path) -> Sandbox {
    let mut child = Command::new(Daemon::release_binary())
        .args(["sandbox", "--listen", "127.0.0.1:0", "--no-receipts", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start parley sandbox");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Sandbox listening.")
                && let Some(addr) = line.split("addr=").nth(1).and_then(|r| r.split_whitespace().next())
            {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    let Ok(addr) = rx.recv_timeout(Duration::from_secs(30)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the sandbox did not log `Sandbox listening.` within 30 s");
    };
    Sandbox { addr, child }
}

fn receiver_toml(base: &str) -> String {
    format!(
        "\n[[webhooks]]\nname = \"bench\"\nurl = \"{base}/receiver/bench\"\nsecret = \"{RECEIVER_SECRET}\"\nevents = [\"message.received\"]\n"
    )
}

fn daemon_config(store: &Path, sandbox: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[storage]
path = "{store}"
[api]
token = "{API_TOKEN}"
[log]
level = "warn,parley::app=info"
[whatsapp]
enabled = true
app_secret = "{WHATSAPP_SECRET}"
verify_token = "bench-verify"
phone_number_id = "{PHONE_NUMBER_ID}"
access_token = "bench-wa-token"
api_base = "http://{sandbox}/v23.0"
{receiver}"#,
        store = store.display(),
        receiver = receiver_toml(&format!("http://{sandbox}"))
    )
}

/// Signed WhatsApp bodies carrying `count` messages, `per` to a body, numbered from `first`.
fn bodies(first: usize, count: usize, per: usize, contacts: usize) -> Vec<(String, String)> {
    (first..first + count)
        .collect::<Vec<_>>()
        .chunks(per)
        .map(|chunk| {
            let contacts_json: Vec<Value> = chunk
                .iter()
                .map(|i| json!({ "profile": { "name": "Bench" }, "wa_id": format!("1555{:07}", i % contacts) }))
                .collect();
            let messages: Vec<Value> = chunk
                .iter()
                .map(|i| {
                    json!({ "from": format!("1555{:07}", i % contacts), "id": format!("wamid.bench-{i}"),
                            "timestamp": "1718000000", "type": "text", "text": { "body": format!("bench {i}") } })
                })
                .collect();
            let body = json!({
                "object": "whatsapp_business_account",
                "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": { "display_phone_number": "15550001111", "phone_number_id": PHONE_NUMBER_ID },
                    "contacts": contacts_json, "messages": messages }}]}]
            })
            .to_string();
            let signature =
                format!("sha256={}", parley::platform::sign_hex(WHATSAPP_SECRET.as_bytes(), &[body.as_bytes()]));
            (body, signature)
        })
        .collect()
}

async fn post_all(client: &reqwest::Client, url: &str, bodies: Vec<(String, String)>) {
    let mut tasks = JoinSet::new();
    let mut bodies = bodies.into_iter();
    loop {
        while tasks.len() < CLIENT_CONCURRENCY {
            let Some((body, signature)) = bodies.next() else { break };
            let (client, url) = (client.clone(), url.to_owned());
            tasks.spawn(async move {
                loop {
                    let sent = client
                        .post(&url)
                        .header("X-Hub-Signature-256", &signature)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 200 => return,
                        Ok(r) if r.status() == 503 => tokio::time::sleep(Duration::from_millis(50)).await,
                        Ok(r) => panic!("webhook answered {}", r.status()),
                        Err(e) => panic!("webhook failed: {e}"),
                    }
                }
            });
        }
        match tasks.join_next().await {
            Some(done) => done.expect("a webhook task"),
            None => return,
        }
    }
}

/// The sandbox receiver's counts (no deliveries listed: `since` is past them).
async fn counts(client: &reqwest::Client, sandbox: &str) -> Value {
    let url = format!("http://{sandbox}/_sandbox/receivers/bench/deliveries?since=18446744073709551615");
    client.get(url).send().await.expect("sandbox").json::<Value>().await.expect("json")["counts"].clone()
}

async fn wait_accepted(client: &reqwest::Client, sandbox: &str, target: u64) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let accepted = counts(client, sandbox).await["accepted"].as_u64().unwrap_or(0);
        if accepted >= target {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "only {accepted} of {target} accepted after 30 min");
        tokio::time::sleep(POLL).await;
    }
}

async fn run(options: Options) {
    let dir = tempfile::tempdir().expect("temp dir");
    let sandbox_config = dir.path().join("sandbox.toml");
    std::fs::write(
        &sandbox_config,
        format!("[log]\nlevel = \"warn,parley::sandbox=info\"\n{}", receiver_toml("http://127.0.0.1:1")),
    )
    .expect("write");
    let sandbox = start_sandbox(&sandbox_config);
    let daemon = Daemon::start(&Daemon::release_binary(), |store| daemon_config(store, &sandbox.addr));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
    let webhook_url = format!("http://{}/webhooks/whatsapp", daemon.addr);
    let (pid, sandbox_pid) = (daemon.pid().to_string(), sandbox.child.id().to_string());
    println!(
        "webhooks bench: release daemon {} and sandbox {}; {} messages per webhook, {} contacts, receiver max {} in flight",
        daemon.addr,
        sandbox.addr,
        options.per_webhook,
        options.contacts,
        parley::actor::receiver::MAX_IN_FLIGHT
    );

    // Live.
    let live = bodies(0, options.live, options.per_webhook, options.contacts);
    let cpu_before = (cpu_seconds(&pid), cpu_seconds(&sandbox_pid));
    let started = Instant::now();
    post_all(&client, &webhook_url, live).await;
    let ingested = started.elapsed();
    let done = wait_accepted(&client, &sandbox.addr, options.live as u64).await;
    let took = done.duration_since(started);
    let cpu = |before: Option<f64>, id: &str| cpu_seconds(id).zip(before).map(|(a, b)| a - b).unwrap_or(f64::NAN);
    println!(
        "live:    {} messages ingested in {:.2} s; all delivered {:.2} s after the first webhook: {:.0} deliveries/s (daemon CPU {:.1} s, sandbox CPU {:.1} s)",
        options.live,
        ingested.as_secs_f64(),
        took.as_secs_f64(),
        options.live as f64 / took.as_secs_f64(),
        cpu(cpu_before.0, &pid),
        cpu(cpu_before.1, &sandbox_pid),
    );

    // Latency of the live phase: the event's `at` (stored, durable) to the delivery's arrival.
    let journal: Value = client
        .get(format!("http://{}/_sandbox/receivers/bench/deliveries?since=0", sandbox.addr))
        .send()
        .await
        .expect("sandbox")
        .json()
        .await
        .expect("json");
    let mut latencies: Vec<f64> = journal["deliveries"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|d| {
                    let body: Value = serde_json::from_str(d["body"].as_str()?).ok()?;
                    let at = parley::model::Timestamp::parse_rfc3339(body["data"]["at"].as_str()?)?;
                    Some((d["at_ms"].as_i64()? - at.as_millis()) as f64)
                })
                .collect()
        })
        .unwrap_or_default();
    latencies.sort_by(f64::total_cmp);
    let ms = |q: f64| percentile(&latencies, q).map_or("-".to_owned(), |v| format!("{v:.0} ms"));
    println!(
        "live:    stored -> arrived at the receiver, {} deliveries journaled: p50 {}, p99 {}, max {}; daemon RSS {}",
        latencies.len(),
        ms(0.5),
        ms(0.99),
        ms(1.0),
        resident_text(daemon.pid())
    );

    // Backlog: one 410 disables the receiver; the next message is what it answered 410 to.
    let fault = client
        .post(format!("http://{}/_sandbox/receivers/bench/faults", sandbox.addr))
        .json(&json!({"kind": "gone"}))
        .send()
        .await
        .expect("fault");
    assert_eq!(fault.status(), 200);
    let accepted_before = counts(&client, &sandbox.addr).await["accepted"].as_u64().unwrap_or(0);
    let backlog = bodies(options.live, options.backlog, options.per_webhook, options.contacts);
    let started = Instant::now();
    post_all(&client, &webhook_url, backlog).await;
    let ingested = started.elapsed();
    // Wait until the daemon holds the whole backlog as pending (read or not).
    let api = |path: &str| client.get(format!("http://{}{path}", daemon.addr)).bearer_auth(API_TOKEN);
    let state: Value = api("/api/webhooks").send().await.expect("api").json().await.expect("json");
    println!(
        "backlog: {} messages ingested in {:.2} s with the receiver disabled (enabled={}, pending={})",
        options.backlog,
        ingested.as_secs_f64(),
        state["webhooks"][0]["enabled"],
        state["webhooks"][0]["pending"]
    );
    let cpu_before = (cpu_seconds(&pid), cpu_seconds(&sandbox_pid));
    let enabled_at = Instant::now();
    let answer = client
        .post(format!("http://{}/api/webhooks/bench/enable", daemon.addr))
        .bearer_auth(API_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .expect("enable");
    assert_eq!(answer.status(), 200);
    let done = wait_accepted(&client, &sandbox.addr, accepted_before + options.backlog as u64).await;
    let took = done.duration_since(enabled_at);
    println!(
        "drain:   {} events delivered {:.2} s after enable: {:.0} deliveries/s (daemon CPU {:.1} s, sandbox CPU {:.1} s)",
        options.backlog,
        took.as_secs_f64(),
        options.backlog as f64 / took.as_secs_f64(),
        cpu(cpu_before.0, &pid),
        cpu(cpu_before.1, &sandbox_pid),
    );
    println!("drain:   daemon RSS {}", resident_text(daemon.pid()));
    let final_counts = counts(&client, &sandbox.addr).await;
    println!("sandbox receiver counts: {final_counts}");
    daemon.print_log_tail(10);
}
