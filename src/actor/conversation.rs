//! The conversation actor: owns the store, persists inbound events, answers reads, and runs group
//! commit so that concurrent webhooks share one flush and each is answered only after the flush
//! that covers its write.
//!
//! When the store cannot be written (a full disk, a read-only or failing filesystem) the actor
//! does not fail: the supervisor would restart it into the same error until the restart budget
//! ran out. It refuses writes with [`PersistError::NotWritable`] (HTTP answers 503 with
//! `Retry-After`), keeps answering reads from what sled can still read, keeps the status changes
//! of sent messages for later and pauses the channels' sending, and probes the disk on a timer with
//! back-off. Once a probe write succeeds it reopens the store in place (after one failed write,
//! sled refuses every later write of that database until it is opened again) and carries on.
//!
//! Checkpoints: sled 0.34 writes the snapshot of its page table only when a database is opened,
//! and an open replays every log record written since the snapshot it finds (about 10 µs per
//! webhook). Left alone, a daemon that took ten million webhooks would need minutes to start. So
//! the actor closes and reopens the store in place (a checkpoint) once enough was written since it
//! was opened and traffic is quiet, or, under unbroken traffic, once much more was written; and at
//! a clean shutdown. While a checkpoint runs, messages that need the store wait in order and are
//! handled as soon as it is open again: nothing is refused.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::{
    ChannelMsg, ConversationMsg, PersistError, ReadError, StoreAvailability, StoreStatus, WebhookOutcome, WebhookReply,
    channel_actor,
};
use crate::feed::{FeedHub, Published};
use crate::model::{InboundEvent, MessageError, Platform, Timestamp};
use crate::store::{
    self, IngestOutcome, OutboxEntry, ReadMark, Store, StoreError, WriteFailure, WriteProblem, names_by_lookup,
};

/// The actor behaviour; all state is in [`ConversationState`].
pub struct ConversationActor;

/// Where the store lives, to open it again.
#[derive(Clone, Debug)]
pub struct StoreLocation {
    pub path: PathBuf,
    pub cache_bytes: u64,
}

/// Counters about store writes that outlive actor restarts, for `/metrics`.
#[derive(Debug, Default)]
pub struct StoreStats {
    write_errors: [AtomicU64; 2],
    outages: [AtomicU64; 2],
    checkpoints: AtomicU64,
}

impl StoreStats {
    fn snapshot(counters: &[AtomicU64; 2]) -> [u64; 2] {
        [counters[0].load(Ordering::Relaxed), counters[1].load(Ordering::Relaxed)]
    }
}

/// Arguments. The store that `app` opened is handed over once, to the first actor; an actor
/// restarted after a failure opens it again itself, so that no other handle keeps the old one open
/// (a store is reopened in place only when nothing else holds it).
#[derive(Clone)]
pub struct ConversationArgs {
    pub opened: Arc<Mutex<Option<Store>>>,
    pub location: StoreLocation,
    pub stats: Arc<StoreStats>,
    pub checkpoints: CheckpointPolicy,
    /// Where events go once they are durable (shared with the HTTP front end).
    pub feed: Arc<FeedHub>,
    /// Events older than this are pruned.
    pub retention: Duration,
}

impl ConversationArgs {
    /// Arguments that hand `store`, opened at `location`, to the first conversation actor.
    pub fn new(store: Store, location: StoreLocation) -> Self {
        ConversationArgs {
            opened: Arc::new(Mutex::new(Some(store))),
            location,
            stats: Arc::new(StoreStats::default()),
            checkpoints: CheckpointPolicy::default(),
            feed: FeedHub::new(FEED_HUB_EVENTS),
            retention: Duration::from_secs(7 * 86_400),
        }
    }
}

/// Probing and reopening a store that could not be written.
pub enum Recovery {
    /// Time to check whether the store's disk takes writes again.
    Probe,
    /// The probe write ended.
    Probed(Result<(), std::io::ErrorKind>),
    /// Opening the store again ended.
    Reopened(Result<Store, StoreError>),
}

/// Checkpointing the store (see the module documentation).
pub enum CheckpointStep {
    /// Time to look at how much was written since the store was opened.
    Tick,
    /// The store was closed and opened again.
    Reopened(Result<Store, StoreError>),
}

/// When the actor checkpoints the store (see the module documentation). Records are what sled's
/// log replays at the next open: a webhook writes about seven, and replays in about 10 µs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// How often the actor looks at whether a checkpoint is due.
    pub tick: Duration,
    /// Ticks over which traffic is measured for "quiet".
    pub quiet_ticks: usize,
    /// A checkpoint is due at a quiet moment once this many records were written since the store
    /// was opened.
    pub after_records: u64,
    /// Quiet: fewer records than this written over the last `quiet_ticks` ticks.
    pub quiet_records: u64,
    /// Under traffic that never quietens, a checkpoint is taken anyway at this many.
    pub forced_records: u64,
    /// A clean shutdown checkpoints when at least this much was written since the store was opened.
    pub shutdown_records: u64,
}

impl Default for CheckpointPolicy {
    /// About 110,000 webhooks (a one-second replay) at a moment of under ~100 webhooks a second;
    /// at ~570,000 (a six-second replay: writes wait that long, well inside every platform's
    /// webhook timeout) whatever the traffic; and at shutdown from ~1,400.
    fn default() -> Self {
        CheckpointPolicy {
            tick: Duration::from_secs(1),
            quiet_ticks: 5,
            after_records: 800_000,
            quiet_records: 3_500,
            forced_records: 4_000_000,
            shutdown_records: 10_000,
        }
    }
}

impl CheckpointPolicy {
    /// Whether a checkpoint is due: `written` records since the store was opened, `recent` of
    /// them within the last `quiet_ticks` ticks.
    pub fn due(&self, written: u64, recent: u64) -> bool {
        written >= self.forced_records || (written >= self.after_records && recent < self.quiet_records)
    }
}

/// Where a checkpoint is.
enum CheckpointPhase {
    /// Waiting for the running flush (and what it covers) to end; new work waits.
    Draining { since: Instant },
    /// The store is being closed and opened again.
    Reopening { since: Instant, written: u64 },
}

/// Events the feed hub keeps in memory for readers at the tail (older ones are read from the store).
pub const FEED_HUB_EVENTS: usize = 16_384;
/// Pruning: how often, and how many events at most per batch (a batch is one write; while more
/// are due, the next batch follows after `PRUNE_AGAIN`, so ingest is never held up for long).
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PRUNE_AGAIN: Duration = Duration::from_millis(200);
const PRUNE_BATCH: usize = 2_000;

