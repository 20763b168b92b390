//! The sandbox's receiver of outgoing webhooks: `POST /receiver/{name}` verifies the Standard
//! Webhooks signature with the secret of the `[[webhooks]]` entry of that name in the sandbox's
//! config, journals what arrived, and answers 204 (or 401 for a bad signature) — unless a fault is
//! queued for that receiver. Control routes under `/_sandbox/receivers/{name}/`:
//!
//! - `POST .../faults` `{"kind", "count", "delay_ms", "retry_after_secs", "status"}`: the next
//!   `count` deliveries fail: `server_error` (500), `rate_limit` (429 with `Retry-After`), `slow`
//!   (answer after `delay_ms`; a long delay is a hang), `drop` (close without answering),
//!   `expired_token` (401), `permanent` (400), `gone` (410), `status` (any `status`).
//! - `DELETE .../faults`: drop the queued faults.
//! - `GET .../deliveries?since=N`: what arrived after journal number N, with counts.
//!
//! Pure: the HTTP shell (`server.rs`) passes requests in and carries the answers out.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::core::{Delivery, Request};
use super::faults::MAX_DELAY_MS;
use super::reply::{Reply, control_error};
use crate::config::Config;
use crate::platform::query_param;
use crate::webhooks::signature::SigningKey;

/// Deliveries kept in the journal, across receivers (the counts go on past it).
pub const CAPACITY: usize = 50_000;

/// How a faulted delivery fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiverFaultKind {
    ServerError,
    RateLimit,
    Slow,
    Drop,
    ExpiredToken,
    Permanent,
    Gone,
    Status,
}

/// The body of `POST /_sandbox/receivers/{name}/faults`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverFaultRequest {
    pub kind: ReceiverFaultKind,
    #[serde(default = "one")]
    pub count: u32,
    /// `slow`: the wait before answering (default 1000 ms, at most 120 s).
    pub delay_ms: Option<u64>,
    /// `rate_limit`: the `Retry-After` (default 1).
    pub retry_after_secs: Option<u64>,
    /// `status`: the status to answer.
    pub status: Option<u16>,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug)]
struct QueuedFault {
    request: ReceiverFaultRequest,
    remaining: u32,
}

/// One delivery as received.
#[derive(Clone, Debug, Serialize)]
pub struct ReceivedDelivery {
    /// 1, 2, 3... across receivers.
    pub seq: u64,
    pub receiver: String,
    pub at_ms: i64,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The body exactly as received (for an independent verifier).
    pub body: String,
    /// The signature checked out with the receiver's secret and the timestamp header.
    pub verified: bool,
    /// What the sandbox answers (0: the connection is dropped).
    pub answered: u16,
    /// The answer is held back this long (a `slow` fault); 0: at once.
    pub answer_delay_ms: u64,
}

/// Per receiver counts, never reset by the journal's bound.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReceiverCounts {
    pub received: u64,
    pub verified: u64,
    pub bad_signature: u64,
    pub faulted: u64,
    /// Accepted (2xx answered) deliveries.
    pub accepted: u64,
}

/// The receivers and what they got.
pub struct Receivers {
    keys: HashMap<String, SigningKey>,
    faults: HashMap<String, VecDeque<QueuedFault>>,
    journal: VecDeque<Arc<ReceivedDelivery>>,
    last_seq: u64,
    counts: HashMap<String, ReceiverCounts>,
}

impl Receivers {
    /// Receivers for every `[[webhooks]]` entry of `config` whose secret is valid.
    pub fn new(config: &Config) -> Receivers {
        let keys = config
            .webhooks
            .iter()
            .filter_map(|r| SigningKey::from_secret(r.secret.expose()).ok().map(|k| (r.name.clone(), k)))
            .collect();
        Receivers { keys, faults: HashMap::new(), journal: VecDeque::new(), last_seq: 0, counts: HashMap::new() }
    }

    /// True for the paths this module answers.
    pub fn handles(path: &str) -> bool {
        path.starts_with("/receiver/") || path.starts_with("/_sandbox/receivers/")
    }

