//! A write batch over several tables: reads see the batch's own writes, and the whole batch is
//! applied as one atomic `apply_batch` on the shared tree (see `keyspace.rs`).
//!
//! Why gather writes instead of writing at once: in sled 0.34 every atomic batch rolls and writes
//! out the log's I/O buffer (`pin_log`), so one batch per webhook would cost a log write per
//! webhook and defeat group commit. The conversation actor is the only writer, so reading the
//! tables while the batch is being built is consistent, and one batch per *group* of webhooks
//! keeps each webhook atomic and the I/O per group.

use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::feed::PendingEvents;
use super::keyspace::{Keyspace, TreeId};
use super::{Store, StoreError, encode};
use crate::time::Timestamp;

/// One tree's pending writes: `None` removes the key.
type TreeWrites = HashMap<Vec<u8>, Option<Vec<u8>>>;

/// A key and its value, as stored.
pub(super) type RawEntry = (Vec<u8>, Vec<u8>);

/// Pending writes, by tree and key.
pub(super) struct Writer<'s> {
    store: &'s Store,
    writes: HashMap<TreeId, TreeWrites>,
    /// Records this batch adds (or, negative, removes) in each counted table (`TreeId::COUNTED`
    /// order).
    new_records: [i64; TreeId::COUNTED.len()],
    /// Feed events of this batch, numbered (see `feed.rs`).
    events: PendingEvents,
    /// When this write is stored: its events' `at`.
    at: Timestamp,
}

impl<'s> Writer<'s> {
    /// A write stored now.
    pub(super) fn new(store: &'s Store) -> Self {
        Writer::stored_at(store, Timestamp::now())
    }

    /// A write stored at `at` (the time the caller gave for the change).
    pub(super) fn stored_at(store: &'s Store, at: Timestamp) -> Self {
        Writer {
            store,
            writes: HashMap::new(),
            new_records: [0; TreeId::COUNTED.len()],
            events: PendingEvents::default(),
            at,
        }
    }

    /// When this write is stored.
    pub(super) fn at(&self) -> Timestamp {
        self.at
    }

