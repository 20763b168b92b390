//! The conversation actor: owns the store, persists inbound events, answers reads, and runs group
//! commit so that concurrent webhooks share one flush and each is answered only after the flush
//! that covers its write.

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::{ConversationMsg, PersistError, ReadError, WebhookOutcome, WebhookReply};
use crate::model::{InboundEvent, Platform, Timestamp};
use crate::store::{Store, StoreCounts, StoreError};

/// The actor behaviour; all state is in [`ConversationState`].
pub struct ConversationActor;

/// Arguments: the opened store (a cheap clone; restarts reuse it).
#[derive(Clone)]
pub struct ConversationArgs {
    pub store: Store,
}

/// A reply waiting for durability: called with the flush's result.
type PendingReply = Box<dyn FnOnce(Result<(), PersistError>) + Send>;

/// The pending reply of a webhook: its outcome once the flush succeeded.
fn webhook_reply(reply: WebhookReply, outcome: WebhookOutcome) -> PendingReply {
    Box::new(move |result| {
        let _ = reply.send(result.map(|()| outcome));
    })
}

/// While a flush runs, webhooks gather into groups of this many, each stored in one write as soon
/// as it is full, so that storing the next group overlaps the flush instead of following it. The
/// rest are stored when the flush ends. (Each write rolls sled's log buffer, so groups of one
/// would cost one log write each.)
const STORE_WHILE_FLUSHING: usize = 16;

/// Mutable state of the conversation actor.
pub struct ConversationState {
    store: Store,
    /// Written, waiting for the next flush to start.
    waiting: Vec<PendingReply>,
    /// Covered by the flush now running.
    in_flight: Vec<PendingReply>,
    flushing: bool,
    /// Webhooks that arrived while a flush ran: stored together, in one write, when it ends.
    buffered: Vec<(Platform, Vec<InboundEvent>, Timestamp, WebhookReply)>,
    counts: StoreCounts,
}

impl ConversationState {
    /// Starts a flush covering everything in `waiting`, unless one is running: when that one ends,
    /// the next starts and covers all that arrived meanwhile. No timer needed.
    fn start_flush(&mut self, myself: &ActorRef<ConversationMsg>) {
        if self.flushing || self.waiting.is_empty() {
            return;
        }
        self.flushing = true;
        self.in_flight = std::mem::take(&mut self.waiting);
        let (store, me) = (self.store.clone(), myself.clone());
        tokio::spawn(async move {
            let result = store.flush().await.map_err(|e| e.to_string());
            // If the actor died meanwhile, its pending replies were dropped and their webhooks
            // answered 503; nothing to do here.
            let _ = me.cast(ConversationMsg::Flushed(result));
        });
    }

    fn park(&mut self, myself: &ActorRef<ConversationMsg>, reply: PendingReply) {
        self.waiting.push(reply);
        self.start_flush(myself);
    }

    /// Stores every buffered webhook in one write (one log I/O for the group) and parks their
    /// replies for the next flush. A group that fails is retried webhook by webhook, so one bad
    /// body cannot fail the others.
    fn store_buffered(&mut self, myself: &ActorRef<ConversationMsg>) -> Result<(), StoreError> {
        let group = std::mem::take(&mut self.buffered);
        if group.is_empty() {
            return Ok(());
        }
        let stored_at = group.iter().map(|(_, _, at, _)| *at).max().unwrap_or_else(Timestamp::now);
        let bodies: Vec<&[InboundEvent]> = group.iter().map(|(_, events, _, _)| events.as_slice()).collect();
        match self.store.ingest_group(&bodies, stored_at) {
            Ok(outcomes) => {
                for ((_, _, _, reply), outcome) in group.into_iter().zip(outcomes) {
                    self.count(&outcome);
                    self.park(myself, webhook_reply(reply, WebhookOutcome::Stored(outcome)));
                }
                Ok(())
            }
            Err(StoreError::Io(e)) => {
                for (_, _, _, reply) in group {
                    let _ = reply.send(Err(PersistError(e.to_string())));
                }
                Err(StoreError::Io(e))
            }
            Err(_) => {
                for (platform, events, received_at, reply) in group {
                    match self.store.ingest(&events, received_at) {
                        Ok(outcome) => {
                            self.count(&outcome);
                            self.park(myself, webhook_reply(reply, WebhookOutcome::Stored(outcome)));
                        }
                        Err(e) => {
                            tracing::error!(message = "Storing events failed.", %platform, error = %e);
                            let _ = reply.send(Err(PersistError(e.to_string())));
                            if matches!(e, StoreError::Io(_)) {
                                return Err(e);
                            }
                        }
                    }
                }
                Ok(())
            }
        }
    }

    fn count(&mut self, outcome: &crate::store::IngestOutcome) {
        self.counts.messages += outcome.messages;
        self.counts.conversations += outcome.conversations;
        self.counts.events += outcome.stored;
    }

