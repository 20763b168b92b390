//! The embedded store: sled trees for conversations, messages, their indexes, raw events and the
//! quarantine. Knows the model and sled; nothing of HTTP or actors.
//!
//! Durability: every write is atomic at once but durable only after a flush. The conversation
//! actor batches flushes (group commit) and answers a webhook only after the flush that covers it.

mod contacts;
mod feed;
mod health;
pub mod keys;
mod keyspace;
mod names;
mod outbox;
mod receivers;
mod search;
mod unreadable;
mod writer;

use keyspace::{Keyspace, TreeId};
use unreadable::{UnreadableRecords, printable_key};
use writer::Writer;

pub use crate::model::OutboundDraft;
pub use feed::{ChannelStatusChange, EventPage};
pub use health::{WriteFailure, WriteProblem, probe_write};
pub use names::{UnnamedContact, names_by_lookup};
pub use outbox::{ConversationTarget, OutboxEntry, StatusChange, StoredToken};
pub use receivers::{
    DeliveryError, FAILED_SHOWN, FailedRecord, LoadedReceiver, PendingRecord, ReceiverSave, ReceiverState,
};
pub use search::{ConversationFilter, needle as search_needle};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::feed::EventType;
use crate::model::{Conversation, Direction, EventKind, InboundEvent, Message, Platform, Status, Timestamp};

/// The on-disk layout this code writes. Bump it with a migration when a key or record changes.
/// Schema 1 kept each table in a sled tree of its own; schema 2 keeps them in one tree (`data`),
/// by key prefix (see `keyspace.rs`); schema 3 moves the quarantine into that tree too and keeps
/// counters of the records (`TreeId::Counters`). `open` migrates older stores.
pub const SCHEMA_VERSION: u32 = 3;

const TREE_DATA: &str = "data";
/// Schema-1 trees with no table of their own now: `activity` listed every platform's
/// conversations, which the per-platform lists (schema 1's `platform_activity`) already hold.
const SCHEMA_1_ONLY_TREES: [&str; 1] = ["activity"];
/// Schema 2's quarantine tree (now `TreeId::Quarantine`).
const TREE_QUARANTINE: &str = "quarantine";
const TREE_TOKENS: &str = "tokens";
/// How many of a conversation's newest messages a watermark receipt looks at.
const WATERMARK_SCAN: usize = 500;
const TREE_META: &str = "meta";
const KEY_SCHEMA_VERSION: &[u8] = b"schema_version";

/// Most items one page of a listing returns.
pub const MAX_PAGE: usize = 200;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store at {path} is in use by another process (another `parley serve`?); stop it, or point storage.path elsewhere"
    )]
    Locked { path: String },
    #[error("cannot open the store at {path}: {}", plain_sled_error(source))]
    Open { path: String, source: sled::Error },
    #[error("the store was written by a newer Parley (schema {found}, this build reads {SCHEMA_VERSION})")]
    SchemaTooNew { found: u32 },
    #[error("store I/O failed: {0}")]
    Io(#[from] sled::Error),
    #[error("a stored record does not decode: {0}")]
    Corrupt(String),
    /// One record exists but does not decode. It has been logged (once) and counted; listings
    /// skip it, and a single read of it reports this.
    #[error("the {table} record `{key}` is stored but cannot be read ({reason})")]
    Unreadable { table: &'static str, key: String, reason: String },
    /// A reply the platform would refuse now (its messaging window); the reason says what is
    /// allowed. Nothing was written.
    #[error("{0}")]
    Refused(String),
    /// A reply the platform cannot take as asked (`platform::prepare_outbound` said why).
    /// Nothing was written.
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    /// What this error says about writing the store, if it is a write failure: every I/O error
    /// is (sled refuses all further writes after one); a record that does not encode is not.
    pub fn write_failure(&self) -> Option<WriteFailure> {
        match self {
            StoreError::Io(e) | StoreError::Open { source: e, .. } => Some(WriteFailure::from_sled(e)),
            StoreError::Locked { .. } => Some(WriteFailure {
                problem: WriteProblem::NotWritable,
                reason: "another process holds the store open".to_owned(),
            }),
            StoreError::SchemaTooNew { .. }
            | StoreError::Corrupt(_)
            | StoreError::Unreadable { .. }
            | StoreError::Refused(_)
            | StoreError::Invalid(_) => None,
        }
    }
}

/// The result of storing one webhook's events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestOutcome {
    /// Events stored for the first time.
    pub stored: usize,
    /// Events seen before (a redelivery), stored nothing.
    pub duplicates: usize,
    /// Of the stored events, how many became messages.
    pub messages: usize,
    /// Conversations this body started.
    pub conversations: usize,
}

/// A raw event as kept in the `events` tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
    pub stored_at: Timestamp,
    pub event: InboundEvent,
}

/// A body whose signature was right but which did not parse.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuarantinedBody {
    pub platform: Platform,
    pub reason: String,
    pub received_at: Timestamp,
    /// The body as text (invalid UTF-8 replaced).
    pub body: String,
}