    pub(super) fn store(&self) -> &'s Store {
        self.store
    }

    pub(super) fn pending_events(&mut self) -> &mut PendingEvents {
        &mut self.events
    }

    fn tree(&self, id: TreeId) -> Keyspace<'s> {
        self.store.table(id)
    }

    /// True when `key` exists, counting this batch's writes.
    pub(super) fn contains(&self, id: TreeId, key: &[u8]) -> Result<bool, StoreError> {
        match self.writes.get(&id).and_then(|w| w.get(key)) {
            Some(value) => Ok(value.is_some()),
            None => Ok(self.tree(id).contains_key(key)?),
        }
    }

    /// The raw value under `key`, counting this batch's writes.
    pub(super) fn get_raw(&self, id: TreeId, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.writes.get(&id).and_then(|w| w.get(key)) {
            Some(value) => Ok(value.clone()),
            None => Ok(self.tree(id).get(key)?.map(|v| v.to_vec())),
        }
    }

    /// The decoded record under `key`, counting this batch's writes; [`StoreError::Unreadable`]
    /// (reported) when it does not decode.
    pub(super) fn get<T: DeserializeOwned>(&self, id: TreeId, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.get_raw(id, key)?.map(|bytes| self.store.decode_record(id.name(), key, &bytes)).transpose()
    }

    /// Like [`Writer::get`], but a record that does not decode is moved aside (see
    /// [`Writer::set_aside`]) and read as absent: for records that are rebuilt from scratch
    /// when missing (pending receipts, watermarks).
    pub(super) fn get_or_set_aside<T: DeserializeOwned>(
        &mut self,
        id: TreeId,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.get(id, key) {
            Err(StoreError::Unreadable { .. }) => {
                self.set_aside(id, key)?;
                Ok(None)
            }
            other => other,
        }
    }

    /// Copies the bytes under `key` into the `unreadable` table (under the table's prefix and
    /// the key), before a record that does not decode is replaced: nothing is thrown away.
    pub(super) fn set_aside(&mut self, id: TreeId, key: &[u8]) -> Result<(), StoreError> {
        if let Some(bytes) = self.get_raw(id, key)? {
            self.insert_raw(TreeId::Unreadable, id.key(key), bytes);
        }
        Ok(())
    }

    pub(super) fn insert_raw(&mut self, id: TreeId, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.writes.entry(id).or_default().insert(key.into(), Some(value.into()));
    }

    pub(super) fn insert<T: Serialize + DeserializeOwned>(
        &mut self,
        id: TreeId,
        key: impl Into<Vec<u8>>,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = encode(value)?;
        self.insert_raw(id, key, bytes);
        Ok(())
    }

    /// Inserts a record the caller knows is not there yet (it just looked, or made a new id), and
    /// counts it, in the same batch, when its table is counted.
    pub(super) fn insert_new<T: Serialize + DeserializeOwned>(
        &mut self,
        id: TreeId,
        key: impl Into<Vec<u8>>,
        value: &T,
    ) -> Result<(), StoreError> {
        let key = key.into();
        debug_assert!(!self.contains(id, &key)?, "insert_new of a key that exists in {id:?}");
        if let Some(i) = TreeId::COUNTED.iter().position(|t| *t == id) {
            self.new_records[i] += 1;
        }
        self.insert(id, key, value)
    }

    pub(super) fn remove(&mut self, id: TreeId, key: impl Into<Vec<u8>>) {
        self.writes.entry(id).or_default().insert(key.into(), None);
    }

    /// Removes a record of a counted table that is there (the caller just read it), and counts
    /// it out in the same batch.
    pub(super) fn remove_counted(&mut self, id: TreeId, key: impl Into<Vec<u8>>) -> Result<(), StoreError> {
        let key = key.into();
        if self.contains(id, &key)?
            && let Some(i) = TreeId::COUNTED.iter().position(|t| *t == id)
        {
            self.new_records[i] -= 1;
        }
        self.remove(id, key);
        Ok(())
    }

    /// Every (key, value) under `prefix` in table `id`, counting this batch's writes, in key order.
    pub(super) fn scan_prefix(&self, id: TreeId, prefix: &[u8]) -> Result<Vec<RawEntry>, StoreError> {
        let mut found = std::collections::BTreeMap::new();
        for entry in self.tree(id).scan_prefix(prefix) {
            let (key, value) = entry?;
            found.insert(key.to_vec(), Some(value.to_vec()));
        }
        if let Some(writes) = self.writes.get(&id) {
            for (key, value) in writes.iter().filter(|(key, _)| key.starts_with(prefix)) {
                found.insert(key.clone(), value.clone());
            }
        }
        Ok(found.into_iter().filter_map(|(key, value)| value.map(|value| (key, value))).collect())
    }

    /// Applies every write atomically, in one batch on the shared tree, with the counters of the
    /// records it adds.
    pub(super) fn commit(self) -> Result<(), StoreError> {
        if self.writes.is_empty() && self.events.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        let mut records: usize = self.writes.values().map(|w| w.len()).sum();
        records += self.events.write_into(&mut batch)?;
        for (table, added) in TreeId::COUNTED.iter().zip(self.new_records) {
            if added != 0 {
                let key = table.counter_key();
                let count = super::read_counter(self.store.data.get(&key)?.as_deref())?;
                let count = count.saturating_add_signed(added);
                batch.insert(key, &count.to_be_bytes());
            }
        }
        for (id, writes) in self.writes {
            for (key, value) in writes {
                let key = id.key(&key);
                match value {
                    Some(value) => batch.insert(key, value),
                    None => batch.remove(key),
                }
            }
        }
        self.store.data.apply_batch(batch)?;
        self.store.note_written(records);
        if !self.events.is_empty() {
            let mut committed = self.store.committed_events.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            committed.extend(self.events.into_events());
        }
        Ok(())
    }
}
