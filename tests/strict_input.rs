//! Input that is ambiguous or of the wrong kind is refused plainly, and start-up failures are
//! reported once, in words an operator can act on (issue 7, finding 4).

mod support;

use std::process::{Command, Stdio};

use serde_json::{Value, json};
use support::*;

fn messenger_body(mid: &str) -> String {
    json!({
        "object": "page",
        "entry": [{ "id": PAGE_ID, "time": 1_718_000_000_000_i64, "messaging": [{
            "sender": { "id": "6783425198201945" },
            "recipient": { "id": PAGE_ID },
            "timestamp": 1_718_000_000_000_i64,
            "message": { "mid": mid, "text": "hello" }
        }]}]
    })
    .to_string()
}

fn viber_body() -> String {
    json!({
        "event": "message",
        "timestamp": 1_718_000_000_000_i64,
        "message_token": 5_741_311_803_571_721_087_i64,
        "sender": { "id": "01234567890A=", "name": "Ana" },
        "message": { "type": "text", "text": "hi" }
    })
    .to_string()
}

fn linkedin_body() -> String {
    json!([{
        "type": "ORGANIZATION_SOCIAL_ACTION_NOTIFICATIONS",
        "notificationId": 2_104_512_i64,
        "organizationalEntity": "urn:li:organization:2414183",
        "action": "COMMENT",
        "sourcePost": "urn:li:share:7100000000000000001",
        "decoratedSourcePost": { "entity": "urn:li:share:7100000000000000001" },
        "generatedActivity": "urn:li:comment:(urn:li:activity:7100000000000000001,7100000000000000002)",
        "decoratedGeneratedActivity": { "comment": {
            "entity": "urn:li:comment:(urn:li:activity:7100000000000000001,7100000000000000002)",
            "text": "Nice post", "owner": "urn:li:person:abc123" } },
        "lastModifiedAt": 1_718_000_000_000_i64
    }])
    .to_string()
}

/// A correctly signed body per platform, with its one right signature header.
fn signed_bodies() -> Vec<(&'static str, String)> {
    vec![
        ("facebook", messenger_body("m_two_headers")),
        ("whatsapp", whatsapp_messages(&[("wamid.TWO", "15551234567", "Ana", "hi")])),
        ("viber", viber_body()),
        ("linkedin", linkedin_body()),
    ]
}

#[tokio::test]
async fn a_webhook_with_two_signature_headers_is_refused_and_stores_nothing() {
    let daemon = Daemon::start();
    let client = client();
    for (platform, body) in signed_bodies() {
        let (header, right) = signature_header(platform, body.as_bytes());
        let wrong = right.replace(|c: char| c.is_ascii_digit(), "0");
        // The right signature first, then a second one; the second first; the right one twice.
        for pair in [[right.clone(), wrong.clone()], [wrong.clone(), right.clone()], [right.clone(), right.clone()]] {
            let response = client
                .post(daemon.url(&format!("/webhooks/{platform}")))
                .header(header, &pair[0])
                .header(header, &pair[1])
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 401, "{platform}: two signature headers must be refused");
            let error: Value = response.json().await.unwrap();
            assert!(error["error"]["message"].as_str().unwrap().contains("more than one signature"), "{error}");
        }
    }
    let (_, all) = api_get(&client, &daemon, "/api/conversations").await;
    assert_eq!(all["conversations"], json!([]), "nothing may be stored from an ambiguous request");
    // The same bodies with one signature each are accepted, so the refusals above were for the duplicate.
    for (platform, body) in signed_bodies() {
        assert_eq!(post_signed(&client, &daemon, platform, &body).await.0, 200, "{platform}");
    }
}

#[tokio::test]
async fn a_viber_webhook_with_a_header_and_another_sig_parameter_is_refused() {
    let daemon = Daemon::start();
    let client = client();
    let body = viber_body();
    let (header, right) = signature_header("viber", body.as_bytes());
    let other = "ab".repeat(32);
    for (header_value, sig) in [(&right, &other), (&other, &right)] {
        let response = client
            .post(daemon.url(&format!("/webhooks/viber?sig={sig}")))
            .header(header, header_value)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401);
    }
    let response =
        client.post(daemon.url(&format!("/webhooks/viber?sig={right}&sig={other}"))).body(body).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

#[tokio::test]
async fn api_posts_that_are_not_declared_json_get_415_and_queue_nothing() {
    let daemon = Daemon::start();
    let client = client();
    let body = json!({ "platform": "viber", "to": VIBER_USER, "text": "hello" }).to_string();
    for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("text/json"), None] {
        let mut request = client.post(daemon.url("/api/messages")).bearer_auth(API_TOKEN).body(body.clone());
        if let Some(value) = content_type {
            request = request.header("content-type", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 415, "{content_type:?}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "unsupported_media_type", "{content_type:?}");
    }
    let (_, all) = api_get(&client, &daemon, "/api/conversations").await;
    assert_eq!(all["conversations"], json!([]), "a refused post must queue nothing");

    let response = client
        .post(daemon.url("/api/messages"))
        .bearer_auth(API_TOKEN)
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202, "application/json with a charset is JSON");

    // A reply in the conversation just started is held to the same rule.
    let (_, all) = api_get(&client, &daemon, "/api/conversations").await;
    let id = all["conversations"][0]["id"].as_str().unwrap().to_owned();
    let response = client
        .post(daemon.url(&format!("/api/conversations/{id}/messages")))
        .bearer_auth(API_TOKEN)
        .header("content-type", "text/plain")
        .body(r#"{"text":"again"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
}

/// Runs `parley serve` on `config_path` to its exit; returns the exit code and stderr.
fn serve_to_exit(config_path: &std::path::Path) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["serve", "--config"])
        .arg(config_path)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start parley");
    let status = wait_with_deadline(&mut child, std::time::Duration::from_secs(60));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code(), stderr)
}

#[test]
fn a_store_held_by_another_daemon_is_reported_once_in_a_plain_sentence() {
    let first = Daemon::start();
    let (code, stderr) = serve_to_exit(&first.config_path);
    assert_eq!(code, Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("storage.path")).collect();
    assert_eq!(lines.len(), 1, "the failure is printed exactly once:\n{stderr}");
    assert!(lines[0].contains("in use by another process"), "{stderr}");
    assert!(!stderr.contains("Os {") && !stderr.contains("WouldBlock"), "no Rust debug text:\n{stderr}");
}

#[test]
fn a_port_in_use_is_reported_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.toml");
    let config = base_config(&dir.path().join("store")).replace("127.0.0.1:0", &addr.to_string());
    std::fs::write(&config_path, config).unwrap();
    let (code, stderr) = serve_to_exit(&config_path);
    assert_eq!(code, Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("in use")).collect();
    assert_eq!(lines.len(), 1, "the failure is printed exactly once:\n{stderr}");
    assert!(lines[0].contains("server.listen"), "it names the key at fault:\n{stderr}");
}