/// One page of a listing and the cursor of the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Counts for `/metrics`, kept by the store itself (`TreeId::Counters`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounts {
    pub conversations: usize,
    pub messages: usize,
    pub events: usize,
    pub quarantined: usize,
    /// Distinct records found undecodable since the store was opened (each logged once).
    pub unreadable: u64,
}

/// The opened database, its shared tree and the tables in it. Cheap to clone (sled handles are
/// reference counted), but the conversation actor keeps the only long-lived handle: reopening the
/// store after a write failure needs every other one gone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// The tree every table (`TreeId`) lives in; batches are applied to it.
    data: sled::Tree,
    tokens: sled::Tree,
    /// Where it was opened, to open it again ([`Store::checkpoint`]).
    path: PathBuf,
    cache_bytes: u64,
    /// Records written (inserted or removed) through this handle since it was opened: what the
    /// next open will replay from sled's log (see [`Store::checkpoint`]).
    written: Arc<AtomicU64>,
    /// Records found undecodable: logged once each, counted for `/metrics`.
    unreadable: Arc<UnreadableRecords>,
    /// Feed events committed and not yet taken for publishing (see `feed.rs`).
    committed_events: Arc<std::sync::Mutex<Vec<crate::feed::Published>>>,
}

impl Store {
    /// Opens (or creates) the store at `path`, checking the schema version and migrating an older
    /// store (which, once, reads all of it). Blocking: call it off the async workers.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let db = open_db(path, cache_bytes).map_err(|source| open_error(path, source))?;
        let meta = db.open_tree(TREE_META)?;
        let data = db.open_tree(TREE_DATA)?;
        let found = match meta.get(KEY_SCHEMA_VERSION)? {
            None => None,
            Some(bytes) => Some(
                <[u8; 4]>::try_from(bytes.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt("schema version is not 4 bytes".into()))?,
            ),
        };
        match found {
            Some(found) if found > SCHEMA_VERSION => return Err(StoreError::SchemaTooNew { found }),
            Some(1) => {
                migrate_from_separate_trees(&db, &data)?;
                migrate_to_counted_records(&db, &data)?;
            }
            Some(2) => migrate_to_counted_records(&db, &data)?,
            _ => {}
        }
        if found != Some(SCHEMA_VERSION) {
            meta.insert(KEY_SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes())?;
            db.flush()?;
        }
        Ok(Store {
            tokens: db.open_tree(TREE_TOKENS)?,
            data,
            db,
            path: path.to_owned(),
            cache_bytes,
            written: Arc::new(AtomicU64::new(0)),
            unreadable: Arc::default(),
            committed_events: Arc::default(),
        })
    }

    /// Records written since this store was opened.
    pub fn records_written_since_open(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    fn note_written(&self, records: usize) {
        self.written.fetch_add(records as u64, Ordering::Relaxed);
    }

    /// Closes the store and opens it again, so that sled writes its snapshot: sled 0.34 writes
    /// one only when a database is opened, and an open replays every log record written since the
    /// snapshot it finds (about 10 µs per webhook), so a daemon that ran a long time without a
    /// checkpoint would start slowly. Takes about as long as that replay. Everything flushed is
    /// kept; call it only after a flush, on the only handle (the open waits up to `within` for the
    /// file lock of the one dropped here). Blocking.
    pub fn checkpoint(self, within: std::time::Duration) -> Result<Store, StoreError> {
        let (path, cache_bytes) = (self.path.clone(), self.cache_bytes);
        drop(self);
        Store::reopen(&path, cache_bytes, within)
    }

    /// Opens the store again after its previous handle was dropped: sled's own threads may hold
    /// the file lock a moment longer, so a refused lock is retried until `within` has passed.
    /// Blocking.
    pub fn reopen(path: &Path, cache_bytes: u64, within: std::time::Duration) -> Result<Store, StoreError> {
        let deadline = std::time::Instant::now() + within;
        loop {
            match Store::open(path, cache_bytes) {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    /// Decodes the record under `key` of `table`. One that does not decode is reported (logged
    /// once with its key, counted) and returned as [`StoreError::Unreadable`], for the caller to
    /// skip or replace; the reason names the position, never the content.
    fn decode_record<T: DeserializeOwned>(
        &self,
        table: &'static str,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| {
            let reason = format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column());
            self.unreadable.report(table, key, &reason);
            StoreError::Unreadable { table, key: printable_key(key), reason }
        })
    }

    /// The decoded record under `key` of a table of the shared tree.
    fn record<T: DeserializeOwned>(&self, id: TreeId, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.table(id).get(key)?.map(|bytes| self.decode_record(id.name(), key, &bytes)).transpose()
    }

    /// Distinct records found undecodable since the store was opened.
    pub fn unreadable_records(&self) -> u64 {
        self.unreadable.found()
    }

    /// One table of the shared tree.
    fn table(&self, id: TreeId) -> Keyspace<'_> {
        Keyspace::new(&self.data, id)
    }

    /// Makes everything written so far durable, without blocking a tokio worker.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// Makes everything written so far durable, blocking (for shutdown and tests).
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Stores one webhook's events atomically: each event once (by its de-duplication key), each
    /// message once (by its platform id), conversations created or updated. Not durable until
    /// the next flush.
    pub fn ingest(&self, events: &[InboundEvent], stored_at: Timestamp) -> Result<IngestOutcome, StoreError> {
        let outcomes = self.ingest_group(std::slice::from_ref(&events), stored_at)?;
        Ok(outcomes[0])
    }

    /// Stores several webhooks' events in one atomic write (see `writer.rs` for why one write per
    /// group), with one outcome per webhook, in order. A later webhook of the group sees what an
    /// earlier one wrote, exactly as if they had been stored one by one.
    pub fn ingest_group(
        &self,
        bodies: &[&[InboundEvent]],
        stored_at: Timestamp,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        let mut writer = Writer::stored_at(self, stored_at);
        let mut outcomes = Vec::with_capacity(bodies.len());
        for events in bodies {
            let mut outcome = IngestOutcome::default();
            for event in *events {
                let contact = contacts::resolve(&mut writer, event)?;
                if ingest_one(self, &mut writer, event, contact.as_deref(), stored_at, &mut outcome)?
                    && let EventKind::Receipt(receipt) = &event.kind
                {
                    let conversation_id = contact
                        .as_deref()
                        .map(|contact| keys::conversation_id(event.platform, &event.account_id, contact));
                    outbox::apply_receipt(self, &mut writer, event.platform, conversation_id.as_deref(), receipt)?;
                }
            }
            outcomes.push(outcome);
        }
        writer.commit()?;
        Ok(outcomes)
    }

    /// Keeps a body that was signed correctly but did not parse.
    pub fn quarantine(
        &self,
        platform: Platform,
        reason: &str,
        body: &[u8],
        received_at: Timestamp,
    ) -> Result<(), StoreError> {
        let record = QuarantinedBody {
            platform,
            reason: reason.to_owned(),
            received_at,
            body: String::from_utf8_lossy(body).into_owned(),
        };
        let id = self.db.generate_id()?;
        let mut writer = Writer::new(self);
        writer.insert_new(TreeId::Quarantine, id.to_be_bytes(), &record)?;
        writer.commit()
    }

    /// The quarantined bodies, oldest first (one that does not decode is reported and skipped).
    pub fn quarantined(&self) -> Result<Vec<QuarantinedBody>, StoreError> {
        let mut bodies = Vec::new();
        for entry in self.table(TreeId::Quarantine).scan_prefix(&[]) {
            let (key, value) = entry?;
            match self.decode_record(TreeId::Quarantine.name(), &key, &value) {
                Ok(body) => bodies.push(body),
                Err(StoreError::Unreadable { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(bodies)
    }

    /// One conversation; [`StoreError::Unreadable`] if its record does not decode.
    pub fn conversation(&self, id: &str) -> Result<Option<Conversation>, StoreError> {
        self.record(TreeId::Conversations, id.as_bytes())
    }

    /// Conversations, newest activity first, starting after `before`, on one platform or all.
    pub fn conversations_page(
        &self,
        platform: Option<Platform>,
        limit: usize,
        before: Option<(Timestamp, String)>,
    ) -> Result<Page<Conversation>, StoreError> {
        self.conversations_matching(&ConversationFilter { platform, ..ConversationFilter::default() }, limit, before)
    }

    /// Conversations that pass `filter`, newest activity first, starting after `before`. A filter
    /// other than the platform is applied while walking the list, and one page examines at most
    /// [`search::SCAN_BUDGET`] records: a page may then hold fewer than `limit` conversations,
    /// with a `next` that continues the walk where it stopped.
    pub fn conversations_matching(
        &self,
        filter: &ConversationFilter,
        limit: usize,
        before: Option<(Timestamp, String)>,
    ) -> Result<Page<Conversation>, StoreError> {
        self.conversations_within(filter, limit, before, search::SCAN_BUDGET)
    }

    /// [`Store::conversations_matching`] with a budget of its own (tests use a small one).
    fn conversations_within(
        &self,
        filter: &ConversationFilter,
        limit: usize,
        before: Option<(Timestamp, String)>,
        mut budget: usize,
    ) -> Result<Page<Conversation>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let platforms = match filter.platform {
            Some(p) => vec![p],
            None => Platform::ALL.to_vec(),
        };
        // One list per platform, each newest first; the page merges them (keys after the
        // platform tag are time then id, so comparing them orders across platforms).
        let mut lists: Vec<_> = platforms
            .iter()
            .map(|&p| {
                let upper = match &before {
                    Some((at, id)) => keys::activity_key(p, *at, id),
                    None => vec![p.tag(), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                };
                self.table(TreeId::Activity).range(vec![p.tag()]..upper).rev().peekable()
            })
            .collect();
        let mut items = Vec::new();
        // The last conversation examined, where a page cut short by the budget continues.
        let mut examined_last: Option<(Timestamp, String)> = None;
        while items.len() < limit + 1 {
            if filter.is_search() && budget == 0 {
                let next = examined_last.map(|(at, id)| keys::encode_cursor(at, &id));
                return Ok(Page { items, next });
            }
            let mut newest: Option<(usize, sled::IVec)> = None;
            for (i, list) in lists.iter_mut().enumerate() {
                match list.peek() {
                    Some(Ok((key, _))) if newest.as_ref().is_none_or(|(_, n)| key[1..] > n[1..]) => {
                        newest = Some((i, key.clone()));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) => {
                        if let Some(Err(e)) = list.next() {
                            return Err(e.into());
                        }
                    }
                    None => {}
                }
            }
            let Some((i, key)) = newest else { break };
            lists[i].next();
            // One bad entry or record is reported and skipped: it must not take the list down.
            let parsed = key.get(1..9).zip(key.get(9..).and_then(|id| std::str::from_utf8(id).ok()));
            let Some((time, id)) = parsed else {
                self.unreadable.report(TreeId::Activity.name(), &key, "malformed activity key");
                continue;
            };
            let listed_at = keys::time_from_bytes(time.try_into().expect("eight bytes"));
            budget = budget.saturating_sub(1);
            match self.conversation(id) {
                Ok(Some(conversation)) if conversation.updated_at == listed_at => {
                    examined_last = Some((listed_at, conversation.id.clone()));
                    if self.passes(filter, &conversation, &mut budget)? {
                        items.push(conversation);
                    }
                }
                // A stale entry: its conversation was rebuilt after its record stopped decoding,
                // and the old entry's time could not be read to remove it.
                Ok(Some(_)) => {}
                Ok(None) => self.unreadable.report(TreeId::Activity.name(), &key, "names a missing conversation"),
                Err(StoreError::Unreadable { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let next = (items.len() > limit).then(|| {
            items.pop();
            let last = items.last().expect("a page with a next page is not empty");
            keys::encode_cursor(last.updated_at, &last.id)
        });
        Ok(Page { items, next })
    }

    /// One message; [`StoreError::Unreadable`] if its record does not decode.
    pub fn message(&self, id: &str) -> Result<Option<Message>, StoreError> {
        self.record(TreeId::Messages, id.as_bytes())
    }

    /// A conversation's messages, newest first, starting after `before`.
    pub fn messages_page(
        &self,
        conversation_id: &str,
        limit: usize,
        before: Option<(Timestamp, String)>,
    ) -> Result<Page<Message>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let prefix = keys::timeline_prefix(conversation_id);
        let upper = match &before {
            Some((at, id)) => keys::timeline_key(conversation_id, *at, id),
            None => {
                let mut key = prefix.clone();
                key.extend_from_slice(&[0xff; 9]);
                key
            }
        };
        let mut items = Vec::new();
        for entry in self.table(TreeId::Timeline).range(prefix.clone()..upper).rev() {
            let (key, message_id) = entry?;
            // One bad entry or record is reported and skipped: it must not take the list down.
            let Ok(id) = std::str::from_utf8(&message_id) else {
                self.unreadable.report(TreeId::Timeline.name(), &key, "names a message id that is not UTF-8");
                continue;
            };
            match self.message(id) {
                Ok(Some(message)) => items.push(message),
                Ok(None) => self.unreadable.report(TreeId::Timeline.name(), &key, "names a missing message"),
                Err(StoreError::Unreadable { .. }) => {}
                Err(e) => return Err(e),
            }
            if items.len() == limit + 1 {
                break;
            }
        }
        let next = (items.len() > limit).then(|| {
            items.pop();
            let last = items.last().expect("a page with a next page is not empty");
            keys::encode_cursor(last.sent_at, &last.id)
        });
        Ok(Page { items, next })
    }

    /// The message a platform id names, if we have it.
    pub fn message_by_platform_id(
        &self,
        platform: Platform,
        platform_message_id: &str,
    ) -> Result<Option<Message>, StoreError> {
        match self.table(TreeId::PlatformIds).get(keys::platform_message_key(platform, platform_message_id))? {
            Some(id) => self.message(std::str::from_utf8(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?),
            None => Ok(None),
        }
    }

    /// The raw event stored under a platform's de-duplication key.
    pub fn event(&self, platform: Platform, dedup_key: &str) -> Result<Option<StoredEvent>, StoreError> {
        self.record(TreeId::Events, &keys::event_key(platform, dedup_key))
    }

    /// The ids of a conversation's newest messages, newest first.
    fn recent_message_ids(&self, conversation_id: &str) -> Result<Vec<String>, StoreError> {
        let prefix = keys::timeline_prefix(conversation_id);
        self.table(TreeId::Timeline)
            .scan_prefix(&prefix)
            .rev()
            .take(WATERMARK_SCAN)
            .filter_map(|entry| match entry {
                // An id that is not UTF-8 names no message we wrote: nothing to update.
                Ok((_, id)) => String::from_utf8(id.to_vec()).ok().map(Ok),
                Err(e) => Some(Err(e.into())),
            })
            .collect()
    }

    /// How many records the store holds, for `/metrics`: read from the counters that every write
    /// batch keeps (four reads, whatever the store's size).
    pub fn counts(&self) -> Result<StoreCounts, StoreError> {
        let mut counts = [0usize; TreeId::COUNTED.len()];
        for (count, table) in counts.iter_mut().zip(TreeId::COUNTED) {
            *count = read_counter(self.data.get(table.counter_key())?.as_deref())? as usize;
        }
        let [conversations, messages, events, quarantined] = counts;
        Ok(StoreCounts { conversations, messages, events, quarantined, unreadable: self.unreadable_records() })
    }

    /// Bytes the database takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// What `Store::mark_read` did.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadMark {
    Unknown,
    /// Nothing was unread; nothing written.
    AlreadyRead(Conversation),
    /// Written (durable after the next flush).
    Marked(Conversation),
}

impl Store {
    /// The person's newest message in this conversation, among its newest `TIMELINE_LOOKBACK`
    /// messages: what a read receipt or a typing indicator refers to, and when the messaging
    /// window opened for records that do not carry it.
    pub fn newest_inbound_message(&self, conversation_id: &str) -> Result<Option<Message>, StoreError> {
        const TIMELINE_LOOKBACK: usize = 500;
        let prefix = keys::timeline_prefix(conversation_id);
        for entry in self.table(TreeId::Timeline).scan_prefix(&prefix).rev().take(TIMELINE_LOOKBACK) {
            let (_, message_id) = entry?;
            let Ok(message_id) = std::str::from_utf8(&message_id) else { continue };
            match self.message(message_id) {
                Ok(Some(message)) if message.direction == Direction::Inbound => return Ok(Some(message)),
                Ok(_) | Err(StoreError::Unreadable { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The operator read the conversation: its unread count goes to 0, with its
    /// `conversation.updated` event, in one write (none when it was 0 already).
    pub fn mark_read(&self, conversation_id: &str, now: Timestamp) -> Result<ReadMark, StoreError> {
        let mut writer = Writer::stored_at(self, now);
        let Some(before) = writer.get::<Conversation>(TreeId::Conversations, conversation_id.as_bytes())? else {
            return Ok(ReadMark::Unknown);
        };
        if before.unread == 0 {
            return Ok(ReadMark::AlreadyRead(before));
        }
        let after = Conversation { unread: 0, ..before.clone() };
        save_conversation(&mut writer, Some(&before), &after)?;
        writer.commit()?;
        Ok(ReadMark::Marked(after))
    }
}

/// Stores one event into `writer`, in the conversation with `contact` (the event's contact as
/// `contacts::resolve` found it); false when it was a duplicate.
fn ingest_one(
    store: &Store,
    writer: &mut Writer<'_>,
    event: &InboundEvent,
    contact: Option<&str>,
    stored_at: Timestamp,
    outcome: &mut IngestOutcome,
) -> Result<bool, StoreError> {
    let event_key = keys::event_key(event.platform, &event.dedup_key);
    if writer.contains(TreeId::Events, &event_key)? {
        outcome.duplicates += 1;
        return Ok(false);
    }
    let contact = contact.map(str::to_owned);
    let conversation_id =
        contact.as_deref().map(|contact| keys::conversation_id(event.platform, &event.account_id, contact));
    let mut rebuilt = false;
    let mut conversation: Option<Conversation> = match (&conversation_id, &contact) {
        (Some(id), Some(contact)) => match writer.get(TreeId::Conversations, id.as_bytes()) {
            Ok(found) => found,
            // Rebuilt rather than refused: refusing would answer this contact's every webhook
            // 503 for good (the platform redelivers the same body forever).
            Err(StoreError::Unreadable { .. }) => {
                let identity = ConversationTarget {
                    platform: event.platform,
                    account_id: event.account_id.clone(),
                    contact_id: contact.clone(),
                };
                rebuilt = true;
                Some(rebuilt_conversation(store, writer, id, &identity, event.occurred_at)?)
            }
            Err(e) => return Err(e),
        },
        _ => None,
    };
    let before = conversation.clone();
    // Times past the horizon can only come from an older build, which stored what platforms
    // sent unchecked (the year 10000); such a conversation takes the times of its next events
    // instead of staying first in the list for good.
    let horizon = stored_at.saturating_add_millis(crate::time::MAX_EVENT_LEAD_MILLIS);
    let creates_conversation =
        matches!(event.kind, EventKind::Message { .. } | EventKind::Subscribed | EventKind::ConversationStarted { .. });
    if conversation.is_none()
        && creates_conversation
        && let (Some(id), Some(contact)) = (&conversation_id, &contact)
    {
        conversation = Some(Conversation {
            id: id.clone(),
            platform: event.platform,
            account_id: event.account_id.clone(),
            contact_id: contact.clone(),
            contact_name: None,
            last_message_text: None,
            last_message_at: None,
            unread: 0,
            created_at: event.occurred_at,
            updated_at: event.occurred_at,
            last_inbound_at: None,
        });
        outcome.conversations += 1;
    }

    let mut message_id = None;
    if let (EventKind::Message { direction, platform_message_id, content }, Some(conv)) =
        (&event.kind, &mut conversation)
    {
        let index_key = keys::platform_message_key(event.platform, platform_message_id);
        // The same message under another event key (an echo of a message we sent, say) keeps its
        // event but is not stored twice.
        if !writer.contains(TreeId::PlatformIds, &index_key)? {
            let id = keys::message_id(store.db.generate_id()?);
            let message = Message {
                id: id.clone(),
                conversation_id: conv.id.clone(),
                platform: event.platform,
                direction: *direction,
                platform_message_id: Some(platform_message_id.clone()),
                sender_id: event.sender_id.clone(),
                text: content.text.clone(),
                attachments: content.attachments.clone(),
                sent_at: event.occurred_at,
                status: match direction {
                    Direction::Inbound => Status::Received,
                    Direction::Outbound => Status::Sent,
                },
                error: None,
                kind: content.kind,
                payload: content.payload.clone(),
                reply_to: content.reply_to.clone(),
                location: content.location.clone(),
                contacts: content.contacts.clone(),
                received_at: stored_at,
                dispatched_at: None,
                previous: Vec::new(),
                revoked_at: None,
            };
            writer.insert_new(TreeId::Messages, id.as_bytes(), &message)?;
            let kind = match direction {
                Direction::Inbound => EventType::MessageReceived,
                // An echo of a message sent from the platform's own app.
                Direction::Outbound => EventType::MessageCreated,
            };
            writer.emit_message(kind, &message)?;
            writer.insert_raw(TreeId::Timeline, keys::timeline_key(&conv.id, event.occurred_at, &id), id.as_bytes());
            writer.insert_raw(TreeId::PlatformIds, index_key, id.as_bytes());
            if conv.last_message_at.is_none_or(|last| event.occurred_at >= last || last > horizon) {
                conv.last_message_text = Some(content.preview());
                conv.last_message_at = Some(event.occurred_at);
            }
            if *direction == Direction::Inbound {
                // Nobody wrote later than we received it: a clock ahead of ours (believed up to a
                // day, `time.rs`) must not stretch the window past what the platform allows.
                let wrote_at = event.occurred_at.min(stored_at);
                conv.last_inbound_at = Some(conv.last_inbound_at.map_or(wrote_at, |at| at.max(wrote_at)));
            }
            match direction {
                Direction::Inbound => conv.unread += 1,
                // A reply from our side (an echo from the Page inbox) means someone read the thread.
                Direction::Outbound => conv.unread = 0,
            }
            outcome.messages += 1;
            message_id = Some(id);
        }
    }
    if let (EventKind::Edit { platform_message_id, .. } | EventKind::Revoke { platform_message_id }, Some(conv)) =
        (&event.kind, &mut conversation)
        && let Some(updated) = apply_change(writer, event, platform_message_id)?
    {
        // The conversation's preview follows an edit of its last message.
        if conv.last_message_at == Some(updated.sent_at) {
            conv.last_message_text = Some(updated.preview());
        }
        message_id = Some(updated.id);
    }
    if let Some(conv) = &mut conversation {
        if event.contact_name.is_some()
            && !matches!(event.kind, EventKind::Message { direction: Direction::Outbound, .. })
        {
            conv.contact_name.clone_from(&event.contact_name);
        }
        if creates_conversation && (event.occurred_at > conv.updated_at || conv.updated_at > horizon) {
            conv.updated_at = event.occurred_at;
        }
        // A rebuilt record is written whatever this event changes.
        if rebuilt || before.as_ref() != Some(conv) {
            save_conversation(writer, before.as_ref(), conv)?;
        }
    }
    let record = StoredEvent { conversation_id, message_id, stored_at, event: event.clone() };
    writer.insert_new(TreeId::Events, event_key, &record)?;
    outcome.stored += 1;
    Ok(true)
}

/// Applies an edit or a revoke to the stored message with `platform_message_id`, keeping what it
/// said before in `previous`, and emits `message.updated`; the message as it is now, or None when
/// it is not stored (then only the event is kept) or no longer decodes. Only the sender's own
/// message changes: an edit claiming a message of the other side is ignored.
fn apply_change(
    writer: &mut Writer<'_>,
    event: &InboundEvent,
    platform_message_id: &str,
) -> Result<Option<Message>, StoreError> {
    let index_key = keys::platform_message_key(event.platform, platform_message_id);
    let Some(id) = writer.get_raw(TreeId::PlatformIds, &index_key)? else { return Ok(None) };
    let mut message: Message = match writer.get(TreeId::Messages, &id) {
        Ok(Some(message)) => message,
        Ok(None) | Err(StoreError::Unreadable { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    if message.sender_id.is_some() && message.sender_id != event.sender_id {
        return Ok(None);
    }
    message.previous.push(crate::model::PreviousVersion {
        text: message.text.clone(),
        attachments: message.attachments.clone(),
        until: event.occurred_at,
    });
    match &event.kind {
        EventKind::Edit { content, .. } => {
            message.text = content.text.clone();
            message.attachments = content.attachments.clone();
        }
        _ => {
            message.text = None;
            message.attachments = Vec::new();
            message.revoked_at = Some(event.occurred_at);
        }
    }
    writer.insert(TreeId::Messages, id, &message)?;
    writer.emit_message(EventType::MessageUpdated, &message)?;
    Ok(Some(message))
}

/// A conversation whose stored record no longer decodes, rebuilt: its identity from `identity`
/// (the id is derived from it), its first time, latest time and preview from its timeline (the
/// messages are intact: they are records of their own), `fallback_at` when the timeline is
/// empty. The unread count cannot be recovered and starts again at 0. The old bytes are kept
/// in the `unreadable` table. Its activity entry is written here, so that the caller saves it as
/// an update of a stored conversation; the old entry, whose time could not be read, stays and is
/// skipped as stale by listings.
fn rebuilt_conversation(
    store: &Store,
    writer: &mut Writer<'_>,
    id: &str,
    identity: &ConversationTarget,
    fallback_at: Timestamp,
) -> Result<Conversation, StoreError> {
    writer.set_aside(TreeId::Conversations, id.as_bytes())?;
    let prefix = keys::timeline_prefix(id);
    let time_of = |key: &[u8]| {
        key.get(prefix.len()..prefix.len() + 8).map(|time| keys::time_from_bytes(time.try_into().expect("eight bytes")))
    };
    let timeline = store.table(TreeId::Timeline);
    let oldest = timeline.scan_prefix(&prefix).next().transpose()?;
    let newest = timeline.scan_prefix(&prefix).next_back().transpose()?;
    let latest = match &newest {
        Some((_, message_id)) => match std::str::from_utf8(message_id).ok().map(|m| store.message(m)) {
            Some(Ok(message)) => message,
            Some(Err(StoreError::Unreadable { .. })) | None => None,
            Some(Err(e)) => return Err(e),
        },
        None => None,
    };
    let created_at = oldest.as_ref().and_then(|(key, _)| time_of(key)).unwrap_or(fallback_at);
    let updated_at = newest.as_ref().and_then(|(key, _)| time_of(key)).unwrap_or(fallback_at);
    writer.insert_raw(TreeId::Activity, keys::activity_key(identity.platform, updated_at, id), Vec::new());
    tracing::warn!(
        message = "Rebuilt a conversation whose record did not decode; its old bytes are kept aside.",
        conversation_id = id,
        platform = %identity.platform,
    );
    Ok(Conversation {
        id: id.to_owned(),
        platform: identity.platform,
        account_id: identity.account_id.clone(),
        contact_id: identity.contact_id.clone(),
        contact_name: None,
        last_message_text: latest.as_ref().map(Message::preview),
        last_message_at: latest.as_ref().map(|m| m.sent_at),
        unread: 0,
        created_at,
        updated_at,
        // Read from the timeline by `Store::enqueue` when a reply needs it.
        last_inbound_at: None,
    })
}

/// Writes a conversation and moves it in the activity indexes when its time changed.
fn save_conversation(
    writer: &mut Writer<'_>,
    before: Option<&Conversation>,
    after: &Conversation,
) -> Result<(), StoreError> {
    if before.is_none_or(|b| b.updated_at != after.updated_at) {
        if let Some(b) = before {
            writer.remove(TreeId::Activity, keys::activity_key(b.platform, b.updated_at, &b.id));
        }
        writer.insert_raw(
            TreeId::Activity,
            keys::activity_key(after.platform, after.updated_at, &after.id),
            Vec::new(),
        );
    }
    writer.emit_conversation(before, after)?;
    match before {
        None => writer.insert_new(TreeId::Conversations, after.id.as_bytes(), after),
        Some(_) => writer.insert(TreeId::Conversations, after.id.as_bytes(), after),
    }
}

/// A counter's value (`TreeId::Counters`); absent is 0.
fn read_counter(bytes: Option<&[u8]>) -> Result<u64, StoreError> {
    match bytes {
        None => Ok(0),
        Some(bytes) => <[u8; 8]>::try_from(bytes)
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Corrupt("a record counter is not 8 bytes".into())),
    }
}

/// sled 0.34.7 refuses a second open of a locked store with this `Other` I/O error.
fn is_lock_refusal(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

fn sled_config(path: &Path, cache_bytes: u64) -> sled::Config {
    sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .mode(sled::Mode::LowSpace)
        // No background flush: every write that anyone waits for rides the conversation
        // actor's group commit, and sled's timed flush, racing it, put 60 ms into the p99
        // of webhooks at 2,000/s (ingest bench). Writes nobody waits for (a message becoming
        // `sending`) are made durable by the next group flush or the flush at shutdown.
        .flush_every_ms(None)
}

/// Opens sled, removing a snapshot it could not finish if that is what stops it.
///
/// sled 0.34 writes a snapshot of its page table at every open (and every million writes) to
/// `snap.<lsn>.generating`, then renames it. When the disk fills up (or the process dies) in
/// between, the unfinished file stays, sled takes it for the newest snapshot, and every later open
/// fails with `Corruption` (ARCHITECTURE.md, "A store that cannot be written"). An unfinished
/// snapshot is never needed: without it sled starts from the previous one and reads the rest from
/// its log, exactly as after a crash before the snapshot began.
fn open_db(path: &Path, cache_bytes: u64) -> sled::Result<sled::Db> {
    let error = match sled_config(path, cache_bytes).open() {
        Err(error @ sled::Error::Corruption { .. }) => error,
        other => return other,
    };
    let removed = remove_unfinished_snapshots(path)?;
    if removed == 0 {
        return Err(error);
    }
    tracing::warn!(message = "Removed an unfinished sled snapshot that kept the store from opening.", files = removed);
    sled_config(path, cache_bytes).open()
}

/// Deletes `snap.*.generating` files in the store's directory; how many there were.
fn remove_unfinished_snapshots(path: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Copies a whole tree into the shared tree under `id`'s prefix, in batches; how many records.
fn copy_into(old: &sled::Tree, data: &sled::Tree, id: TreeId) -> Result<usize, StoreError> {
    let mut moved = 0usize;
    let mut batch = sled::Batch::default();
    let mut in_batch = 0usize;
    for entry in old.iter() {
        let (key, value) = entry?;
        batch.insert(id.key(&key), value);
        in_batch += 1;
        if in_batch == 10_000 {
            data.apply_batch(std::mem::take(&mut batch))?;
            moved += in_batch;
            in_batch = 0;
        }
    }
    data.apply_batch(batch)?;
    Ok(moved + in_batch)
}

/// Schema 1 → 2: copies each table's sled tree into the shared tree under its prefix, makes that
/// durable, then drops the old trees. Safe to interrupt: until the schema version is rewritten,
/// the next start copies again (the same keys and values), and trees are dropped only after the
/// copy is durable.
fn migrate_from_separate_trees(db: &sled::Db, data: &sled::Tree) -> Result<(), StoreError> {
    let existing = db.tree_names();
    let mut moved = 0usize;
    for (id, name) in TreeId::ALL {
        if existing.iter().any(|n| n.as_ref() == name.as_bytes()) {
            moved += copy_into(&db.open_tree(name)?, data, id)?;
        }
    }
    db.flush()?;
    for name in TreeId::ALL.iter().map(|(_, name)| *name).chain(SCHEMA_1_ONLY_TREES) {
        if existing.iter().any(|n| n.as_ref() == name.as_bytes()) {
            db.drop_tree(name)?;
        }
    }
    db.flush()?;
    tracing::info!(message = "Store migrated to one shared tree.", from_schema = 1, to_schema = 2, records = moved);
    Ok(())
}

/// Schema 2 → 3: moves the quarantine tree into the shared tree and counts the counted tables,
/// once, into `TreeId::Counters` (the only time Parley reads the whole store). Safe to interrupt:
/// until the schema version is rewritten, the next start does it again; the copy writes the same
/// keys, the old tree is dropped only after the copy is durable, and the count is taken after the
/// copy, from the shared tree alone.
fn migrate_to_counted_records(db: &sled::Db, data: &sled::Tree) -> Result<(), StoreError> {
    tracing::info!(message = "Counting the store's records once (schema 2 to 3); a large store takes a while.");
    let started = std::time::Instant::now();
    if db.tree_names().iter().any(|n| n.as_ref() == TREE_QUARANTINE.as_bytes()) {
        copy_into(&db.open_tree(TREE_QUARANTINE)?, data, TreeId::Quarantine)?;
        db.flush()?;
        db.drop_tree(TREE_QUARANTINE)?;
    }
    let mut batch = sled::Batch::default();
    let mut counts = [0u64; TreeId::COUNTED.len()];
    for (count, table) in counts.iter_mut().zip(TreeId::COUNTED) {
        *count = Keyspace::new(data, table).count_by_scanning()?;
        batch.insert(table.counter_key(), &count.to_be_bytes());
    }
    data.apply_batch(batch)?;
    db.flush()?;
    let [conversations, messages, events, quarantined] = counts;
    tracing::info!(
        message = "Store migrated: record counts are kept as records are written.",
        from_schema = 2,
        to_schema = 3,
        conversations,
        messages,
        events,
        quarantined,
        seconds = started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// An operator's sentence for a failed open. sled reports a store held by another process as an
/// `Other` I/O error whose text embeds Rust debug output (`could not acquire lock on "…/db": Os {
/// code: 11, kind: WouldBlock, … }`); every other I/O error is shown by its plain text.
fn open_error(path: &Path, error: sled::Error) -> StoreError {
    let path = path.display().to_string();
    if is_lock_refusal(&error) { StoreError::Locked { path } } else { StoreError::Open { path, source: error } }
}

/// sled's error as plain text: an I/O error by its own words (`No space left on device (os error
/// 28)`), not sled's `IO error: ` wrapping.
fn plain_sled_error(error: &sled::Error) -> String {
    match error {
        sled::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// A record as stored. Every value of the record types encodes to JSON that decodes back (times
/// are bounded to four-digit years, floats are finite, raw events nest at most
/// `platform::json::MAX_BODY_DEPTH`): debug builds, and so every test, check each write.
fn encode<T: Serialize + DeserializeOwned>(value: &T) -> Result<Vec<u8>, StoreError> {
    let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(format!("cannot encode a record: {e}")))?;
    // The position only: the record may hold a message's text.
    #[cfg(debug_assertions)]
    if let Err(e) = serde_json::from_slice::<T>(&bytes) {
        panic!(
            "a {} record would not read back: {:?} error at line {} column {}",
            std::any::type_name::<T>(),
            e.classify(),
            e.line(),
            e.column()
        );
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
