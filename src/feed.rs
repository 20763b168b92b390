//! The live feed: every change an operator or a program could react to is an [`Event`] with a
//! sequence number `seq`, assigned by the store in the same atomic write as the change (see
//! `store::feed`), gap-free and strictly increasing.
//!
//! This module holds the event's shape (pure) and the [`FeedHub`]: the in-memory tail of the feed
//! that readers (server-sent event clients, long polls, outgoing webhook workers) follow. The
//! conversation actor publishes events to the hub only after the flush that made them durable, so
//! a reader never sees an event that a crash could take back (and whose `seq` would then be given
//! to another change). The hub keeps the newest events up to a bound; a reader further behind reads
//! the store (through the conversation actor) until it reaches the hub's tail. Publishing never
//! waits for a reader: readers are woken through a `watch` of the newest durable `seq` and take
//! what they need when they run.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::model::{Platform, Timestamp};

/// The types of event (CONTRACT.md, "The live feed").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    /// An inbound message was stored (a redelivery is not a new event).
    #[serde(rename = "message.received")]
    MessageReceived,
    /// An outbound message was stored: queued through the API, or an echo from the platform's app.
    #[serde(rename = "message.created")]
    MessageCreated,
    /// An outbound message's status moved forward.
    #[serde(rename = "message.status")]
    MessageStatus,
    /// The sender edited or deleted a stored message (not in CONTRACT.md's list: Parley's own).
    #[serde(rename = "message.updated")]
    MessageUpdated,
    /// A conversation was created, or its name, unread count or last message changed.
    #[serde(rename = "conversation.updated")]
    ConversationUpdated,
    /// A channel became ready or not ready, or its token nears expiry.
    #[serde(rename = "channel.status")]
    ChannelStatus,
    /// Two conversations turned out to be one person's (WhatsApp: a number and a business-scoped
    /// id): `{"from": id, "conversation": Conversation}`; `from` is gone, its messages are in
    /// `conversation` (not in CONTRACT.md's list: Parley's own).
    #[serde(rename = "conversation.merged")]
    ConversationMerged,
}

impl EventType {
    /// Every type, in a fixed order.
    pub const ALL: [EventType; 7] = [
        EventType::MessageReceived,
        EventType::MessageCreated,
        EventType::MessageStatus,
        EventType::MessageUpdated,
        EventType::ConversationUpdated,
        EventType::ChannelStatus,
        EventType::ConversationMerged,
    ];

    /// The name in JSON, in `types=` filters and in config.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::MessageReceived => "message.received",
            EventType::MessageCreated => "message.created",
            EventType::MessageStatus => "message.status",
            EventType::MessageUpdated => "message.updated",
            EventType::ConversationUpdated => "conversation.updated",
            EventType::ChannelStatus => "channel.status",
            EventType::ConversationMerged => "conversation.merged",
        }
    }

    /// The type named `name`, if there is one.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event of the feed, as the API shows it and as the store keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When the change was stored.
    pub at: Timestamp,
    pub platform: Platform,
    pub conversation_id: Option<String>,
    /// `{"message": Message}`, `{"conversation": Conversation}` or `{"channel": {...}}`, as JSON
    /// text: written once from the records it reports (no `Value` tree per event; readers only
    /// pass it on).
    pub data: Box<serde_json::value::RawValue>,
}

impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        self.seq == other.seq
            && self.kind == other.kind
            && self.at == other.at
            && self.platform == other.platform
            && self.conversation_id == other.conversation_id
            && self.data.get() == other.data.get()
    }
}

impl Event {
    /// `data` rendered from anything serializable.
    pub fn data_of<T: Serialize + ?Sized>(value: &T) -> Result<Box<serde_json::value::RawValue>, serde_json::Error> {
        serde_json::value::to_raw_value(value)
    }

    /// `data` as a JSON value (for tests and tools; readers pass the text on).
    pub fn data_value(&self) -> serde_json::Value {
        serde_json::from_str(self.data.get()).unwrap_or(serde_json::Value::Null)
    }
}

/// An event made durable, rendered once for every reader: its server-sent event frame
/// (`id:`, `event:`, `data:` lines), shared by every stream as it is, with its JSON inside it.
#[derive(Debug)]
pub struct Published {
    pub event: Event,
    frame: Bytes,
    /// Where `serde_json::to_string(&event)` is in `frame`.
    json_at: std::ops::Range<usize>,
}

