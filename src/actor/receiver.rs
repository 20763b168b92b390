//! A receiver's delivery worker (`parley.webhook.{name}`): follows the live feed from its durable
//! cursor, posts each matching event to the receiver, retries on the contract's schedule, and
//! saves its progress through the conversation actor. The decisions are `webhooks::plan`'s; this
//! is the shell around them.
//!
//! - Reading: `actor::events::read_after` from where it has read to, woken by the feed hub's watch,
//!   at most [`MAX_QUEUED`] events held in memory (beyond that the feed in the store is the backlog).
//! - Sending: at most [`MAX_IN_FLIGHT`] requests at once, each in its own task, one event per
//!   conversation at a time (`plan::eligible`). Nothing here waits on a request, so a slow
//!   receiver only fills its own slots.
//! - Saving: every [`SAVE_EVERY`] when something changed, one atomic write (`plan::plan_save`),
//!   answered after the flush; a save that failed is redone whole. Enable and replay answer the
//!   API only after their save is durable.
//! - A 410 disables the receiver (durably); events keep being read (up to the bound) and wait.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::events::{FeedRead, read_after};
use super::{ConversationMsg, PersistError, ReadError, conversation_actor};
use crate::feed::{EventFilter, FeedHub, Published};
use crate::model::Timestamp;
use crate::store::{DeliveryError, FailedRecord, LoadedReceiver, PendingRecord, ReceiverSave, ReceiverState};
use crate::webhooks::plan::{self, Answer, Pending, Queue};
use crate::webhooks::receiver::{Receiver, delivery_body, delivery_headers};

/// Requests in flight at once per receiver. Past it, eligible events wait for a slot.
pub const MAX_IN_FLIGHT: usize = 16;
/// Events held in memory per receiver (read, not delivered). Past it reading pauses; the feed in
/// the store holds the rest (within retention).
pub const MAX_QUEUED: usize = 10_000;
/// Events asked for per read.
const READ_PAGE: usize = 1_000;
/// How often progress is saved (when there is any) and retries are looked at.
const SAVE_EVERY: Duration = Duration::from_millis(200);
/// A load or save that takes longer fails (and the worker is restarted, or the save redone).
const STORE_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an answer's body read (to reuse the connection); the rest is dropped with it.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Registered name of a receiver's worker.
pub fn receiver_actor_name(name: &str) -> String {
    format!("parley.webhook.{name}")
}

/// A receiver's worker, if it is running now.
pub fn receiver_actor(name: &str) -> Option<ActorRef<ReceiverMsg>> {
    ractor::registry::where_is(receiver_actor_name(name)).map(ActorRef::from)
}

/// Counts that outlive the worker's restarts, for `/metrics`.
#[derive(Debug, Default)]
pub struct ReceiverStats {
    pub deliveries: AtomicU64,
    pub failures: AtomicU64,
}

/// What the worker is started with.
#[derive(Clone)]
pub struct ReceiverArgs {
    pub receiver: Receiver,
    pub feed: Arc<FeedHub>,
    pub stats: Arc<ReceiverStats>,
}

/// What `GET /api/webhooks` and `/metrics` show of a receiver.
#[derive(Debug, Clone)]
pub struct ReceiverStatus {
    pub enabled: bool,
    pub last_delivered_seq: u64,
    /// Matching events not delivered yet: those read, and those in the feed after the worker's
    /// read cursor (counted exactly while they are in the feed hub's memory; beyond it, every
    /// unread event is counted, matching or not).
    pub pending: u64,
    pub failed: u64,
    /// The newest given-up events, newest first.
    pub failed_events: Vec<FailedRecord>,
    pub last_error: Option<DeliveryError>,
    /// Seconds since the oldest event not delivered yet was stored (0: none).
    pub oldest_pending_age_secs: u64,
    pub cursor: u64,
    /// Since the daemon started (kept across the worker's restarts).
    pub deliveries: u64,
    pub failures: u64,
}

/// How an attempt ended, without policy.
#[derive(Debug)]
pub struct AttemptResult {
    /// `None`: no HTTP answer (timeout, connection error).
    pub status: Option<u16>,
    pub retry_after: Option<String>,
    /// For `last_error` when there was no answer.
    pub transport_error: Option<String>,
}

