//! The delivery worker's decisions, pure (time and randomness are passed in): which events may be
//! attempted now, when a failed one is tried again, what an answer means, and how far the durable
//! cursor may move.
//!
//! Rules (CONTRACT.md, "Outgoing webhooks"):
//! - Events of one conversation go in `seq` order: an event is first attempted only once every
//!   earlier event of its conversation was delivered or given up, so only the oldest pending event
//!   of each conversation is ever eligible. Events without a conversation (`channel.status`) wait
//!   for nothing.
//! - A failed attempt is retried after about 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and
//!   24 h (±10 % jitter), never sooner than a `Retry-After`; after the last retry fails the event
//!   is given up.
//! - The cursor: every event at or below it is delivered, given up, filtered out, or recorded in
//!   the store's pending table. Events being tried for the first time are not recorded (that would
//!   double the writes of a healthy receiver); they hold the cursor below them, so a crash
//!   re-delivers at most what was in flight. An event that failed once, and every later event of
//!   its conversation, is recorded, so that one stuck conversation does not hold the cursor (and a
//!   restart does not re-deliver everything after it).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::time::Timestamp;

/// The waits before the 2nd, 3rd, ... 10th attempt.
pub const RETRY_SCHEDULE: [Duration; 9] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(14 * 3600),
    Duration::from_secs(20 * 3600),
    Duration::from_secs(24 * 3600),
];

/// The most a `Retry-After` may push an attempt out (longer values are taken as this).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// An event read from the feed that is not delivered or given up yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub conversation: Option<String>,
    /// Attempts made so far (0: never tried).
    pub attempts: u32,
    /// The next attempt may start at this time (Unix ms).
    pub next_at_ms: i64,
    pub in_flight: bool,
    /// Recorded in the store's pending table as it is now.
    pub durable: bool,
}

impl Pending {
    /// A fresh event, eligible at once.
    pub fn new(conversation: Option<String>, now_ms: i64) -> Pending {
        Pending { conversation, attempts: 0, next_at_ms: now_ms, in_flight: false, durable: false }
    }
}

/// The pending events of one receiver, by `seq`.
pub type Queue = BTreeMap<u64, Pending>;

/// Up to `slots` events that may be attempted at `now_ms`, oldest first: the oldest pending event
/// of each conversation (or any event without one) that is not in flight and whose wait is over.
pub fn eligible(queue: &Queue, now_ms: i64, slots: usize) -> Vec<u64> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for (seq, pending) in queue {
        if out.len() >= slots {
            break;
        }
        let head = match pending.conversation.as_deref() {
            Some(conversation) => seen.insert(conversation),
            None => true,
        };
        if head && !pending.in_flight && pending.next_at_ms <= now_ms {
            out.push(*seq);
        }
    }
    out
}

/// What an attempt's answer means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 2xx.
    Delivered,
    /// 410: the receiver asks to be disabled.
    Gone,
    /// Anything else, a timeout or a connection error; retried, after at least `retry_after`.
    Failed { status: Option<u16>, retry_after: Option<Duration> },
}

/// Classifies an HTTP answer (`None`: no answer at all) that came at `now`.
pub fn classify(status: Option<u16>, retry_after: Option<&str>, now: Timestamp) -> Answer {
    match status {
        Some(200..=299) => Answer::Delivered,
        Some(410) => Answer::Gone,
        status => Answer::Failed { status, retry_after: retry_after.and_then(|v| parse_retry_after(v, now)) },
    }
}

/// `Retry-After` as delay-seconds or as an HTTP date (the wait until then, from `now`), at most
/// `MAX_RETRY_AFTER`; a date in the past is no wait. Anything else is ignored: the schedule applies.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let wait = match value.trim().parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = Timestamp::parse_http_date(value)?;
            Duration::from_millis(u64::try_from(at.as_millis() - now.as_millis()).unwrap_or(0))
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The wait after the `attempts`-th failed attempt (1-based), or `None` when that was the last one
/// and the event is given up. `jitter` in [-1, 1] spreads the wait by up to ±10 %.
pub fn retry_delay(attempts: u32, jitter: f64, retry_after: Option<Duration>) -> Option<Duration> {
    let index = usize::try_from(attempts.checked_sub(1)?).ok()?;
    let base = *RETRY_SCHEDULE.get(index)?;
    let spread = base.mul_f64(1.0 + 0.1 * jitter.clamp(-1.0, 1.0));
    Some(retry_after.map_or(spread, |floor| spread.max(floor)))
}

/// What the worker writes to the store to move its cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavePlan {
    /// The new cursor.
    pub cursor: u64,
    /// Pending events to record (or record again: their attempts or wait changed).
    pub record: Vec<u64>,
}

