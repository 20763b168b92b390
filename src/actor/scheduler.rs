//! The channel's send scheduler (pure: every time is passed in, nothing is sent from here): one
//! queue per conversation, round robin between them, at most `max_in_flight` requests at once and
//! one per conversation (a later reply never overtakes an earlier one, retries included), every
//! request taking a slot from the channel's `Pacer` and, on WhatsApp, the recipient's bucket; and
//! what each answer means: sent, failed, retry after a back-off or the platform's `Retry-After`
//! until the message's deadline, or a rejected token (one refresh and one retry per message).
//!
//! The channel actor is the shell: it asks `next_sends` what to start, runs the requests, and
//! carries out the `AfterAttempt` that `attempted` returns (store writes, logs, token checks).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::model::{MessageError, Timestamp};
use crate::platform::SendOutcome;
use crate::ratelimit::{KeyedBuckets, Pacer, TokenBucket, backoff};
use crate::store::OutboxEntry;

/// Messages finished lately that are remembered, so that a late `Queued` (the outbox reload can
/// beat the API's notice) does not send one again.
const FINISHED_MEMORY: usize = 10_000;
/// After a token was rejected again following a refresh: how long the message waits.
pub const BROKEN_TOKEN_RECHECK: Duration = Duration::from_secs(60);

/// How the scheduler paces and retries (from the channel's send settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// At most `rate` requests per `period`.
    pub rate: u32,
    pub period: Duration,
    /// WhatsApp's pair limit: one per interval per recipient, with a burst.
    pub per_recipient: Option<(Duration, u32)>,
    pub max_in_flight: usize,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// One queued message and how its attempts went.
#[derive(Debug, Clone)]
struct Pending {
    entry: OutboxEntry,
    attempts: u32,
    not_before: Instant,
    /// A rejected token gets one refresh and one retry per message.
    token_retry_used: bool,
    last_error: Option<MessageError>,
}

/// What the channel does after an attempt's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterAttempt {
    /// The answer was for a message no longer at the head of its queue: nothing.
    Stale,
    /// Record it sent.
    Sent { entry: OutboxEntry, platform_message_id: String, dispatched_at: Timestamp, attempts: u32 },
    /// Record it failed: the platform refused it for good.
    Failed { entry: OutboxEntry, error: MessageError },
    /// Record it failed: a retry would come after its deadline.
    DeadlinePassed { entry: OutboxEntry, error: MessageError, attempts: u32 },
    /// It is retried after `delay`.
    Retrying { delay: Duration, error: MessageError },
    /// The token was rejected: refresh it once; the message waits and is retried after.
    RefreshToken { error: MessageError },
    /// The token was rejected again after a refresh: the channel cannot send (`reason`).
    TokenBroken { reason: String },
}

/// When an answer is judged: the same moment on the two clocks (back-offs run on the monotonic
/// one, deadlines are stored as timestamps), and a random `jitter` in [0, 1) that spreads
/// back-offs.
#[derive(Debug, Clone, Copy)]
pub struct Moment {
    pub now: Instant,
    pub at: Timestamp,
    pub jitter: f64,
}

/// The scheduler.
pub struct SendScheduler {
    limits: Limits,
    pacer: Pacer,
    recipients: Option<KeyedBuckets<String>>,
    queues: HashMap<String, VecDeque<Pending>>,
    /// Conversations with queued messages, in round-robin order.
    order: VecDeque<String>,
    known: HashSet<String>,
    finished: HashSet<String>,
    finished_order: VecDeque<String>,
    /// Conversations with a request in flight.
    in_flight: HashSet<String>,
    pub sent: u64,
    pub failed: u64,
    pub retried: u64,
}

impl SendScheduler {
    pub fn new(limits: Limits) -> Self {
        SendScheduler {
            pacer: Pacer::new(limits.rate, limits.period),
            recipients: limits
                .per_recipient
                .map(|(interval, burst)| KeyedBuckets::new(TokenBucket::new(1, interval, burst))),
            limits,
            queues: HashMap::new(),
            order: VecDeque::new(),
            known: HashSet::new(),
            finished: HashSet::new(),
            finished_order: VecDeque::new(),
            in_flight: HashSet::new(),
            sent: 0,
            failed: 0,
            retried: 0,
        }
    }

