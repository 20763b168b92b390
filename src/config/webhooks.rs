//! `[[webhooks]]`: the receivers of outgoing webhooks (CONTRACT.md, "Outgoing webhooks"), and
//! their validation (each problem names `webhooks[i].key` and where the list came from).

use serde::Deserialize;

use crate::feed::EventType;
use crate::model::Platform;
use crate::secret::Secret;
use crate::webhooks::receiver::url_allowed;
use crate::webhooks::signature::SigningKey;

/// The longest `timeout_secs` accepted.
pub const MAX_TIMEOUT_SECS: u64 = 300;

/// One receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Letters, digits, `-` and `_`; unique. (An all-digit name from the environment arrives as a
    /// number; it is taken as its digits.)
    #[serde(deserialize_with = "super::string_or_integer")]
    pub name: String,
    /// https, or http to a loopback address.
    pub url: String,
    /// `whsec_` + base64 of 24 to 64 bytes.
    pub secret: Secret,
    /// Event types to send; empty: every type.
    #[serde(default)]
    pub events: Vec<String>,
    /// Platforms whose events to send; empty: every platform.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// One delivery attempt may take this long.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_timeout_secs() -> u64 {
    15
}

/// The problems of the receivers; `source` says where the `webhooks` list came from.
pub(super) fn validate(receivers: &[WebhookConfig], source: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, receiver) in receivers.iter().enumerate() {
        let mut problem = |key: &str, what: String| problems.push(format!("webhooks[{i}].{key} ({source}): {what}"));
        let name = &receiver.name;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            let shown: String = name.chars().take(64).collect();
            problem("name", format!("`{shown}` must be one or more letters, digits, `-` and `_`"));
        } else if let Some(first) = receivers[..i].iter().position(|r| &r.name == name) {
            problem("name", format!("`{name}` is also the name of webhooks[{first}]; names must be unique"));
        }
        if let Err(why) = url_allowed(&receiver.url) {
            problem("url", why);
        }
        if let Err(why) = SigningKey::from_secret(receiver.secret.expose()) {
            problem("secret", why.to_string());
        }
        for event in &receiver.events {
            if EventType::parse(event).is_none() {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                problem("events", format!("unknown event type `{event}`; known types: {}", known.join(", ")));
            }
        }
        for platform in &receiver.platforms {
            if platform.parse::<Platform>().is_err() {
                let known: Vec<&str> = Platform::ALL.iter().map(|p| p.as_str()).collect();
                problem("platforms", format!("unknown platform `{platform}`; known platforms: {}", known.join(", ")));
            }
        }
        if !(1..=MAX_TIMEOUT_SECS).contains(&receiver.timeout_secs) {
            problem("timeout_secs", format!("must be from 1 to {MAX_TIMEOUT_SECS}"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver(name: &str, url: &str, secret: &str) -> WebhookConfig {
        WebhookConfig {
            name: name.into(),
            url: url.into(),
            secret: Secret::new(secret),
            events: vec![],
            platforms: vec![],
            timeout_secs: 15,
        }
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn a_good_receiver_has_no_problems() {
        assert!(validate(&[receiver("crm-1_a", "https://crm.example.com/h", SECRET)], "file x").is_empty());
    }

    #[test]
    fn every_problem_names_its_key_and_source_and_never_the_secret() {
        let mut bad = receiver("crm one", "http://crm.example.com/h", "whsec_c2hvcnQ=");
        bad.events = vec!["message.received".into(), "message.deleted".into()];
        bad.platforms = vec!["telegram".into()];
        bad.timeout_secs = 0;
        let problems =
            validate(&[bad, receiver("x", "https://a", SECRET), receiver("x", "https://b", SECRET)], "file c");
        let text = problems.join("\n");
        assert!(text.contains("webhooks[0].name (file c): `crm one`"), "{text}");
        assert!(text.contains("webhooks[0].url (file c): `http://crm.example.com/h` is plain http"), "{text}");
        assert!(text.contains("webhooks[0].secret (file c): the part after `whsec_` decodes to 5 bytes"), "{text}");
        assert!(text.contains("webhooks[0].events (file c): unknown event type `message.deleted`"), "{text}");
        assert!(text.contains("webhooks[0].platforms (file c): unknown platform `telegram`"), "{text}");
        assert!(text.contains("webhooks[0].timeout_secs"), "{text}");
        assert!(text.contains("webhooks[2].name (file c): `x` is also the name of webhooks[1]"), "{text}");
        assert!(!text.contains("c2hvcnQ"), "the secret is never shown: {text}");
        assert_eq!(problems.len(), 7, "{text}");
    }
}
