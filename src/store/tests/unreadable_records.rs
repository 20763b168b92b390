//! Records that do not decode, and records older builds wrote with out-of-range times: listings
//! keep answering, ingest keeps storing, nothing is thrown away.

use super::*;

/// The 8 bytes an older build put in a time key for `ms`, which it did not bound.
fn unbounded_time_bytes(ms: i64) -> [u8; 8] {
    ((ms as u64) ^ (1 << 63)).to_be_bytes()
}

/// The year 10000 in milliseconds, and how an older build printed it.
const YEAR_10000_MS: i64 = 253_402_300_800_000;
const YEAR_10000_TEXT: &str = "10000-01-01T00:00:00.000Z";

/// What an older build stored for a Messenger message dated in the year 10000: the conversation
/// (created by it), the message, and their index entries with the unbounded time.
fn write_poisoned_conversation(store: &Store, contact: &str) -> (String, String) {
    let conversation_id = keys::conversation_id(Platform::Facebook, "page-1", contact);
    let message_id = "m00000000000ffff0".to_owned();
    let conversation = format!(
        r#"{{"id":"{conversation_id}","platform":"facebook","account_id":"page-1","contact_id":"{contact}","contact_name":null,"last_message_text":"from the future","last_message_at":"{YEAR_10000_TEXT}","unread":1,"created_at":"{YEAR_10000_TEXT}","updated_at":"{YEAR_10000_TEXT}"}}"#
    );
    let message = format!(
        r#"{{"id":"{message_id}","conversation_id":"{conversation_id}","platform":"facebook","direction":"inbound","platform_message_id":"m_future","sender_id":"{contact}","text":"from the future","attachments":[],"sent_at":"56919797-11-24T23:32:43.000Z","status":"received","error":null,"kind":"text","payload":null,"reply_to":null,"location":null,"contacts":[],"received_at":"2024-06-10T06:13:20.045Z"}}"#
    );
    store.table(TreeId::Conversations).insert(&conversation_id, conversation.into_bytes()).unwrap();
    store.table(TreeId::Messages).insert(&message_id, message.into_bytes()).unwrap();
    let mut activity = vec![Platform::Facebook.tag()];
    activity.extend_from_slice(&unbounded_time_bytes(YEAR_10000_MS));
    activity.extend_from_slice(conversation_id.as_bytes());
    store.table(TreeId::Activity).insert(activity, Vec::new()).unwrap();
    let mut timeline = keys::timeline_prefix(&conversation_id);
    timeline.extend_from_slice(&unbounded_time_bytes(1_796_000_000_000_000_000));
    timeline.extend_from_slice(message_id.as_bytes());
    store.table(TreeId::Timeline).insert(timeline, message_id.as_bytes()).unwrap();
    store
        .table(TreeId::PlatformIds)
        .insert(keys::platform_message_key(Platform::Facebook, "m_future"), message_id.as_bytes())
        .unwrap();
    (conversation_id, message_id)
}

#[test]
fn records_an_older_build_wrote_with_five_digit_years_read_back_clamped() {
    let (_dir, store) = temp_store();
    let (conversation_id, message_id) = write_poisoned_conversation(&store, "user-1");
    store
        .ingest(
            &[text_event("user-2", "m_other", 1_718_000_000_000, "hello")],
            Timestamp::from_millis(1_718_000_000_500),
        )
        .unwrap();

    let page = store.conversations_page(None, 10, None).unwrap();
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.items[0].id, conversation_id, "clamped to 9999-12-31, it still sorts first");
    assert_eq!(page.items[0].updated_at, Timestamp::MAX);
    let messages = store.messages_page(&conversation_id, 10, None).unwrap();
    assert_eq!(messages.items.len(), 1);
    assert_eq!(messages.items[0].sent_at, Timestamp::MAX);
    assert_eq!(store.message(&message_id).unwrap().unwrap().text.as_deref(), Some("from the future"));
    assert_eq!(store.unreadable_records(), 0, "nothing was unreadable");
    // Every record reads back through the API types' JSON once more.
    let json = serde_json::to_string(&page.items).unwrap();
    assert_eq!(serde_json::from_str::<Vec<Conversation>>(&json).unwrap(), page.items);
}

