use serde_json::json;

use super::*;
use crate::model::{ContentKind, MessageContent, Receipt, ReceiptKind};

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db"), 8 << 20).unwrap();
    (dir, store)
}

/// An account that every platform's request builder takes (for `Store::enqueue`'s validation).
fn account() -> crate::platform::SendAccount {
    crate::platform::SendAccount {
        api_base: "http://127.0.0.1:9".into(),
        // LinkedIn's builder needs an organization URN; the others take any id.
        account_id: "urn:li:organization:2414183".into(),
        sender_name: "Parley".into(),
        api_version: "202406".into(),
    }
}

/// Opens a store whose previous handle was just dropped (sled's background threads may hold the
/// file lock a moment longer).
fn reopen(path: &std::path::Path) -> Result<Store, StoreError> {
    Store::reopen(path, 8 << 20, std::time::Duration::from_secs(10))
}

#[test]
fn a_store_held_open_elsewhere_is_reported_as_locked_in_one_plain_sentence() {
    let (dir, _held) = temp_store();
    let error = match Store::open(&dir.path().join("db"), 8 << 20) {
        Err(e) => e,
        Ok(_) => panic!("a second open of a held store must fail"),
    };
    assert!(matches!(error, StoreError::Locked { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("in use by another process") && text.contains("storage.path"), "{text}");
    assert!(!text.contains("Os {") && !text.contains("WouldBlock"), "{text}");
}

fn text_event(contact: &str, mid: &str, at_ms: i64, text: &str) -> InboundEvent {
    InboundEvent {
        contact_alias: None,
        platform: Platform::Facebook,
        account_id: "page-1".into(),
        contact_id: Some(contact.into()),
        contact_name: None,
        sender_id: Some(contact.into()),
        dedup_key: format!("mid:{mid}"),
        occurred_at: Timestamp::from_millis(at_ms),
        kind: EventKind::Message {
            direction: Direction::Inbound,
            platform_message_id: mid.into(),
            content: MessageContent::text(ContentKind::Text, text),
        },
        raw: json!({"mid": mid}),
    }
}

#[test]
fn a_message_creates_its_conversation_and_counts_unread() {
    let (_dir, store) = temp_store();
    let events = [text_event("user-1", "m_1", 1_000, "hello"), text_event("user-1", "m_2", 2_000, "again")];
    let outcome = store.ingest(&events, Timestamp::from_millis(5_000)).unwrap();
    assert_eq!(outcome, IngestOutcome { stored: 2, duplicates: 0, messages: 2, conversations: 1 });
    let page = store.conversations_page(None, 10, None).unwrap();
    assert_eq!(page.items.len(), 1);
    let conv = &page.items[0];
    assert_eq!(conv.contact_id, "user-1");
    assert_eq!(conv.unread, 2);
    assert_eq!(conv.last_message_text.as_deref(), Some("again"));
    assert_eq!(conv.last_message_at, Some(Timestamp::from_millis(2_000)));
    let messages = store.messages_page(&conv.id, 10, None).unwrap();
    let texts: Vec<_> = messages.items.iter().map(|m| m.text.as_deref().unwrap()).collect();
    assert_eq!(texts, ["again", "hello"]);
}

#[test]
fn redelivered_events_are_stored_once() {
    let (_dir, store) = temp_store();
    let events = [text_event("user-1", "m_1", 1_000, "hello")];
    store.ingest(&events, Timestamp::from_millis(5_000)).unwrap();
    let again = store.ingest(&events, Timestamp::from_millis(6_000)).unwrap();
    assert_eq!(again, IngestOutcome { stored: 0, duplicates: 1, messages: 0, conversations: 0 });
    // A duplicate inside one body is also stored once.
    let twice = [text_event("user-2", "m_9", 1_000, "x"), text_event("user-2", "m_9", 1_000, "x")];
    assert_eq!(store.ingest(&twice, Timestamp::from_millis(7_000)).unwrap().duplicates, 1);
    assert_eq!(store.counts().unwrap().messages, 2);
}

#[test]
fn an_older_message_arriving_late_does_not_replace_the_preview() {
    let (_dir, store) = temp_store();
    store.ingest(&[text_event("u", "m_2", 2_000, "newer")], Timestamp::from_millis(5_000)).unwrap();
    store.ingest(&[text_event("u", "m_1", 1_000, "older")], Timestamp::from_millis(5_001)).unwrap();
    let conv = store.conversations_page(None, 10, None).unwrap().items.remove(0);
    assert_eq!(conv.last_message_text.as_deref(), Some("newer"));
    let texts: Vec<_> =
        store.messages_page(&conv.id, 10, None).unwrap().items.into_iter().map(|m| m.text.unwrap()).collect();
    assert_eq!(texts, ["newer", "older"]);
}

#[test]
fn conversations_page_newest_first_with_a_cursor_and_platform_filter() {
    let (_dir, store) = temp_store();
    for i in 0..5 {
        store
            .ingest(&[text_event(&format!("user-{i}"), &format!("m_{i}"), 1_000 + i, "hi")], Timestamp::from_millis(9))
            .unwrap();
    }
    let first = store.conversations_page(None, 2, None).unwrap();
    let contacts: Vec<_> = first.items.iter().map(|c| c.contact_id.as_str()).collect();
    assert_eq!(contacts, ["user-4", "user-3"]);
    let cursor = keys::decode_cursor(first.next.as_deref().unwrap()).unwrap();
    let second = store.conversations_page(None, 2, Some(cursor)).unwrap();
    let contacts: Vec<_> = second.items.iter().map(|c| c.contact_id.as_str()).collect();
    assert_eq!(contacts, ["user-2", "user-1"]);
    let cursor = keys::decode_cursor(second.next.as_deref().unwrap()).unwrap();
    let third = store.conversations_page(None, 2, Some(cursor)).unwrap();
    assert_eq!(third.items.len(), 1);
    assert_eq!(third.next, None);
    assert_eq!(store.conversations_page(Some(Platform::Facebook), 10, None).unwrap().items.len(), 5);
    assert!(store.conversations_page(Some(Platform::Viber), 10, None).unwrap().items.is_empty());
}

#[test]
fn the_unfiltered_list_merges_every_platform_newest_first_across_pages() {
    let (_dir, store) = temp_store();
    // Twelve conversations on four platforms, interleaved in time; two share a timestamp.
    let platforms = [Platform::Whatsapp, Platform::Facebook, Platform::Linkedin, Platform::Viber];
    for i in 0..12i64 {
        let at = if i == 7 { 1_006 } else { 1_000 + i };
        let event = InboundEvent {
            contact_alias: None,
            platform: platforms[i as usize % 4],
            ..text_event(&format!("user-{i:02}"), &format!("m_{i}"), at, "hi")
        };
        store.ingest(&[event], Timestamp::from_millis(9)).unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.conversations_page(None, 5, cursor).unwrap();
        seen.extend(page.items.iter().map(|c| (c.updated_at.as_millis(), c.id.clone(), c.platform)));
        match page.next {
            Some(next) => cursor = Some(keys::decode_cursor(&next).unwrap()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 12, "every conversation once");
    let mut expected = seen.clone();
    expected.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
    assert_eq!(seen, expected, "newest first, ties by id, across platforms and pages");
    for platform in platforms {
        let only = store.conversations_page(Some(platform), 50, None).unwrap();
        assert_eq!(only.items.len(), 3);
        assert!(only.items.iter().all(|c| c.platform == platform));
    }
}

#[test]
fn receipts_are_kept_as_events_without_creating_conversations() {
    let (_dir, store) = temp_store();
    let receipt = InboundEvent {
        contact_alias: None,
        kind: EventKind::Receipt(Receipt {
            kind: ReceiptKind::Delivered,
            message_ids: vec!["m_out".into()],
            watermark: Some(Timestamp::from_millis(3)),
            error: None,
        }),
        dedup_key: "delivery:user-1:3".into(),
        ..text_event("user-1", "unused", 3, "")
    };
    assert_eq!(store.ingest(&[receipt], Timestamp::from_millis(4)).unwrap().stored, 1);
    assert!(store.conversations_page(None, 10, None).unwrap().items.is_empty());
    let stored = store.event(Platform::Facebook, "delivery:user-1:3").unwrap().unwrap();
    assert!(stored.conversation_id.is_some());
    assert!(stored.message_id.is_none());
}

#[test]
fn flushed_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = Store::open(&path, 8 << 20).unwrap();
        store.ingest(&[text_event("u", "m_1", 1, "kept")], Timestamp::from_millis(2)).unwrap();
        store.quarantine(Platform::Viber, "body is not JSON", b"\xffnot json", Timestamp::from_millis(3)).unwrap();
        store.flush_blocking().unwrap();
    }
    let store = reopen(&path).unwrap();
    assert_eq!(store.message_by_platform_id(Platform::Facebook, "m_1").unwrap().unwrap().text.as_deref(), Some("kept"));
    let quarantined = store.quarantined().unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].body, "\u{fffd}not json");
}

