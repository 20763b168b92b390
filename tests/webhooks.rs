//! The real binary, end to end: signed webhooks of every platform are stored and read back through
//! the operator API; everything else gets the answer the contract gives it.

mod support;

use serde_json::{Value, json};
use support::*;

fn messenger_body() -> String {
    json!({
        "object": "page",
        "entry": [{
            "id": PAGE_ID, "time": 1718000000123_i64,
            "messaging": [
                { "sender": { "id": "7212345678901234" }, "recipient": { "id": PAGE_ID },
                  "timestamp": 1718000000045_i64,
                  "message": { "mid": "m_in_1", "text": "Hi, has my order shipped? 📦" } },
                { "sender": { "id": PAGE_ID }, "recipient": { "id": "7212345678901234" },
                  "timestamp": 1718000200300_i64,
                  "message": { "is_echo": true, "app_id": 1234567890123_i64, "mid": "m_out_1", "text": "It shipped this morning." } }
            ]
        }]
    })
    .to_string()
}

fn viber_body() -> String {
    // message_token above 2^53: kept exactly only if never parsed as a double.
    r#"{"event":"message","timestamp":1718000000123,"chat_hostname":"SN-CHAT-07_","message_token":5741311803571721088,
        "sender":{"id":"pttm25kSGUo1919sBORWyA==","name":"Ivan P.","language":"uk","country":"UA","api_version":10},
        "message":{"type":"text","text":"Привіт! Де моя посилка?"},"silent":false}"#
        .to_owned()
}

fn linkedin_body() -> String {
    json!({
        "type": "ORGANIZATION_SOCIAL_ACTION_NOTIFICATIONS",
        "notifications": [{
            "notificationId": 8812345001_i64,
            "organizationalEntity": "urn:li:organization:2414183",
            "action": "COMMENT",
            "sourcePost": "urn:li:activity:7190000000000000001",
            "generatedActivity": "urn:li:comment:(urn:li:activity:7190000000000000001,7190000000000000099)",
            "decoratedGeneratedActivity": { "comment": {
                "entity": "urn:li:comment:(urn:li:activity:7190000000000000001,7190000000000000099)",
                "owner": "urn:li:person:AbC123xYz", "object": "urn:li:activity:7190000000000000001",
                "text": "Do you ship to Portugal?" } },
            "lastModifiedAt": 1718000000123_i64
        }]
    })
    .to_string()
}

async fn conversations(client: &reqwest::Client, daemon: &Daemon, platform: &str) -> Vec<Value> {
    let (status, body) = api_get(client, daemon, &format!("/api/conversations?platform={platform}")).await;
    assert_eq!(status, 200, "{body}");
    body["conversations"].as_array().unwrap().clone()
}

async fn messages_of(client: &reqwest::Client, daemon: &Daemon, conversation: &Value) -> Vec<Value> {
    let id = conversation["id"].as_str().unwrap();
    let (status, body) = api_get(client, daemon, &format!("/api/conversations/{id}/messages")).await;
    assert_eq!(status, 200, "{body}");
    body["messages"].as_array().unwrap().clone()
}