/// Messages to a receiver's worker.
pub enum ReceiverMsg {
    /// Save if anything changed, retry what is due (internal, every `SAVE_EVERY`).
    Tick,
    /// The feed has new events (internal).
    FeedAdvanced,
    /// A read from `after` ended (internal).
    Read { after: u64, result: Result<FeedRead, ReadError> },
    /// A delivery attempt ended (internal).
    Attempted { seq: u64, result: AttemptResult },
    /// A save ended (internal).
    Saved(Result<(), PersistError>),
    /// The receiver's state.
    GetStatus(RpcReplyPort<ReceiverStatus>),
    /// Deliver every matching event after `after` again; answered once that is durable.
    Replay { after: u64, reply: RpcReplyPort<Result<(), PersistError>> },
    /// Enable a disabled receiver; answered once that is durable.
    Enable { reply: RpcReplyPort<Result<(), PersistError>> },
    /// The store forgot `count` given-up events numbered below `before` (their events were
    /// pruned with the retention).
    FailedForgotten { before: u64, count: u64 },
}

/// The actor behaviour; one instance per configured receiver.
pub struct ReceiverActor;

/// Mutable state of a worker.
pub struct ReceiverWorker {
    receiver: Receiver,
    filter: EventFilter,
    client: reqwest::Client,
    feed: Arc<FeedHub>,
    stats: Arc<ReceiverStats>,
    /// As last saved (or about to be), with the cursor of the last save.
    saved: ReceiverState,
    /// Everything up to here was read from the feed.
    read_to: u64,
    reading: bool,
    queue: Queue,
    events: HashMap<u64, Arc<Published>>,
    in_flight: usize,
    /// Events in flight when a replay asked for them again: sent once more after this attempt.
    replay_in_flight: HashSet<u64>,
    /// Durable pending records whose attempts changed.
    changed: HashSet<u64>,
    /// Durable pending records to remove.
    removed: HashSet<u64>,
    failed_new: Vec<FailedRecord>,
    unfail_after: Option<u64>,
    failed_count: u64,
    failed_recent: VecDeque<FailedRecord>,
    /// The state changed since the last save (enabled, last error, last delivered).
    dirty: bool,
    /// The save in flight, kept to be redone if it fails.
    saving: Option<ReceiverSave>,
    /// Answered when the save in flight ends.
    replies_in_flight: Vec<RpcReplyPort<Result<(), PersistError>>>,
    /// Answered when the next save ends.
    replies_next: Vec<RpcReplyPort<Result<(), PersistError>>>,
}

impl ReceiverWorker {
    fn now_ms() -> i64 {
        Timestamp::now().as_millis()
    }

    /// Starts a read when there is room and something new.
    fn read_more(&mut self, myself: &ActorRef<ReceiverMsg>) {
        if self.reading || self.queue.len() >= MAX_QUEUED || self.feed.newest() <= self.read_to {
            return;
        }
        self.reading = true;
        let (feed, after, me) = (self.feed.clone(), self.read_to, myself.clone());
        let limit = READ_PAGE.min(MAX_QUEUED - self.queue.len());
        tokio::spawn(async move {
            let result = read_after(&feed, after, limit).await;
            let _ = me.cast(ReceiverMsg::Read { after, result });
        });
    }

    fn take_read(&mut self, myself: &ActorRef<ReceiverMsg>, after: u64, result: Result<FeedRead, ReadError>) {
        self.reading = false;
        if after != self.read_to {
            // A replay moved the read position meanwhile: this page is from before it.
            self.read_more(myself);
            return;
        }
        match result {
            Ok(FeedRead::Events(events)) => {
                let now = Self::now_ms();
                for published in events {
                    let seq = published.event.seq;
                    if seq <= self.read_to {
                        continue;
                    }
                    self.read_to = seq;
                    if !self.filter.matches(&published.event) || self.queue.contains_key(&seq) {
                        continue;
                    }
                    self.removed.remove(&seq);
                    self.queue.insert(seq, Pending::new(published.event.conversation_id.clone(), now));
                    self.events.insert(seq, published);
                }
            }
            Ok(FeedRead::Reset { oldest }) => {
                tracing::warn!(
                    message = "Events this receiver had not read were pruned (events.retention_days); continuing from the oldest retained.",
                    receiver = %self.receiver.name,
                    from_seq = self.read_to + 1,
                    oldest_seq = oldest
                );
                self.read_to = oldest.saturating_sub(1);
            }
            Err(e) => {
                // The store is restarting or busy; the next tick tries again.
                tracing::debug!(message = "Reading the feed failed; trying again.", receiver = %self.receiver.name, error = %e);
                return;
            }
        }
        self.pump(myself);
        self.read_more(myself);
    }

