//! `parley sandbox`, the real binary: each stand-in answers like its platform, records what it
//! received, limits, faults on request, and posts signed receipts that the real daemon accepts.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::sandbox::Sandbox;
use support::*;

const PAGE_TOKEN: &str = "test-page-token";
const WA_TOKEN: &str = "test-wa-token";
const LI_TOKEN: &str = "test-linkedin-token";
const LI_REFRESH: &str = "test-linkedin-refresh";

/// A config with every platform on, the support module's secrets, and the given Messenger and Viber rates.
fn config(store: &Path, facebook_rate: u32, viber_rate: u32) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace_secs = 5

[storage]
path = "{store}"
cache_bytes = 16777216

[api]
token = "{API_TOKEN}"

[facebook]
enabled = true
app_id = "1234567890"
app_secret = "{FACEBOOK_SECRET}"
verify_token = "{FACEBOOK_VERIFY}"
page_id = "{PAGE_ID}"
page_access_token = "{PAGE_TOKEN}"
rate_per_second = {facebook_rate}

[whatsapp]
enabled = true
business_account_id = "102290129340398"
app_secret = "{WHATSAPP_SECRET}"
verify_token = "{WHATSAPP_VERIFY}"
phone_number_id = "{PHONE_NUMBER_ID}"
phone_number = "15550001111"
access_token = "{WA_TOKEN}"

[viber]
enabled = true
bot_token = "{VIBER_TOKEN}"
bot_name = "Acme Support"
rate_per_minute = {viber_rate}

[linkedin]
enabled = true
client_id = "test-linkedin-client"
client_secret = "{LINKEDIN_SECRET}"
access_token = "{LI_TOKEN}"
refresh_token = "{LI_REFRESH}"
organization_id = "2414183"
rate_per_minute = 1000
"#,
        store = store.display()
    )
}

/// Starts a sandbox on its own temp config with the given Messenger and Viber rates.
fn start_sandbox(extra_args: &[&str], facebook_rate: u32, viber_rate: u32) -> Sandbox {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config(&dir.path().join("store"), facebook_rate, viber_rate)).unwrap();
    Sandbox::start_owning(&path, extra_args, dir)
}

fn messenger_body(text: &str) -> Value {
    json!({"recipient":{"id":"7212345678901234"},"messaging_type":"RESPONSE","message":{"text":text}})
}

fn whatsapp_body() -> Value {
    json!({"messaging_product":"whatsapp","recipient_type":"individual","to":"5511987654321","type":"text","text":{"body":"Yes, it arrives tomorrow."}})
}

fn viber_body() -> Value {
    json!({"receiver":"pttm25kSGUo1919sBORWyA==","min_api_version":1,"sender":{"name":"Acme Support"},"type":"text","text":"Your parcel leaves today."})
}

fn linkedin_body() -> Value {
    json!({"actor":"urn:li:organization:2414183","object":"urn:li:activity:7190000000000000001","message":{"text":"Yes, we ship to Portugal."}})
}

const LINKEDIN_PATH: &str = "/rest/socialActions/urn%3Ali%3Aactivity%3A7190000000000000001/comments";

/// Sends one request to a platform's send endpoint. `Err` when the connection was closed unanswered.
async fn send(
    client: &reqwest::Client,
    sandbox: &Sandbox,
    platform: &str,
    token: &str,
) -> Result<(u16, reqwest::header::HeaderMap, String), reqwest::Error> {
    let request = match platform {
        "facebook" => client
            .post(sandbox.url(&format!("/v23.0/{PAGE_ID}/messages")))
            .bearer_auth(token)
            .json(&messenger_body("hi")),
        "whatsapp" => client
            .post(sandbox.url(&format!("/v23.0/{PHONE_NUMBER_ID}/messages")))
            .bearer_auth(token)
            .json(&whatsapp_body()),
        "viber" => client.post(sandbox.url("/pa/send_message")).header("X-Viber-Auth-Token", token).json(&viber_body()),
        "linkedin" => client
            .post(sandbox.url(LINKEDIN_PATH))
            .bearer_auth(token)
            .header("LinkedIn-Version", "202506")
            .header("X-Restli-Protocol-Version", "2.0.0")
            .json(&linkedin_body()),
        other => panic!("{other}"),
    };
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await?;
    Ok((status, headers, body))
}

fn token_of(platform: &str) -> &'static str {
    match platform {
        "facebook" => PAGE_TOKEN,
        "whatsapp" => WA_TOKEN,
        "viber" => VIBER_TOKEN,
        _ => LI_TOKEN,
    }
}

