//! The actor tree: a supervisor, one conversation actor that owns the store, and one channel actor
//! per enabled platform. This file holds the message types and the registered names: the only part
//! of `actor` the HTTP front end sees.
//!
//! Actors are found by registered name at the moment of use, never through a kept `ActorRef`: a
//! restarted actor is a new actor, and the name is the stable address across restarts.

pub mod actions;
pub mod channel;
pub mod conversation;
pub mod events;
pub mod receiver;
pub mod scheduler;
pub mod supervisor;
pub mod tokens;

use bytes::Bytes;
use ractor::{ActorRef, RpcReplyPort};

use crate::model::{Conversation, Message, MessageError, Platform, Timestamp};
use crate::platform::SendOutcome;
use crate::store::{
    ChannelStatusChange, ConversationTarget, EventPage, IngestOutcome, LoadedReceiver, OutboundDraft, OutboxEntry,
    Page, ReceiverSave, StoreCounts, StoredToken, UnnamedContact, WriteFailure, WriteProblem,
};

/// Registered name of the conversation actor.
pub const CONVERSATION_ACTOR: &str = "parley.conversation";

/// Registered name of the supervisor.
pub const SUPERVISOR_ACTOR: &str = "parley.supervisor";

/// Registered name of a platform's channel actor.
pub fn channel_actor_name(platform: Platform) -> String {
    format!("parley.channel.{platform}")
}

/// The conversation actor, if it is running now.
pub fn conversation_actor() -> Option<ActorRef<ConversationMsg>> {
    ractor::registry::where_is(CONVERSATION_ACTOR).map(ActorRef::from)
}

/// A platform's channel actor, if it is running now.
pub fn channel_actor(platform: Platform) -> Option<ActorRef<ChannelMsg>> {
    ractor::registry::where_is(channel_actor_name(platform)).map(ActorRef::from)
}

/// The store did not make a write durable; the webhook (or reply) must not be answered 200.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersistError {
    /// The store takes no writes until its disk does again (full, read-only, failing): `/ready`
    /// says why, and the conversation actor probes until it can write and then carries on.
    #[error("the store is not writable: {0}")]
    NotWritable(String),
    /// This one write failed (the store restarting, a record that does not encode).
    #[error("the store could not persist the write: {0}")]
    Failed(String),
    /// The write was refused as the request stands (a reply outside its messaging window); the
    /// reason says what is allowed.
    #[error("{0}")]
    Refused(String),
    /// The platform cannot take the reply as asked (what its request builder refused).
    #[error("{0}")]
    Invalid(String),
}

/// Why a channel did not queue a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnqueueRefusal {
    /// The channel has no credential to send with.
    #[error("{platform} has no access token configured; set it to send")]
    NotConfigured { platform: Platform },
    /// `outbound.max_queued` replies are waiting already.
    #[error("{waiting} messages are waiting for {platform}; try again later")]
    QueueFull { platform: Platform, waiting: usize },
    /// The store refused or failed the write.
    #[error(transparent)]
    Store(#[from] PersistError),
    /// The store did not answer.
    #[error("the store did not answer")]
    StoreUnavailable,
}

/// Whether the store takes writes, for `/ready` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreAvailability {
    Up,
    /// Being opened again, after a write failure or an actor restart.
    Opening,
    /// Refusing writes since a write failed this way.
    NotWritable(WriteProblem),
}

impl StoreAvailability {
    /// The name `/ready` shows: `up`, `opening`, `full` or `not_writable`.
    pub fn label(self) -> &'static str {
        match self {
            StoreAvailability::Up => "up",
            StoreAvailability::Opening => "opening",
            StoreAvailability::NotWritable(problem) => problem.label(),
        }
    }
}

/// What the conversation actor reports about the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreStatus {
    pub availability: StoreAvailability,
    /// Why it is not up, in one sentence.
    pub reason: Option<String>,
    /// Records held; `None` when the counters cannot be read right now.
    pub counts: Option<StoreCounts>,
    /// Failed writes and flushes since the daemon started, by kind (`WriteProblem::ALL` order).
    pub write_errors: [u64; 2],
    /// Times the store stopped taking writes since the daemon started, by kind.
    pub outages: [u64; 2],
    /// Checkpoints taken while running (see `conversation`).
    pub checkpoints: u64,
}

/// What became of one verified webhook body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Parsed and durably stored (some events may have been duplicates).
    Stored(IngestOutcome),
    /// Not understood; the raw body is durably in quarantine.
    Quarantined,
}

