//! One WhatsApp user, one conversation, whichever of their ids (number, business-scoped id) a
//! webhook carries (`store/contacts.rs`).

use serde_json::json;

use super::outbound::{draft, target};
use super::*;

const PHONE: &str = "5511987654321";
const BSUID: &str = "US.13491208655302741918";

/// A WhatsApp text from a user known by `id`, with `alias` as their other id.
fn whatsapp_text(id: &str, alias: Option<&str>, wamid: &str, at_ms: i64) -> InboundEvent {
    InboundEvent {
        platform: Platform::Whatsapp,
        account_id: "phone-1".into(),
        contact_id: Some(id.into()),
        contact_alias: alias.map(str::to_owned),
        contact_name: None,
        sender_id: Some(id.into()),
        dedup_key: format!("wamid:{wamid}"),
        occurred_at: Timestamp::from_millis(at_ms),
        kind: EventKind::Message {
            direction: Direction::Inbound,
            platform_message_id: wamid.into(),
            content: MessageContent::text(ContentKind::Text, wamid),
        },
        raw: json!({ "id": wamid }),
    }
}

fn conversation_of(store: &Store, wamid: &str) -> String {
    store.message_by_platform_id(Platform::Whatsapp, wamid).unwrap().expect("stored").conversation_id
}

fn ingest(store: &Store, event: InboundEvent) {
    store.ingest(&[event], Timestamp::from_millis(50_000)).unwrap();
}

#[test]
fn a_user_seen_with_both_ids_first_is_one_conversation_under_the_number() {
    let (_dir, store) = temp_store();
    ingest(&store, whatsapp_text(PHONE, Some(BSUID), "w1", 1_000));
    ingest(&store, whatsapp_text(BSUID, None, "w2", 2_000));
    ingest(&store, whatsapp_text(PHONE, None, "w3", 3_000));
    let conversation = conversation_of(&store, "w1");
    assert_eq!(conversation_of(&store, "w2"), conversation);
    assert_eq!(conversation_of(&store, "w3"), conversation);
    assert_eq!(store.conversation(&conversation).unwrap().unwrap().contact_id, PHONE);
    assert_eq!(store.counts().unwrap().conversations, 1);
}

#[test]
fn a_user_who_first_withheld_the_number_stays_in_that_conversation_when_it_shows() {
    let (_dir, store) = temp_store();
    ingest(&store, whatsapp_text(BSUID, None, "w1", 1_000));
    // The number shows up later (with the BSUID): the same conversation, not a new one ...
    ingest(&store, whatsapp_text(PHONE, Some(BSUID), "w2", 2_000));
    // ... and from then on the number alone finds it too, for webhooks and for the API.
    ingest(&store, whatsapp_text(PHONE, None, "w3", 3_000));
    let conversation = conversation_of(&store, "w1");
    assert_eq!(conversation_of(&store, "w2"), conversation);
    assert_eq!(conversation_of(&store, "w3"), conversation);
    assert_eq!(store.conversation(&conversation).unwrap().unwrap().contact_id, BSUID);
    let (message, entry) =
        store.enqueue(&target(), &draft("hello"), &account(), Timestamp::from_millis(4_000), 60_000).unwrap();
    assert_eq!(message.conversation_id, conversation);
    assert_eq!(entry.message.recipient, BSUID, "a reply goes to the id the conversation is keyed by");
    assert_eq!(store.counts().unwrap().conversations, 1);
}

#[test]
fn ids_are_per_account_and_other_platforms_are_untouched() {
    let (_dir, store) = temp_store();
    ingest(&store, whatsapp_text(PHONE, Some(BSUID), "w1", 1_000));
    let mut elsewhere = whatsapp_text(BSUID, None, "w2", 2_000);
    elsewhere.account_id = "phone-2".into();
    ingest(&store, elsewhere);
    assert_ne!(conversation_of(&store, "w1"), conversation_of(&store, "w2"));
    let mut messenger = text_event(BSUID, "m1", 3_000, "hi");
    messenger.contact_alias = Some(PHONE.into());
    store.ingest(&[messenger], Timestamp::from_millis(50_000)).unwrap();
    let stored = store.message_by_platform_id(Platform::Facebook, "m1").unwrap().unwrap();
    assert_eq!(store.conversation(&stored.conversation_id).unwrap().unwrap().contact_id, BSUID);
}