#[test]
fn a_store_from_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = sled::open(&path).unwrap();
        db.open_tree(TREE_META).unwrap().insert(KEY_SCHEMA_VERSION, &(SCHEMA_VERSION + 1).to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    assert!(matches!(reopen(&path), Err(StoreError::SchemaTooNew { .. })));
}

#[test]
fn a_schema_1_store_with_one_tree_per_table_is_migrated_on_open() {
    // Build the records with this code, then lay them out as schema 1 did: one sled tree per
    // table, keys without the prefix.
    let source_dir = tempfile::tempdir().unwrap();
    let source = Store::open(&source_dir.path().join("db"), 8 << 20).unwrap();
    for i in 0..30 {
        let contact = format!("user-{}", i % 3);
        source
            .ingest(
                &[text_event(&contact, &format!("m_{i}"), 1_000 + i, &format!("text {i}"))],
                Timestamp::from_millis(5_000),
            )
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = sled::open(&path).unwrap();
        for entry in source.data.iter() {
            let (key, value) = entry.unwrap();
            if key[0] == TreeId::Counters.prefix() || key[0] == TreeId::Feed.prefix() {
                continue; // schema 1 kept no counters and no feed
            }
            let (_, name) = TreeId::ALL.iter().find(|(id, _)| id.prefix() == key[0]).unwrap();
            db.open_tree(name).unwrap().insert(&key[1..], value).unwrap();
        }
        // Schema 1 also listed every platform's conversations together.
        db.open_tree("activity").unwrap().insert(b"\x00\x00\x00\x00\x00\x00\x03\xe8c1", b"").unwrap();
        db.open_tree(TREE_META).unwrap().insert(KEY_SCHEMA_VERSION, &1u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let store = reopen(&path).unwrap();
    assert_eq!(store.counts().unwrap(), source.counts().unwrap());
    assert_eq!(store.conversations_page(None, 10, None).unwrap(), source.conversations_page(None, 10, None).unwrap());
    let conversation = &store.conversations_page(Some(Platform::Facebook), 1, None).unwrap().items[0];
    assert_eq!(store.messages_page(&conversation.id, 50, None).unwrap().items.len(), 10);
    assert_eq!(
        store.message_by_platform_id(Platform::Facebook, "m_7").unwrap().unwrap().text.as_deref(),
        Some("text 7")
    );
    // A redelivery after the migration is still recognised.
    let again = store.ingest(&[text_event("user-1", "m_7", 1_007, "text 7")], Timestamp::from_millis(6_000)).unwrap();
    assert_eq!(again.duplicates, 1);
    let names = store.db.tree_names();
    for old in ["messages", "activity", "platform_activity"] {
        assert!(!names.iter().any(|n| n.as_ref() == old.as_bytes()), "the old tree {old} is dropped");
    }
    drop(store);
    let store = reopen(&path).unwrap();
    assert_eq!(store.counts().unwrap(), source.counts().unwrap(), "a second open does not migrate again");
}

mod counters {
    use super::*;
    use crate::model::{MessageError, Receipt, ReceiptKind};
    use crate::store::ConversationTarget;

    /// What the counters should say, counted the slow way.
    fn real_counts(store: &Store) -> StoreCounts {
        let count = |id| store.table(id).count_by_scanning().unwrap() as usize;
        StoreCounts {
            conversations: count(TreeId::Conversations),
            messages: count(TreeId::Messages),
            events: count(TreeId::Events),
            quarantined: count(TreeId::Quarantine),
            unreadable: store.unreadable_records(),
        }
    }

    use super::outbound::draft;

    fn delivered(mid: &str, contact: &str) -> InboundEvent {
        InboundEvent {
            contact_alias: None,
            dedup_key: format!("delivery:{mid}"),
            kind: EventKind::Receipt(Receipt {
                kind: ReceiptKind::Delivered,
                message_ids: vec![mid.into()],
                watermark: None,
                error: None,
            }),
            ..text_event(contact, "unused", 9_000, "")
        }
    }

    /// Records of every kind, written the ways the daemon writes them: ingest alone and in groups
    /// (a later body of a group creating what an earlier one did), redeliveries, echoes, receipts,
    /// replies to new and known contacts, sends and failures, quarantined bodies.
    fn fill(store: &Store) {
        store.ingest(&[text_event("a", "m_1", 1_000, "hi"), text_event("a", "m_2", 1_001, "again")], at(1)).unwrap();
        store.ingest(&[text_event("a", "m_1", 1_000, "hi")], at(2)).unwrap(); // redelivery
        let twice = [text_event("b", "m_3", 1_002, "x"), text_event("b", "m_3", 1_002, "x")];
        store.ingest(&twice, at(3)).unwrap(); // a duplicate inside one body
        let first = [text_event("c", "m_4", 1_003, "one")];
        let second = [text_event("c", "m_5", 1_004, "two"), text_event("d", "m_6", 1_005, "three")];
        let redelivered = [text_event("c", "m_4", 1_003, "one")];
        store.ingest_group(&[&first, &second, &redelivered], at(4)).unwrap();
        let echo = InboundEvent {
            contact_alias: None,
            dedup_key: "mid:m_echo".into(),
            kind: EventKind::Message {
                direction: Direction::Outbound,
                platform_message_id: "m_echo".into(),
                content: MessageContent::text(ContentKind::Text, "from the page inbox"),
            },
            ..text_event("a", "m_echo", 1_006, "")
        };
        store.ingest(&[echo], at(5)).unwrap();
        store.ingest(&[delivered("m_echo", "a"), delivered("m_unknown", "e")], at(6)).unwrap();
        let known =
            ConversationTarget { platform: Platform::Facebook, account_id: "page-1".into(), contact_id: "a".into() };
        let new = ConversationTarget { platform: Platform::Viber, account_id: "bot".into(), contact_id: "5511".into() };
        let (_, sent) = store.enqueue(&known, &draft("reply"), &account(), at(7), 60_000).unwrap();
        let (_, failed) = store.enqueue(&new, &draft("hello"), &account(), at(8), 60_000).unwrap();
        store.enqueue(&new, &draft("still queued"), &account(), at(9), 60_000).unwrap();
        store.mark_sent(&sent, "m_out", at(10)).unwrap();
        let error = MessageError { code: "131026".into(), message: "undeliverable".into(), permanent: true };
        store.mark_failed(&failed, error).unwrap();
        store.ingest(&[delivered("m_out", "a")], at(11)).unwrap();
        store.quarantine(Platform::Viber, "body is not JSON", b"{", at(12)).unwrap();
        store.quarantine(Platform::Linkedin, "no elements", b"{}", at(13)).unwrap();
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn counters_equal_a_real_count_after_every_kind_of_write() {
        let (_dir, store) = temp_store();
        fill(&store);
        let counts = store.counts().unwrap();
        assert_eq!(counts, real_counts(&store));
        assert_eq!(counts, StoreCounts { conversations: 5, messages: 10, events: 10, quarantined: 2, unreadable: 0 });
    }

    #[test]
    fn counts_are_read_from_the_persisted_counters_not_by_scanning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = Store::open(&path, 8 << 20).unwrap();
            fill(&store);
            // Say the store holds a million messages: only a counter can say that.
            store.data.insert(TreeId::Messages.counter_key(), &1_000_000u64.to_be_bytes()).unwrap();
            store.flush_blocking().unwrap();
        }
        let store = reopen(&path).unwrap();
        assert_eq!(store.counts().unwrap().messages, 1_000_000);
        assert_eq!(real_counts(&store).messages, 10);
    }

    #[test]
    fn a_schema_2_store_is_migrated_to_counted_records_once() {
        let (_source_dir, source) = temp_store();
        fill(&source);
        // Lay the records out as schema 2 did: no counters, the quarantine in a tree of its own.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let db = sled::open(&path).unwrap();
            let data = db.open_tree(TREE_DATA).unwrap();
            let quarantine = db.open_tree(TREE_QUARANTINE).unwrap();
            for entry in source.data.iter() {
                let (key, value) = entry.unwrap();
                match key[0] {
                    p if p == TreeId::Counters.prefix() => {}
                    p if p == TreeId::Quarantine.prefix() => {
                        quarantine.insert(&key[1..], value).unwrap();
                    }
                    _ => {
                        data.insert(key, value).unwrap();
                    }
                }
            }
            db.open_tree(TREE_META).unwrap().insert(KEY_SCHEMA_VERSION, &2u32.to_be_bytes()).unwrap();
            db.flush().unwrap();
        }
        let store = reopen(&path).unwrap();
        assert_eq!(store.counts().unwrap(), source.counts().unwrap());
        assert_eq!(store.counts().unwrap(), real_counts(&store));
        let bodies: Vec<String> = store.quarantined().unwrap().into_iter().map(|q| q.body).collect();
        assert_eq!(bodies, ["{", "{}"]);
        assert!(!store.db.tree_names().iter().any(|n| n.as_ref() == TREE_QUARANTINE.as_bytes()));
        // Counting goes on from there, and a second open does not count again.
        store.ingest(&[text_event("z", "m_new", 5_000, "after")], at(20)).unwrap();
        store.data.insert(TreeId::Events.counter_key(), &500u64.to_be_bytes()).unwrap();
        store.flush_blocking().unwrap();
        drop(store);
        let store = reopen(&path).unwrap();
        assert_eq!(store.counts().unwrap().messages, source.counts().unwrap().messages + 1);
        assert_eq!(store.counts().unwrap().events, 500, "not counted again");
    }

    #[test]
    fn a_schema_1_store_gets_counters_too() {
        let (_source_dir, source) = temp_store();
        source.ingest(&[text_event("a", "m_1", 1_000, "hi"), text_event("b", "m_2", 1_001, "yo")], at(1)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let db = sled::open(&path).unwrap();
            for entry in source.data.iter() {
                let (key, value) = entry.unwrap();
                if let Some((_, name)) = TreeId::ALL.iter().find(|(id, _)| id.prefix() == key[0]) {
                    db.open_tree(name).unwrap().insert(&key[1..], value).unwrap();
                }
            }
            db.open_tree(TREE_QUARANTINE).unwrap().insert(7u64.to_be_bytes(), b"{}").unwrap();
            db.open_tree(TREE_META).unwrap().insert(KEY_SCHEMA_VERSION, &1u32.to_be_bytes()).unwrap();
            db.flush().unwrap();
        }
        let store = reopen(&path).unwrap();
        let expected = StoreCounts { quarantined: 1, ..source.counts().unwrap() };
        assert_eq!(store.counts().unwrap(), expected);
        assert_eq!(real_counts(&store), expected);
    }

    #[test]
    fn an_unfinished_snapshot_does_not_keep_the_store_from_opening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = Store::open(&path, 8 << 20).unwrap();
            store.ingest(&[text_event("a", "m_1", 1_000, "kept")], at(1)).unwrap();
            store.flush_blocking().unwrap();
        }
        // What sled leaves when the disk fills up while it writes a snapshot: an empty file under
        // the name of the newest one.
        let unfinished = path.join("snap.7FFFFFFFFFFFFFFF.generating");
        std::fs::write(&unfinished, b"").unwrap();
        // The dropped store's background threads may hold the file lock, or write a snapshot of
        // their own over ours, a moment longer: retry until sled itself judges our file.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let refused = loop {
            std::fs::write(&unfinished, b"").unwrap();
            match sled_config(&path, 8 << 20).open() {
                Err(sled::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Ok(_) => {}
                other => break other.map(|_| ()),
            }
            assert!(std::time::Instant::now() < deadline, "sled never judged the unfinished snapshot");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(
            matches!(refused, Err(sled::Error::Corruption { .. })),
            "sled 0.34.7 itself refuses such a store: {refused:?}"
        );
        let store = reopen(&path).unwrap();
        assert_eq!(
            store.message_by_platform_id(Platform::Facebook, "m_1").unwrap().unwrap().text.as_deref(),
            Some("kept")
        );
        assert!(!unfinished.exists());
    }
}