/// The first probe comes this soon after a failure; each failed one doubles it, up to the most.
const FIRST_PROBE: Duration = Duration::from_secs(1);
const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// A probe that found the disk writable waits this long for a running flush to end (it holds a
/// handle on the store, and the store can be reopened only once nothing does).
const PROBE_AFTER_FLUSH: Duration = Duration::from_millis(50);
/// How long a reopen waits for sled's own threads to let go of the old store's file lock.
const REOPEN_LOCK_WAIT: Duration = Duration::from_secs(5);
/// Status changes kept while the store cannot be written. Sending pauses during an outage, so
/// only what was in flight when it began gets here; past the bound the oldest is dropped, and its
/// message may be sent again after a restart (the outbox still holds it).
const MAX_DEFERRED: usize = 10_000;

/// The delay before probe number `probes` (0-based) of one outage: doubling, capped.
pub fn probe_delay(probes: u32) -> Duration {
    FIRST_PROBE.saturating_mul(2u32.saturating_pow(probes.min(16))).min(MAX_PROBE_INTERVAL)
}

/// A reply waiting for durability: called with the flush's result.
type PendingReply = Box<dyn FnOnce(Result<(), PersistError>) + Send>;

/// The pending reply of a webhook: its outcome once the flush succeeded.
fn webhook_reply(reply: WebhookReply, outcome: WebhookOutcome) -> PendingReply {
    Box::new(move |result| {
        let _ = reply.send(result.map(|()| outcome));
    })
}

/// The pending reply of a stored webhook: its outcome once the flush succeeded, and then the
/// Messenger conversations it left without a name go to that channel to be looked up
/// (`channel/names.rs`), so no lookup is made for a write that did not become durable.
fn stored_reply(
    store: &Store,
    platform: Platform,
    events: &[InboundEvent],
    reply: WebhookReply,
    outcome: IngestOutcome,
) -> PendingReply {
    let unnamed = if names_by_lookup(platform) && outcome.messages > 0 {
        store.unnamed_contacts(events).unwrap_or_else(|e| {
            tracing::debug!(message = "Could not tell which conversations want a name; none looked up.", %platform, error = %e);
            Vec::new()
        })
    } else {
        Vec::new()
    };
    Box::new(move |result| {
        let stored = result.is_ok();
        let _ = reply.send(result.map(|()| WebhookOutcome::Stored(outcome)));
        if stored
            && !unnamed.is_empty()
            && let Some(channel) = channel_actor(platform)
        {
            let _ = channel.cast(ChannelMsg::NamesWanted(unnamed));
        }
    })
}

/// Something written that waits for the next flush.
enum Pending {
    /// A caller waits for the answer.
    Reply(PendingReply),
    /// Nobody waits, but if the flush fails the change must be written again later.
    Status(Box<StatusWrite>),
    /// Nobody waits and nothing is redone (a `sending` step, a channel's status): parked so that
    /// a flush starts and its events are published promptly.
    Quiet,
}

/// A status change of a sent message (the outbox entry leaves with it).
#[derive(Clone)]
enum StatusWrite {
    Sent { entry: OutboxEntry, platform_message_id: String, dispatched_at: Timestamp },
    Failed { entry: OutboxEntry, error: MessageError },
}

impl StatusWrite {
    fn entry(&self) -> &OutboxEntry {
        match self {
            StatusWrite::Sent { entry, .. } | StatusWrite::Failed { entry, .. } => entry,
        }
    }
}

/// While the store refuses writes.
struct Outage {
    /// What failed; `None` while the store is being opened after an actor restart.
    failure: Option<WriteFailure>,
    since: Instant,
    /// Probes so far (they set the back-off).
    probes: u32,
    /// A probe or a reopen is running; its result comes back as a `Recovery` message.
    probing: bool,
}

/// While a flush runs, webhooks gather into groups of this many, each stored in one write as soon
/// as it is full, so that storing the next group overlaps the flush instead of following it. The
/// rest are stored when the flush ends. (Each write rolls sled's log buffer, so groups of one
/// would cost one log write each.)
const STORE_WHILE_FLUSHING: usize = 16;

/// Mutable state of the conversation actor.
pub struct ConversationState {
    /// `None` while the store is being opened again.
    store: Option<Store>,
    location: StoreLocation,
    stats: Arc<StoreStats>,
    /// Set while the store refuses writes.
    outage: Option<Outage>,
    /// Written, waiting for the next flush to start.
    waiting: Vec<Pending>,
    /// Covered by the flush now running.
    in_flight: Vec<Pending>,
    flushing: bool,
    /// Webhooks that arrived while a flush ran: stored together, in one write, when it ends.
    buffered: Vec<(Platform, Vec<InboundEvent>, Timestamp, WebhookReply)>,
    /// Status changes that could not be written yet, oldest first; written once the store is back.
    deferred: VecDeque<StatusWrite>,
    /// Set while a checkpoint runs.
    checkpoint: Option<CheckpointPhase>,
    /// Messages that need the store, waiting for a checkpoint to end, in arrival order.
    held: VecDeque<ConversationMsg>,
    /// `records_written_since_open` at each of the last ticks, oldest first.
    written_at_ticks: VecDeque<u64>,
    policy: CheckpointPolicy,
    feed: Arc<FeedHub>,
    /// Events committed before the running flush started: published when it succeeds.
    flushing_events: Vec<Published>,
    retention: Duration,
}

/// Forgets the given-up deliveries of events the log no longer holds (they can be neither listed
/// nor replayed), at most `PRUNE_BATCH`, and tells each receiver's worker to lower its count.
/// Returns how many were forgotten.
fn forget_given_up_deliveries(store: &Store) -> Result<u64, StoreError> {
    let oldest = store.oldest_event_seq()?.unwrap_or(0);
    let mut total = 0;
    for (name, count) in store.prune_failed_deliveries(oldest, PRUNE_BATCH)? {
        total += count;
        if let Some(worker) = super::receiver::receiver_actor(&name) {
            let _ = worker.cast(super::receiver::ReceiverMsg::FailedForgotten { before: oldest, count });
        }
    }
    Ok(total)
}

impl ConversationState {
    /// The store, when it takes writes now.
    fn writable(&self) -> Option<&Store> {
        if self.outage.is_some() { None } else { self.store.as_ref() }
    }