#[test]
fn the_ids_are_learned_in_the_same_write_as_the_message() {
    let (dir, store) = temp_store();
    ingest(&store, whatsapp_text(BSUID, None, "w1", 1_000));
    ingest(&store, whatsapp_text(PHONE, Some(BSUID), "w2", 2_000));
    store.flush_blocking().unwrap();
    drop(store);
    let store = reopen(&dir.path().join("db")).unwrap();
    ingest(&store, whatsapp_text(PHONE, None, "w3", 3_000));
    assert_eq!(conversation_of(&store, "w3"), conversation_of(&store, "w1"));
}

#[test]
fn two_conversations_of_one_person_are_merged_into_the_older_when_a_webhook_names_both_ids() {
    let (_dir, store) = temp_store();
    // History under the number, from before BSUIDs ...
    ingest(&store, whatsapp_text(PHONE, None, "w1", 1_000));
    // ... then the person writes without it (a username): a conversation of its own, answered.
    ingest(&store, whatsapp_text(BSUID, None, "w2", 2_000));
    let by_bsuid = ConversationTarget { contact_id: BSUID.into(), ..target() };
    let (reply, _) =
        store.enqueue(&by_bsuid, &draft("Olá!"), &account(), Timestamp::from_millis(2_500), 60_000).unwrap();
    let (older, younger) = (conversation_of(&store, "w1"), conversation_of(&store, "w2"));
    assert_ne!(older, younger);
    assert_eq!(store.counts().unwrap().conversations, 2);
    let seq_before = store.newest_event_seq().unwrap();

    // A webhook with both ids: one person, one conversation, the older one.
    ingest(&store, whatsapp_text(PHONE, Some(BSUID), "w3", 3_000));
    for wamid in ["w1", "w2", "w3"] {
        assert_eq!(conversation_of(&store, wamid), older, "{wamid}");
    }
    assert_eq!(store.message(&reply.id).unwrap().unwrap().conversation_id, older);
    assert_eq!(store.conversation(&younger).unwrap(), None);
    let merged = store.conversation(&older).unwrap().unwrap();
    assert_eq!((merged.contact_id.as_str(), merged.unread), (PHONE, 2), "w1 and w3 unread; the reply read w2");
    let texts: Vec<_> = store.messages_page(&older, 10, None).unwrap().items.into_iter().map(|m| m.text).collect();
    assert_eq!(texts, [Some("w3".into()), Some("Olá!".into()), Some("w2".into()), Some("w1".into())]);
    let outbox = store.outbox_entries(Platform::Whatsapp).unwrap();
    assert_eq!(outbox.iter().map(|e| e.conversation_id.as_str()).collect::<Vec<_>>(), [older.as_str()]);
    let counts = store.counts().unwrap();
    assert_eq!(counts.conversations, 1);
    assert_eq!(counts.conversations as u64, store.table(TreeId::Conversations).count_by_scanning().unwrap());
    let page = store.conversations_page(None, 10, None).unwrap();
    assert_eq!(page.items.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [older.as_str()]);
    let events = store.events_after(seq_before, 100).unwrap().events;
    let merged_event = events.iter().find(|e| e.kind == crate::feed::EventType::ConversationMerged).expect("an event");
    let data: serde_json::Value = serde_json::from_str(merged_event.data.get()).unwrap();
    assert_eq!(
        (data["from"].as_str(), data["conversation"]["id"].as_str()),
        (Some(younger.as_str()), Some(older.as_str()))
    );

    // From then on either id alone finds it, for webhooks and for the API.
    ingest(&store, whatsapp_text(BSUID, None, "w4", 4_000));
    assert_eq!(conversation_of(&store, "w4"), older);
    let (again, _) =
        store.enqueue(&by_bsuid, &draft("Mais uma"), &account(), Timestamp::from_millis(4_500), 60_000).unwrap();
    assert_eq!(again.conversation_id, older);
    assert_eq!(store.counts().unwrap().conversations, 1);
}
