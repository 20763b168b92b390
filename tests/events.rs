//! The live feed end to end (`GET /api/events`): the real daemon, real signed webhooks, replies
//! sent through the real `parley sandbox` (which posts receipts back), and a server-sent events
//! client written here over reqwest's chunks, so the wire format is checked line by line.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::sandbox::{Rates, Sandbox, start_loop};
use support::*;
use tokio::sync::Mutex;

const WA_USER: &str = "5511987654321";
/// Events the daemon's feed hub keeps in memory (`FEED_HUB_EVENTS`); a reader further behind is
/// served from the store.
const HUB_EVENTS: usize = 16_384;

// ---------------------------------------------------------------------------------------------
// A server-sent events client

/// One block of the stream, up to its blank line.
#[derive(Debug, Clone, PartialEq)]
enum Frame {
    /// `id:`, `event:` and `data:` (the event JSON).
    Event { id: u64, event: String, data: Value },
    /// Only comment lines (`: ...`).
    Comment(String),
}

/// A `GET /api/events` stream, parsed as it arrives.
struct Sse {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl Sse {
    /// Opens the stream at `query` (e.g. `?after=0`), with `Last-Event-ID` when given.
    async fn open(daemon: &Daemon, query: &str, last_event_id: Option<u64>) -> Sse {
        // No overall timeout: a stream lives as long as the test wants it (each read has its own).
        let client = reqwest::Client::builder().build().expect("client");
        let mut request = client.get(daemon.url(&format!("/api/events{query}"))).bearer_auth(API_TOKEN);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.expect("open the event stream");
        assert_eq!(response.status(), 200, "GET /api/events{query}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Sse { response, buffer: Vec::new() }
    }

    /// The next frame, or None when none came `within`. Panics when the stream ends.
    async fn next(&mut self, within: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                return Some(parse_frame(std::str::from_utf8(&block[..end]).expect("the stream is UTF-8")));
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(chunk))) => self.buffer.extend_from_slice(&chunk),
                Ok(Ok(None)) => panic!("the event stream ended"),
                Ok(Err(e)) => panic!("the event stream failed: {e}"),
            }
        }
    }

    /// Events (comments skipped) until the one with `id == last`; panics if `within` passes first
    /// or an id at or past `last` is skipped.
    async fn events_through(&mut self, last: u64, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                None => panic!(
                    "event {last} did not arrive within {within:?}; got {} events, the last {:?}",
                    events.len(),
                    events.last().map(|e: &Value| &e["seq"])
                ),
                Some(Frame::Comment(_)) => {}
                Some(Frame::Event { id, event, data }) => {
                    assert_eq!(data["seq"], id, "the id line is the event's seq");
                    assert_eq!(data["type"], event.as_str(), "the event line is the event's type");
                    assert!(id <= last, "event {id} came, past the awaited {last}");
                    events.push(data);
                    if id == last {
                        return events;
                    }
                }
            }
        }
    }
}