    /// Starts every attempt that may go now.
    fn pump(&mut self, myself: &ActorRef<ReceiverMsg>) {
        if !self.saved.enabled || self.in_flight >= MAX_IN_FLIGHT {
            return;
        }
        for seq in plan::eligible(&self.queue, Self::now_ms(), MAX_IN_FLIGHT - self.in_flight) {
            let (Some(pending), Some(event)) = (self.queue.get_mut(&seq), self.events.get(&seq)) else { continue };
            pending.in_flight = true;
            self.in_flight += 1;
            let body = delivery_body(event);
            let (client, url, key, me) =
                (self.client.clone(), self.receiver.url.clone(), self.receiver.key.clone(), myself.clone());
            tokio::spawn(async move {
                let timestamp = Timestamp::now().as_millis().div_euclid(1000);
                let mut request = client.post(&url);
                for (name, value) in delivery_headers(&key, seq, timestamp, &body) {
                    request = request.header(name, value);
                }
                let result = match request.body(body).send().await {
                    Ok(mut response) => {
                        let status = response.status().as_u16();
                        let retry_after = response
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let mut read = 0;
                        while read < MAX_ANSWER_BYTES {
                            match response.chunk().await {
                                Ok(Some(chunk)) => read += chunk.len(),
                                _ => break,
                            }
                        }
                        AttemptResult { status: Some(status), retry_after, transport_error: None }
                    }
                    Err(e) => AttemptResult { status: None, retry_after: None, transport_error: Some(describe(&e)) },
                };
                let _ = me.cast(ReceiverMsg::Attempted { seq, result });
            });
        }
    }