    /// The answer to a write while the store refuses writes.
    fn refusal(&self) -> PersistError {
        let reason = match self.outage.as_ref().and_then(|o| o.failure.as_ref()) {
            Some(failure) => failure.reason.clone(),
            None => "the store is being opened".to_owned(),
        };
        PersistError::NotWritable(reason)
    }

    /// Starts a flush covering everything in `waiting`, unless one is running: when that one ends,
    /// the next starts and covers all that arrived meanwhile. No timer needed.
    fn start_flush(&mut self, myself: &ActorRef<ConversationMsg>) {
        if self.flushing || self.waiting.is_empty() {
            return;
        }
        let Some(store) = self.writable().cloned() else { return };
        self.flushing = true;
        self.in_flight = std::mem::take(&mut self.waiting);
        self.feed.ingest_load(self.in_flight.len());
        self.flushing_events = store.take_committed_events();
        let me = myself.clone();
        tokio::spawn(async move {
            let result = store.flush().await;
            // Let go of the store before reporting: a reopen waits for the report, and needs this
            // handle gone.
            drop(store);
            let result = result.map_err(|e| failure_of(&e));
            // If the actor died meanwhile, its pending replies were dropped and their webhooks
            // answered 503; nothing to do here.
            let _ = me.cast(ConversationMsg::Flushed(result));
        });
    }

    fn park(&mut self, myself: &ActorRef<ConversationMsg>, pending: Pending) {
        self.waiting.push(pending);
        self.start_flush(myself);
    }

    /// Ends a pending write with the flush's result.
    fn finish(&mut self, pending: Pending, result: Result<(), PersistError>) {
        match (pending, result) {
            (Pending::Reply(reply), result) => reply(result),
            (Pending::Status(_), Ok(())) | (Pending::Quiet, _) => {}
            (Pending::Status(write), Err(_)) => self.defer(*write),
        }
    }

    fn defer(&mut self, write: StatusWrite) {
        if self.deferred.len() == MAX_DEFERRED
            && let Some(dropped) = self.deferred.pop_front()
        {
            tracing::warn!(message = "Too many status changes wait for the store; dropping the oldest (that message may be sent again after a restart).", message_id = %dropped.entry().message.id);
        }
        self.deferred.push_back(write);
    }

    /// A write or flush failed: count it, and unless the store already refuses writes, stop taking
    /// them, refuse what waits, pause sending, and start probing.
    fn write_failed(&mut self, myself: &ActorRef<ConversationMsg>, failure: WriteFailure) {
        self.stats.write_errors[failure.problem.index()].fetch_add(1, Ordering::Relaxed);
        if let Some(outage) = &mut self.outage {
            outage.failure.get_or_insert(failure);
            return;
        }
        self.stats.outages[failure.problem.index()].fetch_add(1, Ordering::Relaxed);
        tracing::error!(message = "The store cannot be written; refusing writes until it can.", problem = failure.problem.label(), reason = %failure.reason);
        self.outage = Some(Outage { failure: Some(failure), since: Instant::now(), probes: 0, probing: false });
        let refusal = self.refusal();
        // What waits for a flush can no longer become durable: sled fails every flush from now on.
        for pending in std::mem::take(&mut self.waiting) {
            self.finish(pending, Err(refusal.clone()));
        }
        for (_, _, _, reply) in std::mem::take(&mut self.buffered) {
            let _ = reply.send(Err(refusal.clone()));
        }
        tell_channels(false);
        self.schedule_probe(myself);
    }

    /// The answer to a write that failed with `error`: an I/O failure starts an outage (if none
    /// runs) and is refused like every write during one; a record that would not encode fails alone.
    fn write_error(&mut self, myself: &ActorRef<ConversationMsg>, error: &StoreError) -> PersistError {
        match error.write_failure() {
            Some(failure) => {
                self.write_failed(myself, failure);
                self.refusal()
            }
            None => PersistError::Failed(error.to_string()),
        }
    }

    fn schedule_probe(&self, myself: &ActorRef<ConversationMsg>) {
        let probes = self.outage.as_ref().map_or(0, |o| o.probes);
        myself.send_after(probe_delay(probes), || ConversationMsg::Recovery(Recovery::Probe));
    }

    /// Stores every buffered webhook in one write (one log I/O for the group) and parks their
    /// replies for the next flush. A group that fails for a bad record is retried webhook by
    /// webhook, so one bad body cannot fail the others.
    fn store_buffered(&mut self, myself: &ActorRef<ConversationMsg>) {
        let group = std::mem::take(&mut self.buffered);
        if group.is_empty() {
            return;
        }
        let Some(store) = self.writable().cloned() else {
            let refusal = self.refusal();
            for (_, _, _, reply) in group {
                let _ = reply.send(Err(refusal.clone()));
            }
            return;
        };
        let stored_at = group.iter().map(|(_, _, at, _)| *at).max().unwrap_or_else(Timestamp::now);
        let bodies: Vec<&[InboundEvent]> = group.iter().map(|(_, events, _, _)| events.as_slice()).collect();
        match store.ingest_group(&bodies, stored_at) {
            Ok(outcomes) => {
                for ((platform, events, _, reply), outcome) in group.into_iter().zip(outcomes) {
                    self.park(myself, Pending::Reply(stored_reply(&store, platform, &events, reply, outcome)));
                }
            }
            Err(e) if e.write_failure().is_some() => {
                tracing::error!(message = "Storing webhooks failed.", webhooks = group.len(), error = %e);
                self.buffered = group;
                self.write_failed(myself, failure_of(&e));
            }
            Err(_) => {
                for (platform, events, received_at, reply) in group {
                    if self.outage.is_some() {
                        let _ = reply.send(Err(self.refusal()));
                        continue;
                    }
                    match store.ingest(&events, received_at) {
                        Ok(outcome) => {
                            self.park(myself, Pending::Reply(stored_reply(&store, platform, &events, reply, outcome)));
                        }
                        Err(e) => {
                            tracing::error!(message = "Storing events failed.", %platform, error = %e);
                            let _ = reply.send(Err(self.write_error(myself, &e)));
                        }
                    }
                }
            }
        }
    }