    /// Messages queued (in flight included).
    pub fn queued(&self) -> usize {
        self.known.len()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The channel's pacer: engagement actions and name lookups take their slots from it too.
    pub fn pacer(&mut self) -> &mut Pacer {
        &mut self.pacer
    }

    /// New limits: a new rate applies to the next sends (the pacer keeps its log of recent
    /// sends), a new recipient limit to the next ones too.
    pub fn retune(&mut self, limits: Limits, now: Instant) {
        if (limits.rate, limits.period) != (self.limits.rate, self.limits.period) {
            self.pacer.retune(limits.rate, limits.period, now);
        }
        if limits.per_recipient != self.limits.per_recipient {
            self.recipients = match (self.recipients.take(), limits.per_recipient) {
                (Some(mut buckets), Some((interval, burst))) => {
                    buckets.retune(TokenBucket::new(1, interval, burst));
                    Some(buckets)
                }
                (None, Some((interval, burst))) => Some(KeyedBuckets::new(TokenBucket::new(1, interval, burst))),
                (_, None) => None,
            };
        }
        self.limits = limits;
    }

    /// The back-off before retry number `attempts` when the platform named no time, spread by
    /// `jitter` in [0, 1): the outbound settings' doubling from `initial_backoff_ms` up to
    /// `max_backoff_ms` (engagement actions retry the same way).
    pub fn backoff_for(&self, jitter: f64) -> impl Fn(u32) -> Duration + use<> {
        let (initial, max) = (self.limits.initial_backoff, self.limits.max_backoff);
        move |attempts| backoff(initial, max, attempts, jitter)
    }

    /// Forgets recipients whose buckets are full again.
    pub fn forget_idle_recipients(&mut self, now: Instant) {
        if let Some(recipients) = &mut self.recipients {
            recipients.forget_idle(now);
        }
    }

    /// Queues `entry` behind its conversation's others; one already queued or finished lately
    /// is ignored.
    pub fn add(&mut self, entry: OutboxEntry, now: Instant) {
        if self.finished.contains(&entry.message.id) || !self.known.insert(entry.message.id.clone()) {
            return;
        }
        let conversation = entry.conversation_id.clone();
        let queue = self.queues.entry(conversation.clone()).or_default();
        if queue.is_empty() && !self.order.contains(&conversation) {
            self.order.push_back(conversation);
        }
        queue.push_back(Pending { entry, attempts: 0, not_before: now, token_retry_used: false, last_error: None });
    }

    /// Forgets a message that left the queue, and remembers that it did.
    fn finish(&mut self, message_id: &str) {
        self.known.remove(message_id);
        if self.finished.insert(message_id.to_owned()) {
            self.finished_order.push_back(message_id.to_owned());
            if self.finished_order.len() > FINISHED_MEMORY
                && let Some(oldest) = self.finished_order.pop_front()
            {
                self.finished.remove(&oldest);
            }
        }
    }

    /// The messages to send now, each marked in flight, and when to look again for the rest.
    pub fn next_sends(&mut self, now: Instant) -> (Vec<OutboxEntry>, Option<Instant>) {
        let mut sends = Vec::new();
        let mut earliest: Option<Instant> = None;
        let mut looked = 0;
        let conversations = self.order.len();
        while self.in_flight.len() < self.limits.max_in_flight && looked < conversations {
            looked += 1;
            let Some(conversation) = self.order.pop_front() else { break };
            let Some(head) = self.queues.get(&conversation).and_then(|q| q.front()) else {
                self.queues.remove(&conversation);
                continue;
            };
            if self.in_flight.contains(&conversation) {
                self.order.push_back(conversation);
                continue;
            }
            let recipient = head.entry.message.recipient.clone();
            let mut ready = head.not_before;
            if let Some(recipients) = &self.recipients {
                ready = ready.max(recipients.ready_at(&recipient, now));
            }
            if ready > now {
                earliest = Some(earliest.map_or(ready, |e| e.min(ready)));
                self.order.push_back(conversation);
                continue;
            }
            if let Err(when) = self.pacer.try_take(now) {
                earliest = Some(earliest.map_or(when, |e| e.min(when)));
                self.order.push_front(conversation);
                break;
            }
            if let Some(recipients) = &mut self.recipients {
                let _ = recipients.try_take(&recipient, now);
            }
            sends.push(head.entry.clone());
            self.in_flight.insert(conversation.clone());
            self.order.push_back(conversation);
        }
        (sends, earliest)
    }

    /// What the answer to the request for `message_id` means, at `moment`.
    pub fn attempted(
        &mut self,
        conversation_id: &str,
        message_id: &str,
        dispatched_at: Timestamp,
        outcome: SendOutcome,
        moment: Moment,
    ) -> AfterAttempt {
        let Moment { now, at: now_at, jitter } = moment;
        self.in_flight.remove(conversation_id);
        let limits = self.limits;
        let Some(queue) = self.queues.get_mut(conversation_id) else { return AfterAttempt::Stale };
        let Some(head) = queue.front_mut().filter(|p| p.entry.message.id == message_id) else {
            return AfterAttempt::Stale;
        };
        let after = match outcome {
            SendOutcome::Sent { platform_message_id } => {
                let attempts = head.attempts + 1;
                let entry = queue.pop_front().map(|p| p.entry);
                self.sent += 1;
                entry.map(|entry| AfterAttempt::Sent { entry, platform_message_id, dispatched_at, attempts })
            }
            SendOutcome::Failed(error) => {
                self.failed += 1;
                queue.pop_front().map(|p| AfterAttempt::Failed { entry: p.entry, error })
            }
            SendOutcome::Retry { after, error, recipient_only } => {
                head.attempts += 1;
                self.retried += 1;
                let delay =
                    after.unwrap_or_else(|| backoff(limits.initial_backoff, limits.max_backoff, head.attempts, jitter));
                // Saturating: a platform's `Retry-After` may be any u64 of seconds.
                let retry_at = now_at.saturating_add_millis(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                if retry_at > head.entry.deadline_at {
                    let attempts = head.attempts;
                    self.failed += 1;
                    queue.pop_front().map(|p| AfterAttempt::DeadlinePassed { entry: p.entry, error, attempts })
                } else {
                    let until = now.checked_add(delay).unwrap_or(now + limits.max_backoff);
                    head.not_before = until;
                    let recipient = head.entry.message.recipient.clone();
                    head.last_error = Some(error.clone());
                    match (&mut self.recipients, recipient_only) {
                        (Some(recipients), true) => recipients.pause_until(&recipient, until),
                        (_, false) if after.is_some() => self.pacer.pause_until(until),
                        _ => {}
                    }
                    return AfterAttempt::Retrying { delay, error };
                }
            }
            SendOutcome::TokenRejected(error) => {
                if head.token_retry_used {
                    let reason = format!(
                        "the platform rejected the token again after a refresh ({}: {})",
                        error.code, error.message
                    );
                    head.last_error = Some(error);
                    head.not_before = now + BROKEN_TOKEN_RECHECK;
                    return AfterAttempt::TokenBroken { reason };
                }
                head.token_retry_used = true;
                head.last_error = Some(error.clone());
                return AfterAttempt::RefreshToken { error };
            }
        };
        if let Some(
            AfterAttempt::Sent { entry, .. }
            | AfterAttempt::Failed { entry, .. }
            | AfterAttempt::DeadlinePassed { entry, .. },
        ) = &after
        {
            let id = entry.message.id.clone();
            self.finish(&id);
        }
        after.unwrap_or(AfterAttempt::Stale)
    }

    /// Takes out the messages whose deadline passed while they waited (the channel could not
    /// send: its token is broken), each with the last error it had.
    pub fn expire(&mut self, now_at: Timestamp) -> Vec<(OutboxEntry, MessageError)> {
        let mut expired = Vec::new();
        for queue in self.queues.values_mut() {
            while let Some(head) = queue
                .front()
                .filter(|p| p.entry.deadline_at < now_at && !self.in_flight.contains(&p.entry.conversation_id))
            {
                let error = head.last_error.clone().unwrap_or_else(|| MessageError {
                    code: "deadline".into(),
                    message: "not sent before the retry deadline".into(),
                    permanent: false,
                });
                if let Some(pending) = queue.pop_front() {
                    expired.push((pending.entry, error));
                }
            }
        }
        for (entry, _) in &expired {
            self.failed += 1;
            let id = entry.message.id.clone();
            self.finish(&id);
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OutboundMessage, Platform};

    const SECOND: Duration = Duration::from_secs(1);

    fn limits(rate: u32, max_in_flight: usize) -> Limits {
        Limits {
            rate,
            period: SECOND,
            per_recipient: None,
            max_in_flight,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }

    fn entry(conversation: &str, id: &str, deadline_ms: i64) -> OutboxEntry {
        OutboxEntry {
            seq: 0,
            platform: Platform::Facebook,
            conversation_id: conversation.into(),
            queued_at: Timestamp::from_millis(0),
            deadline_at: Timestamp::from_millis(deadline_ms),
            message: OutboundMessage {
                id: id.into(),
                recipient: format!("psid-{conversation}"),
                reply_to: None,
                text: Some("hi".into()),
                attachments: vec![],
                template: None,
                human_agent: false,
                link_preview: false,
                location: None,
                contacts: vec![],
            },
        }
    }

    fn moment(now: Instant) -> Moment {
        Moment { now, at: Timestamp::from_millis(1_000), jitter: 0.5 }
    }

    fn ids(entries: &[OutboxEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.message.id.as_str()).collect()
    }

    fn sent(id: &str) -> SendOutcome {
        SendOutcome::Sent { platform_message_id: format!("p-{id}") }
    }

    fn error(code: &str) -> MessageError {
        MessageError { code: code.into(), message: format!("error {code}"), permanent: false }
    }

    #[test]
    fn conversations_take_turns_and_one_conversation_sends_in_order_one_at_a_time() {
        let t0 = Instant::now();
        let at = Timestamp::from_millis(1_000);
        let mut scheduler = SendScheduler::new(limits(1_000, 8));
        for (conversation, id) in [("a", "a1"), ("a", "a2"), ("b", "b1"), ("a", "a3"), ("b", "b2")] {
            scheduler.add(entry(conversation, id, 60_000), t0);
        }
        scheduler.add(entry("a", "a1", 60_000), t0); // queued twice: once
        assert_eq!(scheduler.queued(), 5);
        let (first, _) = scheduler.next_sends(t0);
        assert_eq!(ids(&first), ["a1", "b1"], "one head per conversation");
        assert_eq!(scheduler.next_sends(t0).0, vec![], "both conversations are in flight");
        assert!(matches!(
            scheduler.attempted("a", "a1", at, sent("a1"), moment(t0)),
            AfterAttempt::Sent { attempts: 1, .. }
        ));
        assert_eq!(ids(&scheduler.next_sends(t0).0), ["a2"]);
        assert!(matches!(scheduler.attempted("b", "b1", at, sent("b1"), moment(t0)), AfterAttempt::Sent { .. }));
        assert!(matches!(scheduler.attempted("a", "a2", at, sent("a2"), moment(t0)), AfterAttempt::Sent { .. }));
        assert_eq!(ids(&scheduler.next_sends(t0).0), ["a3", "b2"], "turns go on where they stopped");
        // A finished message queued again (a late notice) is not sent twice.
        scheduler.add(entry("a", "a1", 60_000), t0);
        assert_eq!(scheduler.queued(), 2);
        assert_eq!(scheduler.attempted("a", "nope", at, sent("x"), moment(t0)), AfterAttempt::Stale);
    }

    #[test]
    fn the_pacer_and_max_in_flight_bound_what_starts() {
        let t0 = Instant::now();
        let mut scheduler = SendScheduler::new(limits(2, 8));
        for i in 0..5 {
            scheduler.add(entry(&format!("c{i}"), &format!("m{i}"), 60_000), t0);
        }
        let (now, wake) = scheduler.next_sends(t0);
        assert!(!now.is_empty() && now.len() <= 2, "{:?}", ids(&now));
        let wake = wake.expect("the rest waits for the pacer");
        // Within about one spacing of the pacer (a period over the rate, and its arrival guard).
        assert!(wake > t0 && wake <= t0 + 2 * SECOND, "{wake:?} after {t0:?}");
        let mut narrow = SendScheduler::new(limits(1_000, 2));
        for i in 0..5 {
            narrow.add(entry(&format!("c{i}"), &format!("m{i}"), 60_000), t0);
        }
        assert_eq!(narrow.next_sends(t0).0.len(), 2, "max_in_flight");
        assert_eq!(narrow.in_flight(), 2);
    }

    #[test]
    fn a_temporary_failure_backs_off_until_the_deadline_then_fails_with_its_error() {
        let t0 = Instant::now();
        let at = Timestamp::from_millis(1_000);
        let mut scheduler = SendScheduler::new(limits(1_000, 8));
        scheduler.add(entry("a", "a1", 10_000), t0);
        scheduler.add(entry("a", "a2", 60_000), t0);
        scheduler.next_sends(t0);
        let busy =
            SendOutcome::Retry { after: Some(Duration::from_secs(3)), error: error("613"), recipient_only: false };
        let retry = scheduler.attempted("a", "a1", at, busy, moment(t0));
        assert_eq!(retry, AfterAttempt::Retrying { delay: Duration::from_secs(3), error: error("613") });
        assert_eq!(scheduler.next_sends(t0 + Duration::from_secs(2)).0, vec![], "a2 never overtakes a1");
        let later = t0 + Duration::from_secs(3);
        assert_eq!(ids(&scheduler.next_sends(later).0), ["a1"]);
        // Past the deadline (1 s + 10 s > 10 s): failed, with the platform's last error.
        let again =
            SendOutcome::Retry { after: Some(Duration::from_secs(10)), error: error("2"), recipient_only: false };
        match scheduler.attempted("a", "a1", at, again, moment(later)) {
            AfterAttempt::DeadlinePassed { entry, error: e, attempts } => {
                assert_eq!((entry.message.id.as_str(), e.code.as_str(), attempts), ("a1", "2", 2));
            }
            other => panic!("{other:?}"),
        }
        // The next slot of the pacer (1,000 a second, evenly spaced) comes a moment later.
        assert_eq!(ids(&scheduler.next_sends(later + SECOND).0), ["a2"]);
        assert_eq!((scheduler.retried, scheduler.failed), (2, 1));
    }

    #[test]
    fn a_rejected_token_is_refreshed_once_per_message_then_the_channel_is_broken() {
        let t0 = Instant::now();
        let at = Timestamp::from_millis(1_000);
        let mut scheduler = SendScheduler::new(limits(1_000, 8));
        scheduler.add(entry("a", "a1", 60_000), t0);
        scheduler.next_sends(t0);
        let rejected = || SendOutcome::TokenRejected(error("190"));
        assert_eq!(
            scheduler.attempted("a", "a1", at, rejected(), moment(t0)),
            AfterAttempt::RefreshToken { error: error("190") }
        );
        assert_eq!(ids(&scheduler.next_sends(t0).0), ["a1"], "retried at once with the refreshed token");
        match scheduler.attempted("a", "a1", at, rejected(), moment(t0)) {
            AfterAttempt::TokenBroken { reason } => assert!(reason.contains("190"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(scheduler.next_sends(t0 + Duration::from_secs(59)).0, vec![], "it waits for a recheck");
        // While the channel cannot send, messages past their deadline fail with the last error.
        let expired = scheduler.expire(Timestamp::from_millis(60_001));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].1.code, "190");
        assert_eq!(scheduler.queued(), 0);
    }

    #[test]
    fn a_recipient_limit_pauses_only_that_recipient() {
        let t0 = Instant::now();
        let at = Timestamp::from_millis(1_000);
        let mut scheduler =
            SendScheduler::new(Limits { per_recipient: Some((Duration::from_secs(6), 1)), ..limits(1_000, 8) });
        scheduler.add(entry("a", "a1", 60_000), t0);
        scheduler.add(entry("a", "a2", 60_000), t0);
        scheduler.add(entry("b", "b1", 60_000), t0);
        assert_eq!(ids(&scheduler.next_sends(t0).0), ["a1", "b1"]);
        scheduler.attempted("a", "a1", at, sent("a1"), moment(t0));
        let (none, wake) = scheduler.next_sends(t0);
        assert!(none.is_empty(), "a's recipient waits for its bucket");
        assert!(wake.is_some_and(|w| w > t0 + Duration::from_secs(5)), "{wake:?}");
        let pair_limit = SendOutcome::Retry { after: None, error: error("131056"), recipient_only: true };
        assert!(matches!(scheduler.attempted("b", "b1", at, pair_limit, moment(t0)), AfterAttempt::Retrying { .. }));
    }
}