mod outbound {
    use super::*;
    use crate::model::{MessageError, Receipt, ReceiptKind};
    use crate::store::{ConversationTarget, OutboundDraft};

    pub(super) fn target() -> ConversationTarget {
        ConversationTarget {
            platform: Platform::Whatsapp,
            account_id: "phone-1".into(),
            contact_id: "5511987654321".into(),
        }
    }

    /// A store in which `target()`'s customer wrote at time 0, so that replies until 24 hours
    /// later are inside WhatsApp's window.
    pub(super) fn store_with_customer() -> (tempfile::TempDir, Store) {
        let (dir, store) = temp_store();
        let wrote = InboundEvent {
            platform: Platform::Whatsapp,
            account_id: target().account_id,
            contact_id: Some(target().contact_id),
            sender_id: Some(target().contact_id),
            ..text_event("", "wamid.IN0", 0, "hello")
        };
        store.ingest(&[wrote], Timestamp::from_millis(0)).unwrap();
        (dir, store)
    }

    pub(super) fn draft(text: &str) -> OutboundDraft {
        OutboundDraft { text: Some(text.into()), ..OutboundDraft::default() }
    }

    fn status_event(wamid: &str, kind: ReceiptKind, error: Option<MessageError>) -> InboundEvent {
        InboundEvent {
            contact_alias: None,
            platform: Platform::Whatsapp,
            account_id: "phone-1".into(),
            contact_id: Some("5511987654321".into()),
            contact_name: None,
            sender_id: None,
            dedup_key: format!("status:{wamid}:{kind:?}"),
            occurred_at: Timestamp::from_millis(10_000),
            kind: EventKind::Receipt(Receipt { kind, message_ids: vec![wamid.into()], watermark: None, error }),
            raw: json!({}),
        }
    }

