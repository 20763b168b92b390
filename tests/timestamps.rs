//! A signed webhook dated far in the future (the year 10000, or microseconds taken for
//! milliseconds) must not poison the store: it is stored with its arrival time, later webhooks
//! from the same contact are stored too, and the listings keep answering, also after a restart.

mod support;

use serde_json::{Value, json};
use support::*;

use parley::model::Timestamp;

/// 253402300800000 ms is 10000-01-01T00:00:00Z, one millisecond past what RFC 3339 can write.
const YEAR_10000_MS: i64 = 253_402_300_800_000;

fn messenger(mid: &str, timestamp: Value) -> String {
    json!({
        "object": "page",
        "entry": [{ "id": PAGE_ID, "time": 1718000000123_i64, "messaging": [{
            "sender": { "id": "7212345678901234" }, "recipient": { "id": PAGE_ID },
            "timestamp": timestamp,
            "message": { "mid": mid, "text": format!("text of {mid}") }
        }]}]
    })
    .to_string()
}

fn whatsapp(wamid: &str, timestamp: Value) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550001111", "phone_number_id": PHONE_NUMBER_ID },
            "contacts": [{ "profile": { "name": "Ana Souza" }, "wa_id": "5511987654321" }],
            "messages": [{ "from": "5511987654321", "id": wamid, "timestamp": timestamp,
                           "type": "text", "text": { "body": format!("text of {wamid}") } }]
        }}]}]
    })
    .to_string()
}

fn viber(token: u64, timestamp: Value) -> String {
    json!({
        "event": "message", "timestamp": timestamp, "chat_hostname": "SN-CHAT-07_", "message_token": token,
        "sender": { "id": "pttm25kSGUo1919sBORWyA==", "name": "Ivan P.", "language": "uk", "country": "UA", "api_version": 10 },
        "message": { "type": "text", "text": format!("text of {token}") }, "silent": false
    })
    .to_string()
}

fn linkedin(notification_id: u64, timestamp: Value) -> String {
    let comment = format!("urn:li:comment:(urn:li:activity:7190000000000000001,{notification_id})");
    json!({
        "type": "ORGANIZATION_SOCIAL_ACTION_NOTIFICATIONS",
        "notifications": [{
            "notificationId": notification_id,
            "organizationalEntity": "urn:li:organization:2414183",
            "action": "COMMENT",
            "sourcePost": "urn:li:activity:7190000000000000001",
            "generatedActivity": comment,
            "decoratedGeneratedActivity": { "comment": {
                "entity": comment, "owner": "urn:li:person:AbC123xYz",
                "object": "urn:li:activity:7190000000000000001",
                "text": format!("text of {notification_id}") } },
            "lastModifiedAt": timestamp
        }]
    })
    .to_string()
}

/// The message texts of the platform's only conversation, and that every `sent_at` and the
/// conversation's times lie between `earliest` and `latest`.
async fn check_listings(daemon: &Daemon, platform: &str, earliest: Timestamp, latest: Timestamp) -> Vec<String> {
    let client = client();
    let (status, all) = api_get(&client, daemon, "/api/conversations").await;
    assert_eq!(status, 200, "{all}");
    let (status, page) = api_get(&client, daemon, &format!("/api/conversations?platform={platform}")).await;
    assert_eq!(status, 200, "{page}");
    let conversations = page["conversations"].as_array().unwrap();
    assert_eq!(conversations.len(), 1, "{page}");
    let sane = |field: &Value| {
        let at = Timestamp::parse_rfc3339(field.as_str().unwrap_or_default());
        assert!(at.is_some_and(|at| earliest <= at && at <= latest), "{field} is not between {earliest} and {latest}");
    };
    sane(&conversations[0]["updated_at"]);
    sane(&conversations[0]["last_message_at"]);
    let id = conversations[0]["id"].as_str().unwrap();
    let (status, one) = api_get(&client, daemon, &format!("/api/conversations/{id}")).await;
    assert_eq!(status, 200, "{one}");
    let (status, page) = api_get(&client, daemon, &format!("/api/conversations/{id}/messages")).await;
    assert_eq!(status, 200, "{page}");
    let messages = page["messages"].as_array().unwrap();
    for message in messages {
        sane(&message["sent_at"]);
        let (status, one) =
            api_get(&client, daemon, &format!("/api/messages/{}", message["id"].as_str().unwrap())).await;
        assert_eq!(status, 200, "{one}");
    }
    let mut texts: Vec<String> = messages.iter().map(|m| m["text"].as_str().unwrap_or_default().to_owned()).collect();
    texts.sort();
    texts
}

/// Posts `poisoned` and then `normal` (same contact, dated `start`), checks both are stored with
/// sane times (from `start`, less a second for WhatsApp's whole seconds, to the last answer) and
/// that the listings answer, then restarts the daemon and checks again.
async fn far_future_webhook_does_not_poison(
    platform: &str,
    start: Timestamp,
    poisoned: String,
    normal: String,
    texts: [&str; 2],
) {
    let earliest = start.saturating_add_millis(-1000);
    let mut daemon = Daemon::start();
    let client = client();
    let (status, body) = post_signed(&client, &daemon, platform, &poisoned).await;
    assert_eq!(status, 200, "far-future webhook: {body}");
    let (status, body) = post_signed(&client, &daemon, platform, &normal).await;
    assert_eq!(status, 200, "a later webhook from the same contact: {body}");
    let (status, body) = post_signed(&client, &daemon, platform, &poisoned).await;
    assert_eq!(status, 200, "the far-future webhook again (a redelivery): {body}");
    let latest = Timestamp::now();
    let expected: Vec<String> = texts.iter().map(|t| (*t).to_owned()).collect();
    assert_eq!(check_listings(&daemon, platform, earliest, latest).await, expected, "{}", daemon.log());

    assert!(daemon.terminate().success());
    daemon.start_again();
    assert_eq!(check_listings(&daemon, platform, earliest, latest).await, expected, "after a restart");
    let (status, body) = post_signed(&client, &daemon, platform, &poisoned).await;
    assert_eq!(status, 200, "after a restart: {body}");
}

