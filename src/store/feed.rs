//! The event log of the live feed (see `crate::feed`), behind the store's interface.
//!
//! The semantics a store backend must provide (ARCHITECTURE.md, "The event log"):
//! - **Atomic with the change.** An event is written in the same atomic batch as the change it
//!   reports (`Writer::emit`, applied by `Writer::commit`): no change is visible without its event,
//!   and no event exists for a change that was not stored.
//! - **Gap-free and ordered.** `seq` is the previous event's plus one, assigned while the batch is
//!   built (the conversation actor is the only writer, so batches are built one at a time), and
//!   the newest `seq` is kept in the same batch. Events are read back in `seq` order.
//! - **Durable before it is shown.** Events committed but not flushed are handed to the caller
//!   only through [`Store::take_committed_events`], which the conversation actor calls as a flush
//!   starts and publishes when that flush succeeded. A batch lost to a crash or a failed flush takes
//!   its events with it, and their numbers are given again: nobody saw them.
//! - **Pruned from the oldest end only** ([`Store::prune_events`]), so what is retained is always
//!   one contiguous range ending at the newest.
//!
//! Layout: the events of one write batch are one record (a JSON array of the events, in order)
//! under the `seq` of its first event. sled's cost is mostly per key, and one webhook's change is
//! two or three events: one key per batch instead of one per event kept the event log's cost
//! on ingest small.

use serde_json::json;

use super::keyspace::TreeId;
use super::writer::Writer;
use super::{Store, StoreError};
use crate::feed::{Event, EventType, Published};
use crate::model::{Conversation, Message, Platform, Timestamp};

/// Where `Counters` keeps the newest `seq` (the feed table is not a counted one, so this key is free).
fn newest_seq_key() -> Vec<u8> {
    vec![TreeId::Counters.prefix(), TreeId::Feed.prefix()]
}

fn event_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// What a reader of the store's event log gets.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    /// Events after the asked-for `seq`, in order.
    pub events: Vec<Event>,
    /// The oldest retained event's `seq`, or None when none is retained.
    pub oldest: Option<u64>,
    /// The newest `seq` ever assigned (0 before the first event), durable or not.
    pub newest: u64,
}

impl Store {
    /// The newest `seq` assigned (0 before the first event). Counts committed batches whose flush
    /// may still be running.
    pub fn newest_event_seq(&self) -> Result<u64, StoreError> {
        super::read_counter(self.data.get(newest_seq_key())?.as_deref())
    }

    /// The oldest retained event's `seq`, if any.
    pub fn oldest_event_seq(&self) -> Result<Option<u64>, StoreError> {
        match self.table(TreeId::Feed).scan_prefix(&[]).next() {
            None => Ok(None),
            Some(entry) => {
                let (key, _) = entry?;
                Ok(Some(seq_of(&key)?))
            }
        }
    }

