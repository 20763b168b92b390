//! A write batch over several trees: reads see the batch's own writes, and the whole batch is
//! committed in one sled transaction.
//!
//! Why not write inside a sled transaction directly: in sled 0.34 every atomic batch (a
//! transaction or `apply_batch`) rolls and writes out the log's I/O buffer (`pin_log`), so one
//! transaction per webhook costs two synced writes per webhook and defeats group commit. The
//! conversation actor is the only writer, so reading the trees outside a transaction is
//! consistent, and one transaction per *group* of webhooks keeps each webhook atomic and the I/O
//! per group.

use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Transactional;
use sled::transaction::TransactionError;

use super::{Store, StoreError, decode, encode};

/// The trees a batch can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum TreeId {
    Conversations,
    Messages,
    Timeline,
    PlatformIds,
    Events,
    Activity,
    PlatformActivity,
    PendingReceipts,
    Watermarks,
    Outbox,
}

/// One tree's pending writes: `None` removes the key.
type TreeWrites = HashMap<Vec<u8>, Option<Vec<u8>>>;

/// Pending writes, by tree and key.
pub(super) struct Writer<'s> {
    store: &'s Store,
    writes: HashMap<TreeId, TreeWrites>,
}

impl<'s> Writer<'s> {
    pub(super) fn new(store: &'s Store) -> Self {
        Writer { store, writes: HashMap::new() }
    }

    fn tree(&self, id: TreeId) -> &'s sled::Tree {
        tree_of(self.store, id)
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

    /// The decoded record under `key`, counting this batch's writes.
    pub(super) fn get<T: DeserializeOwned>(&self, id: TreeId, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.get_raw(id, key)?.map(|bytes| decode(&bytes)).transpose()
    }

    pub(super) fn insert_raw(&mut self, id: TreeId, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.writes.entry(id).or_default().insert(key.into(), Some(value.into()));
    }

    pub(super) fn insert<T: Serialize>(
        &mut self,
        id: TreeId,
        key: impl Into<Vec<u8>>,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = encode(value)?;
        self.insert_raw(id, key, bytes);
        Ok(())
    }

    pub(super) fn remove(&mut self, id: TreeId, key: impl Into<Vec<u8>>) {
        self.writes.entry(id).or_default().insert(key.into(), None);
    }

    /// Applies every write atomically, in one transaction across the trees touched.
    pub(super) fn commit(self) -> Result<(), StoreError> {
        if self.writes.is_empty() {
            return Ok(());
        }
        let store = self.store;
        let mut batches: Vec<(TreeId, TreeWrites)> = self.writes.into_iter().collect();
        batches.sort_by_key(|(id, _)| *id);
        let trees: Vec<sled::Tree> = batches.iter().map(|(id, _)| tree_of(store, *id).clone()).collect();
        let result: Result<(), TransactionError<()>> = trees.as_slice().transaction(|views| {
            for (view, (_, writes)) in views.iter().zip(&batches) {
                for (key, value) in writes {
                    match value {
                        Some(value) => {
                            view.insert(key.as_slice(), value.as_slice())?;
                        }
                        None => {
                            view.remove(key.as_slice())?;
                        }
                    }
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Storage(e)) => Err(StoreError::Io(e)),
            Err(TransactionError::Abort(())) => Err(StoreError::Corrupt("a write batch aborted".into())),
        }
    }
}

fn tree_of(store: &Store, id: TreeId) -> &sled::Tree {
    match id {
        TreeId::Conversations => &store.conversations,
        TreeId::Messages => &store.messages,
        TreeId::Timeline => &store.timeline,
        TreeId::PlatformIds => &store.platform_ids,
        TreeId::Events => &store.events,
        TreeId::Activity => &store.activity,
        TreeId::PlatformActivity => &store.platform_activity,
        TreeId::PendingReceipts => &store.pending_receipts,
        TreeId::Watermarks => &store.watermarks,
        TreeId::Outbox => &store.outbox,
    }
}