    /// Writes a status change of a sent message, or keeps it for later when the store cannot be
    /// written (and tells that platform's channel to pause).
    fn write_status(&mut self, myself: &ActorRef<ConversationMsg>, write: StatusWrite) {
        let Some(store) = self.writable().cloned() else {
            tell_channel(write.entry().platform, false);
            self.defer(write);
            return;
        };
        let result = match &write {
            StatusWrite::Sent { entry, platform_message_id, dispatched_at } => {
                store.mark_sent(entry, platform_message_id, *dispatched_at)
            }
            StatusWrite::Failed { entry, error } => store.mark_failed(entry, error.clone()),
        };
        match result {
            Ok(_) => self.park(myself, Pending::Status(Box::new(write))),
            Err(e) => {
                tracing::error!(message = "Recording a message's status failed.", message_id = %write.entry().message.id, error = %e);
                if let Some(failure) = e.write_failure() {
                    self.write_failed(myself, failure);
                    self.defer(write);
                }
            }
        }
    }

    /// The store takes writes again: record what was kept meanwhile, in order.
    fn write_deferred(&mut self, myself: &ActorRef<ConversationMsg>) {
        let deferred = std::mem::take(&mut self.deferred);
        if !deferred.is_empty() {
            tracing::info!(message = "Recording status changes kept during the outage.", changes = deferred.len());
        }
        for write in deferred {
            self.write_status(myself, write);
        }
    }

    fn status(&self) -> StoreStatus {
        let (availability, reason) = match &self.outage {
            None => (StoreAvailability::Up, None),
            Some(Outage { failure: Some(failure), .. }) => {
                (StoreAvailability::NotWritable(failure.problem), Some(failure.reason.clone()))
            }
            Some(Outage { failure: None, .. }) => {
                (StoreAvailability::Opening, Some("the store is being opened".into()))
            }
        };
        StoreStatus {
            availability,
            reason,
            counts: self.store.as_ref().and_then(|s| s.counts().ok()),
            write_errors: StoreStats::snapshot(&self.stats.write_errors),
            outages: StoreStats::snapshot(&self.stats.outages),
            checkpoints: self.stats.checkpoints.load(Ordering::Relaxed),
        }
    }

    /// The store was opened (at start, after an outage, after a checkpoint): the feed hub
    /// continues from its newest event. (A reopen discards writes whose flush failed; their
    /// events were never published, and their numbers are given again.)
    fn store_opened(&mut self) {
        let Some(store) = &self.store else { return };
        drop(store.take_committed_events());
        match store.newest_event_seq() {
            Ok(newest) => self.feed.opened_at(newest),
            Err(e) => tracing::error!(message = "Reading the feed's newest event failed.", error = %e),
        }
    }

    /// Prunes events past the retention, a batch at a time (see `PRUNE_BATCH`), and the given-up
    /// deliveries of events no longer kept ([`forget_given_up_deliveries`]).
    fn prune_events(&mut self, myself: &ActorRef<ConversationMsg>) {
        let mut next = PRUNE_EVERY;
        if let Some(store) = self.writable().cloned() {
            let retention_ms = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
            let before = Timestamp::from_millis(Timestamp::now().as_millis().saturating_sub(retention_ms));
            let pruned = store
                .prune_events(before, PRUNE_BATCH)
                .and_then(|removed| Ok((removed, forget_given_up_deliveries(&store)?)));
            match pruned {
                Ok((removed, forgotten)) if removed == PRUNE_BATCH || forgotten == PRUNE_BATCH as u64 => {
                    next = PRUNE_AGAIN;
                }
                Ok((removed, forgotten)) => {
                    if removed > 0 || forgotten > 0 {
                        tracing::debug!(
                            message = "Pruned old events.",
                            removed,
                            given_up_deliveries_forgotten = forgotten
                        );
                    }
                }
                Err(e) => {
                    tracing::error!(message = "Pruning old events failed.", error = %e);
                    if let Some(failure) = e.write_failure() {
                        self.write_failed(myself, failure);
                    }
                }
            }
        }
        myself.send_after(next, || ConversationMsg::PruneEvents);
    }

    /// The store for a read; `Err` (the API's 503) while it is being opened again.
    fn readable(&self) -> Result<&Store, ReadError> {
        self.store.as_ref().ok_or_else(|| ReadError::Failed("the store is being opened".to_owned()))
    }

    /// A checkpoint tick: start one when due (see [`checkpoint_due`]).
    fn checkpoint_tick(&mut self, myself: &ActorRef<ConversationMsg>) {
        myself.send_after(self.policy.tick, || ConversationMsg::Checkpoint(CheckpointStep::Tick));
        let Some(written) = self.store.as_ref().map(Store::records_written_since_open) else { return };
        crate::metrics::metrics().records_since_checkpoint(written);
        if self.written_at_ticks.len() > self.policy.quiet_ticks {
            self.written_at_ticks.pop_front();
        }
        let recent = written.saturating_sub(self.written_at_ticks.front().copied().unwrap_or(0));
        self.written_at_ticks.push_back(written);
        if self.outage.is_some() || self.checkpoint.is_some() || !self.policy.due(written, recent) {
            return;
        }
        tracing::info!(
            message = "Checkpointing the store.",
            records_since_open = written,
            records_last_seconds = recent
        );
        self.checkpoint = Some(CheckpointPhase::Draining { since: Instant::now() });
        self.continue_checkpoint(myself);
    }

    /// Moves a draining checkpoint on: once no flush runs and nothing waits for one, the store is
    /// closed and opened again off the async workers. An outage cancels it.
    fn continue_checkpoint(&mut self, myself: &ActorRef<ConversationMsg>) {
        let Some(CheckpointPhase::Draining { since }) = self.checkpoint else { return };
        if self.outage.is_some() {
            self.checkpoint = None;
            self.release_held(myself);
            return;
        }
        if self.flushing || !self.waiting.is_empty() || !self.buffered.is_empty() {
            return;
        }
        let Some(store) = self.store.take() else { return };
        let written = store.records_written_since_open();
        self.checkpoint = Some(CheckpointPhase::Reopening { since, written });
        let me = myself.clone();
        tokio::task::spawn_blocking(move || {
            let result = store.checkpoint(REOPEN_LOCK_WAIT);
            let _ = me.cast(ConversationMsg::Checkpoint(CheckpointStep::Reopened(result)));
        });
    }

