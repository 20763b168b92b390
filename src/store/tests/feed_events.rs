//! The event log: one event per change, numbered without gaps, in the change's own write.

use super::*;
use crate::feed::EventType;
use crate::store::tests::outbound::{draft, store_with_customer, target};

fn types(events: &[crate::feed::Event]) -> Vec<EventType> {
    events.iter().map(|e| e.kind).collect()
}

fn all_events(store: &Store) -> Vec<crate::feed::Event> {
    store.events_after(0, 10_000).unwrap().events
}

#[test]
fn an_inbound_message_is_one_received_event_and_one_conversation_event_and_a_redelivery_none() {
    let (_dir, store) = temp_store();
    store.ingest(&[text_event("user-1", "m_1", 1_000, "hello")], Timestamp::from_millis(5_000)).unwrap();
    let events = all_events(&store);
    assert_eq!(types(&events), [EventType::MessageReceived, EventType::ConversationUpdated]);
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(events[0].data_value()["message"]["text"], "hello");
    assert_eq!(events[0].data_value()["message"]["status"], "received");
    assert_eq!(events[1].data_value()["conversation"]["unread"], 1);
    assert_eq!(events[0].conversation_id, events[1].conversation_id);
    assert_eq!(events[0].platform, Platform::Facebook);

    // The same webhook again: stored once, no event.
    store.ingest(&[text_event("user-1", "m_1", 1_000, "hello")], Timestamp::from_millis(6_000)).unwrap();
    assert_eq!(all_events(&store).len(), 2);
    assert_eq!(store.newest_event_seq().unwrap(), 2);

    // A second message: its own two events, numbered on.
    store.ingest(&[text_event("user-1", "m_2", 2_000, "again")], Timestamp::from_millis(7_000)).unwrap();
    let events = all_events(&store);
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(events[3].data_value()["conversation"]["unread"], 2);
}