/// How far the cursor may move, given everything up to `read_to` was read (events not in `queue`
/// are done), and which pending events must be recorded for that (see the module documentation).
/// `changed` names the durable events whose record is out of date.
pub fn plan_save(queue: &Queue, read_to: u64, changed: &HashSet<u64>) -> SavePlan {
    let mut troubled: HashSet<&str> = HashSet::new();
    let mut cursor = read_to;
    let mut record = Vec::new();
    for (seq, pending) in queue {
        let in_trouble = pending.attempts > 0
            || pending.conversation.as_deref().is_some_and(|c| troubled.contains(c))
            || pending.durable;
        if in_trouble {
            if let Some(conversation) = pending.conversation.as_deref() {
                troubled.insert(conversation);
            }
            if !pending.durable || changed.contains(seq) {
                record.push(*seq);
            }
        } else if cursor == read_to {
            // The first fresh event: the cursor stays below it.
            cursor = seq - 1;
        }
    }
    // Events recorded above the cursor are fine too: after a restart they are read from the
    // pending table, and reading the feed after the cursor skips what that table holds.
    SavePlan { cursor, record }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(items: &[(u64, Option<&str>, u32, i64)]) -> Queue {
        items
            .iter()
            .map(|(seq, c, attempts, next)| {
                (
                    *seq,
                    Pending {
                        conversation: c.map(str::to_owned),
                        attempts: *attempts,
                        next_at_ms: *next,
                        in_flight: false,
                        durable: false,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn only_the_oldest_event_of_each_conversation_is_eligible() {
        let q = queue(&[
            (1, Some("a"), 0, 0),
            (2, Some("a"), 0, 0),
            (3, Some("b"), 0, 0),
            (4, None, 0, 0),
            (5, None, 0, 0),
        ]);
        assert_eq!(eligible(&q, 0, 10), vec![1, 3, 4, 5]);
        assert_eq!(eligible(&q, 0, 2), vec![1, 3], "bounded by the free slots");
    }

    #[test]
    fn an_event_waiting_for_its_retry_holds_back_its_conversation_only() {
        let mut q = queue(&[(1, Some("a"), 1, 5_000), (2, Some("a"), 0, 0), (3, Some("b"), 0, 0)]);
        assert_eq!(eligible(&q, 1_000, 10), vec![3]);
        assert_eq!(eligible(&q, 5_000, 10), vec![1, 3], "its wait is over");
        q.get_mut(&1).unwrap().in_flight = true;
        assert_eq!(eligible(&q, 5_000, 10), vec![3], "in flight: the next of its conversation still waits");
    }

    #[test]
    fn retries_follow_the_contract_schedule_then_give_up() {
        let waits: Vec<u64> = (1..=9).map(|n| retry_delay(n, 0.0, None).unwrap().as_secs()).collect();
        assert_eq!(waits, [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]);
        assert_eq!(retry_delay(10, 0.0, None), None, "the tenth attempt was the last");
        assert_eq!(retry_delay(0, 0.0, None), None);
    }

    #[test]
    fn jitter_spreads_by_at_most_ten_percent_and_retry_after_is_a_floor() {
        assert_eq!(retry_delay(1, 1.0, None), Some(Duration::from_millis(5_500)));
        assert_eq!(retry_delay(1, -1.0, None), Some(Duration::from_millis(4_500)));
        assert_eq!(retry_delay(1, 7.0, None), Some(Duration::from_millis(5_500)), "clamped");
        assert_eq!(retry_delay(1, 0.0, Some(Duration::from_secs(60))), Some(Duration::from_secs(60)));
        assert_eq!(retry_delay(2, 0.0, Some(Duration::from_secs(60))), Some(Duration::from_secs(300)));
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(Some(204), None, Timestamp::MIN), Answer::Delivered);
        assert_eq!(classify(Some(410), Some("5"), Timestamp::MIN), Answer::Gone);
        assert_eq!(
            classify(Some(301), None, Timestamp::MIN),
            Answer::Failed { status: Some(301), retry_after: None },
            "redirects are failures"
        );
        assert_eq!(
            classify(Some(429), Some(" 30 "), Timestamp::MIN),
            Answer::Failed { status: Some(429), retry_after: Some(Duration::from_secs(30)) }
        );
        assert_eq!(classify(None, None, Timestamp::MIN), Answer::Failed { status: None, retry_after: None });
        let now = Timestamp::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO), "in the past");
        assert_eq!(parse_retry_after("Fri, 21 Oct 2016 07:28:00 GMT", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("999999999", now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn the_cursor_stops_below_the_first_fresh_event() {
        let q = queue(&[(5, Some("a"), 0, 0), (7, Some("b"), 0, 0)]);
        assert_eq!(plan_save(&q, 9, &HashSet::new()), SavePlan { cursor: 4, record: vec![] });
        assert_eq!(plan_save(&Queue::new(), 9, &HashSet::new()), SavePlan { cursor: 9, record: vec![] });
    }

    #[test]
    fn a_failed_event_and_the_rest_of_its_conversation_are_recorded_so_the_cursor_moves_past_them() {
        let q = queue(&[(5, Some("a"), 1, 0), (6, Some("a"), 0, 0), (7, Some("b"), 1, 0), (8, Some("c"), 0, 0)]);
        assert_eq!(plan_save(&q, 9, &HashSet::new()), SavePlan { cursor: 7, record: vec![5, 6, 7] });
        let mut recorded = q.clone();
        for seq in [5, 6, 7] {
            recorded.get_mut(&seq).unwrap().durable = true;
        }
        assert_eq!(plan_save(&recorded, 9, &HashSet::new()), SavePlan { cursor: 7, record: vec![] });
        assert_eq!(plan_save(&recorded, 9, &HashSet::from([5])), SavePlan { cursor: 7, record: vec![5] });
    }
}