    /// The checkpoint's reopen ended: carry on with the held messages, in order.
    fn checkpointed(&mut self, myself: &ActorRef<ConversationMsg>, result: Result<Store, StoreError>) {
        let Some(CheckpointPhase::Reopening { since, written }) = self.checkpoint.take() else { return };
        self.written_at_ticks.clear();
        match result {
            Ok(store) => {
                crate::metrics::metrics().store_checkpointed(since.elapsed());
                self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    message = "Store checkpointed.",
                    records_replayed = written,
                    seconds = since.elapsed().as_secs_f64(),
                    held = self.held.len()
                );
                self.store = Some(store);
                self.store_opened();
            }
            Err(e) => {
                // The store is closed and did not open again: an outage like a failed write, with
                // the same probing and reopening.
                tracing::error!(message = "Reopening the store for a checkpoint failed.", error = %e);
                self.write_failed(myself, failure_of(&e));
            }
        }
        self.release_held(myself);
    }

    /// Handles the messages held during a checkpoint, oldest first, until another one starts.
    fn release_held(&mut self, myself: &ActorRef<ConversationMsg>) {
        while self.checkpoint.is_none()
            && let Some(message) = self.held.pop_front()
        {
            ConversationActor::process(myself, message, self);
        }
    }

    fn recover(&mut self, myself: &ActorRef<ConversationMsg>, step: Recovery) {
        let Some(outage) = self.outage.as_mut() else { return };
        match step {
            Recovery::Probe => {
                if outage.probing {
                    return;
                }
                outage.probing = true;
                let (dir, me) = (self.location.path.clone(), myself.clone());
                tokio::task::spawn_blocking(move || {
                    let result = store::probe_write(&dir).map_err(|e| e.kind());
                    let _ = me.cast(ConversationMsg::Recovery(Recovery::Probed(result)));
                });
            }
            Recovery::Probed(Err(kind)) => {
                outage.probing = false;
                outage.probes += 1;
                let failure = WriteFailure::from_io(kind);
                tracing::debug!(message = "The store's disk still refuses writes.", reason = %failure.reason);
                outage.failure = Some(failure);
                self.schedule_probe(myself);
            }
            Recovery::Probed(Ok(())) if self.flushing => {
                outage.probing = false;
                myself.send_after(PROBE_AFTER_FLUSH, || ConversationMsg::Recovery(Recovery::Probe));
            }
            Recovery::Probed(Ok(())) => {
                // The disk takes writes: reopen, off the async workers (the open reads sled's log).
                // Reads answer 503 until it is done.
                let old = self.store.take();
                let (location, me) = (self.location.clone(), myself.clone());
                tokio::task::spawn_blocking(move || {
                    drop(old);
                    let result = Store::reopen(&location.path, location.cache_bytes, REOPEN_LOCK_WAIT);
                    let _ = me.cast(ConversationMsg::Recovery(Recovery::Reopened(result)));
                });
            }
            Recovery::Reopened(Ok(store)) => {
                let outage = self.outage.take().expect("matched above");
                tracing::info!(
                    message = "The store takes writes again.",
                    outage_seconds = outage.since.elapsed().as_secs_f64(),
                    probes = outage.probes
                );
                self.store = Some(store);
                self.store_opened();
                tell_channels(true);
                self.write_deferred(myself);
            }
            Recovery::Reopened(Err(e)) => {
                outage.probing = false;
                outage.probes += 1;
                tracing::warn!(message = "Reopening the store failed; trying again later.", error = %e);
                if let Some(failure) = e.write_failure() {
                    outage.failure = Some(failure);
                }
                self.schedule_probe(myself);
            }
        }
    }
}

/// The failure a store error stands for (every store error that reaches here from a write or a
/// flush refuses writes until the store is reopened).
fn failure_of(error: &StoreError) -> WriteFailure {
    error
        .write_failure()
        .unwrap_or_else(|| WriteFailure { problem: WriteProblem::NotWritable, reason: error.to_string() })
}

fn tell_channel(platform: Platform, writable: bool) {
    if let Some(channel) = channel_actor(platform) {
        let _ = channel.cast(ChannelMsg::StoreWritable(writable));
    }
}

fn tell_channels(writable: bool) {
    for platform in Platform::ALL {
        tell_channel(platform, writable);
    }
}

impl Actor for ConversationActor {
    type Msg = ConversationMsg;
    type State = ConversationState;
    type Arguments = ConversationArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: ConversationArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        // Nothing here reads the whole store: counts are kept by the store itself.
        let store = args.opened.lock().map(|mut opened| opened.take()).unwrap_or_default();
        let outage =
            store.is_none().then(|| Outage { failure: None, since: Instant::now(), probes: 0, probing: false });
        Ok(ConversationState {
            store,
            location: args.location,
            stats: args.stats,
            outage,
            waiting: Vec::new(),
            in_flight: Vec::new(),
            flushing: false,
            buffered: Vec::new(),
            deferred: VecDeque::new(),
            checkpoint: None,
            held: VecDeque::new(),
            written_at_ticks: VecDeque::new(),
            policy: args.checkpoints,
            feed: args.feed,
            flushing_events: Vec::new(),
            retention: args.retention,
        })
    }

    async fn post_start(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        myself.send_after(state.policy.tick, || ConversationMsg::Checkpoint(CheckpointStep::Tick));
        myself.send_after(PRUNE_AGAIN, || ConversationMsg::PruneEvents);
        state.store_opened();
        if state.store.is_none() {
            // Restarted after a failure: open the store again (the failed actor's handle is gone).
            state.recover(&myself, Recovery::Probe);
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if state.checkpoint.is_some() && needs_store(&message) {
            state.held.push_back(message);
            return Ok(());
        }
        Self::process(&myself, message, state);
        Ok(())
    }

    async fn post_stop(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match state.checkpoint.take() {
            // The store is still open: handle what waited for the checkpoint, then stop as usual.
            Some(CheckpointPhase::Draining { .. }) => state.release_held(&myself),
            Some(CheckpointPhase::Reopening { .. }) => tracing::warn!(
                message = "Stopping while the store is being checkpointed; waiting requests are answered 503.",
                held = state.held.len()
            ),
            None => {}
        }
        // A clean stop: store what gathered, make everything durable, answer whoever still waits.
        state.store_buffered(&myself);
        let result = match state.writable().cloned() {
            Some(store) => {
                let mut events = std::mem::take(&mut state.flushing_events);
                events.extend(store.take_committed_events());
                let flushed = store.flush().await.map_err(|e| {
                    tracing::error!(message = "Final store flush failed.", error = %e);
                    PersistError::NotWritable(failure_of(&e).reason)
                });
                if flushed.is_ok() {
                    state.feed.publish(events);
                }
                flushed
            }
            None => Err(state.refusal()),
        };
        let pending: Vec<Pending> = state.in_flight.drain(..).chain(state.waiting.drain(..)).collect();
        for pending in pending {
            state.finish(pending, result.clone());
        }
        if !state.deferred.is_empty() {
            tracing::warn!(
                message = "Stopping with status changes the store could not take; those messages may be sent again after the restart.",
                changes = state.deferred.len()
            );
        }
        if result.is_ok() {
            shutdown_checkpoint(state.store.take(), state.policy.shutdown_records).await;
        }
        Ok(())
    }
}