#[tokio::test]
async fn messenger_message_from_the_year_10000_is_stored_with_its_arrival_time() {
    let start = Timestamp::now();
    let now = start.as_millis();
    far_future_webhook_does_not_poison(
        "facebook",
        start,
        messenger("m_future", json!(YEAR_10000_MS)),
        messenger("m_after", json!(now)),
        ["text of m_after", "text of m_future"],
    )
    .await;
}

#[tokio::test]
async fn whatsapp_message_with_a_microsecond_timestamp_is_stored_with_its_arrival_time() {
    let start = Timestamp::now();
    let now_secs = start.as_millis() / 1000;
    far_future_webhook_does_not_poison(
        "whatsapp",
        start,
        whatsapp("wamid.FUTURE", json!("1000000000000000")),
        whatsapp("wamid.AFTER", json!(now_secs.to_string())),
        ["text of wamid.AFTER", "text of wamid.FUTURE"],
    )
    .await;
}

#[tokio::test]
async fn viber_message_from_the_year_10000_is_stored_with_its_arrival_time() {
    let start = Timestamp::now();
    let now = start.as_millis();
    far_future_webhook_does_not_poison(
        "viber",
        start,
        viber(5741311803571721001, json!(YEAR_10000_MS)),
        viber(5741311803571721002, json!(now)),
        ["text of 5741311803571721001", "text of 5741311803571721002"],
    )
    .await;
}

#[tokio::test]
async fn linkedin_comment_from_the_year_10000_is_stored_with_its_arrival_time() {
    let start = Timestamp::now();
    let now = start.as_millis();
    far_future_webhook_does_not_poison(
        "linkedin",
        start,
        linkedin(8812345001, json!(YEAR_10000_MS)),
        linkedin(8812345002, json!(now)),
        ["text of 8812345001", "text of 8812345002"],
    )
    .await;
}

/// Replaces the stored record of conversation `id` with bytes that do not decode, the way a disk
/// error (or an older build) could leave it. The daemon must be stopped.
fn break_conversation_record(daemon: &Daemon, id: &str) {
    let db = sled::Config::new().path(daemon.dir.join("store")).flush_every_ms(None).open().expect("open the store");
    let data = db.open_tree("data").unwrap();
    // Table 1 (conversations) of the shared tree, keyed by the conversation id.
    let key = [&[1u8][..], id.as_bytes()].concat();
    assert!(data.get(&key).unwrap().is_some(), "the conversation is stored under its id");
    data.insert(key, &b"{\"id\":\"truncated by a disk err"[..]).unwrap();
    db.flush().unwrap();
}

#[tokio::test]
async fn an_unreadable_conversation_record_does_not_take_the_listing_or_the_contacts_webhooks_down() {
    let start = Timestamp::now();
    let mut daemon = Daemon::start();
    let client = client();
    let now = start.as_millis();
    assert_eq!(post_signed(&client, &daemon, "facebook", &messenger("m_1", json!(now))).await.0, 200);
    let other = viber(5741311803571721003, json!(now));
    assert_eq!(post_signed(&client, &daemon, "viber", &other).await.0, 200);
    let (_, page) = api_get(&client, &daemon, "/api/conversations?platform=facebook").await;
    let id = page["conversations"][0]["id"].as_str().unwrap().to_owned();

    assert!(daemon.terminate().success());
    break_conversation_record(&daemon, &id);
    daemon.start_again();

    let (status, page) = api_get(&client, &daemon, "/api/conversations").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["conversations"].as_array().unwrap().len(), 1, "the unreadable one is skipped: {page}");
    let (status, one) = api_get(&client, &daemon, &format!("/api/conversations/{id}")).await;
    assert_eq!(status, 409, "{one}");
    assert_eq!(one["error"]["code"], "unreadable_record", "{one}");
    assert!(!one.to_string().contains("truncated by a disk"), "never the bytes: {one}");
    let (status, messages) = api_get(&client, &daemon, &format!("/api/conversations/{id}/messages")).await;
    assert_eq!(status, 200, "its messages are still listed: {messages}");
    assert_eq!(messages["messages"].as_array().unwrap().len(), 1);
    let metrics = client.get(daemon.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("parley_store_unreadable_records_total 1"), "{metrics}");

    // The contact writes again: stored, and the conversation is rebuilt and listed.
    let (status, body) = post_signed(&client, &daemon, "facebook", &messenger("m_2", json!(now + 1))).await;
    assert_eq!(status, 200, "{body}");
    let texts = check_listings(&daemon, "facebook", start, Timestamp::now()).await;
    assert_eq!(texts, ["text of m_1", "text of m_2"]);
    assert!(daemon.log().contains("does not decode"), "reported in the log: {}", daemon.log());
}
