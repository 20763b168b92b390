//! The durable state of each outgoing webhook receiver (by its configured name), in
//! `TreeId::Receivers`:
//!
//! | key | value |
//! | --- | --- |
//! | name, 0, `s` | [`ReceiverState`]: cursor, enabled, last delivered, last error |
//! | name, 0, `n` | how many events were given up (u64 BE) |
//! | name, 0, `p`, seq (BE) | [`PendingRecord`]: an event past the cursor not delivered yet |
//! | name, 0, `f`, seq (BE) | [`FailedRecord`]: an event given up |
//!
//! Every save of a receiver is one atomic batch, so the cursor never moves without the pending
//! records that let it (see `webhooks::plan`). Names hold no 0 byte (letters, digits, `-`, `_`).

use serde::{Deserialize, Serialize};

use super::keyspace::TreeId;
use super::{Store, StoreError, encode, read_counter};
use crate::feed::Event;
use crate::model::Timestamp;

/// Failed events a load returns (the newest); the count covers all of them.
pub const FAILED_SHOWN: usize = 100;

/// What a receiver's worker keeps across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverState {
    /// Every event at or below it is delivered, given up, not for this receiver, or pending.
    pub cursor: u64,
    /// False after a 410, until `POST /api/webhooks/{name}/enable`.
    pub enabled: bool,
    /// The newest event delivered (0: none yet).
    pub last_delivered_seq: u64,
    pub last_error: Option<DeliveryError>,
}

/// The last failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryError {
    pub at: Timestamp,
    /// The HTTP status, or none (timeout, connection error).
    pub status: Option<u16>,
    pub message: String,
}

/// An event past the cursor that waits for delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRecord {
    pub seq: u64,
    pub attempts: u32,
    /// The next attempt may start then (Unix ms).
    pub next_at_ms: i64,
}

/// An event given up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedRecord {
    pub seq: u64,
    pub attempts: u32,
    pub given_up_at: Timestamp,
    pub status: Option<u16>,
    pub message: String,
}

/// One save of a receiver: applied as one atomic batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverSave {
    pub state: ReceiverState,
    /// Pending records to write (new, or with new attempts).
    pub record: Vec<PendingRecord>,
    /// Pending records to remove (delivered, given up).
    pub remove: Vec<u64>,
    /// Events given up.
    pub failed: Vec<FailedRecord>,
    /// A replay: forget the failed events after this `seq` (they are delivered again).
    pub unfail_after: Option<u64>,
}

/// A receiver as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadedReceiver {
    /// `None` for a receiver never saved.
    pub state: Option<ReceiverState>,
    /// In `seq` order.
    pub pending: Vec<PendingRecord>,
    pub failed_count: u64,
    /// The newest [`FAILED_SHOWN`], newest first.
    pub failed: Vec<FailedRecord>,
}

fn key(name: &str, kind: u8, seq: Option<u64>) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 10);
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    key.push(kind);
    if let Some(seq) = seq {
        key.extend_from_slice(&seq.to_be_bytes());
    }
    key
}

