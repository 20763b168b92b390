//! Every body of `../shared/realworld-webhooks/` (real payloads from other projects' test suites
//! and the platforms' SDKs: shapes nobody here chose), signed with the test's secret and posted
//! to a daemon on a fresh store of its own (the sources reuse ids across files).
//!
//! What each body must come to is worked out here from the body itself, independently of
//! Parley's parsers: every message it carries (WhatsApp `messages[]` and `message_echoes[]`,
//! Messenger `messaging[]`/`standby[]` entries with a `message.mid`, Viber `message` events) is
//! stored once, in a conversation, with the direction the platform means; the answer is 200;
//! nothing that carries a message goes to quarantine.
//!
//! The corpus is read from `PARLEY_REALWORLD_WEBHOOKS`, else `../shared/realworld-webhooks` beside
//! the repository (never copied into it); without it the test says so and checks nothing, and
//! `.ci/run` warns.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::*;

/// A message the body carries: its platform id and whether the business sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    id: String,
    outbound: bool,
    /// What the customer reads in it, where the body says (text, caption, reply title, emoji).
    text: Option<String>,
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The messages in a body, read straight from the platform's documented shape.
fn expected_messages(platform: &str, body: &Value) -> Vec<Expected> {
    let mut out = Vec::new();
    match platform {
        "whatsapp" => {
            for change in body["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|e| e["changes"].as_array().into_iter().flatten())
            {
                let value = &change["value"];
                for message in value["messages"].as_array().into_iter().flatten() {
                    // Edits and revokes change a message sent before; they are not messages of their own.
                    if matches!(message["type"].as_str(), Some("edit" | "revoke")) {
                        continue;
                    }
                    if let Some(id) = text_of(&message["id"]) {
                        out.push(Expected { id, outbound: false, text: whatsapp_text(message) });
                    }
                }
                for echo in value["message_echoes"].as_array().into_iter().flatten() {
                    if let Some(id) = text_of(&echo["id"]) {
                        out.push(Expected { id, outbound: true, text: whatsapp_text(echo) });
                    }
                }
            }
        }
        "facebook" => {
            for entry in body["entry"].as_array().into_iter().flatten() {
                for item in ["messaging", "standby"].iter().flat_map(|k| entry[*k].as_array().into_iter().flatten()) {
                    let message = &item["message"];
                    if message.get("is_deleted").and_then(Value::as_bool) == Some(true) {
                        continue;
                    }
                    if let Some(id) = text_of(&message["mid"]) {
                        out.push(Expected {
                            id,
                            outbound: message["is_echo"].as_bool() == Some(true),
                            text: message["text"].as_str().map(str::to_owned),
                        });
                    }
                }
            }
        }
        "viber" => {
            if body["event"] == "message"
                && let Some(id) = text_of(&body["message_token"])
            {
                out.push(Expected { id, outbound: false, text: body["message"]["text"].as_str().map(str::to_owned) });
            }
        }
        other => panic!("no reading of {other} bodies"),
    }
    // The same message twice in one body (a redelivery inside it) is stored once, as it came first.
    let mut seen = std::collections::HashSet::new();
    out.retain(|e| seen.insert(e.id.clone()));
    out
}

/// The words of a WhatsApp message, by its type (as Meta documents each).
fn whatsapp_text(message: &Value) -> Option<String> {
    let kind = message["type"].as_str()?;
    let part = &message[kind];
    let text = match kind {
        "text" => part["body"].as_str(),
        "image" | "video" | "document" | "sticker" => part["caption"].as_str(),
        "button" => part["text"].as_str(),
        "reaction" => part["emoji"].as_str(),
        "interactive" => {
            let reply = &part[part["type"].as_str()?];
            reply["title"].as_str().or(reply["body"].as_str())
        }
        _ => None,
    };
    text.filter(|t| !t.is_empty()).map(str::to_owned)
}

/// What happened to one body: None when it came out as its platform means, else why not.
async fn check(platform: &str, path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).expect("read a corpus file");
    let body: Value = serde_json::from_str(&text).expect("corpus files are JSON");
    let expected = expected_messages(platform, &body);
    let daemon = Daemon::start();
    let client = client();
    let (status, answer) = post_signed(&client, &daemon, platform, &text).await;
    if status != 200 {
        return Some(format!("answered {status}: {answer}"));
    }
    if answer.contains("quarantined") && !expected.is_empty() {
        return Some(format!("quarantined, though it carries {} message(s)", expected.len()));
    }
    let stored = all_messages(&client, &daemon).await;
    let mut problems = Vec::new();
    for want in &expected {
        let found: Vec<&Value> = stored.iter().filter(|m| m["platform_message_id"] == want.id.as_str()).collect();
        match found.as_slice() {
            [one] => {
                let direction = if want.outbound { "outbound" } else { "inbound" };
                if one["direction"] != direction {
                    problems.push(format!("{} stored as {}, not {direction}", want.id, one["direction"]));
                }
                if let Some(text) = &want.text
                    && !one["text"].as_str().is_some_and(|t| t.contains(text.as_str()))
                {
                    problems.push(format!("{} has text {}, not {text:?}", want.id, one["text"]));
                }
                if one["conversation_id"].as_str().is_none_or(str::is_empty) {
                    problems.push(format!("{} is in no conversation", want.id));
                }
            }
            [] => problems.push(format!("{} is not in any conversation", want.id)),
            many => problems.push(format!("{} is stored {} times", want.id, many.len())),
        }
    }
    if problems.is_empty() { None } else { Some(problems.join("; ")) }
}

#[tokio::test]
async fn every_real_world_body_is_stored_as_its_platform_means() {
    if !realworld_dir().is_dir() {
        eprintln!("the real-world webhook corpus is not here ({}); nothing to check", realworld_dir().display());
        return;
    }
    let mut results: BTreeMap<String, Option<String>> = BTreeMap::new();
    for platform in ["facebook", "whatsapp", "viber"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(realworld_dir().join(platform))
            .expect("../shared/realworld-webhooks is there")
            .map(|e| e.expect("a directory entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no {platform} bodies");
        for path in files {
            let name = format!("{platform}/{}", path.file_name().unwrap().to_string_lossy());
            results.insert(name, check(platform, &path).await);
        }
    }
    let report: Vec<String> =
        results.iter().filter_map(|(name, outcome)| outcome.as_ref().map(|why| format!("{name}: {why}"))).collect();
    assert!(report.is_empty(), "{} of {} bodies:\n{}", report.len(), results.len(), report.join("\n"));
}