    /// Up to `limit` events after `after`, in order. A record that does not decode is reported
    /// and skipped (its events are then missing from the page; the reader's cursor moves past).
    pub fn events_after(&self, after: u64, limit: usize) -> Result<EventPage, StoreError> {
        let mut events = Vec::with_capacity(limit.min(1024));
        let wanted = after.saturating_add(1);
        let table = self.table(TreeId::Feed);
        // The record holding `wanted` is the last one that starts at or before it.
        let holding = table.range(event_key(0).to_vec()..event_key(wanted.saturating_add(1)).to_vec()).next_back();
        let start = match holding {
            Some(entry) => entry?.0.to_vec(),
            None => event_key(0).to_vec(),
        };
        for entry in table.range(start..event_key(u64::MAX).to_vec()) {
            if events.len() >= limit {
                break;
            }
            let (key, value) = entry?;
            match self.decode_record::<Vec<Event>>(TreeId::Feed.name(), &key, &value) {
                Ok(record) => {
                    let room = limit - events.len();
                    events.extend(record.into_iter().filter(|e| e.seq > after).take(room));
                }
                Err(StoreError::Unreadable { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(EventPage { events, oldest: self.oldest_event_seq()?, newest: self.newest_event_seq()? })
    }

    /// Events committed since the last call, in order, for the caller to publish once a flush
    /// that started after this call has succeeded.
    pub fn take_committed_events(&self) -> Vec<Published> {
        std::mem::take(&mut *self.committed_events.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Removes up to `max` of the oldest records (each holds the events of one write) whose
    /// events were all stored before `before`, in one batch; returns how many. Stops at the first
    /// record with a younger event, so the retained events stay one contiguous range. The newest
    /// record is never removed (the oldest retained event is then among the newest).
    pub fn prune_events(&self, before: Timestamp, max: usize) -> Result<usize, StoreError> {
        let mut records = self.table(TreeId::Feed).scan_prefix(&[]).peekable();
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        while removed < max {
            let Some(entry) = records.next() else { break };
            if records.peek().is_none() {
                break; // the newest record
            }
            let (key, value) = entry?;
            // A record that does not decode is old by position (it precedes a younger one).
            let newest_at = match self.decode_record::<Vec<Event>>(TreeId::Feed.name(), &key, &value) {
                Ok(record) => record.last().map(|e| e.at),
                Err(StoreError::Unreadable { .. }) => None,
                Err(e) => return Err(e),
            };
            if newest_at.is_some_and(|at| at >= before) {
                break;
            }
            batch.remove(TreeId::Feed.key(&key));
            removed += 1;
        }
        if removed > 0 {
            self.data.apply_batch(batch)?;
            self.note_written(removed);
        }
        Ok(removed)
    }
}

fn render_error(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("cannot encode a feed event: {e}"))
}

fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt(format!("an event key of {} bytes", key.len())))
}

/// Pending events of one write batch (held by the `Writer`).
#[derive(Default)]
pub(super) struct PendingEvents {
    /// Rendered once: the record's bytes are the JSON that readers are sent.
    events: Vec<Published>,
}

impl PendingEvents {
    pub(super) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Writes the events, as one record under the first one's `seq` (one key per write rather than
    /// one per event: sled's cost is mostly per key), and the newest `seq` into `batch`.
    pub(super) fn write_into(&self, batch: &mut sled::Batch) -> Result<usize, StoreError> {
        let (Some(first), Some(last)) = (self.events.first(), self.events.last()) else { return Ok(0) };
        let mut record = String::with_capacity(2 + self.events.iter().map(|p| p.json().len() + 1).sum::<usize>());
        record.push('[');
        for (i, published) in self.events.iter().enumerate() {
            if i > 0 {
                record.push(',');
            }
            record.push_str(published.json());
        }
        record.push(']');
        batch.insert(TreeId::Feed.key(&event_key(first.event.seq)), record.into_bytes());
        batch.insert(newest_seq_key(), &last.event.seq.to_be_bytes());
        Ok(2)
    }

    pub(super) fn into_events(self) -> Vec<Published> {
        self.events
    }
}

impl Writer<'_> {
    /// Adds an event to this batch, numbered after every event before it.
    pub(super) fn emit(
        &mut self,
        kind: EventType,
        platform: Platform,
        conversation_id: Option<&str>,
        data: Box<serde_json::value::RawValue>,
    ) -> Result<(), StoreError> {
        let seq = match self.pending_events().events.last() {
            Some(previous) => previous.event.seq + 1,
            None => self.store().newest_event_seq()? + 1,
        };
        let event =
            Event { seq, kind, at: self.at(), platform, conversation_id: conversation_id.map(str::to_owned), data };
        let published =
            Published::render(event).map_err(|e| StoreError::Corrupt(format!("cannot encode a feed event: {e}")))?;
        self.pending_events().events.push(published);
        Ok(())
    }

    /// `message.received`, `message.created` or `message.status` for `message` as it is now.
    pub(super) fn emit_message(&mut self, kind: EventType, message: &Message) -> Result<(), StoreError> {
        #[derive(serde::Serialize)]
        struct Data<'m> {
            message: &'m Message,
        }
        let data = Event::data_of(&Data { message }).map_err(render_error)?;
        self.emit(kind, message.platform, Some(&message.conversation_id), data)
    }

    /// `conversation.updated`, when `after` is new or differs from `before` in what the event
    /// reports (name, unread count, last message).
    pub(super) fn emit_conversation(
        &mut self,
        before: Option<&Conversation>,
        after: &Conversation,
    ) -> Result<(), StoreError> {
        let changed = before.is_none_or(|b| {
            b.contact_name != after.contact_name
                || b.unread != after.unread
                || b.last_message_text != after.last_message_text
                || b.last_message_at != after.last_message_at
        });
        if !changed {
            return Ok(());
        }
        #[derive(serde::Serialize)]
        struct Data<'c> {
            conversation: crate::model::ConversationView<'c>,
        }
        // With its window as of this write.
        let data = Event::data_of(&Data { conversation: after.view(self.at()) }).map_err(render_error)?;
        self.emit(EventType::ConversationUpdated, after.platform, Some(&after.id), data)
    }

    /// `conversation.merged`: the conversation `from` is now part of `into`.
    pub(super) fn emit_merged(&mut self, from: &str, into: &Conversation) -> Result<(), StoreError> {
        #[derive(serde::Serialize)]
        struct Data<'c> {
            from: &'c str,
            conversation: crate::model::ConversationView<'c>,
        }
        let data = Event::data_of(&Data { from, conversation: into.view(self.at()) }).map_err(render_error)?;
        self.emit(EventType::ConversationMerged, into.platform, Some(&into.id), data)
    }
}

/// What a `channel.status` event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStatusChange {
    pub platform: Platform,
    pub ready: bool,
    /// Why it is not ready, or what the warning is.
    pub reason: Option<String>,
    pub token_expires_in_secs: Option<i64>,
}

impl Store {
    /// Records a `channel.status` event (durable after the next flush).
    pub fn record_channel_status(&self, change: &ChannelStatusChange) -> Result<(), StoreError> {
        let mut writer = Writer::new(self);
        let data = json!({ "channel": {
            "platform": change.platform,
            "ready": change.ready,
            "reason": change.reason,
            "token_expires_in_secs": change.token_expires_in_secs,
        }});
        let data = Event::data_of(&data).map_err(render_error)?;
        writer.emit(EventType::ChannelStatus, change.platform, None, data)?;
        writer.commit()
    }
}