    fn attempted(&mut self, myself: &ActorRef<ReceiverMsg>, seq: u64, result: AttemptResult) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let Some(pending) = self.queue.get_mut(&seq) else { return };
        pending.in_flight = false;
        let now = Self::now_ms();
        // Failed or not, an event a replay asked for while it was in flight stays pending.
        let asked_again = self.replay_in_flight.remove(&seq);
        match plan::classify(result.status, result.retry_after.as_deref(), Timestamp::now()) {
            Answer::Delivered if asked_again => {
                // A replay asked for it while this attempt ran: it goes once more.
                pending.attempts = 0;
                pending.next_at_ms = now;
                if pending.durable {
                    self.changed.insert(seq);
                }
                self.saved.last_delivered_seq = self.saved.last_delivered_seq.max(seq);
                self.stats.deliveries.fetch_add(1, Ordering::Relaxed);
                self.dirty = true;
            }
            Answer::Delivered => {
                let pending = self.queue.remove(&seq).expect("looked up above");
                self.events.remove(&seq);
                if pending.durable {
                    self.changed.remove(&seq);
                    self.removed.insert(seq);
                }
                self.saved.last_delivered_seq = self.saved.last_delivered_seq.max(seq);
                self.stats.deliveries.fetch_add(1, Ordering::Relaxed);
                self.dirty = true;
            }
            Answer::Gone => {
                pending.next_at_ms = now;
                if self.saved.enabled {
                    tracing::warn!(message = "The receiver answered 410 Gone; disabled until it is enabled again.", receiver = %self.receiver.name);
                }
                self.saved.enabled = false;
                self.saved.last_error = Some(DeliveryError {
                    at: Timestamp::now(),
                    status: Some(410),
                    message: "410 Gone: disabled until POST /api/webhooks/{name}/enable".to_owned(),
                });
                self.dirty = true;
            }
            Answer::Failed { status, retry_after } => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                pending.attempts += 1;
                let message = match (&result.transport_error, status) {
                    (Some(e), _) => e.clone(),
                    (None, Some(status)) => format!("answered {status}"),
                    (None, None) => "no answer".to_owned(),
                };
                self.saved.last_error = Some(DeliveryError { at: Timestamp::now(), status, message: message.clone() });
                self.dirty = true;
                let jitter = rand::random::<f64>() * 2.0 - 1.0;
                match plan::retry_delay(pending.attempts, jitter, retry_after) {
                    Some(wait) => {
                        pending.next_at_ms = now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                        if pending.durable {
                            self.changed.insert(seq);
                        }
                        tracing::debug!(message = "Delivery failed; retrying later.", receiver = %self.receiver.name, seq, attempts = pending.attempts, wait_ms = wait.as_millis() as u64);
                    }
                    None => {
                        let pending = self.queue.remove(&seq).expect("looked up above");
                        self.events.remove(&seq);
                        if pending.durable {
                            self.changed.remove(&seq);
                            self.removed.insert(seq);
                        }
                        tracing::warn!(message = "Delivery given up after the last retry.", receiver = %self.receiver.name, seq, attempts = pending.attempts);
                        self.failed_new.push(FailedRecord {
                            seq,
                            attempts: pending.attempts,
                            given_up_at: Timestamp::now(),
                            status,
                            message,
                        });
                    }
                }
            }
        }
        self.pump(myself);
        self.read_more(myself);
    }

    /// Saves when something changed and no save runs (see `plan::plan_save`).
    fn save(&mut self, myself: &ActorRef<ReceiverMsg>) {
        if self.saving.is_some() {
            return;
        }
        let plan = plan::plan_save(&self.queue, self.read_to, &self.changed);
        let nothing = plan.cursor == self.saved.cursor
            && plan.record.is_empty()
            && self.removed.is_empty()
            && self.failed_new.is_empty()
            && self.unfail_after.is_none()
            && !self.dirty
            && self.replies_next.is_empty();
        if nothing {
            return;
        }
        let Some(actor) = conversation_actor() else { return };
        let mut record = Vec::with_capacity(plan.record.len());
        for seq in &plan.record {
            if let Some(pending) = self.queue.get_mut(seq) {
                pending.durable = true;
                record.push(PendingRecord { seq: *seq, attempts: pending.attempts, next_at_ms: pending.next_at_ms });
            }
        }
        self.changed.clear();
        self.saved.cursor = plan.cursor;
        let save = ReceiverSave {
            state: self.saved.clone(),
            record,
            remove: self.removed.drain().collect(),
            failed: std::mem::take(&mut self.failed_new),
            unfail_after: self.unfail_after.take(),
        };
        for failed in &save.failed {
            self.failed_count += 1;
            self.failed_recent.push_front(failed.clone());
            self.failed_recent.truncate(crate::store::FAILED_SHOWN);
        }
        if let Some(after) = save.unfail_after {
            self.failed_recent.retain(|f| f.seq <= after);
        }
        self.dirty = false;
        self.replies_in_flight = std::mem::take(&mut self.replies_next);
        // Sent from here, not from a task: it is in the conversation actor's mailbox before
        // anything this worker does next (a stop included).
        let (reply, answer) = ractor::concurrency::oneshot();
        let message = ConversationMsg::SaveReceiver {
            name: self.receiver.name.clone(),
            save: Box::new(save.clone()),
            reply: reply.into(),
        };
        self.saving = Some(save);
        let me = myself.clone();
        if actor.cast(message).is_err() {
            let _ = me.cast(ReceiverMsg::Saved(Err(PersistError::Failed("the store is restarting".to_owned()))));
            return;
        }
        tokio::spawn(async move {
            let result = match tokio::time::timeout(STORE_CALL_TIMEOUT, answer).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(PersistError::Failed("the store is restarting".to_owned())),
                Err(_) => Err(PersistError::Failed("saving timed out".to_owned())),
            };
            let _ = me.cast(ReceiverMsg::Saved(result));
        });
    }

    fn saved(&mut self, myself: &ActorRef<ReceiverMsg>, result: Result<(), PersistError>) {
        let save = self.saving.take();
        if let (Err(e), Some(save)) = (&result, save) {
            // Nothing of it may be taken as durable: record every pending event again, and keep
            // what it removed and gave up for the next save.
            tracing::warn!(message = "Saving the receiver's progress failed; trying again.", receiver = %self.receiver.name, error = %e);
            for pending in self.queue.values_mut() {
                pending.durable = false;
            }
            self.removed.extend(save.remove);
            self.failed_count = self.failed_count.saturating_sub(save.failed.len() as u64);
            self.failed_new.splice(0..0, save.failed);
            self.unfail_after = match (self.unfail_after, save.unfail_after) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.dirty = true;
        }
        for reply in self.replies_in_flight.drain(..) {
            let _ = reply.send(result.clone());
        }
        if !self.replies_next.is_empty() {
            self.save(myself);
        }
    }

    fn status(&self) -> ReceiverStatus {
        let unread = self.feed.newest().saturating_sub(self.read_to);
        let oldest_pending_age_secs = self
            .queue
            .keys()
            .next()
            .and_then(|seq| self.events.get(seq))
            .map(|e| (Timestamp::now().as_millis() - e.event.at.as_millis()).max(0) as u64 / 1000)
            .unwrap_or(0);
        ReceiverStatus {
            enabled: self.saved.enabled,
            last_delivered_seq: self.saved.last_delivered_seq,
            pending: self.queue.len() as u64 + self.feed.count_matching(self.read_to, &self.filter).unwrap_or(unread),
            failed: self.failed_count,
            failed_events: self.failed_recent.iter().cloned().collect(),
            last_error: self.saved.last_error.clone(),
            oldest_pending_age_secs,
            cursor: self.saved.cursor,
            deliveries: self.stats.deliveries.load(Ordering::Relaxed),
            failures: self.stats.failures.load(Ordering::Relaxed),
        }
    }
}

