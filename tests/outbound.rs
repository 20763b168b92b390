//! Replies end to end: the real daemon sends through the real `parley sandbox`, which checks each
//! request as the platform would, records it, rate-limits, injects faults, and posts signed
//! receipts back to the daemon.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::sandbox::{LI_TOKEN, PAGE_TOKEN, Rates, Sandbox, loop_config, start_loop};
use support::*;

const WA_USER: &str = "5511987654321";

/// The value of the metric line that starts with `series` (name and labels).
fn metric_value(metrics: &str, series: &str) -> Option<u64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// The daemon and the sandbox, each pointed at the other.
struct Loop {
    daemon: Daemon,
    sandbox: Sandbox,
    client: reqwest::Client,
    /// The (platform, contact)s that wrote to the business (see `send_to`).
    wrote: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

impl Loop {
    fn start(rates: Rates, sandbox_args: &[&str]) -> Loop {
        let mut args = vec!["--delivery-delay-ms", "30", "--read-delay-ms", "80"];
        args.extend_from_slice(sandbox_args);
        let (daemon, sandbox) = start_loop(rates, &args);
        Loop { daemon, sandbox, client: client(), wrote: Default::default() }
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self.client.post(self.daemon.url(path)).bearer_auth(API_TOKEN).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Queues a reply; returns our message id.
    async fn reply(&self, conversation_id: &str, text: &str) -> String {
        let (status, body) =
            self.post(&format!("/api/conversations/{conversation_id}/messages"), json!({ "text": text })).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["message"]["status"], "queued");
        body["message"]["id"].as_str().unwrap().to_owned()
    }

    /// Queues a message to a contact (who wrote first, once, where the platform has a window).
    async fn send_to(&self, platform: &str, to: &str, text: &str) -> String {
        let first_time = self.wrote.lock().unwrap().insert((platform.to_owned(), to.to_owned()));
        if first_time && matches!(platform, "whatsapp" | "facebook") {
            customer_writes(&self.client, &self.daemon, platform, to).await;
        }
        let (status, body) = self.post("/api/messages", json!({ "platform": platform, "to": to, "text": text })).await;
        assert_eq!(status, 202, "{body}");
        body["message"]["id"].as_str().unwrap().to_owned()
    }

    async fn message(&self, id: &str) -> Value {
        let (status, body) = api_get(&self.client, &self.daemon, &format!("/api/messages/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Polls a message until its status is one of `wanted`.
    async fn wait_for(&self, id: &str, wanted: &[&str], within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let message = self.message(id).await;
            if wanted.contains(&message["status"].as_str().unwrap_or_default()) {
                return message;
            }
            assert!(
                Instant::now() < deadline,
                "message {id} stayed {}: {message}\n--- daemon\n{}\n--- sandbox\n{}",
                message["status"],
                self.daemon.log(),
                self.sandbox.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Send requests the sandbox received for `platform` (token endpoints excluded).
    async fn sends(&self, platform: &str) -> Vec<Value> {
        let is_send = |r: &Value| {
            let path = r["path"].as_str().unwrap_or_default();
            r["method"] == "POST"
                && (path.ends_with("/messages") || path.ends_with("/send_message") || path.ends_with("/comments"))
        };
        self.all_requests(platform).await.into_iter().filter(is_send).collect()
    }

    /// Every request the sandbox received for `platform`, token endpoints included.
    async fn all_requests(&self, platform: &str) -> Vec<Value> {
        let url = self.sandbox.url(&format!("/_sandbox/requests?platform={platform}"));
        let body: Value = self.client.get(url).send().await.unwrap().json().await.unwrap();
        body["requests"].as_array().unwrap().clone()
    }

    async fn fault(&self, platform: &str, kind: &str, count: u32) {
        self.sandbox.fault(&self.client, platform, kind, count).await;
    }

    async fn conversation_of(&self, platform: &str) -> String {
        let (_, body) = api_get(&self.client, &self.daemon, &format!("/api/conversations?platform={platform}")).await;
        body["conversations"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no {platform} conversation: {body}"))
            .to_owned()
    }
}

#[tokio::test]
async fn a_reply_on_each_platform_is_the_documented_request_and_becomes_delivered_and_read() {
    let lp = Loop::start(Rates::default(), &[]);
    let d = &lp.daemon;
    assert_eq!(post_signed(&lp.client, d, "facebook", &messenger_inbound("m_in_1")).await.0, 200);
    assert_eq!(
        post_signed(&lp.client, d, "whatsapp", &whatsapp_messages(&[("wamid.IN1", WA_USER, "Ana", "Olá")])).await.0,
        200
    );
    assert_eq!(post_signed(&lp.client, d, "viber", &viber_inbound()).await.0, 200);
    assert_eq!(post_signed(&lp.client, d, "linkedin", &linkedin_inbound()).await.0, 200);

    let fb = lp.reply(&lp.conversation_of("facebook").await, "It shipped this morning.").await;
    let wa = lp.reply(&lp.conversation_of("whatsapp").await, "Chega amanhã.").await;
    let vb = lp.reply(&lp.conversation_of("viber").await, "Посилка вже в дорозі.").await;
    let li = lp.reply(&lp.conversation_of("linkedin").await, "Yes, in 3 to 5 days.").await;

    let within = Duration::from_secs(15);
    let fb_done = lp.wait_for(&fb, &["read"], within).await;
    let wa_done = lp.wait_for(&wa, &["read"], within).await;
    let vb_done = lp.wait_for(&vb, &["read"], within).await;
    let li_done = lp.wait_for(&li, &["sent"], within).await;

    let sent = lp.sends("facebook").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["path"], format!("/v23.0/{PAGE_ID}/messages"));
    assert_eq!(sent[0]["headers"]["authorization"], format!("Bearer {PAGE_TOKEN}"));
    assert_eq!(
        sent[0]["body"],
        json!({"recipient":{"id":PSID},"messaging_type":"RESPONSE","message":{"text":"It shipped this morning.","metadata":format!("parley:{fb}")}})
    );
    assert!(fb_done["platform_message_id"].as_str().unwrap().starts_with("m_"));

    let sent = lp.sends("whatsapp").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["path"], format!("/v23.0/{PHONE_NUMBER_ID}/messages"));
    assert_eq!(
        sent[0]["body"],
        json!({"messaging_product":"whatsapp","recipient_type":"individual","to":WA_USER,"type":"text",
               "text":{"preview_url":false,"body":"Chega amanhã."},"biz_opaque_callback_data":wa})
    );
    assert!(wa_done["platform_message_id"].as_str().unwrap().starts_with("wamid."));

    let sent = lp.sends("viber").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["path"], "/pa/send_message");
    assert_eq!(sent[0]["headers"]["x-viber-auth-token"], VIBER_TOKEN);
    assert_eq!(
        sent[0]["body"],
        json!({"receiver":VIBER_USER,"min_api_version":1,"sender":{"name":"Acme Support"},"tracking_data":vb,"type":"text","text":"Посилка вже в дорозі."})
    );
    // The 64-bit token arrives intact as a decimal string.
    assert!(vb_done["platform_message_id"].as_str().unwrap().parse::<u64>().unwrap() > 1 << 53);

    let sent = lp.sends("linkedin").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["headers"]["linkedin-version"], "202506");
    assert_eq!(sent[0]["headers"]["x-restli-protocol-version"], "2.0.0");
    assert_eq!(sent[0]["body"]["actor"], "urn:li:organization:2414183");
    assert_eq!(sent[0]["body"]["object"], POST);
    assert_eq!(sent[0]["body"]["message"]["text"], "Yes, in 3 to 5 days.");
    assert!(li_done["platform_message_id"].as_str().unwrap().starts_with("urn:li:comment:"));

    for secret in [PAGE_TOKEN, LI_TOKEN, VIBER_TOKEN, "test-wa-token"] {
        assert!(!d.log().contains(secret), "a token reached the daemon's log");
    }
}

/// A WhatsApp text from a user who withholds their number: only the business-scoped id, as Meta
/// sends it since 2026 for users who adopted a username.
fn whatsapp_from_username(wamid: &str, bsuid: &str, text: &str) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550001111", "phone_number_id": PHONE_NUMBER_ID },
            "contacts": [{ "profile": { "name": "Ana", "username": "@ana.souza" }, "user_id": bsuid }],
            "messages": [{ "from_user_id": bsuid, "id": wamid, "timestamp": support::now_secs().to_string(), "type": "text", "text": { "body": text } }]
        }}]}]
    })
    .to_string()
}