impl Published {
    /// Renders `event`. An `Event` is plain data (strings, numbers, JSON text) and always
    /// serializes; the error is kept for the store, which refuses to write what it could not
    /// read back.
    pub fn render(event: Event) -> Result<Published, serde_json::Error> {
        let json = serde_json::to_string(&event)?;
        Ok(Published::framed(event, &json))
    }

    /// Like [`Published::render`], for events read back from the store (they serialized once).
    pub fn new(event: Event) -> Published {
        let json = serde_json::to_string(&event).unwrap_or_default();
        Published::framed(event, &json)
    }

    fn framed(event: Event, json: &str) -> Published {
        // The JSON has no newline (serde_json escapes them in strings), so it is one `data:` line.
        let head = format!("id: {}\nevent: {}\ndata: ", event.seq, event.kind.as_str());
        let mut frame = Vec::with_capacity(head.len() + json.len() + 2);
        frame.extend_from_slice(head.as_bytes());
        frame.extend_from_slice(json.as_bytes());
        frame.extend_from_slice(b"\n\n");
        let json_at = head.len()..head.len() + json.len();
        Published { event, frame: Bytes::from(frame), json_at }
    }

    /// The event's JSON (CONTRACT.md, "The live feed").
    pub fn json(&self) -> &str {
        // The range was cut from a `String` at character boundaries.
        std::str::from_utf8(&self.frame[self.json_at.clone()]).unwrap_or("")
    }

    /// The event as one server-sent event, ready to write (a cheap, shared clone).
    pub fn frame(&self) -> Bytes {
        self.frame.clone()
    }
}

/// The `types=`, `platform=` and `conversation=` filters of a reader; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Empty: every type.
    pub types: Vec<EventType>,
    /// Empty: every platform.
    pub platforms: Vec<Platform>,
    pub conversation: Option<String>,
}

impl EventFilter {
    pub fn matches(&self, event: &Event) -> bool {
        (self.types.is_empty() || self.types.contains(&event.kind))
            && (self.platforms.is_empty() || self.platforms.contains(&event.platform))
            && self.conversation.as_ref().is_none_or(|c| event.conversation_id.as_deref() == Some(c.as_str()))
    }
}

/// What the hub answers a reader at `after`.
#[derive(Debug)]
pub enum Tail {
    /// The events after `after` that the hub holds (in order, at most the limit asked for; empty
    /// when the reader is at the newest durable event, or beyond it).
    Events(Vec<Arc<Published>>),
    /// Events after `after` are older than what the hub holds: read them from the store, up to
    /// `oldest - 1`, then ask again.
    Behind { oldest: u64 },
}

/// The in-memory tail of the feed (see the module documentation).
pub struct FeedHub {
    inner: RwLock<Ring>,
    newest: watch::Sender<u64>,
    capacity: usize,
    /// Whether ingest is the bottleneck just now (see [`FeedHub::ingest_load`]).
    ingest_busy: AtomicBool,
}

/// A flush that carries at least this many writes (webhooks, status changes) means that writes
/// arrive faster than the store makes them durable one flush at a time: ingest is saturated.
/// At 2,000 webhooks a second flushes carry 1 to 4 (measured); a saturating load, about 18.
pub const BUSY_FLUSH_WRITES: usize = 8;

struct Ring {
    /// Contiguous events, oldest first; the last one has `seq == newest`.
    events: VecDeque<Arc<Published>>,
    /// The newest durable `seq` (0 before the first event).
    newest: u64,
}

impl FeedHub {
    /// A hub that keeps the newest `capacity` events (at least one).
    pub fn new(capacity: usize) -> Arc<FeedHub> {
        let (newest, _) = watch::channel(0);
        Arc::new(FeedHub {
            inner: RwLock::new(Ring { events: VecDeque::new(), newest: 0 }),
            newest,
            capacity: capacity.max(1),
            ingest_busy: AtomicBool::new(false),
        })
    }