    /// Makes a write that nobody waits for durable soon (status changes), by riding the next flush.
    fn flush_soon(&mut self, myself: &ActorRef<ConversationMsg>) {
        self.park(myself, Box::new(|_| {}));
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
        let counts = args.store.counts();
        Ok(ConversationState {
            store: args.store,
            waiting: Vec::new(),
            in_flight: Vec::new(),
            flushing: false,
            buffered: Vec::new(),
            counts,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ConversationMsg::Ingest { platform, events, received_at, reply } => {
                // While a flush runs, webhooks gather; they are stored as one group when it ends.
                state.buffered.push((platform, events, received_at, reply));
                if !state.flushing || state.buffered.len() >= STORE_WHILE_FLUSHING {
                    state.store_buffered(&myself)?;
                }
            }
            ConversationMsg::Quarantine { platform, reason, body, received_at, reply } => {
                match state.store.quarantine(platform, &reason, &body, received_at) {
                    Ok(()) => {
                        state.counts.quarantined += 1;
                        state.park(&myself, webhook_reply(reply, WebhookOutcome::Quarantined));
                    }
                    Err(e) => {
                        tracing::error!(message = "Quarantining a body failed.", %platform, error = %e);
                        let _ = reply.send(Err(PersistError(e.to_string())));
                        return Err(e.into());
                    }
                }
            }
            ConversationMsg::Flushed(result) => {
                state.flushing = false;
                let covered = std::mem::take(&mut state.in_flight);
                for pending in covered {
                    pending(result.clone().map_err(PersistError));
                }
                if result.is_ok() {
                    state.store_buffered(&myself)?;
                }
                if let Err(e) = result {
                    // A failed fsync leaves the store in an unknown state: let the supervisor decide.
                    tracing::error!(message = "Store flush failed.", error = %e);
                    return Err(PersistError(e).into());
                }
                state.start_flush(&myself);
            }
            ConversationMsg::ListConversations { platform, page, reply } => {
                let result =
                    state.store.conversations_page(platform, page.limit, page.before).map_err(|e| read_failed(&e));
                let _ = reply.send(result);
            }
            ConversationMsg::GetConversation { id, reply } => {
                let _ = reply.send(state.store.conversation(&id).map_err(|e| read_failed(&e)));
            }
            ConversationMsg::ListMessages { conversation_id, page, reply } => {
                let result =
                    state.store.messages_page(&conversation_id, page.limit, page.before).map_err(|e| read_failed(&e));
                let _ = reply.send(result);
            }
            ConversationMsg::GetMessage { id, reply } => {
                let _ = reply.send(state.store.message(&id).map_err(|e| read_failed(&e)));
            }
            ConversationMsg::GetCounts { reply } => {
                let counts = StoreCounts { unreadable: state.store.unreadable_records(), ..state.counts };
                let _ = reply.send(counts);
            }
            ConversationMsg::Enqueue { target, draft, retry_deadline_ms, reply } => {
                match state.store.enqueue(&target, &draft, Timestamp::now(), retry_deadline_ms) {
                    Ok(queued) => {
                        state.counts.messages += 1;
                        state.park(
                            &myself,
                            Box::new(move |result| {
                                let _ = reply.send(result.map(|()| queued));
                            }),
                        );
                    }
                    Err(e) => {
                        tracing::error!(message = "Queueing a reply failed.", platform = %target.platform, error = %e);
                        let _ = reply.send(Err(PersistError(e.to_string())));
                        if matches!(e, StoreError::Io(_)) {
                            return Err(e.into());
                        }
                    }
                }
            }
            ConversationMsg::LoadOutbox { platform, reply } => {
                let _ = reply.send(state.store.outbox_entries(platform).map_err(|e| read_failed(&e)));
            }
            ConversationMsg::MarkSending { message_id } => {
                if let Err(e) = state.store.mark_sending(&message_id) {
                    tracing::error!(message = "Recording a send attempt failed.", %message_id, error = %e);
                }
            }
            ConversationMsg::MarkSent { entry, platform_message_id, dispatched_at } => {
                match state.store.mark_sent(&entry, &platform_message_id, dispatched_at) {
                    Ok(_) => state.flush_soon(&myself),
                    Err(e) => {
                        tracing::error!(message = "Recording a sent message failed.", message_id = %entry.message.id, error = %e)
                    }
                }
            }
            ConversationMsg::MarkFailed { entry, error } => match state.store.mark_failed(&entry, error) {
                Ok(_) => state.flush_soon(&myself),
                Err(e) => {
                    tracing::error!(message = "Recording a failed message failed.", message_id = %entry.message.id, error = %e)
                }
            },
            ConversationMsg::LoadToken { platform, reply } => {
                let _ = reply.send(state.store.token(platform).map_err(|e| read_failed(&e)));
            }
            ConversationMsg::SaveToken { platform, token, reply } => match state.store.save_token(platform, &token) {
                Ok(()) => state.park(
                    &myself,
                    Box::new(move |result| {
                        let _ = reply.send(result);
                    }),
                ),
                Err(e) => {
                    tracing::error!(message = "Keeping a refreshed token failed.", %platform, error = %e);
                    let _ = reply.send(Err(PersistError(e.to_string())));
                }
            },
            #[cfg(test)]
            ConversationMsg::Panic => panic!("conversation actor asked to panic by a test"),
        }
        Ok(())
    }

    async fn post_stop(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        // A clean stop: store what gathered, make everything durable, answer whoever still waits.
        if let Err(e) = state.store_buffered(&myself) {
            tracing::error!(message = "Storing the last webhooks failed.", error = %e);
        }
        let result = state.store.flush().await.map_err(|e| e.to_string());
        for pending in state.in_flight.drain(..).chain(state.waiting.drain(..)) {
            pending(result.clone().map_err(PersistError));
        }
        if let Err(e) = result {
            tracing::error!(message = "Final store flush failed.", error = %e);
        }
        Ok(())
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