#[test]
fn a_conversation_an_older_build_dated_in_the_future_takes_the_time_of_its_next_message() {
    let (_dir, store) = temp_store();
    let (conversation_id, _) = write_poisoned_conversation(&store, "user-1");
    let now = Timestamp::from_millis(1_718_000_000_500);
    store.ingest(&[text_event("user-1", "m_next", 1_718_000_000_000, "next one")], now).unwrap();
    store.ingest(&[text_event("user-2", "m_other", 1_718_000_000_100, "hello")], now).unwrap();

    let page = store.conversations_page(None, 10, None).unwrap();
    let ids: Vec<&str> = page.items.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), 2, "the stale activity entry is not listed twice: {ids:?}");
    assert_eq!(ids[1], conversation_id, "no longer first: user-2 wrote later");
    let healed = &page.items[1];
    assert_eq!(healed.updated_at, Timestamp::from_millis(1_718_000_000_000));
    assert_eq!(healed.last_message_at, Some(Timestamp::from_millis(1_718_000_000_000)));
    assert_eq!(healed.last_message_text.as_deref(), Some("next one"));
    assert_eq!(healed.unread, 2);
}

/// Two conversations, the first of which then has garbage instead of its record.
fn store_with_an_unreadable_conversation() -> (tempfile::TempDir, Store, String, String) {
    let (dir, store) = temp_store();
    store.ingest(&[text_event("user-1", "m_1", 1_000, "first")], Timestamp::from_millis(5_000)).unwrap();
    store.ingest(&[text_event("user-2", "m_2", 2_000, "second")], Timestamp::from_millis(5_000)).unwrap();
    let broken = keys::conversation_id(Platform::Facebook, "page-1", "user-1");
    let fine = keys::conversation_id(Platform::Facebook, "page-1", "user-2");
    store.table(TreeId::Conversations).insert(&broken, &b"{\"id\": 12, \"not a conversation"[..]).unwrap();
    (dir, store, broken, fine)
}

#[test]
fn an_unreadable_conversation_is_skipped_by_the_listing_and_counted_once() {
    let (_dir, store, broken, fine) = store_with_an_unreadable_conversation();
    for _ in 0..3 {
        let page = store.conversations_page(None, 10, None).unwrap();
        assert_eq!(page.items.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [fine.as_str()]);
        let page = store.conversations_page(Some(Platform::Facebook), 1, None).unwrap();
        assert_eq!(page.items.len(), 1);
    }
    assert_eq!(store.unreadable_records(), 1, "one record, however often it is met");
    assert!(matches!(store.conversation(&broken), Err(StoreError::Unreadable { table: "conversations", .. })));
    let error = store.conversation(&broken).unwrap_err().to_string();
    assert!(error.contains(&broken) && !error.contains("not a conversation"), "names the key, not the bytes: {error}");
    // Its messages are records of their own and still listed.
    assert_eq!(store.messages_page(&broken, 10, None).unwrap().items.len(), 1);
}

#[test]
fn ingest_rebuilds_an_unreadable_conversation_and_keeps_its_bytes_aside() {
    let (_dir, store, broken, _) = store_with_an_unreadable_conversation();
    let outcome = store.ingest(&[text_event("user-1", "m_3", 3_000, "third")], Timestamp::from_millis(6_000)).unwrap();
    assert_eq!(outcome, IngestOutcome { stored: 1, duplicates: 0, messages: 1, conversations: 0 });
    let rebuilt = store.conversation(&broken).unwrap().unwrap();
    assert_eq!((rebuilt.contact_id.as_str(), rebuilt.account_id.as_str()), ("user-1", "page-1"));
    assert_eq!(rebuilt.created_at, Timestamp::from_millis(1_000), "from the oldest message in its timeline");
    assert_eq!(rebuilt.updated_at, Timestamp::from_millis(3_000));
    assert_eq!(rebuilt.last_message_text.as_deref(), Some("third"));
    assert_eq!(rebuilt.unread, 1, "what was unread before is lost; the new message counts");
    let texts: Vec<_> =
        store.messages_page(&broken, 10, None).unwrap().items.into_iter().map(|m| m.text.unwrap()).collect();
    assert_eq!(texts, ["third", "first"]);
    let page = store.conversations_page(None, 10, None).unwrap();
    assert_eq!(page.items.len(), 2, "listed once, at its new time");
    assert_eq!(page.items[0].id, broken);
    let kept = store.table(TreeId::Unreadable).get(TreeId::Conversations.key(broken.as_bytes())).unwrap().unwrap();
    assert_eq!(&kept[..], b"{\"id\": 12, \"not a conversation");
    // A receipt for the conversation (no message of its own) rebuilds it too.
    let (_dir, store, broken, _) = store_with_an_unreadable_conversation();
    let read = InboundEvent {
        contact_alias: None,
        dedup_key: "read:user-1:4000".into(),
        kind: EventKind::Receipt(Receipt {
            kind: ReceiptKind::Read,
            message_ids: vec![],
            watermark: Some(Timestamp::from_millis(4_000)),
            error: None,
        }),
        ..text_event("user-1", "unused", 4_000, "")
    };
    assert_eq!(store.ingest(&[read], Timestamp::from_millis(6_000)).unwrap().stored, 1);
    assert_eq!(store.conversation(&broken).unwrap().unwrap().last_message_text.as_deref(), Some("first"));
    assert_eq!(store.conversations_page(None, 10, None).unwrap().items.len(), 2, "listed again, once");
}