async fn control(client: &reqwest::Client, sandbox: &Sandbox, path: &str, body: Value) -> Value {
    let response = client.post(sandbox.url(path)).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn requests(client: &reqwest::Client, sandbox: &Sandbox, query: &str) -> Vec<Value> {
    let body: Value =
        client.get(sandbox.url(&format!("/_sandbox/requests?{query}"))).send().await.unwrap().json().await.unwrap();
    body["requests"].as_array().unwrap().clone()
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test]
async fn messenger_send_returns_a_message_id_and_is_recorded_exactly() {
    let sandbox = start_sandbox(&[], 40, 300);
    let client = client();
    let body = messenger_body("It shipped this morning. 📦");
    let response = client
        .post(sandbox.url(&format!("/v23.0/{PAGE_ID}/messages")))
        .bearer_auth(PAGE_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["recipient_id"], "7212345678901234");
    assert!(answer["message_id"].as_str().unwrap().starts_with("m_"));

    let recorded = requests(&client, &sandbox, "platform=facebook").await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let request = &recorded[0];
    assert_eq!(request["method"], "POST");
    assert_eq!(request["path"], format!("/v23.0/{PAGE_ID}/messages"));
    assert_eq!(request["body"], body);
    assert_eq!(request["headers"]["authorization"], format!("Bearer {PAGE_TOKEN}"));
    assert_eq!(request["headers"]["content-type"], "application/json");
    assert!(request["seq"].as_u64().unwrap() >= 1 && request["at_ms"].as_i64().unwrap() > 0);
    assert!(!sandbox.log().contains(PAGE_TOKEN), "a token reached the log");
}

#[tokio::test]
async fn refusals_are_shaped_like_each_platform() {
    let sandbox = start_sandbox(&[], 40, 300);
    let client = client();

    // WhatsApp without messaging_product: a Graph error, code 100.
    let mut body = whatsapp_body();
    body.as_object_mut().unwrap().remove("messaging_product");
    let response = client
        .post(sandbox.url(&format!("/v23.0/{PHONE_NUMBER_ID}/messages")))
        .bearer_auth(WA_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], 100);
    assert_eq!(error["error"]["type"], "OAuthException");
    assert_eq!(error["error"]["error_data"]["messaging_product"], "whatsapp");

    // A wrong token: 401, code 190.
    let (status, _, body) = send(&client, &sandbox, "facebook", "not-the-page-token").await.unwrap();
    assert_eq!(status, 401);
    let error = json_of(&body);
    assert_eq!(error["error"]["code"], 190);
    assert_eq!(error["error"]["message"], "Invalid OAuth access token.");
    assert!(error["error"]["fbtrace_id"].is_string());

    // Viber without sender.name: HTTP 200, status 4.
    let mut body = viber_body();
    body.as_object_mut().unwrap().remove("sender");
    let response = client
        .post(sandbox.url("/pa/send_message"))
        .header("X-Viber-Auth-Token", VIBER_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!((answer["status"].as_u64(), answer["status_message"].as_str()), (Some(4), Some("missingData")));

    // Viber with a wrong token: status 2.
    let (status, _, body) = send(&client, &sandbox, "viber", "wrong").await.unwrap();
    assert_eq!((status, json_of(&body)["status"].as_u64()), (200, Some(2)));
}

#[tokio::test]
async fn successful_sends_on_viber_and_linkedin() {
    let sandbox = start_sandbox(&[], 40, 300);
    let client = client();
    let (status, _, body) = send(&client, &sandbox, "viber", VIBER_TOKEN).await.unwrap();
    assert_eq!(status, 200);
    // The token is a raw 64-bit number above 2^53, written exactly.
    let token: u64 =
        body.split("\"message_token\":").nth(1).unwrap().split([',', '}']).next().unwrap().parse().unwrap();
    assert!(token > 1 << 53, "{body}");
    assert_eq!(json_of(&body)["status"], 0);

    let (status, headers, body) = send(&client, &sandbox, "linkedin", LI_TOKEN).await.unwrap();
    assert_eq!(status, 201, "{body}");
    let id = headers["x-restli-id"].to_str().unwrap();
    assert!(id.starts_with("urn:li:comment:(urn:li:activity:7190000000000000001,"), "{id}");
    assert_eq!(json_of(&body)["id"], id);
    let recorded = requests(&client, &sandbox, "platform=linkedin").await;
    assert_eq!(recorded[0]["headers"]["linkedin-version"], "202506");
    assert_eq!(recorded[0]["headers"]["x-restli-protocol-version"], "2.0.0");
}

#[tokio::test]
async fn sends_above_the_configured_rate_get_429_or_status_12() {
    let sandbox = start_sandbox(&[], 5, 3);
    let client = client();
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let request = client
            .post(sandbox.url(&format!("/v23.0/{PAGE_ID}/messages")))
            .bearer_auth(PAGE_TOKEN)
            .json(&messenger_body("hi"));
        sends.spawn(async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            (status, retry_after, response.text().await.unwrap())
        });
    }
    let results = sends.join_all().await;
    let limited: Vec<&(u16, bool, String)> = results.iter().filter(|(status, _, _)| *status == 429).collect();
    assert!(!limited.is_empty(), "10 sends at once against 5/s were all accepted");
    assert!(results.len() - limited.len() >= 5);
    let (_, retry_after, body) = limited[0];
    assert_eq!(json_of(body)["error"]["code"], 613);
    assert!(retry_after);

    // Viber counts per minute: exactly 3 of 10 go through.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let (_, _, body) = send(&client, &sandbox, "viber", VIBER_TOKEN).await.unwrap();
        statuses.push(json_of(&body)["status"].as_u64().unwrap());
    }
    assert_eq!(statuses, vec![0, 0, 0, 12, 12, 12, 12, 12, 12, 12]);

    // --no-rate-limits lifts them.
    let unlimited = start_sandbox(&["--no-rate-limits"], 5, 3);
    for _ in 0..10 {
        let (status, _, _) = send(&client, &unlimited, "facebook", PAGE_TOKEN).await.unwrap();
        assert_eq!(status, 200);
    }
}