    /// Answers one request at `now_ms`.
    pub fn handle(&mut self, request: &Request, now_ms: i64) -> (Reply, Delivery) {
        let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
        match (request.method.as_str(), segments.as_slice()) {
            ("POST", ["receiver", name]) => self.receive(name, request, now_ms),
            ("POST", ["_sandbox", "receivers", name, "faults"]) => (self.add_fault(name, request), Delivery::Answer),
            ("DELETE", ["_sandbox", "receivers", name, "faults"]) => {
                self.faults.remove(*name);
                (Reply::json(200, &json!({ "status": "cleared" })), Delivery::Answer)
            }
            ("GET", ["_sandbox", "receivers", name, "deliveries"]) => {
                (self.deliveries(name, request), Delivery::Answer)
            }
            _ => (
                control_error(
                    404,
                    "receiver routes: POST /receiver/{name}; POST|DELETE /_sandbox/receivers/{name}/faults; GET /_sandbox/receivers/{name}/deliveries?since=N",
                ),
                Delivery::Answer,
            ),
        }
    }

    fn receive(&mut self, name: &str, request: &Request, now_ms: i64) -> (Reply, Delivery) {
        let Some(key) = self.keys.get(name) else {
            return (
                control_error(404, &format!("no [[webhooks]] receiver named `{name}` in the sandbox's config")),
                Delivery::Answer,
            );
        };
        let header = |n: &str| request.headers.get(n).map(String::as_str).unwrap_or("");
        let verified = header("webhook-timestamp")
            .parse::<i64>()
            .is_ok_and(|ts| key.verify(header("webhook-id"), ts, &request.body, header("webhook-signature")));
        let fault = self.take_fault(name);
        let (reply, delivery) = match (&fault, verified) {
            (Some(fault), _) => answer_fault(fault),
            (None, true) => (Reply::json(200, &json!({ "status": "received" })), Delivery::Answer),
            (None, false) => (control_error(401, "the webhook-signature does not verify"), Delivery::Answer),
        };
        let counts = self.counts.entry(name.to_owned()).or_default();
        counts.received += 1;
        counts.verified += u64::from(verified);
        counts.bad_signature += u64::from(!verified);
        counts.faulted += u64::from(fault.is_some());
        let answered = if matches!(delivery, Delivery::Drop) { 0 } else { reply.status };
        let answer_delay_ms = match delivery {
            Delivery::AnswerAfter(delay) => u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            _ => 0,
        };
        counts.accepted += u64::from((200..300).contains(&answered));
        self.last_seq += 1;
        if self.journal.len() == CAPACITY {
            self.journal.pop_front();
        }
        self.journal.push_back(Arc::new(ReceivedDelivery {
            seq: self.last_seq,
            receiver: name.to_owned(),
            at_ms: now_ms,
            headers: request.headers.clone(),
            body: String::from_utf8_lossy(&request.body).into_owned(),
            verified,
            answered,
            answer_delay_ms,
        }));
        (reply, delivery)
    }

    fn take_fault(&mut self, name: &str) -> Option<ReceiverFaultRequest> {
        let queue = self.faults.get_mut(name)?;
        let front = queue.front_mut()?;
        let fault = front.request.clone();
        front.remaining -= 1;
        if front.remaining == 0 {
            queue.pop_front();
        }
        Some(fault)
    }

    fn add_fault(&mut self, name: &str, request: &Request) -> Reply {
        let fault: ReceiverFaultRequest = match serde_json::from_slice(&request.body) {
            Ok(fault) => fault,
            Err(e) => return control_error(400, &format!("fault body: {e}")),
        };
        if fault.count == 0 || fault.delay_ms.unwrap_or(0) > MAX_DELAY_MS {
            return control_error(400, &format!("`count` must be at least 1 and `delay_ms` at most {MAX_DELAY_MS}"));
        }
        if fault.kind == ReceiverFaultKind::Status && !fault.status.is_some_and(|s| (100..=599).contains(&s)) {
            return control_error(400, "kind `status` needs a `status` from 100 to 599");
        }
        let queue = self.faults.entry(name.to_owned()).or_default();
        queue.push_back(QueuedFault { remaining: fault.count, request: fault });
        let pending: u32 = queue.iter().map(|f| f.remaining).sum();
        Reply::json(200, &json!({ "status": "queued", "pending": pending }))
    }