impl ConversationActor {
    /// Handles one message; the checkpoint's held messages come through here too.
    fn process(myself: &ActorRef<ConversationMsg>, message: ConversationMsg, state: &mut ConversationState) {
        match message {
            ConversationMsg::Ingest { platform, events, received_at, reply } => {
                if state.outage.is_some() {
                    let _ = reply.send(Err(state.refusal()));
                    return;
                }
                // While a flush runs, webhooks gather; they are stored as one group when it ends.
                state.buffered.push((platform, events, received_at, reply));
                if !state.flushing || state.buffered.len() >= STORE_WHILE_FLUSHING {
                    state.store_buffered(myself);
                }
            }
            ConversationMsg::Quarantine { platform, reason, body, received_at, reply } => {
                let Some(store) = state.writable().cloned() else {
                    let _ = reply.send(Err(state.refusal()));
                    return;
                };
                match store.quarantine(platform, &reason, &body, received_at) {
                    Ok(()) => state.park(myself, Pending::Reply(webhook_reply(reply, WebhookOutcome::Quarantined))),
                    Err(e) => {
                        tracing::error!(message = "Quarantining a body failed.", %platform, error = %e);
                        let _ = reply.send(Err(state.write_error(myself, &e)));
                    }
                }
            }
            ConversationMsg::Flushed(result) => {
                state.flushing = false;
                let covered = std::mem::take(&mut state.in_flight);
                let events = std::mem::take(&mut state.flushing_events);
                match result {
                    Ok(()) => {
                        // Readers of the feed see the events no later than the webhooks' 200s.
                        state.feed.publish(events);
                        for pending in covered {
                            state.finish(pending, Ok(()));
                        }
                        state.store_buffered(myself);
                        state.start_flush(myself);
                    }
                    Err(failure) => {
                        tracing::error!(message = "Store flush failed.", reason = %failure.reason);
                        state.write_failed(myself, failure);
                        let refusal = state.refusal();
                        for pending in covered {
                            state.finish(pending, Err(refusal.clone()));
                        }
                    }
                }
                state.continue_checkpoint(myself);
            }
            ConversationMsg::Recovery(step) => state.recover(myself, step),
            ConversationMsg::Checkpoint(CheckpointStep::Tick) => state.checkpoint_tick(myself),
            ConversationMsg::Checkpoint(CheckpointStep::Reopened(result)) => state.checkpointed(myself, result),
            ConversationMsg::ListConversations { filter, page, reply } => {
                let result = state.readable().and_then(|s| {
                    s.conversations_matching(&filter, page.limit, page.before).map_err(|e| read_failed(&e))
                });
                let _ = reply.send(result);
            }
            ConversationMsg::GetConversation { id, reply } => {
                let _ = reply.send(state.readable().and_then(|s| s.conversation(&id).map_err(|e| read_failed(&e))));
            }
            ConversationMsg::ListMessages { conversation_id, page, reply } => {
                let result = state.readable().and_then(|s| {
                    s.messages_page(&conversation_id, page.limit, page.before).map_err(|e| read_failed(&e))
                });
                let _ = reply.send(result);
            }
            ConversationMsg::GetMessage { id, reply } => {
                let _ = reply.send(state.readable().and_then(|s| s.message(&id).map_err(|e| read_failed(&e))));
            }
            ConversationMsg::NewestInbound { conversation_id, reply } => {
                let newest = state
                    .readable()
                    .and_then(|s| s.newest_inbound_message(&conversation_id).map_err(|e| read_failed(&e)));
                let _ = reply.send(newest);
            }
            ConversationMsg::MarkRead { id, reply } => {
                let Some(store) = state.writable().cloned() else {
                    let _ = reply.send(Err(state.refusal()));
                    return;
                };
                match store.mark_read(&id, Timestamp::now()) {
                    Ok(ReadMark::Unknown) => {
                        let _ = reply.send(Ok(None));
                    }
                    Ok(ReadMark::AlreadyRead(conversation)) => {
                        let _ = reply.send(Ok(Some(conversation)));
                    }
                    Ok(ReadMark::Marked(conversation)) => state.park(
                        myself,
                        Pending::Reply(Box::new(move |result| {
                            let _ = reply.send(result.map(|()| Some(conversation)));
                        })),
                    ),
                    Err(e) => {
                        tracing::error!(message = "Marking a conversation read failed.", error = %e);
                        let _ = reply.send(Err(state.write_error(myself, &e)));
                    }
                }
            }
            ConversationMsg::GetStoreStatus { reply } => {
                let _ = reply.send(state.status());
            }
            ConversationMsg::Enqueue { target, draft, account, retry_deadline_ms, reply } => {
                let Some(store) = state.writable().cloned() else {
                    let _ = reply.send(Err(state.refusal()));
                    return;
                };
                match store.enqueue(&target, &draft, &account, Timestamp::now(), retry_deadline_ms) {
                    Ok(queued) => state.park(
                        myself,
                        Pending::Reply(Box::new(move |result| {
                            let _ = reply.send(result.map(|()| queued));
                        })),
                    ),
                    Err(StoreError::Refused(reason)) => {
                        let _ = reply.send(Err(PersistError::Refused(reason)));
                    }
                    Err(StoreError::Invalid(reason)) => {
                        let _ = reply.send(Err(PersistError::Invalid(reason)));
                    }
                    Err(e) => {
                        tracing::error!(message = "Queueing a reply failed.", platform = %target.platform, error = %e);
                        let _ = reply.send(Err(state.write_error(myself, &e)));
                    }
                }
            }
            ConversationMsg::LoadOutbox { platform, reply } => {
                // Entries whose sending is recorded only in `deferred` yet are done: leave them out.
                let done: HashSet<&str> = state.deferred.iter().map(|w| w.entry().message.id.as_str()).collect();
                let result = state.readable().and_then(|s| s.outbox_entries(platform).map_err(|e| read_failed(&e)));
                let result = result.map(|entries| {
                    entries.into_iter().filter(|e| !done.contains(e.message.id.as_str())).collect::<Vec<_>>()
                });
                let _ = reply.send(result);
            }
            ConversationMsg::MarkSending { message_id } => {
                // Nobody waits for this one; while the store refuses writes it is skipped (the
                // message shows `queued` until its `sent` is recorded).
                if let Some(store) = state.writable().cloned() {
                    match store.mark_sending(&message_id) {
                        Ok(Some(change)) if change.changed => state.park(myself, Pending::Quiet),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(message = "Recording a send attempt failed.", %message_id, error = %e);
                            if let Some(failure) = e.write_failure() {
                                state.write_failed(myself, failure);
                            }
                        }
                    }
                }
            }
            ConversationMsg::MarkSent { entry, platform_message_id, dispatched_at } => {
                state.write_status(myself, StatusWrite::Sent { entry, platform_message_id, dispatched_at });
            }
            ConversationMsg::MarkFailed { entry, error } => {
                state.write_status(myself, StatusWrite::Failed { entry, error });
            }
            ConversationMsg::NameContact { conversation_id, name } => {
                // Nobody waits; while the store refuses writes the name is dropped (the contact's
                // next message in a later run looks it up again).
                let Some(store) = state.writable().cloned() else {
                    tracing::debug!(message = "A contact name is not kept while the store refuses writes.", %conversation_id);
                    return;
                };
                match store.name_contact(&conversation_id, &name, Timestamp::now()) {
                    Ok(true) => state.park(myself, Pending::Quiet),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(message = "Keeping a contact name failed.", %conversation_id, error = %e);
                        if let Some(failure) = e.write_failure() {
                            state.write_failed(myself, failure);
                        }
                    }
                }
            }
            ConversationMsg::LoadToken { platform, reply } => {
                let _ = reply.send(state.readable().and_then(|s| s.token(platform).map_err(|e| read_failed(&e))));
            }
            ConversationMsg::SaveToken { platform, token, reply } => {
                let Some(store) = state.writable().cloned() else {
                    let _ = reply.send(Err(state.refusal()));
                    return;
                };
                match store.save_token(platform, &token) {
                    Ok(()) => state.park(
                        myself,
                        Pending::Reply(Box::new(move |result| {
                            let _ = reply.send(result);
                        })),
                    ),
                    Err(e) => {
                        tracing::error!(message = "Keeping a refreshed token failed.", %platform, error = %e);
                        if let Some(failure) = e.write_failure() {
                            state.write_failed(myself, failure);
                        }
                        let _ = reply.send(Err(PersistError::Failed(e.to_string())));
                    }
                }
            }
            ConversationMsg::PruneEvents => state.prune_events(myself),
            ConversationMsg::ReadEvents { after, limit, reply } => {
                // Only what is durable: events committed since the last flush began are not
                // published yet, and a crash could still give their numbers to other changes.
                let durable = state.feed.newest();
                let result = state.readable().and_then(|s| s.events_after(after, limit).map_err(|e| read_failed(&e)));
                let _ = reply.send(result.map(|mut page| {
                    page.events.retain(|e| e.seq <= durable);
                    page.newest = durable;
                    page
                }));
            }
            ConversationMsg::ChannelStatus(change) => match state.writable().cloned() {
                Some(store) => match store.record_channel_status(&change) {
                    Ok(()) => state.park(myself, Pending::Quiet),
                    Err(e) => {
                        tracing::error!(message = "Recording a channel's status failed.", platform = %change.platform, error = %e);
                        if let Some(failure) = e.write_failure() {
                            state.write_failed(myself, failure);
                        }
                    }
                },
                None => {
                    tracing::debug!(message = "A channel's status is not recorded while the store refuses writes.", platform = %change.platform)
                }
            },
            ConversationMsg::LoadReceiver { name, reply } => {
                let _ = reply.send(state.readable().and_then(|s| s.receiver(&name).map_err(|e| read_failed(&e))));
            }
            ConversationMsg::SaveReceiver { name, save, reply } => {
                let Some(store) = state.writable().cloned() else {
                    let _ = reply.send(Err(state.refusal()));
                    return;
                };
                match store.save_receiver(&name, &save) {
                    Ok(()) => state.park(
                        myself,
                        Pending::Reply(Box::new(move |result| {
                            let _ = reply.send(result);
                        })),
                    ),
                    Err(e) => {
                        tracing::error!(message = "Saving a webhook receiver's progress failed.", receiver = %name, error = %e);
                        let _ = reply.send(Err(state.write_error(myself, &e)));
                    }
                }
            }
            ConversationMsg::ReadEventsBySeq { seqs, reply } => {
                // Only what is durable (see `ReadEvents`).
                let durable = state.feed.newest();
                let seqs: Vec<u64> = seqs.into_iter().filter(|seq| *seq <= durable).collect();
                let _ = reply.send(state.readable().and_then(|s| s.events_by_seq(&seqs).map_err(|e| read_failed(&e))));
            }
            ConversationMsg::Ping(reply) => {
                let _ = reply.send(());
            }
            #[cfg(test)]
            ConversationMsg::Panic => panic!("conversation actor asked to panic by a test"),
        }
    }
}

