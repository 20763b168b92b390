//! The operator API's engagement actions: mark a conversation read (for the operator, and at the
//! platform where it has read receipts), typing on and off, reactions to a message. They are
//! sent by the platform's channel, paced with its messages, and answered once the platform took
//! them (or refused them, or the action's deadline passed): nothing of them is stored except the
//! conversation's unread count.

use std::time::Duration;

use hyper::{Response, StatusCode};
use ractor::rpc::CallResult;
use serde::Deserialize;
use serde_json::{Value, json};

use super::HttpState;
use super::api::{not_found, read};
use super::response::{self, Body};
use crate::actor::actions::ACTION_DEADLINE;
use crate::actor::{ChannelMsg, ConversationMsg, PersistError, channel_actor, conversation_actor};
use crate::model::{ActionKind, Conversation, MessageError, OutboundAction, Timestamp};

/// How long the API waits for the channel's answer: the action's deadline and a margin.
const ANSWER_WAIT: Duration = Duration::from_secs(ACTION_DEADLINE.as_secs() + 5);

/// `POST /api/conversations/{id}/read`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadBody {
    /// Show the typing indicator too (the agent is about to answer).
    #[serde(default)]
    pub typing: bool,
}

/// `POST /api/conversations/{id}/typing`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypingBody {
    pub on: bool,
}

/// `POST /api/messages/{id}/reaction`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReactionBody {
    /// One emoji; an empty string removes our reaction.
    pub emoji: String,
}

/// The operator read the conversation: unread goes to 0, and the customer gets a read receipt
/// where the platform has them (WhatsApp, Messenger), if something was unread or `typing` asks
/// for the indicator. A platform without receipts is not an error: `receipt` says so.
pub async fn mark_read(state: &HttpState, conversation_id: &str, body: ReadBody) -> Response<Body> {
    let conversation = match conversation(conversation_id).await {
        Ok(conversation) => conversation,
        Err(answer) => return answer,
    };
    let receipt = if conversation.unread > 0 || body.typing {
        let message_id = match newest_inbound_id(&conversation).await {
            Ok(id) => id,
            Err(answer) => return answer,
        };
        let action = OutboundAction {
            recipient: conversation.contact_id.clone(),
            kind: ActionKind::MarkRead { message_id, typing: body.typing },
        };
        match act(state, &conversation, action).await {
            Ok(()) => json!({ "status": "sent" }),
            // Typing was asked for and cannot be done: nothing changes.
            Err(ActError::Unsupported(reason)) if body.typing => return unprocessable("unsupported_action", &reason),
            Err(ActError::Unsupported(reason)) => json!({ "status": "unsupported", "reason": reason }),
            Err(ActError::Answer(answer)) if body.typing => return answer,
            Err(ActError::Failed(error)) => json!({ "status": "failed", "error": error_json(&error) }),
            Err(ActError::Answer(_)) => json!({ "status": "failed", "error": { "code": "unavailable",
                "message": "the channel could not send the receipt now" } }),
        }
    } else {
        json!({ "status": "not_needed" })
    };
    let Some(store) = conversation_actor() else {
        return response::unavailable("the store is restarting", 1);
    };
    let id = conversation.id.clone();
    match store.call(|reply| ConversationMsg::MarkRead { id, reply }, Some(Duration::from_secs(15))).await {
        Ok(CallResult::Success(Ok(Some(read)))) => {
            response::json(StatusCode::OK, &json!({ "conversation": read.view(Timestamp::now()), "receipt": receipt }))
        }
        Ok(CallResult::Success(Ok(None))) => not_found("conversation", conversation_id),
        Ok(CallResult::Success(Err(PersistError::NotWritable(_)))) => {
            response::store_not_writable("the conversation was not marked read")
        }
        _ => response::unavailable("the conversation could not be marked read", 1),
    }
}

/// The typing indicator on or off, inside the messaging window.
pub async fn typing(state: &HttpState, conversation_id: &str, body: TypingBody) -> Response<Body> {
    let conversation = match conversation(conversation_id).await {
        Ok(conversation) => conversation,
        Err(answer) => return answer,
    };
    if let Some(refusal) = outside_window(&conversation, "typing") {
        return refusal;
    }
    let message_id = match newest_inbound_id(&conversation).await {
        Ok(id) => id,
        Err(answer) => return answer,
    };
    let action = OutboundAction {
        recipient: conversation.contact_id.clone(),
        kind: ActionKind::Typing { on: body.on, message_id },
    };
    answer(act(state, &conversation, action).await)
}

