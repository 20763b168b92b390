//! The actor tree: a supervisor, one conversation actor that owns the store, and one channel actor
//! per enabled platform. This file holds the message types and the registered names: the only part
//! of `actor` the HTTP front end sees.
//!
//! Actors are found by registered name at the moment of use, never through a kept `ActorRef`: a
//! restarted actor is a new actor, and the name is the stable address across restarts.

pub mod channel;
pub mod conversation;
pub mod supervisor;

use bytes::Bytes;
use ractor::{ActorRef, RpcReplyPort};

use crate::model::{Conversation, Message, Platform, Timestamp};
use crate::store::{IngestOutcome, Page, StoreCounts};

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

/// The store failed to make a write durable; the webhook must not be answered 200.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the store could not persist the webhook: {0}")]
pub struct PersistError(pub String);

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
}

/// A listing request from the operator API.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    pub limit: usize,
    pub before: Option<(Timestamp, String)>,
}

/// Result of a store read: the store's own error is reported as text (it is logged where it happens).
pub type ReadResult<T> = Result<T, String>;

/// Messages to the conversation actor.
pub enum ConversationMsg {
    /// Store a webhook's events, answer after they are durable.
    Ingest { platform: Platform, events: Vec<crate::model::InboundEvent>, received_at: Timestamp, reply: WebhookReply },
    /// Keep a body that did not parse, answer after it is durable.
    Quarantine { platform: Platform, reason: String, body: Bytes, received_at: Timestamp, reply: WebhookReply },
    /// The group-commit flush finished (internal).
    Flushed(Result<(), String>),
    /// List conversations.
    ListConversations {
        platform: Option<Platform>,
        page: PageRequest,
        reply: RpcReplyPort<ReadResult<Page<Conversation>>>,
    },
    /// One conversation.
    GetConversation { id: String, reply: RpcReplyPort<ReadResult<Option<Conversation>>> },
    /// A conversation's messages.
    ListMessages { conversation_id: String, page: PageRequest, reply: RpcReplyPort<ReadResult<Page<Message>>> },
    /// One message.
    GetMessage { id: String, reply: RpcReplyPort<ReadResult<Option<Message>>> },
    /// Tree sizes for `/metrics`.
    GetCounts { reply: RpcReplyPort<StoreCounts> },
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
}
