//! Outgoing webhooks against the real binary and `parley sandbox`'s receiver: retries keep their
//! `webhook-id`s, `kill -9` loses nothing, 410 disables until enabled, one hanging receiver does
//! not hold up another, events of one conversation arrive in order, and every delivery verifies
//! with an independent Standard Webhooks verifier (the `standardwebhooks` crate).

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use support::sandbox::Sandbox;
use support::*;

/// Clearly fake receiver secrets: `whsec_` + base64 of 32 bytes of text.
fn test_secret(n: u8) -> String {
    let raw = format!("test-outgoing-webhook-secret-{n:02}!");
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(raw.as_bytes()))
}

/// `[[webhooks]]` entries, each `(name, extra lines)`, posting to `base` (the sandbox).
fn receivers_toml(base: &str, receivers: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, extra)) in receivers.iter().enumerate() {
        out.push_str(&format!(
            "\n[[webhooks]]\nname = \"{name}\"\nurl = \"{base}/receiver/{name}\"\nsecret = \"{}\"\nevents = [\"message.received\"]\n{extra}\n",
            test_secret(i as u8)
        ));
    }
    out
}

/// A sandbox that knows the receivers' secrets, and a daemon whose receivers post to it.
fn start(receivers: &[(&str, &str)]) -> (Sandbox, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let sandbox_config = dir.path().join("sandbox.toml");
    let toml =
        format!("{}{}", base_config(&dir.path().join("unused")), receivers_toml("http://127.0.0.1:1", receivers));
    std::fs::write(&sandbox_config, toml).unwrap();
    let sandbox = Sandbox::start_owning(&sandbox_config, &["--no-receipts"], dir);
    let base = format!("http://{}", sandbox.addr);
    let daemon =
        Daemon::start_with(|store: &Path| format!("{}{}", base_config(store), receivers_toml(&base, receivers)));
    (sandbox, daemon)
}

/// Posts one WhatsApp message from `contact` (its own conversation), with `text`.
async fn message(client: &reqwest::Client, daemon: &Daemon, wamid: &str, contact: &str, text: &str) {
    let body = whatsapp_messages(&[(wamid, contact, "Test Contact", text)]);
    let (status, answer) = post_signed(client, daemon, "whatsapp", &body).await;
    assert_eq!(status, 200, "{answer}");
}

