//! The store's disk fills up: a real tmpfs, filled to the last byte while the daemon runs.
//! Webhooks are refused with 503 and `Retry-After` (never a 200 for what is not stored), the
//! health routes and reads keep answering, SIGTERM still stops the daemon cleanly, and when space
//! returns the same process accepts again by itself.
//!
//! Mounting the tmpfs needs root (or CAP_SYS_ADMIN), as in CI; without it these tests fail and say so.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use support::tmpfs::Tmpfs;
use support::*;

/// Big enough for the daemon's store and a few hundred webhooks, small enough to fill in a moment.
const DISK_MIB: u32 = 32;
/// After the disk is full, the store must refuse within this many webhooks.
const MAX_WEBHOOKS_UNTIL_REFUSED: usize = 20_000;
/// Webhooks that must all be refused once the first one was, while the disk stays full.
const REFUSED_IN_A_ROW: usize = 10;
/// How long the SIGTERM test keeps sending to a full disk before it stops the daemon.
const FULL_UNDER_TRAFFIC: Duration = Duration::from_secs(8);
/// Generous: the daemon recovers within its probe back-off (at most 10 s) of space returning.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(90);

/// One WhatsApp text message from one of a few contacts, with a wamid unique to `seq`.
fn webhook(seq: usize) -> (String, String) {
    let wamid = format!("wamid.diskfull.{seq:06}");
    let sender = format!("55119{:06}", seq % 7);
    let body =
        whatsapp_messages(&[(&wamid, &sender, "Disk Full", &format!("message {seq}, padded to a realistic size"))]);
    (wamid, body)
}

/// Posts a signed webhook: its status and `Retry-After` header.
async fn post(client: &reqwest::Client, daemon: &Daemon, body: &str) -> (u16, Option<String>) {
    let (header, value) = signature_header("whatsapp", body.as_bytes());
    let response = client
        .post(daemon.url("/webhooks/whatsapp"))
        .header(header, value)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("the daemon answers every webhook, full disk or not");
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap_or("").to_owned());
    (response.status().as_u16(), retry_after)
}

/// Fills the disk and sends webhooks until the store refuses one, then checks that it keeps
/// refusing while the disk stays full (topped up after each refusal, in case sled gave some space
/// back). Records the wamids answered 200; returns the next sequence number.
async fn fill_until_refused(
    client: &reqwest::Client,
    daemon: &Daemon,
    disk: &Tmpfs,
    mut seq: usize,
    acked: &mut Vec<String>,
) -> usize {
    disk.fill();
    let limit = seq + MAX_WEBHOOKS_UNTIL_REFUSED;
    let mut refused = 0;
    while refused < REFUSED_IN_A_ROW {
        assert!(seq < limit, "the store accepted {MAX_WEBHOOKS_UNTIL_REFUSED} webhooks on a full disk");
        let (wamid, body) = webhook(seq);
        seq += 1;
        match post(client, daemon, &body).await {
            (200, _) => {
                assert_eq!(refused, 0, "a webhook was answered 200 after the store had refused one, disk still full");
                acked.push(wamid);
            }
            (503, retry_after) => {
                let secs: u64 = retry_after
                    .as_deref()
                    .and_then(|v| v.parse().ok())
                    .expect("a 503 for a full disk carries Retry-After in seconds");
                assert!(secs >= 1, "Retry-After {secs}");
                refused += 1;
                disk.fill();
            }
            (status, _) => panic!("webhook {wamid} answered {status} on a full disk; log:\n{}", daemon.log()),
        }
    }
    seq
}

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let response = client
        .get(url)
        .bearer_auth(API_TOKEN)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url} did not answer within 10 s: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(serde_json::Value::Null))
}

async fn metrics(client: &reqwest::Client, daemon: &Daemon) -> String {
    let response = client.get(daemon.url("/metrics")).timeout(Duration::from_secs(10)).send().await.expect("metrics");
    response.text().await.expect("metrics text")
}

