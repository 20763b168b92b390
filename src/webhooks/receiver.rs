//! A receiver as the worker uses it (validated from `[[webhooks]]`), and what one delivery sends.

use std::time::Duration;

use crate::config::WebhookConfig;
use crate::feed::{EventFilter, EventType, Published};
use crate::model::Platform;

use super::signature::{SigningKey, webhook_id};

/// A configured receiver, validated.
#[derive(Clone, Debug)]
pub struct Receiver {
    pub name: String,
    pub url: String,
    pub key: SigningKey,
    /// Empty: every type.
    pub events: Vec<EventType>,
    /// Empty: every platform.
    pub platforms: Vec<Platform>,
    pub timeout: Duration,
}

impl Receiver {
    /// The receiver of a validated config entry (`config::load` checked every field: `None` only
    /// for a config that skipped validation).
    pub fn from_config(config: &WebhookConfig) -> Option<Receiver> {
        Some(Receiver {
            name: config.name.clone(),
            url: config.url.clone(),
            key: SigningKey::from_secret(config.secret.expose()).ok()?,
            events: config.events.iter().map(|e| EventType::parse(e)).collect::<Option<_>>()?,
            platforms: config.platforms.iter().map(|p| p.parse().ok()).collect::<Option<_>>()?,
            timeout: Duration::from_secs(config.timeout_secs),
        })
    }

    /// Which events this receiver takes.
    pub fn filter(&self) -> EventFilter {
        EventFilter { types: self.events.clone(), platforms: self.platforms.clone(), conversation: None }
    }
}

/// The body of a delivery: `{"type", "timestamp": the event's `at`, "data": Event}`.
pub fn delivery_body(event: &Published) -> String {
    let at = serde_json::to_string(&event.event.at).unwrap_or_else(|_| "null".to_owned());
    format!(r#"{{"type":"{}","timestamp":{at},"data":{}}}"#, event.event.kind.as_str(), event.json())
}

/// The headers of one attempt at `event`, signed at `timestamp` (Unix seconds).
pub fn delivery_headers(key: &SigningKey, seq: u64, timestamp: i64, body: &str) -> [(&'static str, String); 4] {
    let id = webhook_id(seq);
    let signature = key.sign(&id, timestamp, body.as_bytes());
    [
        ("webhook-id", id),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
        ("content-type", "application/json".to_owned()),
    ]
}

/// True when `url` may receive deliveries: https anywhere, http only to a loopback host.
pub fn url_allowed(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let Some(host) = parsed.host_str() else { return Err(format!("`{url}` has no host")) };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback =
        host.eq_ignore_ascii_case("localhost") || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(format!("`{url}` is plain http to a host that is not loopback; use https")),
        other => Err(format!("`{url}`: the scheme must be https (or http to loopback), not `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::Event;
    use crate::model::Timestamp;

    #[test]
    fn the_body_wraps_the_event_as_the_contract_says() {
        let event = Published::new(Event {
            seq: 42,
            kind: EventType::MessageReceived,
            at: Timestamp::from_millis(1_700_000_000_000),
            platform: Platform::Viber,
            conversation_id: Some("c1".into()),
            data: Event::data_of(&serde_json::json!({"message": {"id": "m1"}})).unwrap(),
        });
        let body: serde_json::Value = serde_json::from_str(&delivery_body(&event)).unwrap();
        assert_eq!(body["type"], "message.received");
        assert_eq!(body["timestamp"], body["data"]["at"]);
        assert_eq!(body["data"]["seq"], 42);
        assert_eq!(body["data"]["data"]["message"]["id"], "m1");
    }

    #[test]
    fn http_is_allowed_only_to_loopback() {
        assert!(url_allowed("https://crm.example.com/hooks").is_ok());
        assert!(url_allowed("http://127.0.0.1:9000/hooks").is_ok());
        assert!(url_allowed("http://[::1]:9000/hooks").is_ok());
        assert!(url_allowed("http://localhost/hooks").is_ok());
        assert!(url_allowed("http://crm.example.com/hooks").is_err());
        assert!(url_allowed("http://10.0.0.1/hooks").is_err());
        assert!(url_allowed("ftp://127.0.0.1/x").is_err());
        assert!(url_allowed("not a url").is_err());
    }
}