#[test]
fn an_unreadable_message_is_skipped_by_its_listing_and_receipts_still_store() {
    let (_dir, store) = temp_store();
    let events = [text_event("user-1", "m_1", 1_000, "one"), text_event("user-1", "m_2", 2_000, "two")];
    store.ingest(&events, Timestamp::from_millis(5_000)).unwrap();
    let conversation = store.conversations_page(None, 1, None).unwrap().items.remove(0);
    let broken = store.message_by_platform_id(Platform::Facebook, "m_2").unwrap().unwrap().id;
    store.table(TreeId::Messages).insert(&broken, &b"\xff\xfe garbage"[..]).unwrap();
    // A timeline entry naming no message at all, and one whose id is not UTF-8.
    let mut dangling = keys::timeline_prefix(&conversation.id);
    dangling.extend_from_slice(&keys::time_bytes(Timestamp::from_millis(1_500)));
    store.table(TreeId::Timeline).insert(dangling.clone(), &b"m_nowhere"[..]).unwrap();
    dangling.push(b'x');
    store.table(TreeId::Timeline).insert(dangling, &b"\xff"[..]).unwrap();

    let page = store.messages_page(&conversation.id, 10, None).unwrap();
    assert_eq!(page.items.iter().map(|m| m.text.as_deref().unwrap()).collect::<Vec<_>>(), ["one"]);
    let first = store.messages_page(&conversation.id, 1, None).unwrap();
    assert_eq!(first.items.len(), 1, "paging past skipped entries still fills the page");
    assert!(matches!(store.message(&broken), Err(StoreError::Unreadable { table: "messages", .. })));
    assert_eq!(store.unreadable_records(), 3);
    let delivered = InboundEvent {
        contact_alias: None,
        dedup_key: "delivery:user-1:3000".into(),
        kind: EventKind::Receipt(Receipt {
            kind: ReceiptKind::Delivered,
            message_ids: vec!["m_2".into()],
            watermark: Some(Timestamp::from_millis(3_000)),
            error: None,
        }),
        ..text_event("user-1", "unused", 3_000, "")
    };
    assert_eq!(store.ingest(&[delivered], Timestamp::from_millis(6_000)).unwrap().stored, 1);
    assert_eq!(
        store.table(TreeId::Messages).get(&broken).unwrap().unwrap().as_ref(),
        b"\xff\xfe garbage",
        "left as it was"
    );
}

#[test]
fn a_missing_conversation_named_by_the_activity_list_is_skipped() {
    let (_dir, store) = temp_store();
    store.ingest(&[text_event("user-1", "m_1", 1_000, "one")], Timestamp::from_millis(5_000)).unwrap();
    store
        .table(TreeId::Activity)
        .insert(keys::activity_key(Platform::Facebook, Timestamp::from_millis(9_000), "cgone"), Vec::new())
        .unwrap();
    store.table(TreeId::Activity).insert(vec![Platform::Facebook.tag(), 0xff], Vec::new()).unwrap();
    let page = store.conversations_page(None, 10, None).unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(store.unreadable_records(), 2);
}

mod outbound {
    use super::*;
    use crate::store::tests::outbound::{draft, store_with_customer, target};

    fn receipt(wamid: &str, kind: ReceiptKind) -> InboundEvent {
        InboundEvent {
            contact_alias: None,
            platform: Platform::Whatsapp,
            account_id: "phone-1".into(),
            contact_id: Some("5511987654321".into()),
            contact_name: None,
            sender_id: None,
            dedup_key: format!("status:{wamid}:{kind:?}"),
            occurred_at: Timestamp::from_millis(10_000),
            kind: EventKind::Receipt(Receipt { kind, message_ids: vec![wamid.into()], watermark: None, error: None }),
            raw: json!({}),
        }
    }