/// True for the messages that read or write the store: those wait while a checkpoint runs.
fn needs_store(message: &ConversationMsg) -> bool {
    !matches!(
        message,
        ConversationMsg::Flushed(_)
            | ConversationMsg::Recovery(_)
            | ConversationMsg::Checkpoint(_)
            | ConversationMsg::GetStoreStatus { .. }
            | ConversationMsg::Ping(_)
    )
}

/// At a clean stop, after the final flush: a checkpoint when enough was written since the store was
/// opened, so that the next start does not replay it (it takes about as long as that replay
/// would, which the periodic checkpoints keep to a few seconds).
async fn shutdown_checkpoint(store: Option<Store>, at_least: u64) {
    let Some(store) = store else { return };
    let written = store.records_written_since_open();
    if written < at_least {
        return;
    }
    let started = Instant::now();
    match tokio::task::spawn_blocking(move || store.checkpoint(REOPEN_LOCK_WAIT).map(drop)).await {
        Ok(Ok(())) => tracing::info!(
            message = "Store checkpointed for a quick next start.",
            records_replayed = written,
            seconds = started.elapsed().as_secs_f64()
        ),
        Ok(Err(e)) => {
            tracing::warn!(message = "Checkpoint at shutdown failed; the next start replays the log.", error = %e)
        }
        Err(e) => tracing::warn!(message = "Checkpoint at shutdown did not finish.", error = %e),
    }
}

