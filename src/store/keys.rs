//! Every store key encoding in one place. Integers are big-endian so that keys sort numerically;
//! signed times are offset so that negative instants (never expected) still sort first.

use sha2::{Digest, Sha256};

use crate::model::{Platform, Timestamp};
use crate::platform::encode_hex;

/// The stable id of the conversation between `account` and `contact` on `platform`: derived from
/// the three, so a redelivery or a restart finds the same conversation without an index.
pub fn conversation_id(platform: Platform, account_id: &str, contact_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update([platform.tag()]);
    hasher.update(account_id.as_bytes());
    hasher.update([0]);
    hasher.update(contact_id.as_bytes());
    let digest = hasher.finalize();
    format!("c{}", encode_hex(&digest[..12]))
}

/// `contacts` key: which conversation contact `id` (one of a person's ids) belongs to.
pub fn contact_alias_key(platform: Platform, account_id: &str, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + account_id.len() + id.len());
    key.push(platform.tag());
    key.extend_from_slice(account_id.as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

/// Our id for a message, from sled's monotonic id generator.
pub fn message_id(sequence: u64) -> String {
    format!("m{sequence:016x}")
}

/// A time as 8 bytes that sort in time order.
pub fn time_bytes(at: Timestamp) -> [u8; 8] {
    ((at.as_millis() as u64) ^ (1 << 63)).to_be_bytes()
}

/// The inverse of [`time_bytes`].
pub fn time_from_bytes(bytes: [u8; 8]) -> Timestamp {
    Timestamp::from_millis((u64::from_be_bytes(bytes) ^ (1 << 63)) as i64)
}

/// `timeline` key: conversation id, then time, then message id: a conversation's messages in
/// time order, ties broken by arrival.
pub fn timeline_key(conversation_id: &str, sent_at: Timestamp, message_id: &str) -> Vec<u8> {
    let mut key = timeline_prefix(conversation_id);
    key.extend_from_slice(&time_bytes(sent_at));
    key.extend_from_slice(message_id.as_bytes());
    key
}

/// The prefix shared by every `timeline` key of one conversation.
pub fn timeline_prefix(conversation_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(conversation_id.len() + 1 + 8 + 17);
    key.extend_from_slice(conversation_id.as_bytes());
    key.push(0);
    key
}

/// `activity` key: platform tag, time of the latest activity, conversation id: each platform's
/// conversation list, newest last; the unfiltered list merges the four.
pub fn activity_key(platform: Platform, updated_at: Timestamp, conversation_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + 8 + conversation_id.len());
    key.push(platform.tag());
    key.extend_from_slice(&time_bytes(updated_at));
    key.extend_from_slice(conversation_id.as_bytes());
    key
}

/// `platform_ids` key: a platform's own message id, the de-duplication index of messages.
pub fn platform_message_key(platform: Platform, platform_message_id: &str) -> Vec<u8> {
    let mut key = vec![platform.tag()];
    key.extend_from_slice(platform_message_id.as_bytes());
    key
}

/// `events` key: a platform's de-duplication key for one event.
pub fn event_key(platform: Platform, dedup_key: &str) -> Vec<u8> {
    let mut key = vec![platform.tag()];
    key.extend_from_slice(dedup_key.as_bytes());
    key
}

/// A paging cursor: the sort position of the last item of a page, as `<millis>.<id>`.
pub fn encode_cursor(at: Timestamp, id: &str) -> String {
    format!("{}.{id}", at.as_millis())
}

/// The inverse of [`encode_cursor`]; `None` for anything we did not write.
pub fn decode_cursor(cursor: &str) -> Option<(Timestamp, String)> {
    let (millis, id) = cursor.split_once('.')?;
    let valid_id = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric());
    valid_id.then_some(())?;
    Some((Timestamp::from_millis(millis.parse().ok()?), id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_in_time_order() {
        let times = [-5_i64, 0, 1, 1_718_000_000_000, 4_102_444_800_000];
        let keys: Vec<_> = times.iter().map(|t| time_bytes(Timestamp::from_millis(*t))).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        for t in times {
            assert_eq!(time_from_bytes(time_bytes(Timestamp::from_millis(t))), Timestamp::from_millis(t));
        }
    }

    #[test]
    fn conversation_ids_are_stable_and_distinct() {
        let a = conversation_id(Platform::Facebook, "page", "user");
        assert_eq!(a, conversation_id(Platform::Facebook, "page", "user"));
        assert_ne!(a, conversation_id(Platform::Whatsapp, "page", "user"));
        assert_ne!(
            conversation_id(Platform::Facebook, "pa", "geuser"),
            conversation_id(Platform::Facebook, "page", "user")
        );
        assert_eq!(a.len(), 25);
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor(Timestamp::from_millis(1_718_000_000_045), "m00000000000000a1");
        assert_eq!(decode_cursor(&c), Some((Timestamp::from_millis(1_718_000_000_045), "m00000000000000a1".into())));
        assert_eq!(decode_cursor("nonsense"), None);
        assert_eq!(decode_cursor("12.a/b"), None);
        assert_eq!(decode_cursor("x.abc"), None);
    }
}