/// A reaction to a message of the conversation (the customer's or ours), inside the window.
pub async fn react(state: &HttpState, message_id: &str, body: ReactionBody) -> Response<Body> {
    let id = message_id.to_owned();
    let message = match read(|reply| ConversationMsg::GetMessage { id, reply }).await {
        Ok(Some(message)) => message,
        Ok(None) => return not_found("message", message_id),
        Err(answer) => return answer,
    };
    if body.emoji.chars().count() > 16 {
        return unprocessable("invalid_action", "`emoji` must be one emoji (or empty to remove the reaction)");
    }
    let Some(platform_message_id) = message.platform_message_id.clone() else {
        return unprocessable(
            "invalid_action",
            "the message has no platform id yet (it is still queued); react once it is sent",
        );
    };
    let conversation = match conversation(&message.conversation_id).await {
        Ok(conversation) => conversation,
        Err(answer) => return answer,
    };
    if let Some(refusal) = outside_window(&conversation, "a reaction") {
        return refusal;
    }
    let action = OutboundAction {
        recipient: conversation.contact_id.clone(),
        kind: ActionKind::React { message_id: platform_message_id, emoji: body.emoji },
    };
    answer(act(state, &conversation, action).await)
}

async fn conversation(id: &str) -> Result<Conversation, Response<Body>> {
    let owned = id.to_owned();
    match read(|reply| ConversationMsg::GetConversation { id: owned, reply }).await? {
        Some(conversation) => Ok(conversation),
        None => Err(not_found("conversation", id)),
    }
}

/// The platform id of the person's newest message (what WhatsApp's receipt and typing name).
async fn newest_inbound_id(conversation: &Conversation) -> Result<Option<String>, Response<Body>> {
    let conversation_id = conversation.id.clone();
    let newest = read(|reply| ConversationMsg::NewestInbound { conversation_id, reply }).await?;
    Ok(newest.and_then(|m| m.platform_message_id))
}

/// 422 `window_closed` when the conversation's messaging window is closed: typing and reactions
/// are messages of their own kind, and no tag lets them out of the window.
fn outside_window(conversation: &Conversation, what: &str) -> Option<Response<Body>> {
    let window = crate::window::window(conversation.platform, conversation.last_inbound_at, Timestamp::now())?;
    window.outside?;
    let since = crate::window::since(conversation.last_inbound_at);
    Some(unprocessable(
        "window_closed",
        &format!(
            "{} takes {what} only within 24 hours of the customer's last message ({since})",
            conversation.platform
        ),
    ))
}

/// Why an action did not go.
enum ActError {
    /// The platform cannot do it (422).
    Unsupported(String),
    /// The platform refused it, or it ran out of time.
    Failed(MessageError),
    /// Parley could not try (channel off or restarting, queue full): the answer to give.
    Answer(Response<Body>),
}

async fn act(state: &HttpState, conversation: &Conversation, action: OutboundAction) -> Result<(), ActError> {
    let platform = conversation.platform;
    if !state.config().enabled(platform) {
        return Err(ActError::Answer(unprocessable(
            "platform_disabled",
            &format!("{platform} is not enabled on this server"),
        )));
    }
    let Some(channel) = channel_actor(platform) else {
        return Err(ActError::Answer(response::unavailable("the channel is restarting", 1)));
    };
    match channel.call(|reply| ChannelMsg::Act { action, reply }, Some(ANSWER_WAIT)).await {
        Ok(CallResult::Success(Ok(()))) => Ok(()),
        Ok(CallResult::Success(Err(error))) => Err(match error.code.as_str() {
            "invalid" => ActError::Unsupported(error.message),
            "queue_full" => {
                ActError::Answer(response::error(StatusCode::TOO_MANY_REQUESTS, "queue_full", &error.message))
            }
            "channel_not_ready" => ActError::Answer(response::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "channel_not_ready",
                &format!("{platform} cannot send now: {}", error.message),
            )),
            _ => ActError::Failed(error),
        }),
        _ => Err(ActError::Answer(response::unavailable("the channel did not answer", 1))),
    }
}

/// The answer to a typing or reaction request.
fn answer(result: Result<(), ActError>) -> Response<Body> {
    match result {
        Ok(()) => response::json(StatusCode::OK, &json!({ "status": "sent" })),
        Err(ActError::Unsupported(reason)) => unprocessable("unsupported_action", &reason),
        Err(ActError::Failed(error)) if error.code == "deadline" || !error.permanent => {
            response::error(StatusCode::SERVICE_UNAVAILABLE, "platform_unavailable", &error.message)
        }
        Err(ActError::Failed(error)) => response::json(
            StatusCode::BAD_GATEWAY,
            &json!({ "error": { "code": "platform_refused", "message": format!("{}: {}", error.code, error.message),
                                "platform_error": error_json(&error) } }),
        ),
        Err(ActError::Answer(answer)) => answer,
    }
}

fn error_json(error: &MessageError) -> Value {
    json!({ "code": error.code, "message": error.message })
}

fn unprocessable(code: &str, message: &str) -> Response<Body> {
    response::error(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}