/// Reply to a webhook: sent only after the flush that covers the body.
pub type WebhookReply = RpcReplyPort<Result<WebhookOutcome, PersistError>>;

/// Messages to a channel actor.
pub enum ChannelMsg {
    /// A body whose signature checked out; parse it and have it stored, then answer `reply`.
    Webhook { body: Bytes, received_at: Timestamp, delivery_id: String, reply: WebhookReply },
    /// Queue a reply: within `outbound.max_queued` (counted with the replies being stored right
    /// now, so the bound cannot be raced), validated and stored through the conversation actor,
    /// then sent; answers with the stored message.
    Enqueue {
        target: ConversationTarget,
        draft: Box<OutboundDraft>,
        reply: RpcReplyPort<Result<Message, EnqueueRefusal>>,
    },
    /// A reply the channel asked to store is stored (`Some`), or was not (internal).
    Stored(Option<Box<OutboxEntry>>),
    /// A reply is durably in the outbox: send it.
    Queued(Box<OutboxEntry>),
    /// Look at the queue again: a rate-limit slot, a back-off or a pause has ended (internal).
    Pump,
    /// A send attempt ended (internal).
    Attempted { conversation_id: String, message_id: String, dispatched_at: Timestamp, outcome: SendOutcome },
    /// Merge the store's outbox into the queue: catches replies queued while this actor restarted.
    ReloadOutbox,
    /// Check the token now (and refresh it where the platform allows).
    CheckToken { after_rejection: bool },
    /// A token check finished (internal).
    TokenChecked(TokenCheck),
    /// Readiness and counts for `/ready` and `/metrics`.
    GetStatus(RpcReplyPort<ChannelStatus>),
    /// A configuration reload: send with these settings from now on. Queued messages stay queued;
    /// a new rate applies to the next sends.
    Reconfigure(Box<channel::SendSettings>),
    /// The store stopped (false) or started again (true) taking writes: sending pauses meanwhile,
    /// so that no message goes out whose `sent` could not be recorded.
    StoreWritable(bool),
    /// Send an engagement action (read, typing, reaction) paced with the messages; answers when
    /// the platform took it, refused it, or its deadline passed.
    Act { action: crate::model::OutboundAction, reply: RpcReplyPort<Result<(), MessageError>> },
    /// One request of an engagement action ended (internal).
    ActionAttempted { id: u64, outcome: crate::platform::ActionOutcome },
    /// Conversations that got a message and have no name: look their contacts up (Messenger; once
    /// per conversation per run; see `channel/names.rs`). Other channels ignore it.
    NamesWanted(Vec<UnnamedContact>),
    /// A name lookup ended (internal).
    NameLooked(channel::names::Looked),
}

/// The result of a token check or refresh.
#[derive(Debug, Clone)]
pub enum TokenCheck {
    /// The platform says the token works; `replacement` when a new one was obtained.
    Valid { expires_at: Option<Timestamp>, replacement: Option<StoredToken> },
    /// The platform says the token does not work and it could not be refreshed.
    Invalid(String),
    /// The platform could not be asked (network, 5xx); nothing is known.
    Unreachable(String),
    /// This channel has nothing to check with (no app id, no client id).
    NotChecked,
}

/// What a channel reports about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelStatus {
    pub platform: Platform,
    /// False when the platform rejected the token and it could not be refreshed.
    pub ready: bool,
    pub reason: Option<String>,
    /// Seconds until the token in use expires; `None` if it never does or is unknown.
    pub token_expires_in_secs: Option<i64>,
    pub queued: usize,
    pub in_flight: usize,
    pub sent: u64,
    pub failed: u64,
    pub retried: u64,
}

/// A listing request from the operator API.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    pub limit: usize,
    pub before: Option<(Timestamp, String)>,
}

/// Why a store read failed; the text is the store's own error (logged where it happens).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The record asked for exists but does not decode (logged once and counted): asking again
    /// will not help.
    #[error("{0}")]
    Unreadable(String),
    /// The store could not be read (I/O).
    #[error("{0}")]
    Failed(String),
}

/// Result of a store read.
pub type ReadResult<T> = Result<T, ReadError>;