fn parse_frame(block: &str) -> Frame {
    let (mut id, mut event, mut data, mut comments) = (None, None, None, Vec::new());
    for line in block.split('\n') {
        if let Some(comment) = line.strip_prefix(':') {
            comments.push(comment.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("id: ") {
            id = Some(value.parse::<u64>().unwrap_or_else(|_| panic!("id line `{line}`")));
        } else if let Some(value) = line.strip_prefix("event: ") {
            event = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("data: ") {
            assert!(data.is_none(), "one data line per event: {block}");
            data = Some(serde_json::from_str(value).unwrap_or_else(|e| panic!("data `{value}`: {e}")));
        } else {
            panic!("unexpected line `{line}` in {block:?}");
        }
    }
    match (id, event, data) {
        (Some(id), Some(event), Some(data)) => Frame::Event { id, event, data },
        (None, None, None) => Frame::Comment(comments.join("\n")),
        _ => panic!("an incomplete event: {block:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The JSON form

/// Every retained event from `after=0`, page by page, with `filters` (`&types=...`).
async fn json_events(client: &reqwest::Client, daemon: &Daemon, filters: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = events_page(client, daemon, &format!("?after={after}&limit=1000{filters}")).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.get("reset").is_none(), "nothing was pruned: {page}");
        let batch = page["events"].as_array().expect("events").clone();
        match page["next"].as_u64() {
            None => {
                assert!(batch.is_empty(), "a page with events names its next: {page}");
                return events;
            }
            Some(next) => {
                if let Some(last) = batch.last() {
                    assert_eq!(last["seq"], next, "next is the seq of the page's last event");
                }
                after = next;
                events.extend(batch);
            }
        }
    }
}

/// Asserts that `events` are numbered 1, 2, 3, ... without a gap or a repeat.
fn assert_gap_free(events: &[Value]) {
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["seq"].as_u64(), Some(i as u64 + 1), "event {i} of {}: {event}", events.len());
    }
}

/// The value of the unlabelled metric `name`.
async fn metric(client: &reqwest::Client, daemon: &Daemon, name: &str) -> f64 {
    let text = client.get(daemon.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// Polls `parley_feed_clients` until it is `wanted`.
async fn wait_for_feed_clients(client: &reqwest::Client, daemon: &Daemon, wanted: f64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = metric(client, daemon, "parley_feed_clients").await;
        if now == wanted {
            return;
        }
        assert!(Instant::now() < deadline, "parley_feed_clients stayed {now}, not {wanted}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A daemon on a fixed loopback port, so that load can go on across a kill and a restart.
fn daemon_on_fixed_port() -> Daemon {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    Daemon::start_with(|store| {
        base_config(store).replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""))
    })
}

/// One WhatsApp webhook with `count` text messages `wamid.{tag}.{first + i}`, from 500 senders.
fn whatsapp_batch(tag: &str, first: usize, count: usize) -> (String, Vec<String>) {
    let items: Vec<(String, String, String)> = (first..first + count)
        .map(|i| (format!("wamid.{tag}.{i:07}"), format!("55119{:06}", i % 500), format!("message {i}")))
        .collect();
    let refs: Vec<(&str, &str, &str, &str)> =
        items.iter().map(|(id, from, text)| (id.as_str(), from.as_str(), "Load", text.as_str())).collect();
    (whatsapp_messages(&refs), items.into_iter().map(|(id, _, _)| id).collect())
}

/// Webhooks posted by `tasks` concurrent senders until `stop`, counting what was acknowledged.
/// Errors (the daemon being killed and restarted) are skipped after a short pause.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    acked_count: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(daemon: &Daemon, tag: &'static str, tasks: usize, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let acked_count = Arc::new(AtomicUsize::new(0));
        let url = daemon.url("/webhooks/whatsapp");
        let tasks = (0..tasks)
            .map(|task| {
                let (stop, acked, acked_count, url) = (stop.clone(), acked.clone(), acked_count.clone(), url.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let (body, ids) = whatsapp_batch(&format!("{tag}{task}"), n, 1);
                        n += 1;
                        let (header, value) = signature_header("whatsapp", body.as_bytes());
                        match client.post(&url).header(header, value).body(body).send().await {
                            Ok(response) if response.status() == 200 => {
                                acked.lock().await.extend(ids);
                                acked_count.fetch_add(1, Ordering::SeqCst);
                            }
                            _ => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                })
            })
            .collect();
        Load { stop, acked, acked_count, tasks }
    }

    fn acked(&self) -> usize {
        self.acked_count.load(Ordering::SeqCst)
    }

    async fn wait_for_acks(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.acked() < n {
            assert!(Instant::now() < deadline, "only {} of {n} webhooks acknowledged", self.acked());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the senders; returns every acknowledged wamid.
    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("a load task does not panic");
        }
        self.acked.lock().await.clone()
    }
}

/// Posts `webhooks` WhatsApp webhooks of `per_webhook` messages each, 8 at a time; all must be 200.
async fn fill(daemon: &Daemon, tag: &str, webhooks: usize, per_webhook: usize) {
    let client = client();
    let permits = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = Vec::new();
    for w in 0..webhooks {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (client, url) = (client.clone(), daemon.url("/webhooks/whatsapp"));
        let (body, _) = whatsapp_batch(tag, w * per_webhook, per_webhook);
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let (header, value) = signature_header("whatsapp", body.as_bytes());
            match client.post(&url).header(header, value).body(body).send().await {
                Ok(response) => response.status().as_u16().to_string(),
                Err(e) => e.to_string(),
            }
        }));
    }
    for task in tasks {
        let answer = task.await.expect("a fill task does not panic");
        assert_eq!(answer, "200", "a webhook was not stored; the daemon's log:\n{}", daemon.log());
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon and the sandbox, each pointed at the other (as in tests/outbound.rs)

struct Loop {
    daemon: Daemon,
    sandbox: Sandbox,
    client: reqwest::Client,
}

impl Loop {
    fn start() -> Loop {
        let (daemon, sandbox) = start_loop(Rates::default(), &["--delivery-delay-ms", "30", "--read-delay-ms", "80"]);
        Loop { daemon, sandbox, client: client() }
    }

    async fn post_webhook(&self, platform: &str, body: &str) -> String {
        let (status, answer) = post_signed(&self.client, &self.daemon, platform, body).await;
        assert_eq!(status, 200, "{platform}: {answer}");
        answer
    }

    async fn reply(&self, conversation_id: &str, text: &str) -> String {
        let response = self
            .client
            .post(self.daemon.url(&format!("/api/conversations/{conversation_id}/messages")))
            .bearer_auth(API_TOKEN)
            .json(&json!({ "text": text }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        body["message"]["id"].as_str().unwrap().to_owned()
    }

    async fn conversation_of(&self, platform: &str) -> String {
        let (_, body) = api_get(&self.client, &self.daemon, &format!("/api/conversations?platform={platform}")).await;
        body["conversations"][0]["id"].as_str().unwrap_or_else(|| panic!("no {platform} conversation")).to_owned()
    }

    /// Polls the JSON feed until `done` holds for it; returns it.
    async fn feed_until(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let events = json_events(&self.client, &self.daemon, "").await;
            if done(&events) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "the feed never showed {what}:\n{}\n--- daemon\n{}\n--- sandbox\n{}",
                summary(&events),
                self.daemon.log(),
                self.sandbox.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An echo of a message the Page sent just now from Meta's own inbox app (no metadata of ours).
fn messenger_app_echo(mid: &str) -> String {
    let now = parley::model::Timestamp::now().as_millis();
    json!({"object":"page","entry":[{"id":PAGE_ID,"time":now,"messaging":[
        {"sender":{"id":PAGE_ID},"recipient":{"id":PSID},"timestamp":now,
         "message":{"is_echo":true,"app_id":263902037430900_i64,"mid":mid,"text":"Sent from the Page inbox."}}]}]})
    .to_string()
}

/// One line per event, for failure messages.
fn summary(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| {
            let detail = match e["type"].as_str() {
                Some("conversation.updated") => {
                    let c = &e["data"]["conversation"];
                    format!("unread {} last {} name {}", c["unread"], c["last_message_text"], c["contact_name"])
                }
                Some("channel.status") => e["data"]["channel"].to_string(),
                _ => {
                    let m = &e["data"]["message"];
                    format!("{} {} {} {}", m["id"], m["direction"], m["status"], m["text"])
                }
            };
            format!("{} {} {} {}", e["seq"], e["type"], e["platform"], detail)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The events of `kind` whose message has id `id`, in order.
fn of_message<'a>(events: &'a [Value], kind: &str, id: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind && e["data"]["message"]["id"] == id).collect()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_on_each_platform_is_one_event_with_its_data_in_both_forms() {
    let lp = Loop::start();
    let client = &lp.client;
    // Opened before anything happens, from the start: this stream sees every event as it comes.
    let mut stream = Sse::open(&lp.daemon, "?after=0", None).await;

    // Each channel says how it started, once.
    lp.feed_until("a channel.status of each platform", |events| {
        events.iter().filter(|e| e["type"] == "channel.status").count() >= 4
    })
    .await;

    lp.post_webhook("facebook", &messenger_inbound("m_in_feed_1")).await;
    lp.post_webhook("whatsapp", &whatsapp_messages(&[("wamid.FEEDIN1", WA_USER, "Ana", "Olá")])).await;
    lp.post_webhook("viber", &viber_inbound()).await;
    lp.post_webhook("linkedin", &linkedin_inbound()).await;

    let platforms = ["facebook", "whatsapp", "viber", "linkedin"];
    let inbound_text = ["Where is my order?", "Olá", "Привіт", "Do you ship to Portugal?"];
    let reply_text = ["It shipped this morning.", "Chega amanhã.", "Посилка вже в дорозі.", "Yes, in 3 to 5 days."];
    let mut conversations = Vec::new();
    let mut replies = Vec::new();
    for (platform, text) in platforms.iter().zip(reply_text) {
        let conversation = lp.conversation_of(platform).await;
        replies.push(lp.reply(&conversation, text).await);
        conversations.push(conversation);
    }
    // Statuses move as the sandbox answers and sends receipts: Messenger, WhatsApp and Viber to
    // read, LinkedIn (no receipts) to sent.
    let finals = ["read", "read", "read", "sent"];
    lp.feed_until("every reply at its final status", |events| {
        replies.iter().zip(finals).all(|(id, status)| {
            of_message(events, "message.status", id).iter().any(|e| e["data"]["message"]["status"] == status)
        })
    })
    .await;

    // Redeliveries add nothing; an echo of a message sent from the Page's own app is created once.
    let answer = lp.post_webhook("facebook", &messenger_inbound("m_in_feed_1")).await;
    assert!(answer.contains("\"duplicates\":1"), "{answer}");
    lp.post_webhook("whatsapp", &whatsapp_messages(&[("wamid.FEEDIN1", WA_USER, "Ana", "Olá")])).await;
    lp.post_webhook("viber", &viber_inbound()).await;
    lp.post_webhook("linkedin", &linkedin_inbound()).await;
    lp.post_webhook("facebook", &messenger_app_echo("m_app_echo_1")).await;
    lp.post_webhook("facebook", &messenger_app_echo("m_app_echo_1")).await;
    // The Messenger contact's name comes from a profile lookup, at a moment of its own.
    let messenger_name = parley::sandbox::profile::display_name(PSID);
    let events = lp
        .feed_until("the echo and the Messenger contact's name", |events| {
            events.iter().any(|e| e["data"]["message"]["platform_message_id"] == "m_app_echo_1")
                && events.iter().any(|e| e["data"]["conversation"]["contact_name"] == messenger_name.as_str())
        })
        .await;
    let all = summary(&events);
    assert_gap_free(&events);

    // channel.status: one per platform, ready.
    let channels: Vec<&Value> = events.iter().filter(|e| e["type"] == "channel.status").collect();
    assert_eq!(channels.len(), 4, "{all}");
    for platform in platforms {
        let mine: Vec<&&Value> = channels.iter().filter(|e| e["platform"] == platform).collect();
        assert_eq!(mine.len(), 1, "{platform}: {all}");
        let channel = &mine[0]["data"]["channel"];
        assert_eq!(channel["platform"], platform);
        assert_eq!(channel["ready"], true, "{channel}");
        assert_eq!(channel["reason"], Value::Null, "{channel}");
        assert!(mine[0]["conversation_id"].is_null());
    }

    for (i, platform) in platforms.iter().enumerate() {
        let conversation = &conversations[i];
        let reply = &replies[i];
        // message.received: once, the inbound message as stored.
        let received: Vec<&Value> =
            events.iter().filter(|e| e["type"] == "message.received" && e["platform"] == *platform).collect();
        assert_eq!(received.len(), 1, "{platform}: {all}");
        let message = &received[0]["data"]["message"];
        assert_eq!(message["direction"], "inbound");
        assert_eq!(message["text"], inbound_text[i]);
        assert_eq!(message["status"], "received");
        assert_eq!(message["conversation_id"], conversation.as_str());
        assert_eq!(received[0]["conversation_id"], conversation.as_str());
        let (status, stored) =
            api_get(client, &lp.daemon, &format!("/api/messages/{}", message["id"].as_str().unwrap())).await;
        assert_eq!(status, 200);
        assert_eq!(&stored, message, "the event carries the message as the API shows it");

        // message.created: once, queued.
        let created = of_message(&events, "message.created", reply);
        assert_eq!(created.len(), 1, "{platform}: {all}");
        assert_eq!(created[0]["data"]["message"]["status"], "queued");
        assert_eq!(created[0]["data"]["message"]["direction"], "outbound");
        assert_eq!(created[0]["data"]["message"]["text"], reply_text[i]);
        assert_eq!(created[0]["conversation_id"], conversation.as_str());

        // message.status: one event per step, in order, each with the message at that step.
        let steps: Vec<&str> = of_message(&events, "message.status", reply)
            .iter()
            .map(|e| e["data"]["message"]["status"].as_str().unwrap())
            .collect();
        let expected: &[&str] =
            if *platform == "linkedin" { &["sending", "sent"] } else { &["sending", "sent", "delivered", "read"] };
        assert_eq!(steps, expected, "{platform}: {all}");
        let sent = of_message(&events, "message.status", reply)
            .into_iter()
            .find(|e| e["data"]["message"]["status"] == "sent")
            .unwrap();
        assert!(sent["data"]["message"]["platform_message_id"].is_string(), "sent names the platform's id: {sent}");
        assert!(created[0]["seq"].as_u64() < sent["seq"].as_u64());

        // conversation.updated: created with the inbound message (unread 1), then the reply
        // (unread 0, its text last); Messenger's echo is the last message after that. On
        // Messenger one more, whenever the lookup ends: the name, the rest as it was then.
        let conversation_updates: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "conversation.updated" && e["conversation_id"] == conversation.as_str())
            .collect();
        let mut updates: Vec<(u64, String)> = conversation_updates
            .iter()
            .map(|e| {
                let c = &e["data"]["conversation"];
                assert_eq!(c["id"], conversation.as_str());
                assert_eq!(c["platform"], *platform);
                (c["unread"].as_u64().unwrap(), c["last_message_text"].as_str().unwrap_or_default().to_owned())
            })
            .collect();
        if *platform == "facebook" {
            let names: Vec<&Value> =
                conversation_updates.iter().map(|e| &e["data"]["conversation"]["contact_name"]).collect();
            let named_at = names.iter().position(|n| !n.is_null()).expect("named");
            assert!(named_at > 0, "{all}");
            assert!(names[named_at..].iter().all(|n| **n == messenger_name.as_str()), "{all}");
            assert_eq!(updates[named_at], updates[named_at - 1], "the name alone changed: {all}");
            updates.remove(named_at);
        }
        let mut expected = vec![(1, inbound_text[i].to_owned()), (0, reply_text[i].to_owned())];
        if *platform == "facebook" {
            expected.push((0, "Sent from the Page inbox.".to_owned()));
        }
        assert_eq!(updates, expected, "{platform}: {all}");
    }

    let echoes: Vec<&Value> =
        events.iter().filter(|e| e["data"]["message"]["platform_message_id"] == "m_app_echo_1").collect();
    assert_eq!(echoes.len(), 1, "{all}");
    assert_eq!(echoes[0]["type"], "message.created");
    assert_eq!(echoes[0]["data"]["message"]["direction"], "outbound");
    assert_eq!(echoes[0]["conversation_id"], conversations[0].as_str());

    // Nothing else: 4 channels; per platform received, created and two conversation updates;
    // the status steps (four each, LinkedIn's two); the echo and its conversation update; the
    // Messenger contact's name.
    assert_eq!(events.len(), 4 + 4 * (1 + 1 + 2) + (3 * 4 + 2) + 2 + 1, "{all}");
    for event in &events {
        let at = event["at"].as_str().unwrap();
        assert!(parley::model::Timestamp::parse_rfc3339(at).is_some(), "{at}");
        if let Some(message) = event["data"].get("message") {
            assert_eq!(message["conversation_id"], event["conversation_id"]);
            assert_eq!(message["platform"], event["platform"]);
        }
    }

    // The stream opened at the start saw the same events, in the same order, with the same data.
    let last = events.last().unwrap()["seq"].as_u64().unwrap();
    assert_eq!(stream.events_through(last, Duration::from_secs(30)).await, events);

    // Filters, both forms.
    let wa_status: Vec<Value> =
        events.iter().filter(|e| e["type"] == "message.status" && e["platform"] == "whatsapp").cloned().collect();
    assert_eq!(json_events(client, &lp.daemon, "&types=message.status&platform=whatsapp").await, wa_status);
    let two_types: Vec<Value> =
        events.iter().filter(|e| e["type"] == "channel.status" || e["type"] == "message.received").cloned().collect();
    assert_eq!(json_events(client, &lp.daemon, "&types=channel.status,message.received").await, two_types);
    let in_viber: Vec<Value> =
        events.iter().filter(|e| e["conversation_id"] == conversations[2].as_str()).cloned().collect();
    let mut filtered = Sse::open(&lp.daemon, &format!("?after=0&conversation={}", conversations[2]), None).await;
    let last_viber = in_viber.last().unwrap()["seq"].as_u64().unwrap();
    assert_eq!(filtered.events_through(last_viber, Duration::from_secs(30)).await, in_viber);

    // Without a cursor a stream gets only what happens next.
    let mut live = Sse::open(&lp.daemon, "", None).await;
    assert_eq!(live.next(Duration::from_secs(10)).await, Some(Frame::Comment("parley live feed".into())));
    lp.post_webhook("whatsapp", &whatsapp_messages(&[("wamid.FEEDLIVE", WA_USER, "Ana", "Ainda aí?")])).await;
    let next = live.events_through(last + 2, Duration::from_secs(30)).await;
    assert_eq!(next.iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>(), [last + 1, last + 2]);
    assert!(next.iter().any(|e| e["data"]["message"]["text"] == "Ainda aí?"));
}

#[tokio::test]
async fn bad_parameters_get_400_and_no_token_gets_401() {
    let daemon = Daemon::start();
    let client = client();
    for query in [
        "?after=abc",
        "?after=-1",
        "?limit=0",
        "?limit=1001",
        "?wait=31",
        "?types=message.deleted",
        "?platform=telegram",
    ] {
        let (status, body) = events_page(&client, &daemon, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["error"]["code"].as_str().unwrap().starts_with("bad_"), "{query}: {body}");
        // The stream form refuses the same, before it starts.
        let response =
            client.get(daemon.url(&format!("/api/events{query}"))).bearer_auth(API_TOKEN).send().await.unwrap();
        assert_eq!(response.status(), 400, "{query}");
    }
    let response = client
        .get(daemon.url("/api/events"))
        .bearer_auth(API_TOKEN)
        .header("last-event-id", "twelve")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = client.get(daemon.url("/api/events?after=0")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    // A cursor beyond the newest event is not an error: the stream stays open.
    let mut ahead = Sse::open(&daemon, "?after=1000000", None).await;
    assert!(matches!(ahead.next(Duration::from_secs(10)).await, Some(Frame::Comment(_))));
    let (status, page) = events_page(&client, &daemon, "?after=1000000").await;
    assert_eq!((status, page), (200, json!({"events": [], "next": null})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_with_last_event_id_after_kill_9_under_load_and_misses_nothing() {
    let mut daemon = daemon_on_fixed_port();
    let client = client();
    let load = Load::start(&daemon, "resume", 8, Duration::ZERO);
    load.wait_for_acks(200, Duration::from_secs(60)).await;

    // A client reads part of the feed and goes away.
    let mut first = Sse::open(&daemon, "?after=0", None).await;
    let seen = first.events_through(150, Duration::from_secs(30)).await;
    drop(first);
    let last_seen = seen.last().unwrap()["seq"].as_u64().unwrap();

    // kill -9 while webhooks keep coming, and start again on the same store and port.
    let before_kill = load.acked();
    load.wait_for_acks(before_kill + 300, Duration::from_secs(60)).await;
    tokio::task::block_in_place(|| {
        daemon.kill9();
        daemon.start_again();
    });
    let after_restart = load.acked();
    load.wait_for_acks(after_restart + 300, Duration::from_secs(60)).await;
    let acked = load.stop().await;

    // Everything acknowledged is durable and its events were published; the restarted channels
    // report themselves again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let events = json_events(&client, &daemon, "").await;
        if events.iter().filter(|e| e["type"] == "channel.status").count() >= 8 {
            break events;
        }
        assert!(Instant::now() < deadline, "the restarted channels did not report");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_gap_free(&events);
    let newest = events.len() as u64;

    let mut resumed = Sse::open(&daemon, "", Some(last_seen)).await;
    let rest = resumed.events_through(newest, Duration::from_secs(60)).await;
    assert_eq!(rest.first().unwrap()["seq"].as_u64(), Some(last_seen + 1));
    let mut together = seen;
    together.extend(rest);
    assert_eq!(together.len(), events.len());
    assert!(together == events, "what the client read, before and after the kill, differs from the JSON form");

    // Every acknowledged webhook is in the feed exactly once.
    let mut received: BTreeMap<&str, usize> = BTreeMap::new();
    for event in events.iter().filter(|e| e["type"] == "message.received") {
        *received.entry(event["data"]["message"]["platform_message_id"].as_str().unwrap()).or_default() += 1;
    }
    let missing: Vec<&String> = acked.iter().filter(|w| !received.contains_key(w.as_str())).collect();
    assert!(missing.is_empty(), "{} acknowledged webhooks have no event, e.g. {:?}", missing.len(), &missing[..1]);
    assert!(received.values().all(|n| *n == 1), "a message was received twice");
    eprintln!(
        "resume: read {last_seen}, kill -9 after {before_kill}+ acks, {} acknowledged in all, {newest} events",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_far_behind_is_served_from_the_store_then_live_without_gap_or_repeat() {
    let daemon = Daemon::start();
    let client = client();
    // More events than the hub keeps: the first of them can only come from the store.
    fill(&daemon, "behind", 200, 50).await;
    let (_, page) = events_page(&client, &daemon, "?after=0&limit=1").await;
    assert_eq!(page["events"][0]["seq"], 1);

    let load = Load::start(&daemon, "seam", 4, Duration::from_millis(5));
    let mut everything = Sse::open(&daemon, "?after=0", None).await;
    let mut received_only = Sse::open(&daemon, "?after=0&types=message.received", None).await;
    load.wait_for_acks(300, Duration::from_secs(60)).await;
    load.stop().await;

    let events = json_events(&client, &daemon, "").await;
    assert_gap_free(&events);
    assert!(events.len() > HUB_EVENTS + 2_000, "only {} events", events.len());
    let newest = events.len() as u64;
    let streamed = everything.events_through(newest, Duration::from_secs(120)).await;
    assert!(streamed == events, "the stream differs from the JSON form");

    let received: Vec<Value> = events.iter().filter(|e| e["type"] == "message.received").cloned().collect();
    let last = received.last().unwrap()["seq"].as_u64().unwrap();
    let streamed = received_only.events_through(last, Duration::from_secs(120)).await;
    assert!(streamed == received, "the filtered stream differs from the filtered JSON form");
}

/// The daemon's resident memory in MiB.
fn resident_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_cost_bounded_memory_and_do_not_hold_up_ingest_or_other_clients() {
    const STALLED: usize = 40;
    let daemon = Daemon::start();
    let client = client();
    // ~14,000 events (~7 MiB of JSON) first, so that the store has done most of its growing.
    fill(&daemon, "early", 140, 50).await;
    let before = resident_mib(daemon.pid());
    let history = json_events(&client, &daemon, "").await;
    let history_bytes: usize = history.iter().map(|e| e.to_string().len()).sum();

    // Clients that ask for everything from the start and then never read a byte: each one's
    // stream could hold all of it if nothing bounded it.
    let stalled: Vec<std::net::TcpStream> = (0..STALLED)
        .map(|_| {
            let mut socket = std::net::TcpStream::connect(&daemon.addr).expect("connect");
            write!(
                socket,
                "GET /api/events?after=0 HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {API_TOKEN}\r\n\r\n",
                daemon.addr
            )
            .unwrap();
            socket
        })
        .collect();
    let mut reading = Sse::open(&daemon, "?after=0", None).await;
    wait_for_feed_clients(&client, &daemon, (STALLED + 1) as f64, Duration::from_secs(30)).await;

    // Ingest goes on (every webhook is answered 200), and a client that reads gets everything.
    fill(&daemon, "late", 20, 50).await;
    let events = json_events(&client, &daemon, "").await;
    let newest = events.len() as u64;
    let streamed = reading.events_through(newest, Duration::from_secs(120)).await;
    assert!(streamed == events, "the reading client's stream differs from the JSON form");
    let after = resident_mib(daemon.pid());
    let unbounded = (STALLED * history_bytes) as f64 / (1024.0 * 1024.0);
    eprintln!(
        "stalled clients: {STALLED} from after=0 over {newest} events ({:.1} MiB of JSON before they came); \
         RSS {before:.1} -> {after:.1} MiB (unbounded buffers would add {unbounded:.0} MiB)",
        history_bytes as f64 / 1048576.0
    );
    assert!(after - before < unbounded / 2.0, "RSS grew from {before:.1} to {after:.1} MiB");

    // Clients that go away are counted out: the stalled ones, then the reading one.
    drop(stalled);
    wait_for_feed_clients(&client, &daemon, 1.0, Duration::from_secs(40)).await;
    drop(reading);
    wait_for_feed_clients(&client, &daemon, 0.0, Duration::from_secs(40)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_stream_gets_heartbeats_while_other_events_flow() {
    let daemon = Daemon::start();
    // Only Viber events: none will come, while WhatsApp webhooks arrive all the time.
    let mut stream = Sse::open(&daemon, "?platform=viber", None).await;
    assert_eq!(stream.next(Duration::from_secs(10)).await, Some(Frame::Comment("parley live feed".into())));
    let load = Load::start(&daemon, "beat", 1, Duration::from_millis(100));
    let opened = Instant::now();
    // A comment at least every 15 s; allow as much again for a busy machine.
    let frame = stream.next(Duration::from_secs(30)).await;
    let waited = opened.elapsed();
    let acked = load.stop().await;
    assert_eq!(frame, Some(Frame::Comment("keep-alive".into())), "after {waited:?}");
    assert!(acked.len() > 20, "the load ran ({} webhooks)", acked.len());
    assert!(waited >= Duration::from_secs(10), "a heartbeat after only {waited:?}");
}

#[tokio::test]
async fn filtered_out_webhooks_are_not_in_the_filtered_json_page_but_the_cursor_moves() {
    let daemon = Daemon::start();
    let client = client();
    fill(&daemon, "filtered", 4, 10).await;
    let (status, page) = events_page(&client, &daemon, "?after=0&types=message.status").await;
    assert_eq!(status, 200);
    assert_eq!(page["events"], json!([]));
    // Long polling on a filter that matches nothing answers an empty page once the wait ends.
    let started = Instant::now();
    let (status, page) = events_page(&client, &daemon, "?after=0&types=message.status&wait=1").await;
    assert_eq!(status, 200);
    assert_eq!(page["events"], json!([]));
    assert!(started.elapsed() >= Duration::from_millis(900));
    let unique: HashSet<u64> =
        json_events(&client, &daemon, "").await.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(unique.len(), 4 * 10 * 2 + 4, "a received and a conversation event per message, 4 channels");
}

/// A store whose first `old` webhooks were stored ten days ago (past the default seven-day
/// retention) and the next `new` just now, written through the library as the daemon would.
fn store_with_old_events(store: &std::path::Path, old: usize, new: usize) {
    use parley::platform::{ParseContext, whatsapp};
    use parley::time::Timestamp;
    let opened = parley::store::Store::open(store, 8 << 20).expect("open the store");
    let now = Timestamp::now();
    let ten_days_ago = now.saturating_add_millis(-10 * 86_400_000);
    for i in 0..old + new {
        let at = if i < old { ten_days_ago } else { now };
        let wamid = format!("wamid.RESET{i:04}");
        let sender = format!("4915100000{i:03}");
        let body = whatsapp_messages(&[(&wamid, &sender, "Reset Customer", "hello")]);
        let ctx = ParseContext { account_id: PHONE_NUMBER_ID, received_at: at };
        let events = whatsapp::parse_webhook(body.as_bytes(), &ctx).expect("a WhatsApp message");
        opened.ingest(&events, at).expect("ingest");
    }
    opened.flush_blocking().expect("flush");
}

#[tokio::test]
async fn a_client_behind_the_retained_events_gets_feed_reset_then_everything_retained() {
    let daemon = Daemon::start_with(|store| {
        store_with_old_events(store, 3, 2);
        base_config(store)
    });
    let client = client();
    // Each webhook is one write of two events (message.received, conversation.updated): 1..=10.
    // Pruning (200 ms after start) removes the three old writes: events 1 to 6.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, page) = events_page(&client, &daemon, "?limit=1").await;
        assert_eq!(status, 200, "{page}");
        if page["events"][0]["seq"] == 7 {
            break;
        }
        assert!(Instant::now() < deadline, "the old events were not pruned: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The stream: feed.reset first, with an id just before the oldest retained event (so that a
    // reconnect does not ask for the pruned range again), then every retained event once.
    let mut stream = Sse::open(&daemon, "", Some(2)).await;
    let first = loop {
        match stream.next(Duration::from_secs(10)).await.expect("a first event") {
            Frame::Comment(_) => {}
            frame => break frame,
        }
    };
    let Frame::Event { id, event, data } = first else { unreachable!() };
    assert_eq!((id, event.as_str()), (6, "feed.reset"));
    assert_eq!(data, json!({ "type": "feed.reset", "data": { "oldest_seq": 7 } }));
    let events = stream.events_through(10, Duration::from_secs(10)).await;
    assert_eq!(events.iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>(), [7, 8, 9, 10]);

    // The JSON form says the same beside the page.
    let (status, page) = events_page(&client, &daemon, "?after=2").await;
    assert_eq!(status, 200);
    assert_eq!(page["reset"], json!({ "oldest_seq": 7 }));
    // (Channel readiness events of the start follow the stored ones.)
    let seqs: Vec<u64> = page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (7..7 + seqs.len() as u64).collect::<Vec<_>>(), "from the oldest retained, without a gap");
    assert!(seqs.len() >= 4);
    assert_eq!(page["next"], *seqs.last().unwrap());
    // A cursor inside the retained range is no reset.
    let (_, page) = events_page(&client, &daemon, "?after=8").await;
    assert!(page.get("reset").is_none(), "{page}");
}
