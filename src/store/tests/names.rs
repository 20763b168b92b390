//! Names looked up after the fact: which conversations want one, and storing one only where none is.

use super::*;
use crate::feed::EventType;

fn all_events(store: &Store) -> Vec<crate::feed::Event> {
    store.events_after(0, 10_000).unwrap().events
}

fn viber_event(contact: &str, name: &str) -> InboundEvent {
    InboundEvent {
        platform: Platform::Viber,
        contact_name: Some(name.into()),
        ..text_event(contact, &format!("v_{contact}"), 1_000, "hi")
    }
}

#[test]
fn a_new_messenger_conversation_wants_a_name_once_per_body_and_a_named_one_does_not() {
    let (_dir, store) = temp_store();
    let events = [
        text_event("user-1", "m_1", 1_000, "hello"),
        text_event("user-1", "m_2", 1_001, "again"),
        text_event("user-2", "m_3", 1_002, "hi"),
    ];
    store.ingest(&events, Timestamp::from_millis(5_000)).unwrap();
    let unnamed = store.unnamed_contacts(&events).unwrap();
    let contacts: Vec<&str> = unnamed.iter().map(|u| u.contact_id.as_str()).collect();
    assert_eq!(contacts, ["user-1", "user-2"]);
    assert_eq!(unnamed[0].conversation_id, keys::conversation_id(Platform::Facebook, "page-1", "user-1"));

    assert!(store.name_contact(&unnamed[0].conversation_id, "Peter Chang", Timestamp::from_millis(6_000)).unwrap());
    let later = [text_event("user-1", "m_4", 2_000, "still there?")];
    store.ingest(&later, Timestamp::from_millis(7_000)).unwrap();
    assert!(store.unnamed_contacts(&later).unwrap().is_empty(), "named: no second lookup, this run or the next");
}

#[test]
fn platforms_whose_webhooks_carry_names_want_no_lookup() {
    let (_dir, store) = temp_store();
    let events = [InboundEvent { contact_name: None, ..viber_event("viber-user", "Ivan") }];
    store.ingest(&events, Timestamp::from_millis(5_000)).unwrap();
    assert!(store.unnamed_contacts(&events).unwrap().is_empty());
}

#[test]
fn a_looked_up_name_is_one_write_with_its_event_and_keeps_the_conversations_place() {
    let (_dir, store) = temp_store();
    store.ingest(&[text_event("user-1", "m_1", 1_000, "hello")], Timestamp::from_millis(5_000)).unwrap();
    let id = keys::conversation_id(Platform::Facebook, "page-1", "user-1");
    let before = store.conversation(&id).unwrap().unwrap();
    let events_before = all_events(&store).len();

    assert!(store.name_contact(&id, "  Peter Chang ", Timestamp::from_millis(6_000)).unwrap());
    let after = store.conversation(&id).unwrap().unwrap();
    assert_eq!(after.contact_name.as_deref(), Some("Peter Chang"));
    assert_eq!(after.updated_at, before.updated_at, "a name does not move the conversation up");
    assert_eq!(after.unread, before.unread);
    let events = all_events(&store);
    assert_eq!(events.len(), events_before + 1);
    let event = events.last().unwrap();
    assert_eq!(event.kind, EventType::ConversationUpdated);
    assert_eq!(event.conversation_id.as_deref(), Some(id.as_str()));
    assert_eq!(event.data_value()["conversation"]["contact_name"], "Peter Chang");
    assert_eq!(event.at, Timestamp::from_millis(6_000));
    let page = store.conversations_page(None, 10, None).unwrap();
    assert_eq!(page.items.len(), 1, "listed once, at its old place");
    assert_eq!(page.items[0].contact_name.as_deref(), Some("Peter Chang"));
}

#[test]
fn a_name_already_there_wins_and_nothing_is_written() {
    let (_dir, store) = temp_store();
    store.ingest(&[viber_event("viber-user", "Ivan P.")], Timestamp::from_millis(5_000)).unwrap();
    let id = keys::conversation_id(Platform::Viber, "page-1", "viber-user");
    let events_before = all_events(&store).len();
    assert!(!store.name_contact(&id, "Someone Else", Timestamp::from_millis(6_000)).unwrap());
    assert_eq!(store.conversation(&id).unwrap().unwrap().contact_name.as_deref(), Some("Ivan P."));
    assert_eq!(all_events(&store).len(), events_before);

    let fb = keys::conversation_id(Platform::Facebook, "page-1", "user-1");
    store.ingest(&[text_event("user-1", "m_1", 1_000, "hello")], Timestamp::from_millis(5_000)).unwrap();
    assert!(store.name_contact(&fb, "First", Timestamp::from_millis(6_000)).unwrap());
    assert!(!store.name_contact(&fb, "Second", Timestamp::from_millis(7_000)).unwrap(), "the first name stays");
    assert_eq!(store.conversation(&fb).unwrap().unwrap().contact_name.as_deref(), Some("First"));
}

#[test]
fn no_conversation_or_an_empty_name_writes_nothing() {
    let (_dir, store) = temp_store();
    assert!(!store.name_contact("c-none", "Peter", Timestamp::from_millis(1)).unwrap());
    store.ingest(&[text_event("user-1", "m_1", 1_000, "hello")], Timestamp::from_millis(5_000)).unwrap();
    let id = keys::conversation_id(Platform::Facebook, "page-1", "user-1");
    assert!(!store.name_contact(&id, "   ", Timestamp::from_millis(6_000)).unwrap());
    assert_eq!(store.conversation(&id).unwrap().unwrap().contact_name, None);
}