/// The value of a metric line that starts with `series` (name and labels).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Every acknowledged wamid is in the store, readable through the API.
async fn assert_all_readable(client: &reqwest::Client, daemon: &Daemon, acked: &[String]) {
    let stored: HashSet<String> = all_messages(client, daemon)
        .await
        .iter()
        .filter_map(|m| m["platform_message_id"].as_str().map(str::to_owned))
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|w| !stored.contains(*w)).collect();
    assert!(missing.is_empty(), "{} acknowledged webhooks are not readable: {missing:?}", missing.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_webhooks_with_503_keeps_answering_and_recovers_without_a_restart() {
    let disk = Tmpfs::mount(DISK_MIB);
    let store = disk.path().join("store");
    let mut daemon = Daemon::start_with(|_| base_config(&store));
    let client = client();
    let mut acked = Vec::new();
    for seq in 0..20 {
        let (wamid, body) = webhook(seq);
        assert_eq!(post(&client, &daemon, &body).await.0, 200);
        acked.push(wamid);
    }

    let seq = fill_until_refused(&client, &daemon, &disk, 20, &mut acked).await;

    // While the disk is full: alive, not ready (saying why), reads and metrics answer.
    let (status, health) = get_json(&client, &daemon.url("/health")).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, ready) = get_json(&client, &daemon.url("/ready")).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["store"], "full", "{ready}");
    assert!(ready["store_reason"].as_str().is_some_and(|r| !r.is_empty()), "{ready}");
    let (status, listing) = get_json(&client, &daemon.url("/api/conversations")).await;
    assert!(
        status == 200 || (status == 503 && listing["error"]["code"].is_string()),
        "GET /api/conversations answered {status}: {listing}"
    );
    let text = metrics(&client, &daemon).await;
    assert_eq!(metric(&text, "parley_store_writable"), Some(0.0), "{text}");
    assert!(metric(&text, "parley_store_write_errors_total{kind=\"full\"}").is_some_and(|n| n >= 1.0), "{text}");
    // A reply cannot be queued either: 503, nothing acknowledged.
    let reply = client
        .post(daemon.url("/api/messages"))
        .bearer_auth(API_TOKEN)
        .json(&serde_json::json!({ "platform": "whatsapp", "to": "+55 11 9000 0001", "text": "We are on it." }))
        .send()
        .await
        .expect("the API answers");
    assert_eq!(reply.status().as_u16(), 503);
    assert!(reply.headers().contains_key("retry-after"));

    // Space returns: the same process takes webhooks again, by itself.
    disk.free();
    let deadline = Instant::now() + RECOVERY_DEADLINE;
    let mut seq = seq;
    loop {
        let (wamid, body) = webhook(seq);
        seq += 1;
        if post(&client, &daemon, &body).await.0 == 200 {
            acked.push(wamid);
            break;
        }
        assert!(Instant::now() < deadline, "the daemon did not recover after space returned; log:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(daemon.is_running(), "recovered by a restart, not in place");
    for _ in 0..20 {
        let (wamid, body) = webhook(seq);
        seq += 1;
        assert_eq!(post(&client, &daemon, &body).await.0, 200);
        acked.push(wamid);
    }
    let (status, ready) = get_json(&client, &daemon.url("/ready")).await;
    assert_eq!((status, &ready["store"]), (200, &serde_json::json!("up")), "{ready}");
    assert_eq!(metric(&metrics(&client, &daemon).await, "parley_store_writable"), Some(1.0));

    // Nothing answered 200 is missing: now, and after a clean restart.
    assert_all_readable(&client, &daemon, &acked).await;
    assert!(daemon.terminate().success(), "log:\n{}", daemon.log());
    daemon.start_again();
    assert_all_readable(&client, &daemon, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_disk_is_full_exits_promptly_with_code_0() {
    let disk = Tmpfs::mount(DISK_MIB);
    let store = disk.path().join("store");
    let mut daemon = Daemon::start_with(|_| base_config(&store));
    let client = client();
    let mut acked = Vec::new();
    let mut seq = fill_until_refused(&client, &daemon, &disk, 0, &mut acked).await;
    // Stay full under traffic for a while (long enough for failed actors to have been restarted),
    // then stop.
    let full_until = Instant::now() + FULL_UNDER_TRAFFIC;
    while Instant::now() < full_until {
        let (_, body) = webhook(seq);
        seq += 1;
        let (header, value) = signature_header("whatsapp", body.as_bytes());
        let request = client.post(daemon.url("/webhooks/whatsapp")).header(header, value).body(body);
        let _ = request.timeout(Duration::from_secs(2)).send().await;
        let _ = client.get(daemon.url("/ready")).timeout(Duration::from_secs(2)).send().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    // `terminate` fails the test if the daemon has not exited within 30 s.
    let status = daemon.terminate();
    assert!(status.success(), "exit status {status:?} after SIGTERM on a full disk; log:\n{}", daemon.log());
    println!("SIGTERM on a full disk: exited in {:?}", started.elapsed());
}

/// The daemon's config with only WhatsApp on, sending through the sandbox at `sandbox`.
fn sending_config(store: &std::path::Path, port: u16, sandbox: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
shutdown_grace_secs = 5

[storage]
path = "{store}"
cache_bytes = 16777216

[api]
token = "{API_TOKEN}"

[outbound]
initial_backoff_ms = 50
max_backoff_ms = 2000
retry_deadline_secs = 600

[whatsapp]
enabled = true
app_secret = "{WHATSAPP_SECRET}"
verify_token = "{WHATSAPP_VERIFY}"
phone_number_id = "{PHONE_NUMBER_ID}"
access_token = "test-wa-token"
api_base = "http://{sandbox}/v23.0"
"#,
        store = store.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_in_flight_when_the_disk_fills_are_recorded_once_it_recovers_and_sent_once() {
    use support::sandbox::Sandbox;
    const RECIPIENTS: [&str; 3] = ["5511900000101", "5511900000102", "5511900000103"];

    let disk = Tmpfs::mount(DISK_MIB);
    let store = disk.path().join("store");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let sandbox_config = dir.path().join("sandbox.toml");
    std::fs::write(&sandbox_config, sending_config(&dir.path().join("unused"), port, "127.0.0.1:9")).unwrap();
    let parley_url = format!("http://127.0.0.1:{port}");
    let sandbox = Sandbox::start_owning(&sandbox_config, &["--parley-url", &parley_url], dir);
    let mut daemon = Daemon::start_with(|_| sending_config(&store, port, &sandbox.addr));
    let client = client();
    for to in RECIPIENTS {
        customer_writes(&client, &daemon, "whatsapp", to).await;
    }

    // Every reply's send request is held for a while by the sandbox, so that the disk fills up
    // while they are in flight: their `sent` comes back while the store cannot be written.
    let fault =
        serde_json::json!({ "platform": "whatsapp", "kind": "slow", "count": RECIPIENTS.len(), "delay_ms": 4000 });
    let response = client.post(sandbox.url("/_sandbox/faults")).json(&fault).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut ids = Vec::new();
    for to in RECIPIENTS {
        let response = client
            .post(daemon.url("/api/messages"))
            .bearer_auth(API_TOKEN)
            .json(&serde_json::json!({ "platform": "whatsapp", "to": to, "text": format!("Your parcel for {to} ships today.") }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
        let body: serde_json::Value = response.json().await.unwrap();
        ids.push(body["message"]["id"].as_str().unwrap().to_owned());
    }
    let mut acked = Vec::new();
    let seq = fill_until_refused(&client, &daemon, &disk, 0, &mut acked).await;
    // The platform accepts them while the store refuses writes: their `sent` has to wait.
    let deadline = Instant::now() + RECOVERY_DEADLINE;
    while metric(&metrics(&client, &daemon).await, "parley_messages_sent_total{platform=\"whatsapp\"}")
        != Some(RECIPIENTS.len() as f64)
    {
        assert!(Instant::now() < deadline, "the replies in flight were never answered; log:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    disk.free();
    let deadline = Instant::now() + RECOVERY_DEADLINE;
    let mut seq = seq;
    loop {
        let (_, body) = webhook(seq);
        seq += 1;
        if post(&client, &daemon, &body).await.0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the daemon did not recover; log:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Each reply's sending is recorded, and the outbox is empty: nothing is left to send again.
    let deadline = Instant::now() + RECOVERY_DEADLINE;
    for id in &ids {
        loop {
            let (status, message) = get_json(&client, &daemon.url(&format!("/api/messages/{id}"))).await;
            assert_eq!(status, 200, "{message}");
            if ["sent", "delivered", "read"].contains(&message["status"].as_str().unwrap_or_default()) {
                break;
            }
            assert!(Instant::now() < deadline, "reply {id} stayed {message}; log:\n{}", daemon.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let text = metrics(&client, &daemon).await;
    assert_eq!(metric(&text, "parley_outbox_queued{platform=\"whatsapp\"}"), Some(0.0), "{text}");

    // After a restart nothing is queued again (the outbox is read at start).
    assert!(daemon.terminate().success());
    daemon.start_again();
    let text = metrics(&client, &daemon).await;
    assert_eq!(metric(&text, "parley_outbox_queued{platform=\"whatsapp\"}"), Some(0.0), "{text}");
    let journal: serde_json::Value =
        client.get(sandbox.url("/_sandbox/requests?platform=whatsapp")).send().await.unwrap().json().await.unwrap();
    for to in RECIPIENTS {
        let sends = journal["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["method"] == "POST" && r["path"].as_str().unwrap_or("").ends_with("/messages"))
            .filter(|r| r.to_string().contains(to))
            .count();
        assert_eq!(sends, 1, "the reply to {to} was sent {sends} times");
    }
}
