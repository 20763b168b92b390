//! The filtered conversation list: unread only, and a search over names, ids and messages that
//! pages through its budget without losing or repeating a conversation.

use super::*;
use crate::store::search::{SCAN_BUDGET, needle};

fn filtered(store: &Store, filter: &ConversationFilter, limit: usize) -> (Vec<String>, usize) {
    filtered_within(store, filter, limit, SCAN_BUDGET)
}

fn filtered_within(store: &Store, filter: &ConversationFilter, limit: usize, budget: usize) -> (Vec<String>, usize) {
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut cursor = None;
    loop {
        let page = store.conversations_within(filter, limit, cursor, budget).unwrap();
        pages += 1;
        seen.extend(page.items.iter().map(|c| c.contact_id.clone()));
        match page.next {
            Some(next) => cursor = Some(keys::decode_cursor(&next).unwrap()),
            None => return (seen, pages),
        }
    }
}

fn search(query: &str) -> ConversationFilter {
    ConversationFilter { query: needle(query), ..ConversationFilter::default() }
}

#[test]
fn a_search_finds_names_ids_and_any_message_not_only_the_last() {
    let (_dir, store) = temp_store();
    let named = InboundEvent { contact_name: Some("Peter Chang".into()), ..text_event("user-1", "m_1", 1_000, "hi") };
    store.ingest(&[named], Timestamp::from_millis(9)).unwrap();
    store.ingest(&[text_event("user-2", "m_2", 1_001, "Where is ORDER 1234?")], Timestamp::from_millis(9)).unwrap();
    store.ingest(&[text_event("user-2", "m_3", 1_002, "thanks")], Timestamp::from_millis(9)).unwrap();
    store.ingest(&[text_event("shop-777", "m_4", 1_003, "hello")], Timestamp::from_millis(9)).unwrap();

    assert_eq!(filtered(&store, &search("peter"), 10).0, ["user-1"]);
    assert_eq!(filtered(&store, &search("order 1234"), 10).0, ["user-2"], "an older message, any case");
    assert_eq!(filtered(&store, &search("777"), 10).0, ["shop-777"]);
    assert!(filtered(&store, &search("nobody said this"), 10).0.is_empty());
    let platform = ConversationFilter { platform: Some(Platform::Viber), ..search("peter") };
    assert!(filtered(&store, &platform, 10).0.is_empty(), "the platform filter still applies");
}

#[test]
fn unread_only_leaves_out_what_was_read() {
    let (_dir, store) = temp_store();
    for i in 0..4 {
        store
            .ingest(&[text_event(&format!("user-{i}"), &format!("m_{i}"), 1_000 + i, "hi")], Timestamp::from_millis(9))
            .unwrap();
    }
    store
        .mark_read(&keys::conversation_id(Platform::Facebook, "page-1", "user-2"), Timestamp::from_millis(10))
        .unwrap();
    let unread = ConversationFilter { unread_only: true, ..ConversationFilter::default() };
    assert_eq!(filtered(&store, &unread, 2).0, ["user-3", "user-1", "user-0"]);
}

#[test]
fn a_search_over_more_than_its_budget_pages_through_everything_once() {
    let (_dir, store) = temp_store();
    // More conversations than one page may examine (each costs two records: itself and its one
    // message); every 25th says the word.
    let (total, budget) = (1_000, 300);
    let events: Vec<_> = (0..total)
        .map(|i| {
            let text = if i % 25 == 0 { "the parcel is here" } else { "hello" };
            text_event(&format!("user-{i:05}"), &format!("m_{i}"), 1_000 + i as i64, text)
        })
        .collect();
    for chunk in events.chunks(500) {
        store.ingest(chunk, Timestamp::from_millis(9)).unwrap();
    }
    let (found, pages) = filtered_within(&store, &search("parcel"), 50, budget);
    let mut expected: Vec<String> = (0..total).filter(|i| i % 25 == 0).map(|i| format!("user-{i:05}")).collect();
    expected.reverse();
    assert_eq!(found, expected, "newest first, each once");
    assert!(pages >= 2 * total / budget, "the budget cut the walk into pages ({pages})");
    // A page cut short may be empty but still says where to go on.
    let first = store.conversations_within(&search("nobody said this"), 50, None, budget).unwrap();
    assert!(first.items.is_empty());
    assert!(first.next.is_some(), "more to walk");
}
