//! Keyspaces: the store's tables, each a one-byte key prefix inside one shared sled tree.
//!
//! Why one tree: a webhook writes seven to nine records across tables, and they must land
//! together. Across sled trees that takes a transaction, and a sled 0.34 transaction reads every
//! key it writes (to return the old value) and keeps a write set of its own: under webhook load
//! that was a third of the conversation actor's time. Inside one tree, `apply_batch` is atomic
//! and does no extra reads, so a group of webhooks is one batch on one tree.

use std::ops::Range;

use sled::IVec;

/// The tables inside the shared tree. The discriminant is the key prefix: never renumber one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub(super) enum TreeId {
    Conversations = 1,
    Messages = 2,
    Timeline = 3,
    PlatformIds = 4,
    Events = 5,
    Activity = 6,
    // 7 is unused.
    PendingReceipts = 8,
    Watermarks = 9,
    Outbox = 10,
    /// Signed bodies that did not parse (schema 2 kept them in a tree of their own).
    Quarantine = 11,
    /// How many records some tables hold (see `TreeId::COUNTED`), kept in the same atomic batch
    /// as the records, so that nothing at start-up has to count them.
    Counters = 12,
    /// Records that no longer decoded and were replaced (a conversation rebuilt by ingest), kept
    /// byte for byte under their table's prefix and key (see `unreadable.rs`).
    Unreadable = 13,
    /// The live feed's event log, by `seq` (see `feed.rs`); the newest `seq` is in `Counters`.
    Feed = 14,
    /// Outgoing webhook receivers' state: cursor, enabled, pending and failed events (see
    /// `receivers.rs`).
    Receivers = 15,
    /// Which conversation contact each id of a person belongs to (see `contacts.rs`).
    Contacts = 16,
}

impl TreeId {
    /// Every table, with the name of the sled tree it had in schema 1 (for the migration).
    pub(super) const ALL: [(TreeId, &'static str); 9] = [
        (TreeId::Conversations, "conversations"),
        (TreeId::Messages, "messages"),
        (TreeId::Timeline, "timeline"),
        (TreeId::PlatformIds, "platform_ids"),
        (TreeId::Events, "events"),
        // Schema 1's per-platform list has exactly the keys `activity` has now.
        (TreeId::Activity, "platform_activity"),
        (TreeId::PendingReceipts, "pending_receipts"),
        (TreeId::Watermarks, "watermarks"),
        (TreeId::Outbox, "outbox"),
    ];

    /// The tables whose records are counted in `Counters`, in `StoreCounts` order.
    pub(super) const COUNTED: [TreeId; 4] =
        [TreeId::Conversations, TreeId::Messages, TreeId::Events, TreeId::Quarantine];

    /// Where `Counters` keeps this table's count.
    pub(super) fn counter_key(self) -> Vec<u8> {
        vec![TreeId::Counters.prefix(), self.prefix()]
    }

    /// The table's name, for logs and metrics.
    pub(super) fn name(self) -> &'static str {
        match self {
            TreeId::Conversations => "conversations",
            TreeId::Messages => "messages",
            TreeId::Timeline => "timeline",
            TreeId::PlatformIds => "platform_ids",
            TreeId::Events => "events",
            TreeId::Activity => "activity",
            TreeId::PendingReceipts => "pending_receipts",
            TreeId::Watermarks => "watermarks",
            TreeId::Outbox => "outbox",
            TreeId::Quarantine => "quarantine",
            TreeId::Counters => "counters",
            TreeId::Unreadable => "unreadable",
            TreeId::Feed => "feed",
            TreeId::Receivers => "receivers",
            TreeId::Contacts => "contacts",
        }
    }

    pub(super) fn prefix(self) -> u8 {
        self as u8
    }

    /// `key` as stored in the shared tree.
    pub(super) fn key(self, key: &[u8]) -> Vec<u8> {
        let mut stored = Vec::with_capacity(key.len() + 1);
        stored.push(self.prefix());
        stored.extend_from_slice(key);
        stored
    }
}

/// One table: reads and single writes on its part of the shared tree, with keys as the table
/// sees them (no prefix). Made on the spot by `Store::table`.
#[derive(Clone, Copy)]
pub(super) struct Keyspace<'t> {
    tree: &'t sled::Tree,
    id: TreeId,
}

/// An entry of a table: its key without the prefix, and its value.
pub(super) type Entry = sled::Result<(IVec, IVec)>;

impl<'t> Keyspace<'t> {
    pub(super) fn new(tree: &'t sled::Tree, id: TreeId) -> Self {
        Keyspace { tree, id }
    }

    pub(super) fn get(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<IVec>> {
        self.tree.get(self.id.key(key.as_ref()))
    }

    pub(super) fn contains_key(&self, key: impl AsRef<[u8]>) -> sled::Result<bool> {
        self.tree.contains_key(self.id.key(key.as_ref()))
    }

    /// A single write outside any batch: for tests that plant records.
    #[cfg(test)]
    pub(super) fn insert(&self, key: impl AsRef<[u8]>, value: impl Into<IVec>) -> sled::Result<()> {
        self.tree.insert(self.id.key(key.as_ref()), value)?;
        Ok(())
    }

    /// Entries with keys in `range`, in key order (reversible).
    pub(super) fn range(&self, range: Range<Vec<u8>>) -> impl DoubleEndedIterator<Item = Entry> + use<> {
        let stored = self.id.key(&range.start)..self.id.key(&range.end);
        self.tree.range(stored).map(strip_prefix)
    }

    /// Entries whose keys start with `prefix`, in key order (reversible).
    pub(super) fn scan_prefix(&self, prefix: &[u8]) -> impl DoubleEndedIterator<Item = Entry> + use<> {
        self.tree.scan_prefix(self.id.key(prefix)).map(strip_prefix)
    }

    /// Entries in the table, by reading every one of them: for migrations and tests only. (An
    /// error ends the count: sled's iterators repeat a failing step rather than moving on.)
    pub(super) fn count_by_scanning(&self) -> sled::Result<u64> {
        let mut count = 0;
        for entry in self.tree.scan_prefix([self.id.prefix()]) {
            entry?;
            count += 1;
        }
        Ok(count)
    }
}

fn strip_prefix(entry: sled::Result<(IVec, IVec)>) -> Entry {
    entry.map(|(key, value)| (IVec::from(&key[1..]), value))
}