impl Store {
    /// The stored state of receiver `name`.
    pub fn receiver(&self, name: &str) -> Result<LoadedReceiver, StoreError> {
        let table = self.table(TreeId::Receivers);
        let table_name = TreeId::Receivers.name();
        let state = match table.get(key(name, b's', None))? {
            Some(bytes) => Some(self.decode_record::<ReceiverState>(table_name, &key(name, b's', None), &bytes)?),
            None => None,
        };
        let mut pending = Vec::new();
        for entry in table.scan_prefix(&key(name, b'p', None)) {
            let (k, v) = entry?;
            match self.decode_record::<PendingRecord>(table_name, &k, &v) {
                Ok(record) => pending.push(record),
                Err(StoreError::Unreadable { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let failed_count = read_counter(table.get(key(name, b'n', None))?.as_deref())?;
        let mut failed = Vec::new();
        for entry in table.scan_prefix(&key(name, b'f', None)).rev() {
            if failed.len() >= FAILED_SHOWN {
                break;
            }
            let (k, v) = entry?;
            if let Ok(record) = self.decode_record::<FailedRecord>(table_name, &k, &v) {
                failed.push(record);
            }
        }
        Ok(LoadedReceiver { state, pending, failed_count, failed })
    }

    /// Applies one save of receiver `name` atomically (durable after the next flush).
    pub fn save_receiver(&self, name: &str, save: &ReceiverSave) -> Result<(), StoreError> {
        let table = self.table(TreeId::Receivers);
        let id = TreeId::Receivers;
        let mut batch = sled::Batch::default();
        let mut written = 1;
        batch.insert(id.key(&key(name, b's', None)), encode(&save.state)?);
        for record in &save.record {
            batch.insert(id.key(&key(name, b'p', Some(record.seq))), encode(record)?);
        }
        for seq in &save.remove {
            batch.remove(id.key(&key(name, b'p', Some(*seq))));
        }
        written += save.record.len() + save.remove.len();
        let mut count = read_counter(table.get(key(name, b'n', None))?.as_deref())?;
        if let Some(after) = save.unfail_after {
            let start = key(name, b'f', Some(after.saturating_add(1)));
            let end = key(name, b'f', Some(u64::MAX));
            for entry in table.range(start..end) {
                let (k, _) = entry?;
                batch.remove(id.key(&k));
                count = count.saturating_sub(1);
                written += 1;
            }
        }
        for record in &save.failed {
            batch.insert(id.key(&key(name, b'f', Some(record.seq))), encode(record)?);
            count += 1;
            written += 1;
        }
        batch.insert(id.key(&key(name, b'n', None)), &count.to_be_bytes());
        self.data.apply_batch(batch)?;
        self.note_written(written + 1);
        Ok(())
    }

    /// Forgets every receiver's given-up events numbered below `oldest_retained` (the oldest
    /// event the log still holds: the others were pruned, so they can be neither shown nor
    /// replayed), at most `max` in one atomic batch that also lowers each receiver's count.
    /// Returns, per receiver, how many were forgotten.
    pub fn prune_failed_deliveries(&self, oldest_retained: u64, max: usize) -> Result<Vec<(String, u64)>, StoreError> {
        let table = self.table(TreeId::Receivers);
        let id = TreeId::Receivers;
        let mut batch = sled::Batch::default();
        let mut forgotten: Vec<(String, u64)> = Vec::new();
        let mut total = 0;
        // Walk the names: each receiver's keys start with its name and a 0 byte.
        let mut from: Vec<u8> = Vec::new();
        while total < max {
            // Names are letters, digits, `-` and `_`: every key is below 0xff.
            let Some(entry) = table.range(from.clone()..vec![0xff]).next() else { break };
            let (first, _) = entry?;
            let Some(end) = first.iter().position(|&b| b == 0) else { break };
            let name = String::from_utf8_lossy(&first[..end]).into_owned();
            let mut removed = 0;
            for entry in table.range(key(&name, b'f', Some(0))..key(&name, b'f', Some(oldest_retained))) {
                if total >= max {
                    break;
                }
                let (k, _) = entry?;
                batch.remove(id.key(&k));
                removed += 1;
                total += 1;
            }
            if removed > 0 {
                let count = read_counter(table.get(key(&name, b'n', None))?.as_deref())?;
                batch.insert(id.key(&key(&name, b'n', None)), &count.saturating_sub(removed).to_be_bytes());
                forgotten.push((name.clone(), removed));
            }
            // The next name: past every key of this one (name, 0, ...).
            from = first[..end].to_vec();
            from.extend_from_slice(&[0, 0xff, 0xff]);
        }
        if total > 0 {
            self.data.apply_batch(batch)?;
            self.note_written(total + forgotten.len());
        }
        Ok(forgotten)
    }

    /// The retained events with these numbers, in `seq` order (pruned ones are left out). Read
    /// through the event log's own reader (`events_after`), which knows its layout.
    pub fn events_by_seq(&self, seqs: &[u64]) -> Result<Vec<Event>, StoreError> {
        let mut sorted = seqs.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut events = Vec::with_capacity(sorted.len());
        for seq in sorted {
            let Some(before) = seq.checked_sub(1) else { continue };
            if let Some(event) = self.events_after(before, 1)?.events.into_iter().next()
                && event.seq == seq
            {
                events.push(event);
            }
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), 8 << 20).unwrap();
        (dir, store)
    }

    fn failed(seq: u64) -> FailedRecord {
        FailedRecord {
            seq,
            attempts: 10,
            given_up_at: Timestamp::from_millis(1),
            status: Some(500),
            message: "x".into(),
        }
    }

    #[test]
    fn a_receiver_never_saved_loads_empty() {
        let (_dir, store) = store();
        assert_eq!(store.receiver("crm").unwrap(), LoadedReceiver::default());
    }

    #[test]
    fn failed_deliveries_of_pruned_events_are_forgotten_per_receiver_with_their_count() {
        let (_dir, store) = store();
        let state = ReceiverState { cursor: 9, enabled: true, ..Default::default() };
        for name in ["crm", "crm-2", "bot"] {
            let save = ReceiverSave {
                state: state.clone(),
                failed: vec![failed(2), failed(4), failed(7)],
                ..Default::default()
            };
            store.save_receiver(name, &save).unwrap();
        }
        let mut forgotten = store.prune_failed_deliveries(5, 100).unwrap();
        forgotten.sort();
        assert_eq!(forgotten, [("bot".to_owned(), 2), ("crm".to_owned(), 2), ("crm-2".to_owned(), 2)]);
        for name in ["crm", "crm-2", "bot"] {
            let loaded = store.receiver(name).unwrap();
            assert_eq!(loaded.failed_count, 1, "{name}");
            assert_eq!(loaded.failed.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![7], "{name}");
            assert_eq!(loaded.state.as_ref().map(|s| s.cursor), Some(9), "the rest is kept");
        }
        assert!(store.prune_failed_deliveries(5, 100).unwrap().is_empty(), "nothing twice");
        // A bound on one batch: the rest goes next time.
        assert_eq!(store.prune_failed_deliveries(8, 2).unwrap().iter().map(|(_, n)| n).sum::<u64>(), 2);
        assert_eq!(store.prune_failed_deliveries(8, 100).unwrap().iter().map(|(_, n)| n).sum::<u64>(), 1);
    }

    #[test]
    fn saves_keep_cursor_pending_and_failed_per_receiver() {
        let (_dir, store) = store();
        let state = ReceiverState { cursor: 10, enabled: true, last_delivered_seq: 9, last_error: None };
        let save = ReceiverSave {
            state: state.clone(),
            record: vec![
                PendingRecord { seq: 7, attempts: 1, next_at_ms: 5 },
                PendingRecord { seq: 3, attempts: 2, next_at_ms: 6 },
            ],
            failed: vec![failed(2), failed(4)],
            ..Default::default()
        };
        store.save_receiver("crm", &save).unwrap();
        store.save_receiver("crm-2", &ReceiverSave::default()).unwrap();
        let loaded = store.receiver("crm").unwrap();
        assert_eq!(loaded.state, Some(state.clone()));
        assert_eq!(loaded.pending.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![3, 7]);
        assert_eq!(loaded.failed_count, 2);
        assert_eq!(loaded.failed.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![4, 2], "newest first");
        assert_eq!(store.receiver("crm-2").unwrap().pending, vec![], "receivers do not share records");

        let next = ReceiverSave { state, remove: vec![3], unfail_after: Some(3), ..Default::default() };
        store.save_receiver("crm", &next).unwrap();
        let loaded = store.receiver("crm").unwrap();
        assert_eq!(loaded.pending.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![7]);
        assert_eq!(loaded.failed_count, 1);
        assert_eq!(loaded.failed.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![2]);
    }
}