#[tokio::test]
async fn a_customer_known_only_by_a_business_scoped_id_is_answered_and_the_receipts_come_back() {
    const BSUID: &str = "US.13491208655302741918";
    let lp = Loop::start(Rates::default(), &[]);
    let (status, answer) =
        post_signed(&lp.client, &lp.daemon, "whatsapp", &whatsapp_from_username("wamid.USERNAME1", BSUID, "Oi!")).await;
    assert_eq!(status, 200, "{answer}");
    let (_, list) = api_get(&lp.client, &lp.daemon, "/api/conversations?platform=whatsapp").await;
    let conversations = list["conversations"].as_array().unwrap();
    assert_eq!(conversations.len(), 1, "{list}");
    assert_eq!(conversations[0]["contact_id"], BSUID);
    assert_eq!(conversations[0]["contact_name"], "Ana");
    assert_eq!(conversations[0]["last_message_text"], "Oi!");

    let reply = lp.reply(conversations[0]["id"].as_str().unwrap(), "Olá, Ana!").await;
    let done = lp.wait_for(&reply, &["read"], Duration::from_secs(15)).await;
    assert!(done["platform_message_id"].as_str().unwrap().starts_with("wamid."));
    let sent = lp.sends("whatsapp").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0]["body"],
        json!({"messaging_product":"whatsapp","recipient_type":"individual","recipient":BSUID,"type":"text",
               "text":{"preview_url":false,"body":"Olá, Ana!"},"biz_opaque_callback_data":reply})
    );
    // A message to the same person through the API, by that id, is the same conversation.
    lp.wrote.lock().unwrap().insert(("whatsapp".into(), BSUID.into())); // the customer wrote above
    lp.send_to("whatsapp", BSUID, "Seu pedido saiu.").await;
    let (_, list) = api_get(&lp.client, &lp.daemon, "/api/conversations?platform=whatsapp").await;
    assert_eq!(list["conversations"].as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn six_hundred_messenger_replies_at_40_per_second_never_exceed_the_limit() {
    let lp = Loop::start(Rates::default(), &["--no-receipts"]);
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..600 {
        ids.push(lp.send_to("facebook", &format!("72123456789{:05}", i % 10), &format!("reply {i}")).await);
    }
    eprintln!("600 replies queued in {:?}", started.elapsed());
    // Wait on the daemon's counter, not the sandbox's journal: serialising a growing journal
    // every few hundred milliseconds would delay the sandbox's own answers. The journal is read
    // once, at the end.
    let deadline = Instant::now() + Duration::from_secs(90);
    let finished = |metrics: &str| {
        ["parley_messages_sent_total", "parley_messages_failed_total"]
            .iter()
            .filter_map(|name| metric_value(metrics, &format!("{name}{{platform=\"facebook\"}}")))
            .sum::<u64>()
    };
    loop {
        let metrics = lp.client.get(lp.daemon.url("/metrics")).send().await.unwrap().text().await.unwrap();
        if finished(&metrics) >= 600 {
            break;
        }
        assert!(Instant::now() < deadline, "only {} of 600 finished", finished(&metrics));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // What the daemon controls is when it lets each request go: no sliding second of those
    // moments holds more than 40. (Where the requests arrive also depends on how busy this host
    // is; the pacer leaves 50 ms of room for that, and a 429 past it is retried, see below.)
    let mut dispatched = Vec::new();
    for id in &ids {
        let message = lp.message(id).await;
        assert_eq!(message["status"], "sent", "{message}");
        let at = message["dispatched_at"].as_str().unwrap_or_else(|| panic!("no dispatched_at: {message}"));
        dispatched.push(parley::model::Timestamp::parse_rfc3339(at).unwrap().as_millis());
    }
    dispatched.sort_unstable();
    let (most, from) = busiest_second(&dispatched);
    assert!(
        most <= 40,
        "{most} requests let go within one second, at (ms after the first) {:?}",
        dispatched[from..from + most].iter().map(|t| t - dispatched[from]).collect::<Vec<_>>()
    );
    let spread = Duration::from_millis((dispatched[599] - dispatched[0]) as u64);
    // 599 gaps at 95% of 40/s take 15.7 s; never less than 599/40 s.
    assert!(spread >= Duration::from_millis(599 * 25), "600 sends let go within {spread:?}: faster than 40/s");
    // Every message was accepted once: each request the sandbox saw was either the one accepted
    // send of its message or an attempt that a 429 (or a fault) sent back for a retry.
    let sent = lp.sends("facebook").await;
    let metrics = lp.client.get(lp.daemon.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let retries = metric_value(&metrics, "parley_send_retries_total{platform=\"facebook\"}").unwrap();
    assert!(metrics.contains("parley_messages_sent_total{platform=\"facebook\"} 600"), "{metrics}");
    assert_eq!(sent.len() as u64, 600 + retries, "{retries} retries");
    let arrivals: Vec<i64> = sent.iter().map(|r| r["at_ms"].as_i64().unwrap()).collect();
    eprintln!(
        "600 Messenger replies sent in {:?}; let go over {spread:?}; busiest second: {most} let go, {} arrived; {retries} retries",
        started.elapsed(),
        busiest_second(&arrivals).0
    );
}

/// The most of `times` (milliseconds, sorted) within any sliding 1000 ms, and where that window starts.
fn busiest_second(times: &[i64]) -> (usize, usize) {
    (0..times.len())
        .map(|i| (times[i..].iter().take_while(|t| **t < times[i] + 1000).count(), i))
        .max()
        .unwrap_or((0, 0))
}

#[tokio::test]
async fn replies_to_one_contact_keep_their_order_through_429s_and_500s() {
    let lp = Loop::start(Rates::default(), &["--no-receipts"]);
    lp.fault("facebook", "rate_limit", 2).await;
    lp.fault("facebook", "server_error", 3).await;
    lp.fault("facebook", "drop", 1).await;
    let contacts = ["7212345678900001", "7212345678900002"];
    let mut ids = Vec::new();
    for i in 0..10 {
        for contact in contacts {
            ids.push(lp.send_to("facebook", contact, &format!("{contact} #{i}")).await);
        }
    }
    for id in &ids {
        lp.wait_for(id, &["sent"], Duration::from_secs(60)).await;
    }
    let sent = lp.sends("facebook").await;
    assert!(sent.len() >= 26, "20 messages + 6 faulted attempts, got {}", sent.len());
    let mut per_contact: HashMap<String, Vec<usize>> = HashMap::new();
    for request in &sent {
        let text = request["body"]["message"]["text"].as_str().unwrap();
        let (contact, n) = text.split_once(" #").unwrap();
        per_contact.entry(contact.to_owned()).or_default().push(n.parse().unwrap());
    }
    for contact in contacts {
        let order = &per_contact[contact];
        // Attempts, retries included, never go back: a later reply never overtakes an earlier one.
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "{contact}: {order:?}");
        let mut distinct = order.clone();
        distinct.dedup();
        assert_eq!(distinct, (0..10).collect::<Vec<_>>(), "{contact}");
    }
}

#[tokio::test]
async fn a_permanent_error_fails_at_once_with_the_platforms_code() {
    let lp = Loop::start(Rates::default(), &["--no-receipts"]);
    lp.fault("whatsapp", "permanent", 1).await;
    let id = lp.send_to("whatsapp", "+55 11 98765-4321", "Promo!").await;
    let failed = lp.wait_for(&id, &["failed"], Duration::from_secs(10)).await;
    assert_eq!(failed["error"]["code"], "131047");
    assert_eq!(failed["error"]["permanent"], true);
    assert!(!failed["error"]["message"].as_str().unwrap().is_empty());
    assert_eq!(lp.sends("whatsapp").await.len(), 1, "a permanent error is not retried");
    // The contact's conversation is the one their own messages land in.
    let (_, list) = api_get(&lp.client, &lp.daemon, "/api/conversations?platform=whatsapp").await;
    assert_eq!(list["conversations"][0]["contact_id"], WA_USER);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_the_send_succeeds_and_the_new_token_outlives_a_restart() {
    let mut lp = Loop::start(Rates::default(), &["--no-receipts"]);
    assert_eq!(post_signed(&lp.client, &lp.daemon, "linkedin", &linkedin_inbound()).await.0, 200);
    let conversation = lp.conversation_of("linkedin").await;
    lp.fault("linkedin", "expired_token", 1).await;
    let id = lp.reply(&conversation, "Yes, we do.").await;
    lp.wait_for(&id, &["sent"], Duration::from_secs(15)).await;

    let requests = lp.all_requests("linkedin").await;
    assert!(requests.iter().any(|r| r["path"] == "/oauth/v2/accessToken"), "no refresh: {requests:?}");
    let sends = lp.sends("linkedin").await;
    assert_eq!(sends.len(), 2, "one rejected attempt and one retry");
    let first = sends[0]["headers"]["authorization"].as_str().unwrap().to_owned();
    let second = sends[1]["headers"]["authorization"].as_str().unwrap().to_owned();
    assert_eq!(first, format!("Bearer {LI_TOKEN}"));
    assert_ne!(second, first, "the retry uses the refreshed token");

    // Meta has no refresh: the token is checked with debug_token, and the one retry succeeds.
    lp.fault("facebook", "expired_token", 1).await;
    let fb = lp.send_to("facebook", PSID, "hello").await;
    lp.wait_for(&fb, &["sent"], Duration::from_secs(15)).await;

    lp.daemon.kill9();
    lp.daemon.start_again();
    lp.client = client(); // the old pool holds connections to the dead process
    let id = lp.reply(&conversation, "And a second reply after the restart.").await;
    lp.wait_for(&id, &["sent"], Duration::from_secs(15)).await;
    let sends = lp.sends("linkedin").await;
    assert_eq!(sends.last().unwrap()["headers"]["authorization"], second.as_str(), "the refreshed token was kept");
    assert!(!lp.daemon.log().contains(second.trim_start_matches("Bearer ")), "a token reached the log");
}

#[tokio::test]
async fn every_queued_reply_is_sent_after_kill_9_and_a_restart() {
    let rates = Rates { facebook_per_second: 100, max_in_flight: 8 };
    let mut lp = Loop::start(rates, &["--no-receipts"]);
    let mut ids = Vec::new();
    for i in 0..1000 {
        ids.push(lp.send_to("facebook", &format!("72123456700{:05}", i % 20), &format!("queued {i}")).await);
    }
    // Kill while most are still queued.
    let deadline = Instant::now() + Duration::from_secs(30);
    while lp.sends("facebook").await.len() < 100 {
        assert!(Instant::now() < deadline, "sending never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lp.daemon.kill9();
    let before_restart = lp.sends("facebook").await.len();
    lp.daemon.start_again();
    lp.client = client(); // the old pool holds connections to the dead process

    let deadline = Instant::now() + Duration::from_secs(60);
    let (sent, per_message) = loop {
        let sent = lp.sends("facebook").await;
        let mut per_message: BTreeMap<String, usize> = BTreeMap::new();
        for request in &sent {
            let metadata = request["body"]["message"]["metadata"].as_str().unwrap_or_default();
            *per_message.entry(metadata.trim_start_matches("parley:").to_owned()).or_default() += 1;
        }
        if ids.iter().all(|id| per_message.contains_key(id)) {
            break (sent, per_message);
        }
        assert!(Instant::now() < deadline, "{} of 1000 sent", per_message.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let duplicates: usize = per_message.values().map(|n| n - 1).sum();
    eprintln!(
        "kill -9 with {} of 1000 replies sent: all 1000 sent after the restart; {} requests in all, {duplicates} duplicates (in flight or not yet recorded at the kill)",
        before_restart,
        sent.len()
    );
    assert!(duplicates <= 2 * rates.max_in_flight as usize, "{duplicates} duplicates");
    for id in [&ids[0], &ids[999]] {
        lp.wait_for(id, &["sent"], Duration::from_secs(10)).await;
    }
}

#[tokio::test]
async fn bad_replies_get_clear_errors_and_nothing_is_queued() {
    let lp = Loop::start(Rates::default(), &["--no-receipts"]);
    assert_eq!(post_signed(&lp.client, &lp.daemon, "facebook", &messenger_inbound("m_in_9")).await.0, 200);
    let conversation = lp.conversation_of("facebook").await;
    let path = format!("/api/conversations/{conversation}/messages");
    let cases = [
        (path.as_str(), json!({}), 422, "invalid_message"),
        (path.as_str(), json!({ "text": "" }), 422, "invalid_message"),
        (path.as_str(), json!({ "text": "x".repeat(2001) }), 422, "invalid_message"),
        (path.as_str(), json!({ "text": "hi", "colour": "red" }), 400, "bad_json"),
        (path.as_str(), json!({ "template": { "name": "promo", "language": "en" } }), 422, "invalid_message"),
        // Messenger cannot quote: refused, not sent unquoted.
        (path.as_str(), json!({ "text": "about that", "reply_to": "m_in_9" }), 422, "invalid_message"),
        (
            "/api/messages",
            json!({ "platform": "viber", "to": VIBER_USER, "text": "hi", "reply_to": "5741311803571721087" }),
            422,
            "invalid_message",
        ),
        ("/api/conversations/c000000000000000000000000/messages", json!({ "text": "hi" }), 404, "not_found"),
        ("/api/messages", json!({ "platform": "myspace", "to": "x", "text": "hi" }), 400, "bad_platform"),
        ("/api/messages", json!({ "platform": "whatsapp", "to": "not a number", "text": "hi" }), 422, "bad_recipient"),
        ("/api/messages", json!({ "platform": "linkedin", "to": "12345", "text": "hi" }), 422, "bad_recipient"),
        ("/api/messages", json!({ "platform": "viber", "text": "hi" }), 400, "bad_json"),
    ];
    for (path, body, status, code) in cases {
        let (got, answer) = lp.post(path, body.clone()).await;
        assert_eq!((got, answer["error"]["code"].as_str()), (status, Some(code)), "{path} {body}: {answer}");
    }
    let garbage = lp
        .client
        .post(lp.daemon.url(&path))
        .bearer_auth(API_TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    let unauthorised = lp.client.post(lp.daemon.url(&path)).json(&json!({ "text": "hi" })).send().await.unwrap();
    assert_eq!(unauthorised.status(), 401);
    assert!(lp.sends("facebook").await.is_empty());
}

#[tokio::test]
async fn a_platform_that_is_off_refuses_replies() {
    let daemon =
        Daemon::start_with(|store| base_config(store).replace("[viber]\nenabled = true", "[viber]\nenabled = false"));
    let client = client();
    let response = client
        .post(daemon.url("/api/messages"))
        .bearer_auth(API_TOKEN)
        .json(&json!({ "platform": "viber", "to": VIBER_USER, "text": "hi" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "platform_disabled");
}

#[tokio::test]
async fn a_token_rejected_again_after_its_refresh_makes_the_channel_not_ready() {
    let lp = Loop::start(Rates::default(), &["--no-receipts"]);
    assert_eq!(post_signed(&lp.client, &lp.daemon, "linkedin", &linkedin_inbound()).await.0, 200);
    let conversation = lp.conversation_of("linkedin").await;
    lp.fault("linkedin", "expired_token", 5).await;
    let id = lp.reply(&conversation, "Yes, we do.").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let ready = loop {
        let response = lp.client.get(lp.daemon.url("/ready")).send().await.unwrap();
        if response.status() == 503 {
            break response.json::<Value>().await.unwrap();
        }
        assert!(Instant::now() < deadline, "the channel stayed ready:\n{}", lp.daemon.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(ready["not_ready"], json!(["channel.linkedin"]), "{ready}");
    assert_eq!(ready["channels"]["linkedin"]["state"], "not_ready");
    assert!(ready["channels"]["linkedin"]["reason"].as_str().unwrap().contains("rejected"), "{ready}");
    // The reply is not lost: it waits for a working token (or its deadline).
    assert_eq!(lp.message(&id).await["status"], "sending");
    assert_eq!(lp.sends("linkedin").await.len(), 2, "one attempt, one refresh, one retry");
}

/// Polls the daemon's log until `n` reloads have been applied.
fn wait_for_reloads(daemon: &Daemon, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.log().matches("Configuration reloaded.").count() < n {
        assert!(Instant::now() < deadline, "reload {n} not applied; log:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_reloaded_access_token_is_used_for_the_next_sends_and_nothing_queued_is_lost() {
    let lp = Loop::start(Rates::default(), &["--no-receipts"]);
    assert_eq!(post_signed(&lp.client, &lp.daemon, "facebook", &messenger_inbound("m_reload")).await.0, 200);
    let conversation = lp.conversation_of("facebook").await;
    let port: u16 = lp.daemon.addr.rsplit(':').next().unwrap().parse().unwrap();
    let configure_page_token = |token: &str| {
        let config = loop_config(&lp.daemon.dir.join("store"), port, &lp.sandbox.addr, Rates::default())
            .replace(&format!("page_access_token = \"{PAGE_TOKEN}\""), &format!("page_access_token = \"{token}\""));
        std::fs::write(&lp.daemon.config_path, config).unwrap();
        lp.daemon.hangup();
    };

    // A token the platform does not know: the channel checks it at once and stops sending.
    configure_page_token("revoked-page-token");
    wait_for_reloads(&lp.daemon, 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = lp.client.get(lp.daemon.url("/ready")).send().await.unwrap();
        let ready: Value = response.json().await.unwrap();
        if ready["not_ready"] == json!(["channel.facebook"]) {
            break;
        }
        assert!(Instant::now() < deadline, "the new token was not checked: {ready}\n{}", lp.daemon.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = lp.reply(&conversation, "It ships today.").await;

    // The right token again, without a restart: the reply that waited is sent, once.
    configure_page_token(PAGE_TOKEN);
    wait_for_reloads(&lp.daemon, 2);
    lp.wait_for(&id, &["sent"], Duration::from_secs(30)).await;
    let sends = lp.sends("facebook").await;
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0]["body"]["message"]["text"], "It ships today.");
    let ready = lp.client.get(lp.daemon.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

/// What the API answers for `body` posted as a reply in `conversation`.
async fn reply_answer(lp: &Loop, conversation: &str, body: Value) -> (u16, Value) {
    lp.post(&format!("/api/conversations/{conversation}/messages"), body).await
}

#[tokio::test]
async fn outside_the_whatsapp_window_text_is_refused_without_a_platform_call_and_a_template_goes() {
    let lp = Loop::start(Rates::default(), &[]);
    let yesterday = now_secs() - 25 * 3600;
    let body = whatsapp_messages_at(&[("wamid.OLD1", WA_USER, "Ana", "Is my order coming?")], yesterday);
    assert_eq!(post_signed(&lp.client, &lp.daemon, "whatsapp", &body).await.0, 200);
    let conversation = lp.conversation_of("whatsapp").await;
    let (_, shown) = api_get(&lp.client, &lp.daemon, &format!("/api/conversations/{conversation}")).await;
    assert_eq!(shown["window"]["outside"], "template_only", "{shown}");
    assert!(shown["window"]["open_until"].as_str().is_some(), "{shown}");

    let (status, refused) = reply_answer(&lp, &conversation, json!({ "text": "Yes, tomorrow." })).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "window_closed");
    assert!(refused["error"]["message"].as_str().unwrap().contains("template"), "{refused}");

    let template = json!({ "name": "order_update", "language": "en_US",
        "components": [{ "type": "body", "parameters": [{ "type": "text", "text": "tomorrow" }] }] });
    let (status, queued) = reply_answer(&lp, &conversation, json!({ "template": template })).await;
    assert_eq!(status, 202, "{queued}");
    let id = queued["message"]["id"].as_str().unwrap().to_owned();
    lp.wait_for(&id, &["sent", "delivered", "read"], Duration::from_secs(15)).await;
    let sent = lp.sends("whatsapp").await;
    assert_eq!(sent.len(), 1, "only the template reached the platform: {sent:?}");
    assert_eq!(sent[0]["body"]["type"], "template");
    assert_eq!(sent[0]["body"]["template"]["name"], "order_update");

    // The customer writes again: the window is open and free text goes.
    let body = whatsapp_messages(&[("wamid.NEW1", WA_USER, "Ana", "Thanks!")]);
    assert_eq!(post_signed(&lp.client, &lp.daemon, "whatsapp", &body).await.0, 200);
    let (_, shown) = api_get(&lp.client, &lp.daemon, &format!("/api/conversations/{conversation}")).await;
    assert_eq!(shown["window"]["outside"], Value::Null, "{shown}");
    lp.reply(&conversation, "You are welcome.").await;
}

#[tokio::test]
async fn human_agent_is_set_only_when_asked_and_only_it_goes_after_24_hours_on_messenger() {
    let lp = Loop::start(Rates::default(), &[]);
    // A customer who wrote just now, and one who wrote two days ago.
    assert_eq!(post_signed(&lp.client, &lp.daemon, "facebook", &messenger_inbound("m_now")).await.0, 200);
    let recent = lp.conversation_of("facebook").await;
    let two_days_ago = now_millis() - 48 * 3600 * 1000;
    const OLD_PSID: &str = "7212345678900077";
    let old = json!({"object":"page","entry":[{"id":PAGE_ID,"time":two_days_ago,"messaging":[
        {"sender":{"id":OLD_PSID},"recipient":{"id":PAGE_ID},"timestamp":two_days_ago,
         "message":{"mid":"m_old","text":"Can I return this?"}}]}]});
    assert_eq!(post_signed(&lp.client, &lp.daemon, "facebook", &old.to_string()).await.0, 200);
    let (_, list) = api_get(&lp.client, &lp.daemon, "/api/conversations?platform=facebook").await;
    let older = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["contact_id"] == OLD_PSID)
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(older["window"]["outside"], "human_agent", "{older}");
    let older = older["id"].as_str().unwrap().to_owned();

    // Inside the window: an automated reply and a person's reply; only the second is tagged.
    let automated = lp.reply(&recent, "We got your message.").await;
    let (status, by_person) =
        reply_answer(&lp, &recent, json!({ "text": "Hi, Maria here.", "human_agent": true })).await;
    assert_eq!(status, 202, "{by_person}");
    // Outside 24 hours: refused unless a person wrote it.
    let (status, refused) = reply_answer(&lp, &older, json!({ "text": "Sure." })).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "window_closed");
    assert!(refused["error"]["message"].as_str().unwrap().contains("human_agent"), "{refused}");
    let (status, late) =
        reply_answer(&lp, &older, json!({ "text": "Yes, within 30 days.", "human_agent": true })).await;
    assert_eq!(status, 202, "{late}");

    for id in [&automated, by_person["message"]["id"].as_str().unwrap(), late["message"]["id"].as_str().unwrap()] {
        lp.wait_for(id, &["sent", "delivered", "read"], Duration::from_secs(15)).await;
    }
    let sent = lp.sends("facebook").await;
    let by_text = |text: &str| -> Value {
        sent.iter().find(|r| r["body"]["message"]["text"] == text).unwrap_or_else(|| panic!("{sent:?}"))["body"].clone()
    };
    assert_eq!(sent.len(), 3, "the refused reply never reached the platform: {sent:?}");
    let untagged = by_text("We got your message.");
    assert_eq!(untagged["messaging_type"], "RESPONSE");
    assert!(untagged.get("tag").is_none(), "{untagged}");
    for text in ["Hi, Maria here.", "Yes, within 30 days."] {
        let tagged = by_text(text);
        assert_eq!(
            (&tagged["messaging_type"], &tagged["tag"]),
            (&json!("MESSAGE_TAG"), &json!("HUMAN_AGENT")),
            "{tagged}"
        );
    }
    // Elsewhere the flag means nothing and is refused.
    let viber_user_reply = lp
        .post("/api/messages", json!({ "platform": "viber", "to": VIBER_USER, "text": "hi", "human_agent": true }))
        .await;
    assert_eq!(viber_user_reply.0, 422, "{}", viber_user_reply.1);
}

/// The bodies of the send-API requests the sandbox received for `platform`, oldest first.
async fn send_bodies(lp: &Loop, platform: &str) -> Vec<Value> {
    lp.sends(platform).await.into_iter().map(|r| r["body"].clone()).collect()
}

/// Our id of the newest message of a conversation.
async fn newest_message_id(lp: &Loop, conversation: &str) -> String {
    let (_, page) =
        api_get(&lp.client, &lp.daemon, &format!("/api/conversations/{conversation}/messages?limit=1")).await;
    page["messages"][0]["id"].as_str().unwrap_or_else(|| panic!("{page}")).to_owned()
}

#[tokio::test]
async fn mark_read_typing_and_reactions_reach_whatsapp_as_the_documented_requests() {
    let lp = Loop::start(Rates::default(), &[]);
    let body = whatsapp_messages(&[("wamid.ENG1", WA_USER, "Ana", "Is the blue one in stock?")]);
    assert_eq!(post_signed(&lp.client, &lp.daemon, "whatsapp", &body).await.0, 200);
    let conversation = lp.conversation_of("whatsapp").await;

    let (status, read) = lp.post(&format!("/api/conversations/{conversation}/read"), json!({ "typing": true })).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["receipt"]["status"], "sent", "{read}");
    assert_eq!(read["conversation"]["unread"], 0, "{read}");
    let (_, shown) = api_get(&lp.client, &lp.daemon, &format!("/api/conversations/{conversation}")).await;
    assert_eq!(shown["unread"], 0);

    let (status, typing) = lp.post(&format!("/api/conversations/{conversation}/typing"), json!({ "on": true })).await;
    assert_eq!(status, 200, "{typing}");
    let (status, off) = lp.post(&format!("/api/conversations/{conversation}/typing"), json!({ "on": false })).await;
    assert_eq!((status, &off["error"]["code"]), (422, &json!("unsupported_action")), "{off}");

    let inbound = newest_message_id(&lp, &conversation).await;
    for emoji in ["👍", ""] {
        let (status, reacted) = lp.post(&format!("/api/messages/{inbound}/reaction"), json!({ "emoji": emoji })).await;
        assert_eq!(status, 200, "{reacted}");
    }
    let read_with_typing = json!({ "messaging_product": "whatsapp", "status": "read", "message_id": "wamid.ENG1",
                                   "typing_indicator": { "type": "text" } });
    let reaction = |emoji: &str| {
        json!({ "messaging_product": "whatsapp", "recipient_type": "individual", "to": WA_USER, "type": "reaction",
                "reaction": { "message_id": "wamid.ENG1", "emoji": emoji } })
    };
    assert_eq!(
        send_bodies(&lp, "whatsapp").await,
        [read_with_typing.clone(), read_with_typing, reaction("👍"), reaction("")],
        "read+typing, typing (WhatsApp's typing is a read receipt with the indicator), react, unreact"
    );
    // Nothing unread and no typing asked: no receipt is sent again.
    let (status, again) = lp.post(&format!("/api/conversations/{conversation}/read"), json!({})).await;
    assert_eq!((status, &again["receipt"]["status"]), (200, &json!("not_needed")), "{again}");
    assert_eq!(send_bodies(&lp, "whatsapp").await.len(), 4);
}

#[tokio::test]
async fn mark_read_typing_and_reactions_reach_messenger_as_sender_actions_and_viber_says_what_it_cannot() {
    let lp = Loop::start(Rates::default(), &[]);
    assert_eq!(post_signed(&lp.client, &lp.daemon, "facebook", &messenger_inbound("m_ENG1")).await.0, 200);
    let conversation = lp.conversation_of("facebook").await;
    let (status, read) = lp.post(&format!("/api/conversations/{conversation}/read"), json!({})).await;
    assert_eq!((status, &read["receipt"]["status"]), (200, &json!("sent")), "{read}");
    for on in [true, false] {
        let (status, typing) = lp.post(&format!("/api/conversations/{conversation}/typing"), json!({ "on": on })).await;
        assert_eq!(status, 200, "{typing}");
    }
    let inbound = newest_message_id(&lp, &conversation).await;
    let (status, reacted) = lp.post(&format!("/api/messages/{inbound}/reaction"), json!({ "emoji": "😊" })).await;
    assert_eq!(status, 200, "{reacted}");
    let action = |name: &str| json!({ "recipient": { "id": PSID }, "sender_action": name });
    assert_eq!(
        send_bodies(&lp, "facebook").await,
        [
            action("mark_seen"),
            action("typing_on"),
            action("typing_off"),
            json!({ "recipient": { "id": PSID }, "sender_action": "react",
                    "payload": { "message_id": "m_ENG1", "reaction": "😊" } }),
        ]
    );

    // Viber: the operator's read state changes, the platform has no receipts to send.
    let (status, answer) = post_signed(&lp.client, &lp.daemon, "viber", &viber_inbound()).await;
    assert_eq!(status, 200, "{answer}");
    let viber = lp.conversation_of("viber").await;
    let (status, read) = lp.post(&format!("/api/conversations/{viber}/read"), json!({})).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(
        (&read["receipt"]["status"], &read["conversation"]["unread"]),
        (&json!("unsupported"), &json!(0)),
        "{read}"
    );
    let (status, typing) = lp.post(&format!("/api/conversations/{viber}/typing"), json!({ "on": true })).await;
    assert_eq!((status, &typing["error"]["code"]), (422, &json!("unsupported_action")), "{typing}");
    assert!(lp.sends("viber").await.is_empty());
}

#[tokio::test]
async fn typing_and_reactions_outside_the_window_are_refused_without_a_platform_call() {
    let lp = Loop::start(Rates::default(), &[]);
    let yesterday = now_secs() - 25 * 3600;
    let body = whatsapp_messages_at(&[("wamid.OLD9", WA_USER, "Ana", "Hello?")], yesterday);
    assert_eq!(post_signed(&lp.client, &lp.daemon, "whatsapp", &body).await.0, 200);
    let conversation = lp.conversation_of("whatsapp").await;
    let (status, typing) = lp.post(&format!("/api/conversations/{conversation}/typing"), json!({ "on": true })).await;
    assert_eq!((status, &typing["error"]["code"]), (422, &json!("window_closed")), "{typing}");
    let inbound = newest_message_id(&lp, &conversation).await;
    let (status, reacted) = lp.post(&format!("/api/messages/{inbound}/reaction"), json!({ "emoji": "👍" })).await;
    assert_eq!((status, &reacted["error"]["code"]), (422, &json!("window_closed")), "{reacted}");
    let (status, bad) = lp.post(&format!("/api/messages/{inbound}/reaction"), json!({ "emoji": 5 })).await;
    assert_eq!(status, 400, "{bad}");
    let (status, unknown) = lp.post("/api/messages/m_nope/reaction", json!({ "emoji": "👍" })).await;
    assert_eq!(status, 404, "{unknown}");
    assert!(lp.sends("whatsapp").await.is_empty());
}

#[tokio::test]
async fn a_link_preview_a_location_and_a_contact_card_reach_whatsapp_as_documented_and_messenger_refuses_them() {
    let lp = Loop::start(Rates::default(), &[]);
    let body = whatsapp_messages(&[("wamid.RICH1", WA_USER, "Ana", "Where is your shop?")]);
    assert_eq!(post_signed(&lp.client, &lp.daemon, "whatsapp", &body).await.0, 200);
    let conversation = lp.conversation_of("whatsapp").await;
    let replies = [
        json!({ "text": "Our map: https://example.com/map", "link_preview": true }),
        json!({ "location": { "latitude": -23.5617, "longitude": -46.6559, "name": "Loja Paulista", "address": "Av. Paulista, 1578" } }),
        json!({ "contacts": [{ "name": "Rui Costa", "phones": ["+351 912 345 678"] }] }),
    ];
    let mut ids = Vec::new();
    for reply in &replies {
        let (status, queued) = reply_answer(&lp, &conversation, reply.clone()).await;
        assert_eq!(status, 202, "{queued}");
        ids.push(queued["message"]["id"].as_str().unwrap().to_owned());
    }
    let shown = lp.message(&ids[1]).await;
    assert_eq!((&shown["kind"], &shown["location"]["name"]), (&json!("location"), &json!("Loja Paulista")), "{shown}");
    for id in &ids {
        lp.wait_for(id, &["sent", "delivered", "read"], Duration::from_secs(15)).await;
    }
    let sent = send_bodies(&lp, "whatsapp").await;
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[0]["text"], json!({ "preview_url": true, "body": "Our map: https://example.com/map" }));
    assert_eq!(
        (&sent[1]["type"], &sent[1]["location"]),
        (
            &json!("location"),
            &json!({ "latitude": -23.5617, "longitude": -46.6559, "name": "Loja Paulista", "address": "Av. Paulista, 1578" })
        )
    );
    assert_eq!(
        sent[2]["contacts"],
        json!([{ "name": { "formatted_name": "Rui Costa", "first_name": "Rui" }, "phones": [{ "phone": "+351 912 345 678" }] }])
    );
    for (id, body) in ids.iter().zip(&sent) {
        assert_eq!(body["biz_opaque_callback_data"], json!(id));
    }

    assert_eq!(post_signed(&lp.client, &lp.daemon, "facebook", &messenger_inbound("m_RICH1")).await.0, 200);
    let messenger = lp.conversation_of("facebook").await;
    for reply in replies {
        let (status, refused) = reply_answer(&lp, &messenger, reply).await;
        assert_eq!((status, &refused["error"]["code"]), (422, &json!("invalid_message")), "{refused}");
    }
}

#[tokio::test]
async fn concurrent_replies_never_queue_more_than_max_queued() {
    // Every send fails (a closed port) and is retried, so queued replies stay queued.
    let daemon = Daemon::start_with(|store| {
        format!("{}\n[outbound]\nmax_queued = 5\nretry_deadline_secs = 600\n", base_config(store))
    });
    let client = client();
    let mut posts = tokio::task::JoinSet::new();
    for i in 0..20 {
        let request = client
            .post(daemon.url("/api/messages"))
            .bearer_auth(API_TOKEN)
            .json(&json!({ "platform": "viber", "to": VIBER_USER, "text": format!("update {i}") }));
        posts.spawn(async move { request.send().await.unwrap().status().as_u16() });
    }
    let statuses = posts.join_all().await;
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((accepted, refused), (5, 15), "{statuses:?}");
}