/// Messages to the conversation actor.
pub enum ConversationMsg {
    /// Store a webhook's events, answer after they are durable.
    Ingest { platform: Platform, events: Vec<crate::model::InboundEvent>, received_at: Timestamp, reply: WebhookReply },
    /// Keep a body that did not parse, answer after it is durable.
    Quarantine { platform: Platform, reason: String, body: Bytes, received_at: Timestamp, reply: WebhookReply },
    /// The group-commit flush finished (internal).
    Flushed(Result<(), WriteFailure>),
    /// Probing and reopening a store that could not be written (internal).
    Recovery(conversation::Recovery),
    /// Closing and reopening the store so that sled writes its snapshot (internal).
    Checkpoint(conversation::CheckpointStep),
    /// Time to prune events older than `events.retention_days` (internal).
    PruneEvents,
    /// Up to `limit` events of the feed after `after`, from the store (for readers behind the
    /// feed hub's tail).
    ReadEvents { after: u64, limit: usize, reply: RpcReplyPort<ReadResult<EventPage>> },
    /// Record a `channel.status` event.
    ChannelStatus(ChannelStatusChange),
    /// List conversations (those that pass the filter).
    ListConversations {
        filter: crate::store::ConversationFilter,
        page: PageRequest,
        reply: RpcReplyPort<ReadResult<Page<Conversation>>>,
    },
    /// One conversation.
    GetConversation { id: String, reply: RpcReplyPort<ReadResult<Option<Conversation>>> },
    /// A conversation's messages.
    ListMessages { conversation_id: String, page: PageRequest, reply: RpcReplyPort<ReadResult<Page<Message>>> },
    /// One message.
    GetMessage { id: String, reply: RpcReplyPort<ReadResult<Option<Message>>> },
    /// The person's newest message in a conversation (what read receipts and typing refer to).
    NewestInbound { conversation_id: String, reply: RpcReplyPort<ReadResult<Option<Message>>> },
    /// The operator read a conversation: unread to 0; answers once durable, with the conversation
    /// (None when unknown).
    MarkRead { id: String, reply: RpcReplyPort<Result<Option<Conversation>, PersistError>> },
    /// Whether the store takes writes, and its record counts, for `/ready` and `/metrics`.
    GetStoreStatus { reply: RpcReplyPort<StoreStatus> },
    /// Store a reply as a queued message in the outbox; answer after it is durable.
    Enqueue {
        target: ConversationTarget,
        draft: OutboundDraft,
        /// The channel's account, for `platform::prepare_outbound`.
        account: crate::platform::SendAccount,
        retry_deadline_ms: i64,
        reply: RpcReplyPort<Result<(Message, OutboxEntry), PersistError>>,
    },
    /// A platform's outbox, oldest first.
    LoadOutbox { platform: Platform, reply: RpcReplyPort<ReadResult<Vec<OutboxEntry>>> },
    /// A send attempt started.
    MarkSending { message_id: String },
    /// The platform accepted a message.
    MarkSent { entry: OutboxEntry, platform_message_id: String, dispatched_at: Timestamp },
    /// A message failed for good.
    MarkFailed { entry: OutboxEntry, error: MessageError },
    /// A contact's name was looked up: give it to the conversation if it still has none (one
    /// write with its `conversation.updated` event; nobody waits for it).
    NameContact { conversation_id: String, name: String },
    /// The token a channel stored last.
    LoadToken { platform: Platform, reply: RpcReplyPort<ReadResult<Option<StoredToken>>> },
    /// Keep a refreshed token; answer after it is durable.
    SaveToken { platform: Platform, token: StoredToken, reply: RpcReplyPort<Result<(), PersistError>> },
    /// An outgoing webhook receiver's durable state (cursor, enabled, pending and failed events).
    LoadReceiver { name: String, reply: RpcReplyPort<ReadResult<LoadedReceiver>> },
    /// Save a receiver's progress in one atomic write; answered after it is durable.
    SaveReceiver { name: String, save: Box<ReceiverSave>, reply: RpcReplyPort<Result<(), PersistError>> },
    /// The durable events with these numbers (a receiver's pending events after a restart).
    ReadEventsBySeq { seqs: Vec<u64>, reply: RpcReplyPort<ReadResult<Vec<crate::feed::Event>>> },
    /// The watchdog heartbeat: answered at once, so an answer means the actor is not stuck.
    Ping(RpcReplyPort<()>),
    /// Test only: panic inside the handler, to exercise supervision.
    #[cfg(test)]
    Panic,
}

/// Messages to the supervisor.
pub enum SupervisorMsg {
    /// Start a child again after its back-off delay (internal).
    Respawn(supervisor::Child),
    /// Stop the children in order (channels, then the store's final flush) and answer.
    ShutDown { reply: RpcReplyPort<()> },
    /// A configuration reload: keep these channel arguments for restarts and hand each running
    /// channel its new send settings.
    Reconfigure { channels: Vec<channel::ChannelArgs> },
}