    #[test]
    fn a_queued_reply_is_a_message_and_an_outbox_entry_in_order() {
        let (_dir, store) = store_with_customer();
        let (first, entry) =
            store.enqueue(&target(), &draft("one"), &account(), Timestamp::from_millis(1_000), 60_000).unwrap();
        store.enqueue(&target(), &draft("two"), &account(), Timestamp::from_millis(1_001), 60_000).unwrap();
        assert_eq!(first.status, Status::Queued);
        assert_eq!(first.direction, Direction::Outbound);
        assert_eq!(entry.message.recipient, "5511987654321");
        assert_eq!(entry.deadline_at, Timestamp::from_millis(61_000));
        let texts: Vec<_> =
            store.outbox_entries(Platform::Whatsapp).unwrap().into_iter().map(|e| e.message.text.unwrap()).collect();
        assert_eq!(texts, ["one", "two"]);
        assert!(store.outbox_entries(Platform::Viber).unwrap().is_empty());
        let conversation = store.conversation(&first.conversation_id).unwrap().unwrap();
        assert_eq!(conversation.last_message_text.as_deref(), Some("two"));
    }

    #[test]
    fn sent_then_receipts_move_the_status_forward_only() {
        let (_dir, store) = store_with_customer();
        let (message, entry) =
            store.enqueue(&target(), &draft("hi"), &account(), Timestamp::from_millis(1_000), 60_000).unwrap();
        store.mark_sending(&message.id).unwrap();
        let sent = store.mark_sent(&entry, "wamid.OUT1", Timestamp::from_millis(2_000)).unwrap().unwrap();
        assert_eq!(sent.message.status, Status::Sent);
        assert!(store.outbox_entries(Platform::Whatsapp).unwrap().is_empty());
        store.ingest(&[status_event("wamid.OUT1", ReceiptKind::Read, None)], Timestamp::from_millis(3)).unwrap();
        store.ingest(&[status_event("wamid.OUT1", ReceiptKind::Delivered, None)], Timestamp::from_millis(4)).unwrap();
        assert_eq!(store.message(&message.id).unwrap().unwrap().status, Status::Read);
    }