#[tokio::test]
async fn signed_webhooks_of_every_platform_are_stored_and_read_back() {
    let daemon = Daemon::start();
    let client = client();

    let (status, body) = post_signed(&client, &daemon, "facebook", &messenger_body()).await;
    assert_eq!((status, body.as_str()), (200, r#"{"duplicates":0,"events":2,"status":"stored"}"#));
    let wa = whatsapp_messages(&[
        ("wamid.A1", "5511987654321", "Ana Souza", "Olá! Chegou?"),
        ("wamid.B1", "972501234567", "דנה", "שלום, איפה ההזמנה שלי?"),
    ]);
    assert_eq!(post_signed(&client, &daemon, "whatsapp", &wa).await.0, 200);
    assert_eq!(post_signed(&client, &daemon, "viber", &viber_body()).await.0, 200);
    assert_eq!(post_signed(&client, &daemon, "linkedin", &linkedin_body()).await.0, 200);

    // Messenger: the echo lands in the user's conversation, as an outbound message.
    let fb = conversations(&client, &daemon, "facebook").await;
    assert_eq!(fb.len(), 1, "{fb:?}");
    assert_eq!(fb[0]["contact_id"], "7212345678901234");
    assert_eq!(fb[0]["account_id"], PAGE_ID);
    assert_eq!(fb[0]["last_message_text"], "It shipped this morning.");
    let fb_messages = messages_of(&client, &daemon, &fb[0]).await;
    let shape: Vec<(&str, &str)> =
        fb_messages.iter().map(|m| (m["direction"].as_str().unwrap(), m["text"].as_str().unwrap())).collect();
    assert_eq!(shape, [("outbound", "It shipped this morning."), ("inbound", "Hi, has my order shipped? 📦")]);
    assert_eq!(fb_messages[1]["sent_at"], "2024-06-10T06:13:20.045Z");

    // WhatsApp: two senders, names matched by wa_id, right-to-left text intact.
    let wa = conversations(&client, &daemon, "whatsapp").await;
    assert_eq!(wa.len(), 2);
    let hebrew = wa.iter().find(|c| c["contact_id"] == "972501234567").unwrap();
    assert_eq!(hebrew["contact_name"], "דנה");
    assert_eq!(hebrew["last_message_text"], "שלום, איפה ההזמנה שלי?");
    assert_eq!(hebrew["unread"], 1);

    // Viber: the 64-bit token survives as a decimal string.
    let vb = conversations(&client, &daemon, "viber").await;
    let vb_messages = messages_of(&client, &daemon, &vb[0]).await;
    assert_eq!(vb_messages[0]["platform_message_id"], "5741311803571721088");
    assert_eq!(vb_messages[0]["text"], "Привіт! Де моя посилка?");
    assert_eq!(vb[0]["contact_name"], "Ivan P.");

    // LinkedIn: a comment inbox keyed by the post, the commenter as sender.
    let li = conversations(&client, &daemon, "linkedin").await;
    assert_eq!(li[0]["contact_id"], "urn:li:activity:7190000000000000001");
    let li_messages = messages_of(&client, &daemon, &li[0]).await;
    assert_eq!(li_messages[0]["sender_id"], "urn:li:person:AbC123xYz");
    assert_eq!(li_messages[0]["text"], "Do you ship to Portugal?");

    // One message by id, and one conversation by id.
    let id = vb_messages[0]["id"].as_str().unwrap();
    let (status, message) = api_get(&client, &daemon, &format!("/api/messages/{id}")).await;
    assert_eq!((status, &message["id"]), (200, &vb_messages[0]["id"]));
    let id = li[0]["id"].as_str().unwrap();
    let (status, conversation) = api_get(&client, &daemon, &format!("/api/conversations/{id}")).await;
    assert_eq!((status, &conversation["platform"]), (200, &json!("linkedin")));

    let (_, all) = api_get(&client, &daemon, "/api/conversations").await;
    assert_eq!(all["conversations"].as_array().unwrap().len(), 5);
    assert!(!daemon.log().contains(FACEBOOK_SECRET) && !daemon.log().contains(API_TOKEN), "a secret reached the log");
}

#[tokio::test]
async fn redelivered_webhook_is_stored_once() {
    let daemon = Daemon::start();
    let client = client();
    let body = messenger_body();
    assert_eq!(post_signed(&client, &daemon, "facebook", &body).await.0, 200);
    let (status, answer) = post_signed(&client, &daemon, "facebook", &body).await;
    assert_eq!((status, answer.as_str()), (200, r#"{"duplicates":2,"events":0,"status":"stored"}"#));
    let fb = conversations(&client, &daemon, "facebook").await;
    assert_eq!(messages_of(&client, &daemon, &fb[0]).await.len(), 2);
    assert_eq!(fb[0]["unread"], 0, "the echo (our reply) came after the inbound message");
}

#[tokio::test]
async fn bad_or_missing_signatures_get_401_and_store_nothing() {
    let daemon = Daemon::start();
    let client = client();
    let body = messenger_body();
    let cases: Vec<(&str, Option<(&str, String)>)> = vec![
        ("facebook", None),
        ("facebook", Some(("X-Hub-Signature-256", format!("sha256={}", "00".repeat(32))))),
        // Signed with another platform's secret.
        ("facebook", Some(signature_header("whatsapp", body.as_bytes()))),
        ("viber", Some(("X-Viber-Content-Signature", "ab".repeat(32)))),
        ("linkedin", None),
    ];
    for (platform, header) in cases {
        let mut request = client.post(daemon.url(&format!("/webhooks/{platform}"))).body(body.clone());
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{platform}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "bad_signature");
    }
    // A body changed after signing.
    let (header, value) = signature_header("facebook", body.as_bytes());
    let tampered = body.replace("shipped?", "shipped!");
    let response =
        client.post(daemon.url("/webhooks/facebook")).header(header, value).body(tampered).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let (_, all) = api_get(&client, &daemon, "/api/conversations").await;
    assert_eq!(all["conversations"], json!([]));
}

#[tokio::test]
async fn viber_signature_in_the_sig_query_parameter_is_accepted() {
    let daemon = Daemon::start();
    let client = client();
    let body = viber_body();
    let (_, signature) = signature_header("viber", body.as_bytes());
    let response =
        client.post(daemon.url(&format!("/webhooks/viber?sig={signature}"))).body(body).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(conversations(&client, &daemon, "viber").await.len(), 1);
}

#[tokio::test]
async fn handshakes_answer_the_challenge_or_403() {
    let daemon = Daemon::start();
    let client = client();
    let url = daemon.url(&format!(
        "/webhooks/facebook?hub.mode=subscribe&hub.verify_token={FACEBOOK_VERIFY}&hub.challenge=0012345"
    ));
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(response.text().await.unwrap(), "0012345");

    let url = daemon.url("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1");
    assert_eq!(client.get(url).send().await.unwrap().status().as_u16(), 403);
    let url = daemon
        .url(&format!("/webhooks/whatsapp?hub.mode=unsubscribe&hub.verify_token={WHATSAPP_VERIFY}&hub.challenge=1"));
    assert_eq!(client.get(url).send().await.unwrap().status().as_u16(), 403);

    let code = "8f1b6c2e-5d4a-4e7b-9c3d-2a1f0e9d8c7b";
    let response = client.get(daemon.url(&format!("/webhooks/linkedin?challengeCode={code}"))).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["challengeCode"], code);
    assert_eq!(answer["challengeResponse"], parley::platform::sign_hex(LINKEDIN_SECRET.as_bytes(), &[code.as_bytes()]));
}

#[tokio::test]
async fn api_needs_the_bearer_token() {
    let daemon = Daemon::start();
    let client = client();
    let no_token = client.get(daemon.url("/api/conversations")).send().await.unwrap();
    assert_eq!(no_token.status().as_u16(), 401);
    let wrong = client.get(daemon.url("/api/conversations")).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let right = client.get(daemon.url("/api/conversations")).bearer_auth(API_TOKEN).send().await.unwrap();
    assert_eq!(right.status().as_u16(), 200);
}

#[tokio::test]
async fn empty_api_token_refuses_every_call() {
    let daemon =
        Daemon::start_with(|store| base_config(store).replace(&format!("token = \"{API_TOKEN}\""), "token = \"\""));
    let client = client();
    let response = client.get(daemon.url("/api/conversations")).bearer_auth("").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

#[tokio::test]
async fn unknown_routes_methods_and_disabled_platforms_get_short_json_errors() {
    let daemon =
        Daemon::start_with(|store| base_config(store).replace("[viber]\nenabled = true", "[viber]\nenabled = false"));
    let client = client();
    let cases = [
        ("GET", "/nowhere", 404),
        ("GET", "/webhooks/telegram", 404),
        ("POST", "/webhooks/viber", 404),
        ("DELETE", "/webhooks/facebook", 405),
        ("GET", "/webhooks/linkedin", 400),
        ("POST", "/health", 405),
        ("GET", "/api/conversations/c000000000000000000000000", 404),
        ("GET", "/api/messages/m404", 404),
        ("GET", "/api/conversations/c000000000000000000000000/messages", 404),
        ("GET", "/api/conversations?limit=0", 400),
        ("GET", "/api/conversations?limit=ten", 400),
        ("GET", "/api/conversations?platform=myspace", 400),
        ("GET", "/api/conversations?before=garbage", 400),
        ("DELETE", "/api/conversations", 405),
    ];
    for (method, path, expected) in cases {
        let response =
            client.request(method.parse().unwrap(), daemon.url(path)).bearer_auth(API_TOKEN).send().await.unwrap();
        assert_eq!(response.status().as_u16(), expected, "{method} {path}");
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string(), "{method} {path}: {body}");
    }
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_store_nothing() {
    let daemon = Daemon::start();
    let client = client();
    let big = format!(r#"{{"object":"page","entry":[],"pad":"{}"}}"#, "x".repeat(70_000));
    let (status, _) = post_signed(&client, &daemon, "facebook", &big).await;
    assert_eq!(status, 413);
    // A chunked body (no Content-Length) over the limit is refused too: raw HTTP/1.1 so that
    // nothing adds a length.
    let (header, value) = signature_header("facebook", big.as_bytes());
    let mut request = format!(
        "POST /webhooks/facebook HTTP/1.1\r\nHost: {}\r\n{header}: {value}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        daemon.addr
    )
    .into_bytes();
    for chunk in big.as_bytes().chunks(8192) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_http(&daemon.addr, &request).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

async fn raw_http(addr: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer 413 and close before reading everything; a failed write is fine.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_signed_body_that_does_not_parse_is_quarantined_and_answered_200() {
    let daemon = Daemon::start();
    let client = client();
    let (status, answer) = post_signed(&client, &daemon, "whatsapp", "this is not json").await;
    assert_eq!((status, answer.as_str()), (200, r#"{"status":"quarantined"}"#));
    let metrics = client.get(daemon.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("parley_store_records{tree=\"quarantine\"} 1"), "{metrics}");
    assert!(metrics.contains("parley_webhooks_total{platform=\"whatsapp\",result=\"quarantined\"} 1"), "{metrics}");
}

#[tokio::test]
async fn conversations_page_with_cursors_newest_first() {
    let daemon = Daemon::start();
    let client = client();
    for i in 0..7 {
        let body =
            whatsapp_messages_at(&[(&format!("wamid.P{i}"), &format!("55110000000{i}"), "P", "hi")], 1718000000 + i);
        assert_eq!(post_signed(&client, &daemon, "whatsapp", &body).await.0, 200);
    }
    let mut seen = Vec::new();
    let mut path = "/api/conversations?limit=3".to_owned();
    loop {
        let (status, page) = api_get(&client, &daemon, &path).await;
        assert_eq!(status, 200);
        seen.extend(
            page["conversations"].as_array().unwrap().iter().map(|c| c["contact_id"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => path = format!("/api/conversations?limit=3&before={next}"),
            None => break,
        }
    }
    let expected: Vec<String> = (0..7).rev().map(|i| format!("55110000000{i}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn sigterm_finishes_in_flight_work_flushes_and_exits_zero() {
    let mut daemon = Daemon::start();
    let client = client();
    assert_eq!(post_signed(&client, &daemon, "viber", &viber_body()).await.0, 200);
    let status = daemon.terminate();
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    let daemon = daemon.restart();
    assert_eq!(conversations(&client, &daemon, "viber").await.len(), 1);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let daemon = Daemon::start_with(|store| {
        base_config(store).replace("[server]\n", "[server]\nheader_read_timeout_secs = 1\n")
    });
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(&daemon.addr).await.unwrap();
    stream.write_all(b"POST /webhooks/facebook HTTP/1.1\r\nHost: slow\r\nX-Slow: ").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection was still open after 10 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
}