    #[test]
    fn an_unreadable_outbox_entry_is_skipped_and_the_others_still_load() {
        let (_dir, store) = store_with_customer();
        let (_, first) =
            store.enqueue(&target(), &draft("one"), &account(), Timestamp::from_millis(1_000), 60_000).unwrap();
        store.enqueue(&target(), &draft("two"), &account(), Timestamp::from_millis(1_001), 60_000).unwrap();
        let mut key = vec![Platform::Whatsapp.tag()];
        key.extend_from_slice(&first.seq.to_be_bytes());
        store.table(TreeId::Outbox).insert(key, &b"[]"[..]).unwrap();
        let texts: Vec<_> =
            store.outbox_entries(Platform::Whatsapp).unwrap().into_iter().map(|e| e.message.text.unwrap()).collect();
        assert_eq!(texts, ["two"]);
        assert_eq!(store.unreadable_records(), 1);
    }

    #[test]
    fn unreadable_pending_receipts_are_set_aside_and_a_reply_into_an_unreadable_conversation_still_queues() {
        let (_dir, store) = store_with_customer();
        let index_key = keys::platform_message_key(Platform::Whatsapp, "wamid.EARLY");
        store.table(TreeId::PendingReceipts).insert(&index_key, &b"{oops"[..]).unwrap();
        store.ingest(&[receipt("wamid.EARLY", ReceiptKind::Delivered)], Timestamp::from_millis(3)).unwrap();
        let kept = store.table(TreeId::Unreadable).get(TreeId::PendingReceipts.key(&index_key)).unwrap();
        assert_eq!(kept.as_deref(), Some(&b"{oops"[..]));

        let (message, entry) =
            store.enqueue(&target(), &draft("hi"), &account(), Timestamp::from_millis(1_000), 60_000).unwrap();
        let sent = store.mark_sent(&entry, "wamid.EARLY", Timestamp::from_millis(2_000)).unwrap().unwrap();
        assert_eq!(sent.message.status, Status::Delivered, "the receipt stored after the garbage applies");

        store.table(TreeId::Conversations).insert(&message.conversation_id, &b"7"[..]).unwrap();
        let (again, _) =
            store.enqueue(&target(), &draft("again"), &account(), Timestamp::from_millis(3_000), 60_000).unwrap();
        let conversation = store.conversation(&again.conversation_id).unwrap().unwrap();
        assert_eq!(conversation.last_message_text.as_deref(), Some("again"));
        assert_eq!(conversation.contact_id, "5511987654321");
        // A send response for a message whose record broke removes its outbox entry all the same.
        store.table(TreeId::Messages).insert(&again.id, &b"null"[..]).unwrap();
        let entries = store.outbox_entries(Platform::Whatsapp).unwrap();
        let second = entries.iter().find(|e| e.message.id == again.id).unwrap();
        assert_eq!(store.mark_sent(second, "wamid.AGAIN", Timestamp::from_millis(4_000)).unwrap(), None);
        assert!(store.outbox_entries(Platform::Whatsapp).unwrap().iter().all(|e| e.message.id != again.id));
    }
}

#[test]
fn a_float_in_a_raw_event_reads_back_exactly() {
    // Found by the fuzz harness: without serde_json's `float_roundtrip`, -6.044785590771215e46
    // came back as -6.044785590771214e46, so a stored event was not what the platform sent.
    let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"1"},"statuses":[{"id":"wamid.ID","status":"read","recipient_id":"5511","timestamp":-6.044785590771215e46,"conversation":{"f":2.6771927582703447e209}}]}}]}]}"#;
    let ctx = crate::platform::ParseContext { account_id: "1", received_at: Timestamp::from_millis(1_718_000_000_000) };
    let events = crate::platform::whatsapp::parse_webhook(body, &ctx).unwrap();
    let (_dir, store) = temp_store();
    store.ingest(&events, ctx.received_at).unwrap();
    let stored = store.event(Platform::Whatsapp, &events[0].dedup_key).unwrap().unwrap();
    assert_eq!(stored.event, events[0]);
    assert_eq!(stored.event.raw["timestamp"].as_f64(), Some(-6.044785590771215e46));
}
