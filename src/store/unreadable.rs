//! Stored records that do not decode: reported once per key, counted, and never allowed to take a
//! listing or an ingest down with them.
//!
//! A record can stop decoding through disk corruption, or because an older build wrote what it
//! could not read back (the far-future timestamps of issue 7). Readers skip such a record (a
//! listing), report it as [`super::StoreError::Unreadable`] (a single read), or replace it while
//! keeping its bytes aside in the `unreadable` table (ingest rebuilding a conversation).

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many distinct unreadable keys are remembered, so that each is logged once. Beyond this
/// bound every further report is logged and counted again: memory stays bounded on a store that
/// is corrupt through and through, and the operator still hears about it.
const REMEMBERED_KEYS: usize = 10_000;

/// The reports of one open store. Shared by the store's clones (the conversation actor is the
/// only user in the daemon, so the lock is never contended there).
#[derive(Default)]
pub(super) struct UnreadableRecords {
    /// (table, key) pairs already reported.
    seen: Mutex<HashSet<(&'static str, Vec<u8>)>>,
    /// Distinct unreadable records found since the store was opened.
    found: AtomicU64,
}

impl UnreadableRecords {
    /// Records that the record under `key` in `table` did not decode: logged (with its key, never
    /// its bytes) and counted the first time this key is reported.
    pub(super) fn report(&self, table: &'static str, key: &[u8], reason: &str) {
        let first_time = {
            let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let entry = (table, key.to_vec());
            if seen.len() < REMEMBERED_KEYS { seen.insert(entry) } else { !seen.contains(&entry) }
        };
        if first_time {
            self.found.fetch_add(1, Ordering::Relaxed);
            crate::metrics::metrics().store_unreadable_record();
            tracing::warn!(
                message = "A stored record does not decode; it is skipped by listings.",
                table,
                key = %printable_key(key),
                reason,
            );
        }
    }

    /// Distinct unreadable records found since the store was opened.
    pub(super) fn found(&self) -> u64 {
        self.found.load(Ordering::Relaxed)
    }
}

/// A key for a log line: printable ASCII as is, every other byte as `\xNN` (keys hold ids, a
/// platform tag byte and big-endian numbers, never a message body).
pub(super) fn printable_key(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len());
    for &byte in key {
        if byte.is_ascii_graphic() && byte != b'\\' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_is_counted_once() {
        let records = UnreadableRecords::default();
        records.report("conversations", b"c1", "bad");
        records.report("conversations", b"c1", "bad");
        records.report("messages", b"c1", "bad");
        assert_eq!(records.found(), 2);
    }

    #[test]
    fn keys_print_without_raw_bytes() {
        assert_eq!(printable_key(b"\x01mid:m_1\xff\\"), "\\x01mid:m_1\\xff\\x5c");
    }
}