/// A transport error in a few words, without the URL (which could carry a credential).
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else if error.is_body() || error.is_decode() {
        "the answer was cut off".to_owned()
    } else {
        "the request failed".to_owned()
    }
}

async fn load(name: &str) -> Result<LoadedReceiver, ActorProcessingErr> {
    let actor = conversation_actor().ok_or("the conversation actor is not running")?;
    let name = name.to_owned();
    match actor.call(|reply| ConversationMsg::LoadReceiver { name, reply }, Some(STORE_CALL_TIMEOUT)).await? {
        CallResult::Success(result) => Ok(result?),
        _ => Err("the conversation actor did not answer".into()),
    }
}

/// The first save of a new receiver; the inner `Err` when the store refused it.
async fn save_first(name: &str, state: &ReceiverState) -> Result<Result<(), PersistError>, ActorProcessingErr> {
    let actor = conversation_actor().ok_or("the conversation actor is not running")?;
    let (name, save) = (name.to_owned(), Box::new(ReceiverSave { state: state.clone(), ..Default::default() }));
    match actor.call(|reply| ConversationMsg::SaveReceiver { name, save, reply }, Some(STORE_CALL_TIMEOUT)).await? {
        CallResult::Success(result) => Ok(result),
        _ => Err("the conversation actor did not answer".into()),
    }
}

async fn events_by_seq(seqs: Vec<u64>) -> Result<Vec<crate::feed::Event>, ActorProcessingErr> {
    let actor = conversation_actor().ok_or("the conversation actor is not running")?;
    match actor.call(|reply| ConversationMsg::ReadEventsBySeq { seqs, reply }, Some(STORE_CALL_TIMEOUT)).await? {
        CallResult::Success(result) => Ok(result?),
        _ => Err("the conversation actor did not answer".into()),
    }
}