    /// The conversation actor started a flush of `writes` writes. Readers that can wait (the
    /// streams) read less often while ingest is saturated, so that their writes to clients take
    /// less of the CPU that ingest needs.
    pub fn ingest_load(&self, writes: usize) {
        self.ingest_busy.store(writes >= BUSY_FLUSH_WRITES, Ordering::Relaxed);
    }

    /// Whether the latest flush said ingest is saturated.
    pub fn ingest_busy(&self) -> bool {
        self.ingest_busy.load(Ordering::Relaxed)
    }

    /// The store was opened (at start, or again after an outage or a checkpoint) and its newest
    /// event is `newest`. When that is not where the hub is, the hub forgets what it holds and
    /// starts there: readers then read what they miss from the store.
    pub fn opened_at(&self, newest: u64) {
        let mut ring = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if ring.newest != newest {
            ring.events.clear();
            ring.newest = newest;
            drop(ring);
            self.newest.send_replace(newest);
        }
    }

    /// Adds events made durable. They must follow the newest without a gap; anything else
    /// (which only a bug could produce) makes the hub start again at the last one given, so that
    /// readers fetch the missing range from the store rather than skip it.
    pub fn publish(&self, events: Vec<Published>) {
        if events.is_empty() {
            return;
        }
        let mut ring = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        for published in events {
            let seq = published.event.seq;
            if seq == ring.newest + 1 {
                ring.newest = seq;
                ring.events.push_back(Arc::new(published));
            } else if seq > ring.newest + 1 {
                tracing::error!(
                    message = "Feed events published out of order; readers will read the gap from the store.",
                    expected = ring.newest + 1,
                    got = seq
                );
                ring.events.clear();
                ring.newest = seq;
                ring.events.push_back(Arc::new(published));
            }
        }
        while ring.events.len() > self.capacity {
            ring.events.pop_front();
        }
        let newest = ring.newest;
        drop(ring);
        self.newest.send_replace(newest);
    }

    /// The newest durable `seq` (0 before any event).
    pub fn newest(&self) -> u64 {
        *self.newest.borrow()
    }

    /// A receiver that changes whenever events are published (or the hub starts again).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }

    /// How many events after `after` match `filter`, when the hub holds all of them (None: some
    /// are only in the store).
    pub fn count_matching(&self, after: u64, filter: &EventFilter) -> Option<u64> {
        let ring = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        if after >= ring.newest {
            return Some(0);
        }
        let oldest = ring.newest + 1 - ring.events.len() as u64;
        if after + 1 < oldest {
            return None;
        }
        let skip = (after + 1 - oldest) as usize;
        Some(ring.events.iter().skip(skip).filter(|p| filter.matches(&p.event)).count() as u64)
    }