    #[test]
    fn a_receipt_before_the_send_response_is_applied_when_it_comes() {
        let (_dir, store) = store_with_customer();
        let (message, entry) =
            store.enqueue(&target(), &draft("hi"), &account(), Timestamp::from_millis(1_000), 60_000).unwrap();
        store.ingest(&[status_event("wamid.EARLY", ReceiptKind::Delivered, None)], Timestamp::from_millis(3)).unwrap();
        let sent = store.mark_sent(&entry, "wamid.EARLY", Timestamp::from_millis(2_000)).unwrap().unwrap();
        assert_eq!(sent.message.status, Status::Delivered);
        assert_eq!(store.message(&message.id).unwrap().unwrap().platform_message_id.as_deref(), Some("wamid.EARLY"));
    }

    #[test]
    fn an_asynchronous_failure_records_the_platforms_error() {
        let (_dir, store) = store_with_customer();
        let (message, entry) =
            store.enqueue(&target(), &draft("hi"), &account(), Timestamp::from_millis(1_000), 60_000).unwrap();
        store.mark_sent(&entry, "wamid.F", Timestamp::from_millis(2_000)).unwrap();
        let error = MessageError { code: "131047".into(), message: "Re-engagement message".into(), permanent: true };
        store
            .ingest(&[status_event("wamid.F", ReceiptKind::Failed, Some(error.clone()))], Timestamp::from_millis(3))
            .unwrap();
        let stored = store.message(&message.id).unwrap().unwrap();
        assert_eq!((stored.status, stored.error), (Status::Failed, Some(error)));
    }