/// What a faulted answer looks like on each platform: (HTTP status, the platform's code).
fn fault_signature(platform: &str, kind: &str) -> (u16, Option<u64>) {
    match (platform, kind) {
        ("facebook", "rate_limit") => (429, Some(613)),
        ("whatsapp", "rate_limit") => (429, Some(130429)),
        ("viber", "rate_limit") => (200, Some(12)),
        ("linkedin", "rate_limit") => (429, None),
        ("viber", "server_error") => (500, None),
        (_, "server_error") if platform != "linkedin" => (500, Some(2)),
        ("linkedin", "server_error") => (500, None),
        ("viber", "expired_token") => (200, Some(2)),
        ("linkedin", "expired_token") => (401, Some(65601)),
        (_, "expired_token") => (401, Some(190)),
        ("facebook", "permanent") => (400, Some(10)),
        ("whatsapp", "permanent") => (400, Some(131047)),
        ("viber", "permanent") => (200, Some(6)),
        ("linkedin", "permanent") => (403, None),
        other => panic!("{other:?}"),
    }
}

fn platform_code(platform: &str, body: &str) -> Option<u64> {
    let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    match platform {
        "facebook" | "whatsapp" => value["error"]["code"].as_u64(),
        "viber" => value["status"].as_u64(),
        _ => value["serviceErrorCode"].as_u64().filter(|_| value["status"] == 401),
    }
}

fn is_success(platform: &str, status: u16, body: &str) -> bool {
    match platform {
        "viber" => status == 200 && json_of(body)["status"] == 0,
        "linkedin" => status == 201,
        _ => status == 200,
    }
}

#[tokio::test]
async fn each_fault_kind_applies_to_the_next_n_sends_then_service_is_normal() {
    let sandbox = start_sandbox(&["--no-rate-limits", "--no-receipts"], 40, 300);
    let client = client();
    for platform in ["facebook", "whatsapp", "viber", "linkedin"] {
        let token = token_of(platform);
        for kind in ["rate_limit", "server_error", "expired_token", "permanent"] {
            let queued =
                control(&client, &sandbox, "/_sandbox/faults", json!({"platform": platform, "kind": kind, "count": 2}))
                    .await;
            assert_eq!(queued["pending"], 2);
            for _ in 0..2 {
                let (status, headers, body) = send(&client, &sandbox, platform, token).await.unwrap();
                assert_eq!(
                    (status, platform_code(platform, &body)),
                    fault_signature(platform, kind),
                    "{platform} {kind}: {body}"
                );
                if kind == "rate_limit" && platform != "viber" {
                    assert_eq!(headers["retry-after"], "1");
                }
            }
            let (status, _, body) = send(&client, &sandbox, platform, token).await.unwrap();
            assert!(is_success(platform, status, &body), "{platform} after {kind}: {status} {body}");
        }

        control(&client, &sandbox, "/_sandbox/faults", json!({"platform": platform, "kind": "drop", "count": 1})).await;
        assert!(send(&client, &sandbox, platform, token).await.is_err(), "{platform}: drop answered");
        let (status, _, body) = send(&client, &sandbox, platform, token).await.unwrap();
        assert!(is_success(platform, status, &body), "{platform} after drop");

        control(&client, &sandbox, "/_sandbox/faults", json!({"platform": platform, "kind": "slow", "delay_ms": 300}))
            .await;
        let started = Instant::now();
        let (status, _, body) = send(&client, &sandbox, platform, token).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(is_success(platform, status, &body), "{platform} slow");
    }
    let log = sandbox.log();
    assert!(log.contains("Fault applied."), "{log}");
}

