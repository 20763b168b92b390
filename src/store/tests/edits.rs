//! Edits and revokes change the stored message and keep what it said before.

use serde_json::json;

use super::*;
use crate::feed::EventType;

fn change(kind: EventKind, key: &str, sender: &str, at_ms: i64) -> InboundEvent {
    InboundEvent {
        kind,
        dedup_key: key.into(),
        sender_id: Some(sender.into()),
        occurred_at: Timestamp::from_millis(at_ms),
        raw: json!({ "key": key }),
        ..text_event("user-1", "unused", at_ms, "")
    }
}

fn edit(mid: &str, text: &str, key: &str, at_ms: i64) -> InboundEvent {
    let content = MessageContent::text(ContentKind::Text, text);
    change(EventKind::Edit { platform_message_id: mid.into(), content }, key, "user-1", at_ms)
}

fn stored(store: &Store, mid: &str) -> Message {
    store.message_by_platform_id(Platform::Facebook, mid).unwrap().expect("stored")
}

#[test]
fn an_edit_replaces_the_text_keeps_the_old_one_and_is_an_event() {
    let (_dir, store) = temp_store();
    store.ingest(&[text_event("user-1", "m_1", 1_000, "see you at 5")], Timestamp::from_millis(1_000)).unwrap();
    let before = store.newest_event_seq().unwrap();
    store.ingest(&[edit("m_1", "see you at 6", "edit:m_1:1", 2_000)], Timestamp::from_millis(2_000)).unwrap();
    let message = stored(&store, "m_1");
    assert_eq!(message.text.as_deref(), Some("see you at 6"));
    assert_eq!(message.previous.len(), 1);
    assert_eq!(message.previous[0].text.as_deref(), Some("see you at 5"));
    assert_eq!(message.previous[0].until, Timestamp::from_millis(2_000));
    assert_eq!(message.revoked_at, None);
    let conversation = store.conversation(&message.conversation_id).unwrap().unwrap();
    assert_eq!(conversation.last_message_text.as_deref(), Some("see you at 6"), "the preview follows");
    assert_eq!(conversation.unread, 1, "an edit is not a new message");
    let events = store.events_after(before, 10).unwrap().events;
    let kinds: Vec<EventType> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventType::MessageUpdated, EventType::ConversationUpdated]);
    assert_eq!(events[0].data_value()["message"]["text"], "see you at 6");
    // A redelivered edit changes nothing more.
    store.ingest(&[edit("m_1", "see you at 6", "edit:m_1:1", 2_000)], Timestamp::from_millis(2_500)).unwrap();
    assert_eq!(stored(&store, "m_1").previous.len(), 1);
}

#[test]
fn a_revoke_blanks_the_message_and_keeps_its_last_words() {
    let (_dir, store) = temp_store();
    store.ingest(&[text_event("user-1", "m_1", 1_000, "oops, wrong chat")], Timestamp::from_millis(1_000)).unwrap();
    let revoke = change(EventKind::Revoke { platform_message_id: "m_1".into() }, "deleted:m_1", "user-1", 3_000);
    store.ingest(&[revoke], Timestamp::from_millis(3_000)).unwrap();
    let message = stored(&store, "m_1");
    assert_eq!((message.text.as_deref(), message.revoked_at), (None, Some(Timestamp::from_millis(3_000))));
    assert_eq!(message.previous[0].text.as_deref(), Some("oops, wrong chat"));
    let conversation = store.conversation(&message.conversation_id).unwrap().unwrap();
    assert_eq!(conversation.last_message_text.as_deref(), Some("[deleted]"));
}

#[test]
fn a_change_of_a_message_not_stored_or_not_the_senders_own_changes_nothing() {
    let (_dir, store) = temp_store();
    store.ingest(&[text_event("user-1", "m_1", 1_000, "mine")], Timestamp::from_millis(1_000)).unwrap();
    let outcome =
        store.ingest(&[edit("m_unknown", "x", "edit:m_unknown:1", 2_000)], Timestamp::from_millis(2_000)).unwrap();
    assert_eq!(outcome.stored, 1, "the event itself is kept");
    let content = MessageContent::text(ContentKind::Text, "not yours");
    let forged =
        change(EventKind::Edit { platform_message_id: "m_1".into(), content }, "edit:m_1:9", "someone-else", 3_000);
    store.ingest(&[forged], Timestamp::from_millis(3_000)).unwrap();
    let message = stored(&store, "m_1");
    assert_eq!((message.text.as_deref(), message.previous.len()), (Some("mine"), 0));
}