    /// The events after `after`, at most `limit` of them (see [`Tail`]).
    pub fn after(&self, after: u64, limit: usize) -> Tail {
        let ring = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        if after >= ring.newest {
            return Tail::Events(Vec::new());
        }
        let oldest = ring.newest + 1 - ring.events.len() as u64;
        if after + 1 < oldest {
            return Tail::Behind { oldest };
        }
        let skip = (after + 1 - oldest) as usize;
        Tail::Events(ring.events.iter().skip(skip).take(limit).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> Event {
        Event {
            seq,
            kind: EventType::MessageReceived,
            at: Timestamp::from_millis(1_700_000_000_000 + seq as i64),
            platform: Platform::Whatsapp,
            conversation_id: Some(format!("c{}", seq % 3)),
            data: Event::data_of(&serde_json::json!({"n": seq})).unwrap(),
        }
    }

    fn published(seq: u64) -> Published {
        Published::new(event(seq))
    }

    fn seqs(tail: Tail) -> Vec<u64> {
        match tail {
            Tail::Events(events) => events.iter().map(|p| p.event.seq).collect(),
            Tail::Behind { oldest } => panic!("behind, oldest {oldest}"),
        }
    }

    #[test]
    fn a_reader_gets_what_follows_its_seq_in_order_up_to_its_limit() {
        let hub = FeedHub::new(100);
        hub.opened_at(10);
        hub.publish((11..=20).map(published).collect());
        assert_eq!(hub.newest(), 20);
        assert_eq!(seqs(hub.after(10, 100)), (11..=20).collect::<Vec<_>>());
        assert_eq!(seqs(hub.after(14, 3)), vec![15, 16, 17]);
        assert_eq!(seqs(hub.after(20, 10)), Vec::<u64>::new());
        assert_eq!(seqs(hub.after(99, 10)), Vec::<u64>::new(), "ahead of the feed: nothing yet, not an error");
    }

    #[test]
    fn a_reader_older_than_the_ring_is_sent_to_the_store() {
        let hub = FeedHub::new(5);
        hub.publish((1..=12).map(published).collect());
        match hub.after(3, 10) {
            Tail::Behind { oldest } => assert_eq!(oldest, 8),
            other => panic!("{other:?}"),
        }
        assert_eq!(seqs(hub.after(7, 10)), vec![8, 9, 10, 11, 12], "exactly at the edge is still served");
    }

    #[test]
    fn a_gap_restarts_the_ring_so_that_readers_fetch_the_gap_from_the_store() {
        let hub = FeedHub::new(10);
        hub.publish((1..=3).map(published).collect());
        hub.publish(vec![published(7)]);
        assert_eq!(hub.newest(), 7);
        assert!(matches!(hub.after(3, 10), Tail::Behind { oldest: 7 }));
        // Duplicates (already published) are ignored.
        hub.publish(vec![published(7), published(8)]);
        assert_eq!(seqs(hub.after(6, 10)), vec![7, 8]);
    }

    #[test]
    fn reopening_elsewhere_clears_the_ring_and_wakes_readers() {
        let hub = FeedHub::new(10);
        hub.publish((1..=3).map(published).collect());
        let mut woken = hub.subscribe();
        woken.mark_unchanged();
        hub.opened_at(3);
        assert!(!woken.has_changed().unwrap(), "same place: nothing changes");
        hub.opened_at(5);
        assert!(woken.has_changed().unwrap());
        assert!(matches!(hub.after(3, 10), Tail::Behind { oldest: 6 }));
    }

    #[test]
    fn matching_events_are_counted_while_the_hub_holds_them() {
        let hub = FeedHub::new(4);
        hub.publish((1..=6).map(published).collect());
        let everything = EventFilter::default();
        assert_eq!(hub.count_matching(6, &everything), Some(0));
        assert_eq!(hub.count_matching(9, &everything), Some(0));
        assert_eq!(hub.count_matching(3, &everything), Some(3));
        assert_eq!(hub.count_matching(1, &everything), None, "2 is only in the store");
        let none = EventFilter { types: vec![EventType::ChannelStatus], ..EventFilter::default() };
        assert_eq!(hub.count_matching(2, &none), Some(0));
    }

    #[test]
    fn ingest_is_busy_while_flushes_carry_large_groups() {
        let hub = FeedHub::new(4);
        assert!(!hub.ingest_busy());
        hub.ingest_load(BUSY_FLUSH_WRITES);
        assert!(hub.ingest_busy());
        hub.ingest_load(3);
        assert!(!hub.ingest_busy(), "one quieter flush ends it");
    }

    #[test]
    fn filters_match_type_platform_and_conversation() {
        let e = event(4);
        assert!(EventFilter::default().matches(&e));
        let by_type = EventFilter { types: vec![EventType::MessageStatus], ..Default::default() };
        assert!(!by_type.matches(&e));
        let by_platform = EventFilter { platforms: vec![Platform::Whatsapp], ..Default::default() };
        assert!(by_platform.matches(&e));
        let by_conversation = EventFilter { conversation: Some("c1".into()), ..Default::default() };
        assert!(by_conversation.matches(&e));
        let other_conversation = EventFilter { conversation: Some("c2".into()), ..Default::default() };
        assert!(!other_conversation.matches(&e));
    }

    #[test]
    fn events_serialize_with_the_contract_field_names() {
        let json: serde_json::Value = serde_json::from_str(Published::new(event(42)).json()).unwrap();
        assert_eq!(json["seq"], 42);
        assert_eq!(json["type"], "message.received");
        assert_eq!(json["platform"], "whatsapp");
        assert_eq!(json["conversation_id"], "c0");
        assert!(json["at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(EventType::parse("channel.status"), Some(EventType::ChannelStatus));
        assert_eq!(EventType::parse("feed.reset"), None);
    }
}