    #[test]
    fn a_read_watermark_covers_messages_dispatched_before_it() {
        let (_dir, store) = temp_store();
        let fb =
            ConversationTarget { platform: Platform::Facebook, account_id: "page".into(), contact_id: "psid".into() };
        let wrote = InboundEvent { account_id: "page".into(), ..text_event("psid", "m_in", 500, "hi") };
        store.ingest(&[wrote], Timestamp::from_millis(500)).unwrap();
        let (a, entry_a) = store.enqueue(&fb, &draft("a"), &account(), Timestamp::from_millis(1_000), 60_000).unwrap();
        let (b, entry_b) = store.enqueue(&fb, &draft("b"), &account(), Timestamp::from_millis(1_001), 60_000).unwrap();
        store.mark_sent(&entry_a, "m_a", Timestamp::from_millis(2_000)).unwrap();
        store.mark_sent(&entry_b, "m_b", Timestamp::from_millis(5_000)).unwrap();
        let read = InboundEvent {
            contact_alias: None,
            platform: Platform::Facebook,
            account_id: "page".into(),
            contact_id: Some("psid".into()),
            contact_name: None,
            sender_id: Some("psid".into()),
            dedup_key: "read:psid:3000".into(),
            occurred_at: Timestamp::from_millis(3_000),
            kind: EventKind::Receipt(Receipt {
                kind: ReceiptKind::Read,
                message_ids: vec![],
                watermark: Some(Timestamp::from_millis(3_000)),
                error: None,
            }),
            raw: json!({}),
        };
        store.ingest(&[read], Timestamp::from_millis(3_001)).unwrap();
        assert_eq!(store.message(&a.id).unwrap().unwrap().status, Status::Read);
        assert_eq!(store.message(&b.id).unwrap().unwrap().status, Status::Sent, "dispatched after the watermark");
    }

