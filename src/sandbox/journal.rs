//! Every platform request the sandbox received, in order, for `GET /_sandbox/requests`: tests read
//! back exactly what the daemon sent (body, headers, query) without a network capture.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use serde_json::Value;

use crate::model::Platform;

/// Requests kept. Past this the oldest are forgotten (sequence numbers go on), so a long benchmark
/// run cannot grow the sandbox without bound.
pub const CAPACITY: usize = 50_000;

/// One request as received.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RecordedRequest {
    /// 1, 2, 3... across the sandbox's life (a reset does not restart it).
    pub seq: u64,
    pub platform: Platform,
    pub method: String,
    pub path: String,
    /// The raw query string, `""` when there is none.
    pub query: String,
    /// Lower-case header names; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// Parsed JSON, a form as a map of strings, the raw text, or null when empty.
    pub body: Value,
    /// When it arrived, milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// The recorded requests, oldest first.
#[derive(Debug, Default)]
pub struct Journal {
    requests: VecDeque<RecordedRequest>,
    last_seq: u64,
}

impl Journal {
    /// Records a request (its `seq` is assigned here); returns its sequence number.
    pub fn record(&mut self, mut request: RecordedRequest) -> u64 {
        self.last_seq += 1;
        request.seq = self.last_seq;
        if self.requests.len() == CAPACITY {
            self.requests.pop_front();
        }
        self.requests.push_back(request);
        self.last_seq
    }

    /// Requests after `since` (a sequence number), optionally of one platform.
    pub fn since(&self, since: u64, platform: Option<Platform>) -> Vec<&RecordedRequest> {
        self.requests.iter().filter(|r| r.seq > since && platform.is_none_or(|p| r.platform == p)).collect()
    }

    /// The last sequence number handed out.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Forgets the requests (not the sequence, so a `since` taken before a reset stays meaningful).
    pub fn clear(&mut self) {
        self.requests.clear();
    }
}

/// The body as the journal shows it: JSON if it parses, a form map if the content type says so,
/// otherwise the text (lossy UTF-8); null when empty.
pub fn body_value(content_type: Option<&str>, body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    let is_form = content_type.is_some_and(|t| t.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    if is_form {
        return Value::Object(
            form_fields(&String::from_utf8_lossy(body)).into_iter().map(|(k, v)| (k, Value::String(v))).collect(),
        );
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => value,
        Err(_) => Value::String(String::from_utf8_lossy(body).into_owned()),
    }
}

/// A URL-encoded form (or query) as a map; the first value of a repeated name wins.
pub fn form_fields(text: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        fields.entry(decode(name)).or_insert_with(|| decode(value));
    }
    fields
}

/// Percent-decodes one form component (`+` is a space), with the platform module's lenient rules.
fn decode(text: &str) -> String {
    crate::platform::query_param(&format!("x={text}"), "x").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_shown_as_json_form_or_text() {
        assert_eq!(body_value(Some("application/json"), br#"{"a":1}"#), serde_json::json!({"a": 1}));
        assert_eq!(
            body_value(Some("application/x-www-form-urlencoded"), b"grant_type=refresh_token&token=a%2Bb+c"),
            serde_json::json!({"grant_type": "refresh_token", "token": "a+b c"})
        );
        assert_eq!(body_value(None, b"not json"), Value::String("not json".into()));
        assert_eq!(body_value(None, b""), Value::Null);
    }

    fn request(platform: Platform) -> RecordedRequest {
        RecordedRequest {
            seq: 0,
            platform,
            method: "POST".into(),
            path: "/x".into(),
            query: String::new(),
            headers: BTreeMap::new(),
            body: Value::Null,
            at_ms: 0,
        }
    }

    #[test]
    fn since_filters_by_sequence_and_platform_and_survives_clear() {
        let mut journal = Journal::default();
        for platform in [Platform::Facebook, Platform::Viber, Platform::Facebook] {
            journal.record(request(platform));
        }
        assert_eq!(journal.since(0, None).len(), 3);
        assert_eq!(journal.since(1, Some(Platform::Facebook)).iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3]);
        journal.clear();
        assert!(journal.since(0, None).is_empty());
        assert_eq!(journal.record(request(Platform::Viber)), 4);
    }
}
