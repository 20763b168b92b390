//! The parse → store → read-back properties: every event's times are believable, every event and
//! record round-trips through JSON, everything stored reads back through the API types (what
//! `GET /api/conversations` and `GET /api/conversations/{id}/messages` serialise), and the store
//! never meets a record it cannot decode.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

use parley::model::{Conversation, InboundEvent, Message, Platform, Timestamp};
use parley::store::{Store, keys};

/// A fresh store in `dir` (small cache: the harness recreates it every so many bodies).
pub fn open(dir: &Path) -> Store {
    Store::open(&dir.join("db"), 8 << 20).expect("open a fuzz store")
}

/// What the API answers for a conversation listing, decoded again.
#[derive(Deserialize, Serialize, PartialEq, Debug)]
struct ConversationsPage {
    conversations: Vec<Conversation>,
    next: Option<String>,
}

/// What the API answers for a message listing, decoded again.
#[derive(Deserialize, Serialize, PartialEq, Debug)]
struct MessagesPage {
    messages: Vec<Message>,
    next: Option<String>,
}

/// Checks what parsing produced, before it is stored.
pub fn check_events(events: &[InboundEvent], received_at: Timestamp) -> Result<(), String> {
    for event in events {
        if !event.occurred_at.is_plausible_event_time(received_at) {
            return Err(format!(
                "event `{}` is dated {}, outside the window of {received_at}",
                event.dedup_key, event.occurred_at
            ));
        }
        if let parley::model::EventKind::Receipt(receipt) = &event.kind
            && let Some(watermark) = receipt.watermark
            && !watermark.is_plausible_event_time(received_at)
        {
            return Err(format!("watermark {watermark} is outside the window of {received_at}"));
        }
        round_trip(event, "InboundEvent")?;
    }
    Ok(())
}

/// `value` encoded and decoded again is equal to itself.
fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(
    value: &T,
    what: &str,
) -> Result<(), String> {
    let text = serde_json::to_string(value).map_err(|e| format!("{what} does not encode: {e}"))?;
    let back: T = serde_json::from_str(&text).map_err(|e| format!("{what} does not decode: {e}: {}", clip(&text)))?;
    if &back == value { Ok(()) } else { Err(format!("{what} changes through JSON: {value:?} became {back:?}")) }
}

/// Reads back what storing one body's events touched: each event, its message, its
/// conversation, and the conversation's newest messages through the API types.
pub fn read_back(store: &Store, events: &[InboundEvent]) -> Result<(), String> {
    for event in events {
        let stored = store
            .event(event.platform, &event.dedup_key)
            .map_err(|e| format!("the stored event `{}` does not read back: {e}", event.dedup_key))?;
        if stored.is_none() {
            return Err(format!("the event `{}` was not stored", event.dedup_key));
        }
        if let parley::model::EventKind::Message { platform_message_id, .. } = &event.kind {
            store
                .message_by_platform_id(event.platform, platform_message_id)
                .map_err(|e| format!("the message `{platform_message_id}` does not read back: {e}"))?;
        }
        let Some(contact) = &event.contact_id else { continue };
        let id = keys::conversation_id(event.platform, &event.account_id, contact);
        let conversation = store.conversation(&id).map_err(|e| format!("conversation {id} does not read back: {e}"))?;
        if let Some(conversation) = conversation {
            check_conversation(&conversation)?;
            let page = store.messages_page(&id, 10, None).map_err(|e| format!("messages of {id}: {e}"))?;
            api_round_trip_messages(&page.items, page.next)?;
        }
    }
    unreadable(store)
}

/// Every conversation and every message in the store, page by page as the API would list them.
pub fn read_everything(store: &Store) -> Result<(usize, usize), String> {
    let (mut conversations, mut messages) = (0, 0);
    for platform in
        [None, Some(Platform::Facebook), Some(Platform::Whatsapp), Some(Platform::Viber), Some(Platform::Linkedin)]
    {
        let mut before = None;
        loop {
            let page =
                store.conversations_page(platform, 200, before).map_err(|e| format!("conversation list: {e}"))?;
            let listed =
                serde_json::to_vec(&json!({ "conversations": page.items, "next": page.next })).expect("encodes");
            let decoded: ConversationsPage = serde_json::from_slice(&listed).map_err(|e| {
                format!("the conversation list does not decode: {e}: {}", clip(&String::from_utf8_lossy(&listed)))
            })?;
            if decoded.conversations != page.items {
                return Err("the conversation list changes through JSON".into());
            }
            for conversation in &page.items {
                check_conversation(conversation)?;
                if platform.is_none() {
                    conversations += 1;
                    messages += all_messages(store, &conversation.id)?;
                }
            }
            match page.next.as_deref().map(keys::decode_cursor) {
                Some(Some(cursor)) => before = Some(cursor),
                Some(None) => return Err(format!("the cursor {:?} does not decode", page.next)),
                None => break,
            }
        }
    }
    store.quarantined().map_err(|e| format!("quarantine does not read back: {e}"))?;
    unreadable(store)?;
    Ok((conversations, messages))
}

fn all_messages(store: &Store, conversation_id: &str) -> Result<usize, String> {
    let (mut count, mut before) = (0, None);
    loop {
        let page = store.messages_page(conversation_id, 200, before).map_err(|e| format!("messages: {e}"))?;
        count += page.items.len();
        for message in &page.items {
            let one = store.message(&message.id).map_err(|e| format!("message {}: {e}", message.id))?;
            if one.as_ref() != Some(message) {
                return Err(format!("message {} reads differently alone", message.id));
            }
        }
        let next = page.next.clone();
        api_round_trip_messages(&page.items, page.next)?;
        match next.as_deref().map(keys::decode_cursor) {
            Some(Some(cursor)) => before = Some(cursor),
            Some(None) => return Err(format!("the cursor {next:?} does not decode")),
            None => return Ok(count),
        }
    }
}

fn check_conversation(conversation: &Conversation) -> Result<(), String> {
    let response = serde_json::to_vec(conversation).expect("encodes");
    let decoded: Conversation = serde_json::from_slice(&response)
        .map_err(|e| format!("conversation {} does not decode: {e}", conversation.id))?;
    if &decoded != conversation {
        return Err(format!("conversation {} changes through JSON: {conversation:?} / {decoded:?}", conversation.id));
    }
    Ok(())
}

fn api_round_trip_messages(messages: &[Message], next: Option<String>) -> Result<(), String> {
    let listed = serde_json::to_vec(&json!({ "messages": messages, "next": next })).expect("encodes");
    let decoded: MessagesPage = serde_json::from_slice(&listed)
        .map_err(|e| format!("the message list does not decode: {e}: {}", clip(&String::from_utf8_lossy(&listed))))?;
    if decoded.messages != messages {
        let first = decoded.messages.iter().zip(messages).find(|(a, b)| a != b);
        return Err(format!("the message list changes through JSON: {first:?}"));
    }
    for message in messages {
        if !message.sent_at.is_plausible_event_time(message.received_at) {
            return Err(format!(
                "message {} is dated {} though it was stored at {}",
                message.id, message.sent_at, message.received_at
            ));
        }
    }
    Ok(())
}

fn unreadable(store: &Store) -> Result<(), String> {
    match store.unreadable_records() {
        0 => Ok(()),
        n => Err(format!("the store met {n} record(s) it cannot decode")),
    }
}

/// The start of a long text, for a failure message.
fn clip(text: &str) -> String {
    text.chars().take(300).collect()
}