    #[test]
    fn a_failed_send_leaves_the_outbox() {
        let (_dir, store) = store_with_customer();
        let (message, entry) =
            store.enqueue(&target(), &draft("hi"), &account(), Timestamp::from_millis(1_000), 60_000).unwrap();
        let error = MessageError { code: "131026".into(), message: "undeliverable".into(), permanent: true };
        store.mark_failed(&entry, error).unwrap();
        assert_eq!(store.message(&message.id).unwrap().unwrap().status, Status::Failed);
        assert!(store.outbox_entries(Platform::Whatsapp).unwrap().is_empty());
    }

    #[test]
    fn a_linkedin_reply_in_a_comment_thread_goes_under_the_post_with_the_parent() {
        let (_dir, store) = temp_store();
        let thread = "urn:li:comment:(urn:li:activity:7190000000000000001,7190000000000000099)";
        let li = ConversationTarget {
            platform: Platform::Linkedin,
            account_id: "urn:li:organization:2414183".into(),
            contact_id: thread.into(),
        };
        let (_, entry) = store.enqueue(&li, &draft("Yes"), &account(), Timestamp::from_millis(1), 60_000).unwrap();
        assert_eq!(entry.message.recipient, "urn:li:activity:7190000000000000001");
        assert_eq!(entry.message.reply_to.as_deref(), Some(thread));
    }
}

mod contacts;
mod edits;
mod feed_events;
mod names;
mod search;
mod unreadable_records;