impl Actor for ReceiverActor {
    type Msg = ReceiverMsg;
    type State = ReceiverWorker;
    type Arguments = ReceiverArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<ReceiverMsg>,
        args: ReceiverArgs,
    ) -> Result<ReceiverWorker, ActorProcessingErr> {
        let receiver = args.receiver;
        let loaded = load(&receiver.name).await?;
        let mut first_save_pending = false;
        let saved = match loaded.state.clone() {
            Some(saved) => saved,
            None => {
                // A new receiver starts at the newest durable event (replay sends history), and
                // says so durably before it takes anything: a crash then cannot move it on.
                let saved = ReceiverState { cursor: args.feed.newest(), enabled: true, ..Default::default() };
                if let Err(e) = save_first(&receiver.name, &saved).await? {
                    // The store refuses writes (disk full): start anyway; the first save follows.
                    tracing::warn!(message = "A new receiver's start could not be saved yet.", receiver = %receiver.name, error = %e);
                    first_save_pending = true;
                }
                saved
            }
        };
        // Pending events from before the restart, with their attempts.
        let records: BTreeMap<u64, PendingRecord> = loaded.pending.iter().map(|r| (r.seq, *r)).collect();
        let events = events_by_seq(records.keys().copied().collect()).await?;
        let mut queue = Queue::new();
        let mut held = HashMap::new();
        for event in events {
            let Some(record) = records.get(&event.seq) else { continue };
            let mut pending = Pending::new(event.conversation_id.clone(), record.next_at_ms);
            pending.attempts = record.attempts;
            pending.durable = true;
            queue.insert(event.seq, pending);
            held.insert(event.seq, Arc::new(Published::new(event)));
        }
        // Records whose event was pruned meanwhile cannot be delivered: removed, given up.
        let mut removed = HashSet::new();
        let mut failed_new = Vec::new();
        for record in records.values().filter(|r| !queue.contains_key(&r.seq)) {
            removed.insert(record.seq);
            failed_new.push(FailedRecord {
                seq: record.seq,
                attempts: record.attempts,
                given_up_at: Timestamp::now(),
                status: None,
                message: "the event was pruned (events.retention_days) before it could be delivered".to_owned(),
            });
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(receiver.timeout)
            .connect_timeout(receiver.timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("parley/", env!("CARGO_PKG_VERSION")))
            .build()?;
        tracing::info!(
            message = "Webhook receiver started.",
            receiver = %receiver.name,
            cursor = saved.cursor,
            pending = queue.len(),
            enabled = saved.enabled
        );
        Ok(ReceiverWorker {
            filter: receiver.filter(),
            receiver,
            client,
            feed: args.feed,
            stats: args.stats,
            read_to: saved.cursor,
            saved,
            reading: false,
            queue,
            events: held,
            in_flight: 0,
            replay_in_flight: HashSet::new(),
            changed: HashSet::new(),
            removed,
            failed_new,
            unfail_after: None,
            failed_count: loaded.failed_count,
            failed_recent: loaded.failed.into(),
            dirty: first_save_pending,
            saving: None,
            replies_in_flight: Vec::new(),
            replies_next: Vec::new(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<ReceiverMsg>,
        state: &mut ReceiverWorker,
    ) -> Result<(), ActorProcessingErr> {
        let mut newest = state.feed.subscribe();
        let me = myself.clone();
        tokio::spawn(async move {
            // Ends with the worker: the next cast after it stopped fails.
            while newest.changed().await.is_ok() {
                if me.cast(ReceiverMsg::FeedAdvanced).is_err() {
                    break;
                }
            }
        });
        myself.send_after(SAVE_EVERY, || ReceiverMsg::Tick);
        state.read_more(&myself);
        state.pump(&myself);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ReceiverMsg>,
        message: ReceiverMsg,
        state: &mut ReceiverWorker,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ReceiverMsg::Tick => {
                myself.send_after(SAVE_EVERY, || ReceiverMsg::Tick);
                state.save(&myself);
                state.pump(&myself);
                state.read_more(&myself);
            }
            ReceiverMsg::FeedAdvanced => state.read_more(&myself),
            ReceiverMsg::Read { after, result } => state.take_read(&myself, after, result),
            ReceiverMsg::Attempted { seq, result } => state.attempted(&myself, seq, result),
            ReceiverMsg::Saved(result) => state.saved(&myself, result),
            ReceiverMsg::GetStatus(reply) => {
                let _ = reply.send(state.status());
            }
            ReceiverMsg::Replay { after, reply } => {
                tracing::info!(message = "Replaying events to a receiver.", receiver = %state.receiver.name, after);
                if after < state.read_to {
                    state.read_to = after;
                }
                // Held events after `after` are not read twice; those in flight go once more.
                let again =
                    state.queue.range(after.saturating_add(1)..).filter(|(_, p)| p.in_flight).map(|(seq, _)| *seq);
                state.replay_in_flight.extend(again.collect::<Vec<_>>());
                state.unfail_after = Some(state.unfail_after.map_or(after, |a| a.min(after)));
                state.dirty = true;
                state.replies_next.push(reply);
                state.save(&myself);
                state.read_more(&myself);
            }
            ReceiverMsg::Enable { reply } => {
                if !state.saved.enabled {
                    tracing::info!(message = "Webhook receiver enabled.", receiver = %state.receiver.name);
                }
                state.saved.enabled = true;
                // What waited for a retry is tried now: the operator says the receiver is back.
                let now = ReceiverWorker::now_ms();
                for (seq, pending) in state.queue.iter_mut() {
                    if pending.next_at_ms > now {
                        pending.next_at_ms = now;
                        if pending.durable {
                            state.changed.insert(*seq);
                        }
                    }
                }
                state.dirty = true;
                state.replies_next.push(reply);
                state.save(&myself);
                state.pump(&myself);
            }
            ReceiverMsg::FailedForgotten { before, count } => {
                state.failed_count = state.failed_count.saturating_sub(count);
                state.failed_recent.retain(|f| f.seq >= before);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<ReceiverMsg>,
        state: &mut ReceiverWorker,
    ) -> Result<(), ActorProcessingErr> {
        // A last save of what was delivered (requests still in flight are delivered again after
        // the restart: at least once).
        if state.saving.is_none() {
            state.save(&myself);
        }
        Ok(())
    }
}