    fn deliveries(&self, name: &str, request: &Request) -> Reply {
        let since = query_param(&request.query, "since").and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let deliveries: Vec<&ReceivedDelivery> =
            self.journal.iter().filter(|d| d.seq > since && d.receiver == name).map(|d| d.as_ref()).collect();
        let counts = self.counts.get(name).cloned().unwrap_or_default();
        Reply::json(200, &json!({ "deliveries": deliveries, "last_seq": self.last_seq, "counts": counts }))
    }
}

fn answer_fault(fault: &ReceiverFaultRequest) -> (Reply, Delivery) {
    let error = |status: u16| control_error(status, "a sandbox fault");
    match fault.kind {
        ReceiverFaultKind::ServerError => (error(500), Delivery::Answer),
        ReceiverFaultKind::RateLimit => {
            (error(429).with_header("retry-after", fault.retry_after_secs.unwrap_or(1).to_string()), Delivery::Answer)
        }
        ReceiverFaultKind::Slow => (
            Reply::json(200, &json!({ "status": "received" })),
            Delivery::AnswerAfter(Duration::from_millis(fault.delay_ms.unwrap_or(1000))),
        ),
        ReceiverFaultKind::Drop => (error(500), Delivery::Drop),
        ReceiverFaultKind::ExpiredToken => (error(401), Delivery::Answer),
        ReceiverFaultKind::Permanent => (error(400), Delivery::Answer),
        ReceiverFaultKind::Gone => (error(410), Delivery::Answer),
        ReceiverFaultKind::Status => (error(fault.status.unwrap_or(500)), Delivery::Answer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Figment;
    use figment::providers::{Format, Toml};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn receivers() -> Receivers {
        let toml = format!(
            "{}\n[[webhooks]]\nname = \"crm\"\nurl = \"http://127.0.0.1:1/receiver/crm\"\nsecret = \"{SECRET}\"\n",
            crate::config::DEFAULTS
        );
        let config: Config = Figment::from(Toml::string(&toml)).extract().unwrap();
        Receivers::new(&config)
    }

    fn post(path: &str, body: &str, headers: &[(&str, String)]) -> Request {
        Request {
            method: "POST".into(),
            path: path.into(),
            query: String::new(),
            headers: headers.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn signed(body: &str) -> Request {
        let key = SigningKey::from_secret(SECRET).unwrap();
        let headers = crate::webhooks::receiver::delivery_headers(&key, 7, 1_700_000_000, body);
        let headers: Vec<(&str, String)> = headers.into_iter().collect();
        post("/receiver/crm", body, &headers)
    }

    #[test]
    fn a_signed_delivery_is_accepted_and_journaled_and_a_forged_one_refused() {
        let mut r = receivers();
        assert_eq!(r.handle(&signed("{}"), 1).0.status, 200);
        let mut forged = signed("{}");
        forged.body = b"{\"x\":1}".to_vec();
        assert_eq!(r.handle(&forged, 2).0.status, 401);
        assert_eq!(r.handle(&post("/receiver/other", "{}", &[]), 3).0.status, 404);
        let counts = &r.counts["crm"];
        assert_eq!((counts.received, counts.verified, counts.bad_signature, counts.accepted), (2, 1, 1, 1));
        assert_eq!(r.journal.len(), 2);
        assert_eq!(r.journal[0].headers["webhook-id"], "evt_7");
    }

    #[test]
    fn faults_apply_to_the_next_deliveries_in_order() {
        let mut r = receivers();
        let fault =
            post("/_sandbox/receivers/crm/faults", r#"{"kind":"rate_limit","count":2,"retry_after_secs":9}"#, &[]);
        assert_eq!(r.handle(&fault, 0).0.status, 200);
        let gone = post("/_sandbox/receivers/crm/faults", r#"{"kind":"gone"}"#, &[]);
        assert_eq!(r.handle(&gone, 0).0.status, 200);
        let first = r.handle(&signed("{}"), 1).0;
        assert_eq!(first.status, 429);
        assert!(first.headers.contains(&("retry-after", "9".to_owned())));
        assert_eq!(r.handle(&signed("{}"), 1).0.status, 429);
        assert_eq!(r.handle(&signed("{}"), 1).0.status, 410);
        assert_eq!(r.handle(&signed("{}"), 1).0.status, 200);
        let bad = post("/_sandbox/receivers/crm/faults", r#"{"kind":"status"}"#, &[]);
        assert_eq!(r.handle(&bad, 0).0.status, 400);
    }
}