#[test]
fn a_group_of_webhooks_numbers_its_events_in_order_and_reports_them_once_committed() {
    let (_dir, store) = temp_store();
    let a = [text_event("user-1", "m_1", 1_000, "one")];
    let b = [text_event("user-2", "m_2", 1_001, "two")];
    store.ingest_group(&[&a, &b], Timestamp::from_millis(5_000)).unwrap();
    let committed = store.take_committed_events();
    assert_eq!(committed.iter().map(|p| p.event.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    let stored = all_events(&store);
    assert_eq!(committed.iter().map(|p| p.event.clone()).collect::<Vec<_>>(), stored);
    // The stored record is the JSON readers are sent.
    for (published, event) in committed.iter().zip(&stored) {
        assert_eq!(published.json(), serde_json::to_string(event).unwrap());
    }
    assert!(store.take_committed_events().is_empty(), "taken once");
}

#[test]
fn a_reply_and_each_of_its_status_steps_are_events() {
    let (_dir, store) = store_with_customer();
    let before = all_events(&store).len();
    let (message, entry) =
        store.enqueue(&target(), &draft("on its way"), &account(), Timestamp::from_millis(10_000), 60_000).unwrap();
    store.mark_sending(&message.id).unwrap();
    store.mark_sending(&message.id).unwrap(); // no step: no event
    store.mark_sent(&entry, "wamid.1", Timestamp::from_millis(10_500)).unwrap();
    let events = all_events(&store).split_off(before);
    assert_eq!(
        types(&events),
        [EventType::MessageCreated, EventType::ConversationUpdated, EventType::MessageStatus, EventType::MessageStatus]
    );
    assert_eq!(events[0].data_value()["message"]["status"], "queued");
    assert_eq!(events[2].data_value()["message"]["status"], "sending");
    assert_eq!(events[3].data_value()["message"]["status"], "sent");
    assert_eq!(events[3].data_value()["message"]["platform_message_id"], "wamid.1");
}

#[test]
fn the_log_survives_reopening_and_numbering_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = Store::open(&path, 8 << 20).unwrap();
        store.ingest(&[text_event("user-1", "m_1", 1_000, "hello")], Timestamp::from_millis(5_000)).unwrap();
        store.flush_blocking().unwrap();
    }
    let store = reopen(&path).unwrap();
    assert_eq!(store.newest_event_seq().unwrap(), 2);
    store.ingest(&[text_event("user-1", "m_2", 2_000, "more")], Timestamp::from_millis(6_000)).unwrap();
    assert_eq!(all_events(&store).iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
}

#[test]
fn pruning_removes_only_the_oldest_writes_and_never_the_newest() {
    let (_dir, store) = temp_store();
    // Five writes of two events each: records at seq 1, 3, 5, 7, 9.
    for i in 0..5 {
        store
            .ingest(&[text_event("user-1", &format!("m_{i}"), 1_000 + i, "x")], Timestamp::from_millis(5_000))
            .unwrap();
    }
    assert_eq!(store.newest_event_seq().unwrap(), 10);
    // Everything is older than "now + 1 day"; at most 3 records per batch.
    let later = Timestamp::from_millis(Timestamp::now().as_millis() + 86_400_000);
    assert_eq!(store.prune_events(later, 3).unwrap(), 3);
    assert_eq!(store.oldest_event_seq().unwrap(), Some(7));
    assert_eq!(store.prune_events(later, 100).unwrap(), 1, "all but the newest record");
    assert_eq!(store.oldest_event_seq().unwrap(), Some(9));
    assert_eq!(store.newest_event_seq().unwrap(), 10);
    // A write stored now is younger than an hour ago; the record before it is not, and it goes.
    let earlier = Timestamp::from_millis(Timestamp::now().as_millis() - 3_600_000);
    store.ingest(&[text_event("user-1", "m_9", 2_000, "x")], Timestamp::now()).unwrap();
    assert_eq!(store.prune_events(earlier, 100).unwrap(), 1);
    assert_eq!(store.prune_events(earlier, 100).unwrap(), 0);
    let page = store.events_after(0, 100).unwrap();
    assert_eq!(page.oldest, Some(11));
    assert_eq!(page.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [11, 12]);
    assert!(page.events.iter().all(|e| e.at >= earlier), "an event's time is its write's");
}

#[test]
fn a_read_can_start_and_stop_inside_a_write_of_many_events() {
    let (_dir, store) = temp_store();
    let bodies: Vec<Vec<InboundEvent>> =
        (0..8).map(|i| vec![text_event(&format!("user-{i}"), &format!("m_{i}"), 1_000 + i, "x")]).collect();
    let refs: Vec<&[InboundEvent]> = bodies.iter().map(Vec::as_slice).collect();
    store.ingest_group(&refs, Timestamp::from_millis(5_000)).unwrap(); // seq 1..=16, one record
    store.ingest(&[text_event("user-1", "m_x", 3_000, "y")], Timestamp::from_millis(6_000)).unwrap(); // 17, 18
    let seqs =
        |after, limit| -> Vec<u64> { store.events_after(after, limit).unwrap().events.iter().map(|e| e.seq).collect() };
    assert_eq!(seqs(0, 3), [1, 2, 3]);
    assert_eq!(seqs(5, 3), [6, 7, 8]);
    assert_eq!(seqs(14, 10), [15, 16, 17, 18], "across the records' boundary");
    assert_eq!(seqs(16, 10), [17, 18]);
    assert_eq!(seqs(17, 10), [18]);
    assert_eq!(seqs(18, 10), Vec::<u64>::new());
    assert_eq!(seqs(500, 10), Vec::<u64>::new());
}

#[test]
fn a_channel_status_is_an_event_without_a_conversation() {
    let (_dir, store) = temp_store();
    store
        .record_channel_status(&ChannelStatusChange {
            platform: Platform::Viber,
            ready: false,
            reason: Some("token rejected".into()),
            token_expires_in_secs: None,
        })
        .unwrap();
    let events = all_events(&store);
    assert_eq!(types(&events), [EventType::ChannelStatus]);
    assert_eq!(events[0].conversation_id, None);
    assert_eq!(events[0].data_value()["channel"]["platform"], "viber");
    assert_eq!(events[0].data_value()["channel"]["ready"], false);
}