/// Everything the sandbox's receiver `name` got, and its counts.
async fn deliveries(client: &reqwest::Client, sandbox: &Sandbox, name: &str) -> (Vec<Value>, Value) {
    let answer: Value = client
        .get(sandbox.url(&format!("/_sandbox/receivers/{name}/deliveries")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (answer["deliveries"].as_array().cloned().unwrap_or_default(), answer["counts"].clone())
}

/// The body of a journaled delivery.
fn body(delivery: &Value) -> Value {
    serde_json::from_str(delivery["body"].as_str().unwrap()).unwrap()
}

fn text_of(delivery: &Value) -> String {
    body(delivery)["data"]["data"]["message"]["text"].as_str().unwrap_or_default().to_owned()
}

/// True for a delivery answered 200 in time (a hang of the `slow` fault's 120 s is not).
fn is_accepted(delivery: &Value) -> bool {
    delivery["answered"] == 200 && delivery["answer_delay_ms"].as_u64().unwrap_or(0) < 60_000
}

/// The accepted deliveries' texts, with each `webhook-id`.
fn accepted(deliveries: &[Value]) -> BTreeMap<String, String> {
    deliveries
        .iter()
        .filter(|d| is_accepted(d))
        .map(|d| (text_of(d), d["headers"]["webhook-id"].as_str().unwrap().to_owned()))
        .collect()
}

/// Polls until receiver `name` accepted a delivery of every text in `texts`.
async fn wait_for_all(
    client: &reqwest::Client,
    sandbox: &Sandbox,
    name: &str,
    texts: &BTreeSet<String>,
    within: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let (all, _) = deliveries(client, sandbox, name).await;
        let got: BTreeSet<String> = accepted(&all).into_keys().collect();
        if texts.is_subset(&got) {
            return all;
        }
        assert!(Instant::now() < deadline, "{name} has {} of {} after {within:?}", got.len(), texts.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fault(client: &reqwest::Client, sandbox: &Sandbox, name: &str, fault: Value) {
    let response =
        client.post(sandbox.url(&format!("/_sandbox/receivers/{name}/faults"))).json(&fault).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
}

async fn clear_faults(client: &reqwest::Client, sandbox: &Sandbox, name: &str) {
    let response = client.delete(sandbox.url(&format!("/_sandbox/receivers/{name}/faults"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// The receiver's entry in `GET /api/webhooks`.
async fn receiver_state(client: &reqwest::Client, daemon: &Daemon, name: &str) -> Value {
    let (status, list) = api_get(client, daemon, "/api/webhooks").await;
    assert_eq!(status, 200, "{list}");
    list["webhooks"].as_array().unwrap().iter().find(|r| r["name"] == name).cloned().unwrap()
}

async fn api_post(client: &reqwest::Client, daemon: &Daemon, path: &str, body: &Value) -> (u16, Value) {
    let response = client.post(daemon.url(path)).bearer_auth(API_TOKEN).json(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Checks every delivery's signature with the independent verifier, using receiver `n`'s secret.
fn assert_all_verify(deliveries: &[Value], n: u8) {
    let verifier = standardwebhooks::Webhook::new(&test_secret(n)).unwrap();
    for delivery in deliveries {
        let mut headers = reqwest::header::HeaderMap::new();
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            headers.insert(name, delivery["headers"][name].as_str().unwrap().parse().unwrap());
        }
        verifier
            .verify(delivery["body"].as_str().unwrap().as_bytes(), &headers)
            .unwrap_or_else(|e| panic!("delivery {} does not verify: {e}", delivery["seq"]));
        assert_eq!(delivery["verified"], true, "the sandbox's own check agrees");
        assert_eq!(delivery["headers"]["content-type"], "application/json");
        let body = body(delivery);
        let id = format!("evt_{}", body["data"]["seq"]);
        assert_eq!(delivery["headers"]["webhook-id"], id.as_str(), "the id names the event");
        assert_eq!(body["timestamp"], body["data"]["at"]);
        assert_eq!(body["type"], body["data"]["type"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_verify_with_an_independent_standard_webhooks_verifier() {
    let (sandbox, daemon) = start(&[("test-crm", "")]);
    let client = client();
    message(&client, &daemon, "wamid.test-sig-1", "15550000001", "test hello").await;
    let texts = BTreeSet::from(["test hello".to_owned()]);
    let all = wait_for_all(&client, &sandbox, "test-crm", &texts, Duration::from_secs(30)).await;
    assert_all_verify(&all, 0);
    assert!(!daemon.log().contains(&test_secret(0)), "the secret is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_answers_500_for_a_while_gets_everything_afterwards_with_the_same_ids() {
    let (sandbox, daemon) = start(&[("test-crm", "")]);
    let client = client();
    // Fewer faults than conversations: each failed event is a conversation's first, retried in ~5 s.
    fault(&client, &sandbox, "test-crm", json!({"kind": "server_error", "count": 4})).await;
    let texts: BTreeSet<String> = (0..10).map(|i| format!("test retry {i}")).collect();
    for i in 0..10 {
        message(
            &client,
            &daemon,
            &format!("wamid.test-retry-{i}"),
            &format!("1555000010{i}"),
            &format!("test retry {i}"),
        )
        .await;
    }
    let all = wait_for_all(&client, &sandbox, "test-crm", &texts, Duration::from_secs(60)).await;
    let failed: Vec<&Value> = all.iter().filter(|d| d["answered"] == 500).collect();
    assert_eq!(failed.len(), 4, "the faults were applied");
    let ids = accepted(&all);
    for delivery in failed {
        let text = text_of(delivery);
        assert_eq!(ids[&text], delivery["headers"]["webhook-id"].as_str().unwrap(), "a retry keeps its webhook-id");
    }
    assert_all_verify(&all, 0);
    let state = receiver_state(&client, &daemon, "test-crm").await;
    assert_eq!(state["enabled"], true);
    assert_eq!(state["last_error"]["status"], 500, "{state}");
    assert_eq!(state["failed"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_one_conversation_arrive_in_order_under_concurrency_and_faults() {
    let (sandbox, daemon) = start(&[("test-crm", "")]);
    let client = client();
    fault(&client, &sandbox, "test-crm", json!({"kind": "server_error", "count": 3})).await;
    fault(&client, &sandbox, "test-crm", json!({"kind": "slow", "count": 6, "delay_ms": 300})).await;
    // 6 conversations x 8 messages, posted concurrently.
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..6 {
        let (client, url) = (client.clone(), daemon.url("/webhooks/whatsapp"));
        tasks.spawn(async move {
            for m in 0..8 {
                let body = whatsapp_messages(&[(
                    &format!("wamid.test-order-{c}-{m}"),
                    &format!("155500002{c:02}"),
                    "Test Contact",
                    &format!("test order {c} {m}"),
                )]);
                let (header, value) = signature_header("whatsapp", body.as_bytes());
                let response = client.post(&url).header(header, value).body(body).send().await.unwrap();
                assert_eq!(response.status(), 200);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let texts: BTreeSet<String> = (0..6).flat_map(|c| (0..8).map(move |m| format!("test order {c} {m}"))).collect();
    let all = wait_for_all(&client, &sandbox, "test-crm", &texts, Duration::from_secs(90)).await;
    // In arrival order: an event of a conversation is first sent only after every earlier event of
    // that conversation was accepted.
    let mut by_conversation: HashMap<String, Vec<u64>> = HashMap::new();
    for delivery in &all {
        let body = body(delivery);
        let conversation = body["data"]["conversation_id"].as_str().unwrap().to_owned();
        by_conversation.entry(conversation).or_default().push(body["data"]["seq"].as_u64().unwrap());
    }
    let mut accepted_seqs: HashMap<String, BTreeSet<u64>> = HashMap::new();
    for delivery in &all {
        let body = body(delivery);
        let conversation = body["data"]["conversation_id"].as_str().unwrap().to_owned();
        let seq = body["data"]["seq"].as_u64().unwrap();
        let done = accepted_seqs.entry(conversation.clone()).or_default();
        for earlier in by_conversation[&conversation].iter().filter(|s| **s < seq) {
            assert!(done.contains(earlier), "event {seq} was sent before {earlier} of its conversation was delivered");
        }
        if is_accepted(delivery) {
            done.insert(seq);
        }
    }
    assert_eq!(by_conversation.len(), 6);
    assert_all_verify(&all, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_undelivered_events_then_a_restart_delivers_every_one() {
    let (sandbox, mut daemon) = start(&[("test-crm", "timeout_secs = 120")]);
    let client = client();
    // The first three fail (so they are recorded as pending with their retry), the rest hang.
    fault(&client, &sandbox, "test-crm", json!({"kind": "server_error", "count": 3})).await;
    fault(&client, &sandbox, "test-crm", json!({"kind": "slow", "count": 1000, "delay_ms": 120000})).await;
    let texts: BTreeSet<String> = (0..24).map(|i| format!("test crash {i}")).collect();
    for i in 0..24 {
        message(
            &client,
            &daemon,
            &format!("wamid.test-crash-{i}"),
            &format!("155500003{i:02}"),
            &format!("test crash {i}"),
        )
        .await;
    }
    // Wait until the failures are recorded and the in-flight slots are full of hanging requests.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, counts) = deliveries(&client, &sandbox, "test-crm").await;
        let state = receiver_state(&client, &daemon, "test-crm").await;
        if counts["received"].as_u64().unwrap() >= 16 && state["last_error"]["status"] == 500 {
            break;
        }
        assert!(Instant::now() < deadline, "deliveries never started: {counts} {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let a save of the failures happen (every 200 ms), then crash.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (before, _) = deliveries(&client, &sandbox, "test-crm").await;
    assert!(accepted(&before).is_empty(), "nothing was accepted before the crash");
    daemon.kill9();
    clear_faults(&client, &sandbox, "test-crm").await;
    daemon.start_again();
    let all = wait_for_all(&client, &sandbox, "test-crm", &texts, Duration::from_secs(60)).await;
    let ids = accepted(&all);
    assert_eq!(ids.len(), 24, "every event delivered after the restart");
    for delivery in &all {
        assert_eq!(
            ids[&text_of(delivery)],
            delivery["headers"]["webhook-id"].as_str().unwrap(),
            "same id across the restart"
        );
    }
    assert_all_verify(&all, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_disables_the_receiver_durably_and_enable_delivers_the_backlog() {
    let (sandbox, mut daemon) = start(&[("test-crm", "")]);
    let client = client();
    fault(&client, &sandbox, "test-crm", json!({"kind": "gone"})).await;
    message(&client, &daemon, "wamid.test-gone-0", "15550000400", "test gone 0").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver_state(&client, &daemon, "test-crm").await["enabled"] != false {
        assert!(Instant::now() < deadline, "a 410 did not disable the receiver");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 1..6 {
        message(
            &client,
            &daemon,
            &format!("wamid.test-gone-{i}"),
            &format!("1555000040{i}"),
            &format!("test gone {i}"),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Disabled survives a crash.
    daemon.kill9();
    daemon.start_again();
    let state = receiver_state(&client, &daemon, "test-crm").await;
    assert_eq!(state["enabled"], false, "{state}");
    assert_eq!(state["last_error"]["status"], 410);
    assert!(state["pending"].as_u64().unwrap() >= 6, "{state}");
    let (all, counts) = deliveries(&client, &sandbox, "test-crm").await;
    assert_eq!(counts["received"], 1, "nothing is sent while disabled: {all:?}");

    let (status, answer) = api_post(&client, &daemon, "/api/webhooks/test-crm/enable", &json!({})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["enabled"], true);
    let texts: BTreeSet<String> = (0..6).map(|i| format!("test gone {i}")).collect();
    let all = wait_for_all(&client, &sandbox, "test-crm", &texts, Duration::from_secs(30)).await;
    assert_all_verify(&all, 0);
    let (status, _) = api_post(&client, &daemon, "/api/webhooks/test-nobody/enable", &json!({})).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_does_not_delay_another() {
    let (sandbox, daemon) = start(&[("test-slow", "timeout_secs = 120"), ("test-fast", "")]);
    let client = client();
    fault(&client, &sandbox, "test-slow", json!({"kind": "slow", "count": 1000, "delay_ms": 120000})).await;
    let texts: BTreeSet<String> = (0..30).map(|i| format!("test hang {i}")).collect();
    for i in 0..30 {
        message(
            &client,
            &daemon,
            &format!("wamid.test-hang-{i}"),
            &format!("155500005{i:02}"),
            &format!("test hang {i}"),
        )
        .await;
    }
    // A wide bound: the fast receiver is not waiting on the hanging one's 120 s.
    let all = wait_for_all(&client, &sandbox, "test-fast", &texts, Duration::from_secs(30)).await;
    assert_all_verify(&all, 1);
    let (slow, _) = deliveries(&client, &sandbox, "test-slow").await;
    assert!(accepted(&slow).is_empty(), "the slow one is still hanging");
    let state = receiver_state(&client, &daemon, "test-slow").await;
    assert!(state["pending"].as_u64().unwrap() >= 30, "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_redelivers_with_the_same_ids() {
    let (sandbox, daemon) = start(&[("test-crm", "")]);
    let client = client();
    for i in 0..3 {
        message(
            &client,
            &daemon,
            &format!("wamid.test-replay-{i}"),
            &format!("1555000060{i}"),
            &format!("test replay {i}"),
        )
        .await;
    }
    let texts: BTreeSet<String> = (0..3).map(|i| format!("test replay {i}")).collect();
    let first = accepted(&wait_for_all(&client, &sandbox, "test-crm", &texts, Duration::from_secs(30)).await);
    let (status, answer) = api_post(&client, &daemon, "/api/webhooks/test-crm/replay", &json!({"after": 0})).await;
    assert_eq!(status, 200, "{answer}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (all, _) = deliveries(&client, &sandbox, "test-crm").await;
        let delivered = all.iter().filter(|d| is_accepted(d)).count();
        if delivered >= 6 {
            assert_eq!(accepted(&all), first, "the same ids again");
            break;
        }
        assert!(Instant::now() < deadline, "replay delivered {delivered} of 6");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = api_post(&client, &daemon, "/api/webhooks/test-nobody/replay", &json!({"after": 0})).await;
    assert_eq!(status, 404);
    let response = client
        .post(daemon.url("/api/webhooks/test-crm/replay"))
        .bearer_auth(API_TOKEN)
        .header("content-type", "text/plain")
        .body("{\"after\": 0}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
}

/// `parley check-config` on the base config plus `receivers` (TOML).
fn check_config(receivers: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, format!("{}{receivers}", base_config(&dir.path().join("store")))).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap()
}

#[test]
fn check_config_shows_receivers_with_the_secret_redacted() {
    let output = check_config(&receivers_toml("http://127.0.0.1:9", &[("test-crm", "platforms = [\"viber\"]")]));
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(out.contains("webhooks[0].name"), "{out}");
    assert!(out.contains("webhooks[0].url"), "{out}");
    assert!(out.contains("webhooks[0].platforms") && out.contains("[\"viber\"]"), "{out}");
    let secret_line = out.lines().find(|l| l.starts_with("webhooks[0].secret")).expect("a secret line");
    assert!(secret_line.contains("[redacted]"), "{secret_line}");
    assert!(!out.contains(&test_secret(0)), "{out}");
    assert!(!out.contains(test_secret(0).trim_start_matches("whsec_")), "{out}");
}

#[test]
fn check_config_rejects_bad_receivers_with_one_clear_line_each() {
    let short = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(b"test-too-short"));
    let receivers = format!(
        r#"
[[webhooks]]
name = "test-crm"
url = "http://crm.example.com/hooks"
secret = "{short}"
events = ["message.received", "message.deleted"]

[[webhooks]]
name = "test crm"
url = "https://crm.example.com/hooks"
secret = "test-no-prefix"
"#
    );
    let output = check_config(&receivers);
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = err.lines().collect();
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(has("webhooks[0].url") && has("is plain http to a host that is not loopback"), "{err}");
    assert!(has("webhooks[0].secret") && has("decodes to 14 bytes; it must be 24 to 64"), "{err}");
    assert!(has("webhooks[0].events") && has("unknown event type `message.deleted`"), "{err}");
    assert!(has("webhooks[1].name") && has("`test crm`"), "{err}");
    assert!(has("webhooks[1].secret") && has("must start with `whsec_`"), "{err}");
    assert!(lines.iter().all(|l| l.contains("config.toml")), "each line names the file: {err}");
    assert!(!err.contains(short.trim_start_matches("whsec_")) && !err.contains("test-no-prefix"), "{err}");
}