fn read_failed(e: &StoreError) -> ReadError {
    match e {
        // Already logged, once, where it was found.
        StoreError::Unreadable { .. } => ReadError::Unreadable(e.to_string()),
        _ => {
            tracing::error!(message = "Store read failed.", error = %e);
            ReadError::Failed(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::PageRequest;
    use crate::model::{ContentKind, Direction, EventKind, MessageContent};

    fn event(contact: usize, mid: &str) -> InboundEvent {
        InboundEvent {
            contact_alias: None,
            platform: Platform::Facebook,
            account_id: "page".into(),
            contact_id: Some(format!("user-{contact}")),
            contact_name: None,
            sender_id: Some(format!("user-{contact}")),
            dedup_key: format!("mid:{mid}"),
            occurred_at: Timestamp::from_millis(1_718_000_000_000),
            kind: EventKind::Message {
                direction: Direction::Inbound,
                platform_message_id: mid.into(),
                content: MessageContent::text(ContentKind::Text, "hi"),
            },
            raw: serde_json::json!({}),
        }
    }

    /// A conversation actor on a fresh store that checkpoints after every `after_records` records.
    async fn actor_checkpointing_after(
        dir: &std::path::Path,
        after_records: u64,
    ) -> (ActorRef<ConversationMsg>, tokio::task::JoinHandle<()>) {
        let location = StoreLocation { path: dir.join("db"), cache_bytes: 8 << 20 };
        let mut args = ConversationArgs::new(Store::open(&location.path, location.cache_bytes).unwrap(), location);
        args.checkpoints = CheckpointPolicy {
            tick: Duration::from_millis(5),
            quiet_ticks: 1,
            after_records,
            quiet_records: u64::MAX,
            forced_records: u64::MAX,
            shutdown_records: u64::MAX,
        };
        Actor::spawn(None, ConversationActor, args).await.unwrap()
    }

    #[tokio::test]
    async fn webhooks_and_reads_that_arrive_during_checkpoints_wait_and_none_is_refused_or_lost() {
        let dir = tempfile::tempdir().unwrap();
        // A checkpoint after every few webhooks: many of them overlap the writes and reads below.
        let (actor, handle) = actor_checkpointing_after(dir.path(), 40).await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..400 {
            let actor = actor.clone();
            tasks.spawn(async move {
                let events = vec![event(i % 20, &format!("m-{i}"))];
                let stored = ractor::call!(actor, |reply| ConversationMsg::Ingest {
                    platform: Platform::Facebook,
                    events,
                    received_at: Timestamp::from_millis(1_718_000_000_100),
                    reply
                })
                .expect("the actor answers");
                assert!(matches!(stored, Ok(WebhookOutcome::Stored(o)) if o.stored == 1), "webhook {i}: {stored:?}");
                let page = PageRequest { limit: 5, before: None };
                let listed = ractor::call!(actor, |reply| ConversationMsg::ListConversations {
                    filter: Default::default(),
                    page,
                    reply
                })
                .expect("the actor answers");
                assert!(listed.is_ok(), "a read during a checkpoint must wait, not fail: {listed:?}");
            });
            if i % 50 == 0 {
                // Let ticks in between, so that checkpoints start while webhooks keep coming.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let status = ractor::call!(actor, |reply| ConversationMsg::GetStoreStatus { reply }).unwrap();
        assert!(status.checkpoints >= 2, "checkpoints taken: {}", status.checkpoints);
        actor.stop(None);
        handle.await.unwrap();
        let store = Store::reopen(&dir.path().join("db"), 8 << 20, Duration::from_secs(10)).unwrap();
        for i in 0..400 {
            let mid = format!("m-{i}");
            assert!(store.message_by_platform_id(Platform::Facebook, &mid).unwrap().is_some(), "{mid} lost");
        }
        assert_eq!(store.counts().unwrap().messages, 400);
    }

    /// The names of sled's snapshot files in the store's directory (`snap.<log position>`).
    fn snapshots(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("snap."))
            .collect();
        names.sort();
        names
    }

    /// Stores one webhook, stops the actor cleanly; the snapshot files before and after the stop.
    async fn write_then_stop(shutdown_records: u64) -> (Vec<String>, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let location = StoreLocation { path: dir.path().join("db"), cache_bytes: 8 << 20 };
        let mut args = ConversationArgs::new(Store::open(&location.path, location.cache_bytes).unwrap(), location);
        args.checkpoints.shutdown_records = shutdown_records;
        let (actor, handle) = Actor::spawn(None, ConversationActor, args).await.unwrap();
        let events = vec![event(1, "m-last")];
        let stored = ractor::call!(actor, |reply| ConversationMsg::Ingest {
            platform: Platform::Facebook,
            events,
            received_at: Timestamp::from_millis(1_718_000_000_100),
            reply
        })
        .unwrap();
        assert!(stored.is_ok());
        let before = snapshots(&dir.path().join("db"));
        actor.stop(None);
        handle.await.unwrap();
        let after = snapshots(&dir.path().join("db"));
        let store = Store::reopen(&dir.path().join("db"), 8 << 20, Duration::from_secs(10)).unwrap();
        assert!(store.message_by_platform_id(Platform::Facebook, "m-last").unwrap().is_some());
        (before, after)
    }

    #[tokio::test]
    async fn a_clean_stop_after_enough_writes_checkpoints_so_the_next_open_replays_nothing_new() {
        // The stop reopened the store once, so sled wrote a snapshot that covers the write.
        let (before, after) = write_then_stop(1).await;
        assert_eq!(after.len(), 1, "{after:?}");
        assert_ne!(before, after, "a snapshot newer than any the first open wrote");
        // Below the threshold nothing is reopened: the snapshots stay as the first open left them.
        let (before, after) = write_then_stop(u64::MAX).await;
        assert_eq!(before, after);
    }

    #[test]
    fn a_checkpoint_is_due_when_quiet_after_enough_writes_or_after_many_in_any_case() {
        let policy = CheckpointPolicy::default();
        let (after, quiet, forced) = (policy.after_records, policy.quiet_records, policy.forced_records);
        assert!(!policy.due(0, 0));
        assert!(!policy.due(after - 1, 0), "not enough written");
        assert!(policy.due(after, 0), "enough, and quiet");
        assert!(policy.due(after, quiet - 1));
        assert!(!policy.due(after, quiet), "enough, but busy");
        assert!(!policy.due(forced - 1, u64::MAX));
        assert!(policy.due(forced, u64::MAX), "busy for too long");
    }

    #[test]
    fn probes_back_off_from_one_second_to_ten() {
        let delays: Vec<u64> = (0..6).map(|n| probe_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(probe_delay(u32::MAX), MAX_PROBE_INTERVAL);
    }
}