#[tokio::test]
async fn refreshed_and_exchanged_tokens_are_accepted() {
    let sandbox = start_sandbox(&[], 40, 300);
    let client = client();
    let refreshed: Value = client
        .post(sandbox.url("/oauth/v2/accessToken"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", LI_REFRESH),
            ("client_id", "test-linkedin-client"),
            ("client_secret", LINKEDIN_SECRET),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refreshed["expires_in"], 5_184_000);
    assert!(refreshed["refresh_token_expires_in"].as_i64().unwrap() > 0);
    let new_token = refreshed["access_token"].as_str().unwrap();
    assert_ne!(new_token, LI_TOKEN);
    let (status, _, _) = send(&client, &sandbox, "linkedin", new_token).await.unwrap();
    assert_eq!(status, 201);
    let (status, _, body) = send(&client, &sandbox, "linkedin", "never-issued").await.unwrap();
    assert_eq!((status, json_of(&body)["serviceErrorCode"].as_u64()), (401, Some(65600)));

    let introspected: Value = client
        .post(sandbox.url("/oauth/v2/introspectToken"))
        .form(&[("client_id", "test-linkedin-client"), ("client_secret", LINKEDIN_SECRET), ("token", new_token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(introspected["active"], true);

    // The form was recorded as a map.
    let recorded = requests(&client, &sandbox, "platform=linkedin").await;
    assert_eq!(recorded[0]["body"]["grant_type"], "refresh_token");

    let exchanged: Value = client
        .get(sandbox.url("/v23.0/oauth/access_token"))
        .query(&[
            ("grant_type", "fb_exchange_token"),
            ("client_id", "1234567890"),
            ("client_secret", FACEBOOK_SECRET),
            ("fb_exchange_token", "short-lived"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(exchanged["token_type"], "bearer");
    let long_lived = exchanged["access_token"].as_str().unwrap();
    let (status, _, _) = send(&client, &sandbox, "facebook", long_lived).await.unwrap();
    assert_eq!(status, 200);
    let debug: Value = client
        .get(sandbox.url("/v23.0/debug_token"))
        .query(&[("input_token", long_lived), ("access_token", &format!("1234567890|{FACEBOOK_SECRET}"))])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(debug["data"]["is_valid"], true);
    assert!(debug["data"]["expires_at"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn receipts_reach_the_real_daemon_correctly_signed() {
    let daemon = Daemon::start_with(|store| config(store, 40, 300));
    let sandbox = Sandbox::start_with(
        &daemon.config_path,
        &["--parley-url", &daemon.url(""), "--delivery-delay-ms", "20", "--read-delay-ms", "60"],
    );
    let client = client();
    for platform in ["facebook", "whatsapp", "viber"] {
        let (status, _, body) = send(&client, &sandbox, platform, token_of(platform)).await.unwrap();
        assert!(is_success(platform, status, &body), "{platform}: {body}");
    }
    // No receipts for a sender action or a LinkedIn comment.
    let typing = client
        .post(sandbox.url(&format!("/v23.0/{PAGE_ID}/messages")))
        .bearer_auth(PAGE_TOKEN)
        .json(&json!({"recipient":{"id":"7212345678901234"},"sender_action":"typing_on"}))
        .send()
        .await
        .unwrap();
    assert_eq!(typing.status(), 200);
    send(&client, &sandbox, "linkedin", LI_TOKEN).await.unwrap();

    // Messenger delivery + read, WhatsApp sent + delivered + read, Viber delivered + seen; the
    // daemon answers 2xx only to a correct signature.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let health: Value = client.get(sandbox.url("/_sandbox/health")).send().await.unwrap().json().await.unwrap();
        let receipts = &health["receipts"];
        assert_eq!(receipts["failed"], 0, "{health}\n{}\n{}", sandbox.log(), daemon.log());
        if receipts["posted"] == 7 && receipts["pending"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "receipts never all arrived: {health}\n{}", sandbox.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let daemon_log = daemon.log();
    assert!(!daemon_log.contains("Webhook refused"), "{daemon_log}");
}

#[test]
fn a_non_loopback_address_is_refused_and_a_busy_port_is_a_runtime_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config(&dir.path().join("store"), 40, 300)).unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["sandbox", "--listen", "0.0.0.0:0", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--listen"));

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["sandbox", "--listen", &addr, "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
}
