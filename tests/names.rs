//! Messenger contact names end to end: the real daemon looks a new contact up in the real
//! `parley sandbox`'s Graph user profile stand-in, once, and a lookup that fails costs nothing.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::sandbox::{PAGE_TOKEN, Rates, Sandbox, loop_config};
use support::*;

/// The daemon and the sandbox, each pointed at the other.
struct Loop {
    daemon: Daemon,
    sandbox: Sandbox,
    client: reqwest::Client,
}

/// How long a name may take to arrive on a busy host: the lookup itself takes milliseconds.
const NAME_WITHIN: Duration = Duration::from_secs(15);

impl Loop {
    fn start() -> Loop {
        let daemon_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let sandbox_config = dir.path().join("sandbox.toml");
        let rates = Rates::default();
        std::fs::write(&sandbox_config, loop_config(&dir.path().join("unused"), daemon_port, "127.0.0.1:9", rates))
            .unwrap();
        let parley_url = format!("http://127.0.0.1:{daemon_port}");
        let sandbox = Sandbox::start_owning(&sandbox_config, &["--parley-url", &parley_url, "--no-receipts"], dir);
        let sandbox_addr = sandbox.addr.clone();
        let daemon = Daemon::start_with(|store| loop_config(store, daemon_port, &sandbox_addr, rates));
        Loop { daemon, sandbox, client: client() }
    }

    /// The customer `psid` writes `mid`; the webhook must be answered 200.
    async fn customer_writes(&self, psid: &str, mid: &str) {
        let (status, body) =
            post_signed(&self.client, &self.daemon, "facebook", &messenger_text_from(psid, mid, "Hello")).await;
        assert_eq!(status, 200, "{body}");
    }

    /// The Messenger conversation with `psid`.
    async fn conversation(&self, psid: &str) -> Value {
        let (status, body) = api_get(&self.client, &self.daemon, "/api/conversations?platform=facebook").await;
        assert_eq!(status, 200, "{body}");
        body["conversations"]
            .as_array()
            .and_then(|list| list.iter().find(|c| c["contact_id"] == psid).cloned())
            .unwrap_or_else(|| panic!("no conversation with {psid}: {body}"))
    }

    /// Polls until the conversation with `psid` has a name, and returns it.
    async fn name_of(&self, psid: &str) -> String {
        let deadline = Instant::now() + NAME_WITHIN;
        loop {
            if let Some(name) = self.conversation(psid).await["contact_name"].as_str() {
                return name.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "{psid} got no name\n--- daemon\n{}\n--- sandbox\n{}",
                self.daemon.log(),
                self.sandbox.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The user profile lookups the sandbox received for `psid`.
    async fn lookups(&self, psid: &str) -> Vec<Value> {
        let url = self.sandbox.url("/_sandbox/requests?platform=facebook");
        let body: Value = self.client.get(url).send().await.unwrap().json().await.unwrap();
        let path = format!("/v23.0/{psid}");
        body["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["method"] == "GET" && r["path"] == path)
            .cloned()
            .collect()
    }

    /// Polls until the sandbox received `n` lookups for `psid`.
    async fn wait_for_lookups(&self, psid: &str, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let lookups = self.lookups(psid).await;
            if lookups.len() >= n {
                return lookups;
            }
            assert!(Instant::now() < deadline, "{} of {n} lookups for {psid}\n{}", lookups.len(), self.daemon.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn profile_fault(&self, kind: &str, count: u32) {
        let response = self
            .client
            .post(self.sandbox.url("/_sandbox/faults"))
            .json(&json!({ "platform": "facebook", "kind": kind, "count": count, "endpoint": "profile" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    /// Replies in the conversation with `psid` and waits until it was sent: the channel has then
    /// handled everything the webhooks before it asked of it.
    async fn reply_is_sent(&self, psid: &str) {
        let conversation = self.conversation(psid).await["id"].as_str().unwrap().to_owned();
        let response = self
            .client
            .post(self.daemon.url(&format!("/api/conversations/{conversation}/messages")))
            .bearer_auth(API_TOKEN)
            .json(&json!({ "text": "Thanks, looking into it." }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let id = response.json::<Value>().await.unwrap()["message"]["id"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, message) = api_get(&self.client, &self.daemon, &format!("/api/messages/{id}")).await;
            if message["status"] == "sent" {
                return;
            }
            assert!(Instant::now() < deadline, "reply stayed {}\n{}", message["status"], self.daemon.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn a_new_messenger_contact_is_named_from_the_graph_profile_once_even_after_more_messages_and_a_restart() {
    let mut lp = Loop::start();
    let psid = "7212345678905501";
    lp.customer_writes(psid, "m_names_1").await;
    let expected = parley::sandbox::profile::display_name(psid);
    assert_eq!(lp.name_of(psid).await, expected);

    let lookups = lp.lookups(psid).await;
    assert_eq!(lookups.len(), 1, "{lookups:?}");
    assert_eq!(lookups[0]["query"], "fields=first_name%2Clast_name");
    assert_eq!(lookups[0]["headers"]["authorization"], format!("Bearer {PAGE_TOKEN}"));

    // More messages: the name is there, nothing is asked again. (This webhook's 200 also means
    // the name, written before it, is durable.)
    lp.customer_writes(psid, "m_names_2").await;
    lp.reply_is_sent(psid).await;
    assert_eq!(lp.lookups(psid).await.len(), 1);

    // Nor after a restart: the name is in the store.
    lp.daemon.kill9();
    lp.daemon.start_again();
    lp.client = client();
    lp.customer_writes(psid, "m_names_3").await;
    lp.reply_is_sent(psid).await;
    assert_eq!(lp.lookups(psid).await.len(), 1);
    assert_eq!(lp.conversation(psid).await["contact_name"], expected.as_str());

    // The live feed told about the name.
    let (_, page) = events_page(&lp.client, &lp.daemon, "?types=conversation.updated&limit=1000").await;
    let named = page["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .any(|e| e["data"]["conversation"]["contact_name"] == expected.as_str());
    assert!(named, "no conversation.updated with the name: {page}");
    assert!(!lp.daemon.log().contains(PAGE_TOKEN), "the token reached the daemon's log");
}

#[tokio::test]
async fn a_lookup_graph_refuses_leaves_the_conversation_unnamed_and_is_not_repeated() {
    let lp = Loop::start();
    let psid = "7212345678905502";
    lp.profile_fault("permanent", 1).await;
    lp.customer_writes(psid, "m_refused_1").await;
    lp.wait_for_lookups(psid, 1, NAME_WITHIN).await;

    // Webhooks still succeed; the conversation has no name, and the refusal is not asked again.
    lp.customer_writes(psid, "m_refused_2").await;
    lp.reply_is_sent(psid).await;
    let conversation = lp.conversation(psid).await;
    assert_eq!(conversation["contact_name"], Value::Null, "{conversation}");
    assert_eq!(lp.lookups(psid).await.len(), 1);

    // Another contact is named as usual.
    let other = "7212345678905503";
    lp.customer_writes(other, "m_refused_3").await;
    assert_eq!(lp.name_of(other).await, parley::sandbox::profile::display_name(other));
    assert!(!lp.daemon.log().contains(PAGE_TOKEN), "the token reached the daemon's log");
}

#[tokio::test]
async fn a_lookup_that_fails_for_now_is_tried_once_more_and_then_names_the_contact() {
    let lp = Loop::start();
    let psid = "7212345678905504";
    lp.profile_fault("server_error", 1).await;
    lp.customer_writes(psid, "m_retry_1").await;
    // The retry waits 10 s; allow for a busy host on top.
    let deadline = Instant::now() + Duration::from_secs(40);
    let name = loop {
        if let Some(name) = lp.conversation(psid).await["contact_name"].as_str() {
            break name.to_owned();
        }
        assert!(Instant::now() < deadline, "no name after the retry\n{}", lp.daemon.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(name, parley::sandbox::profile::display_name(psid));
    assert_eq!(lp.lookups(psid).await.len(), 2, "one failure, one retry");
}
