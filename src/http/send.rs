//! The operator API's write side: replies and new messages. A reply is one message to its
//! platform's channel, which checks its bound, has it validated by the platform module and stored
//! durably in the outbox, and only then is it answered 202; the channel sends it from there.

use std::time::Duration;

use hyper::{Response, StatusCode};
use ractor::rpc::CallResult;
use serde::Deserialize;
use serde_json::json;

use super::HttpState;
use super::api::{bad_request, not_found, read};
use super::response::{self, Body};
use crate::actor::{ChannelMsg, ConversationMsg, EnqueueRefusal, PersistError, channel_actor};
use crate::model::{Attachment, Location, OutboundDraft, Platform, SharedContact, Template};
use crate::store::ConversationTarget;

/// How long the API waits for the channel's answer (the outbox write is given 15 s of it).
const ENQUEUE_DEADLINE: Duration = Duration::from_secs(20);

/// An attachment by URL, as the API takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentBody {
    /// `image`, `video`, `audio`, `file` (and `url` on Viber).
    pub kind: String,
    pub url: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub caption: Option<String>,
}

/// `POST /api/conversations/{id}/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyBody {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub attachments: Vec<AttachmentBody>,
    #[serde(default)]
    pub template: Option<Template>,
    /// A platform message id to quote (WhatsApp) or a LinkedIn comment URN to reply under.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// Messenger: a person wrote this reply; it goes with the `HUMAN_AGENT` tag, which allows it
    /// up to 7 days after the user's last message. Refused on the other platforms.
    #[serde(default)]
    pub human_agent: bool,
    /// WhatsApp: show a preview of the text's first link.
    #[serde(default)]
    pub link_preview: bool,
    /// A location pin (WhatsApp, Viber).
    #[serde(default)]
    pub location: Option<LocationBody>,
    /// Contact cards (WhatsApp; one on Viber).
    #[serde(default)]
    pub contacts: Vec<ContactBody>,
}

/// A location as the API takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationBody {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
}

/// A contact card as the API takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactBody {
    pub name: String,
    #[serde(default)]
    pub phones: Vec<String>,
}

/// `POST /api/messages`: start or continue a conversation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMessageBody {
    pub platform: String,
    /// A PSID, a phone number or wa_id, a Viber user id, or a LinkedIn post or comment URN.
    pub to: String,
    #[serde(flatten)]
    pub content: ReplyBody,
}

/// A reply in an existing conversation.
pub async fn reply(state: &HttpState, conversation_id: &str, body: ReplyBody) -> Response<Body> {
    let id = conversation_id.to_owned();
    let conversation = match read(|reply| ConversationMsg::GetConversation { id, reply }).await {
        Ok(Some(conversation)) => conversation,
        Ok(None) => return not_found("conversation", conversation_id),
        Err(answer) => return answer,
    };
    let target = ConversationTarget {
        platform: conversation.platform,
        account_id: conversation.account_id,
        contact_id: conversation.contact_id,
    };
    enqueue(state, target, body).await
}

/// A message that starts (or continues) the conversation with `to`.
pub async fn start(state: &HttpState, body: NewMessageBody) -> Response<Body> {
    let platform = match body.platform.parse::<Platform>() {
        Ok(p) => p,
        Err(e) => return bad_request("bad_platform", &e.to_string()),
    };
    let contact = match normalise_recipient(platform, &body.to) {
        Ok(contact) => contact,
        Err(reason) => return unprocessable("bad_recipient", &reason),
    };
    let target = ConversationTarget { platform, account_id: state.config().account_id(platform), contact_id: contact };
    enqueue(state, target, body.content).await
}

/// The contact id a recipient is stored under, so that a new message lands in the same
/// conversation as the contact's own messages.
fn normalise_recipient(platform: Platform, to: &str) -> Result<String, String> {
    let to = to.trim();
    if to.is_empty() {
        return Err("`to` is empty".into());
    }
    match platform {
        // A user who withholds their number is known by a business-scoped id, kept as it is.
        Platform::Whatsapp if crate::platform::whatsapp::is_business_scoped_user_id(to) => Ok(to.to_owned()),
        Platform::Whatsapp => {
            let digits: String = to.chars().filter(|c| !matches!(c, '+' | ' ' | '-' | '(' | ')' | '.')).collect();
            if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "`{to}` is not a phone number in international form (e.g. +5511987654321) or a business-scoped user id (e.g. US.13491208655302741918)"
                ));
            }
            Ok(digits)
        }
        Platform::Linkedin if !to.starts_with("urn:li:") => Err(format!(
            "`{to}` is not a LinkedIn post or comment URN (urn:li:activity:…, urn:li:share:…, urn:li:comment:(…))"
        )),
        _ => Ok(to.to_owned()),
    }
}

async fn enqueue(state: &HttpState, target: ConversationTarget, body: ReplyBody) -> Response<Body> {
    let platform = target.platform;
    if !state.config().enabled(platform) {
        return unprocessable("platform_disabled", &format!("{platform} is not enabled on this server"));
    }
    let draft = OutboundDraft {
        human_agent: body.human_agent,
        text: body.text.filter(|t| !t.is_empty()),
        attachments: body
            .attachments
            .into_iter()
            .map(|a| Attachment {
                kind: a.kind,
                url: Some(a.url),
                media_id: None,
                mime_type: None,
                name: a.name,
                caption: a.caption,
            })
            .collect(),
        template: body.template,
        reply_to: body.reply_to.filter(|r| !r.is_empty()),
        link_preview: body.link_preview,
        location: body.location.map(|l| Location {
            latitude: l.latitude,
            longitude: l.longitude,
            name: l.name.filter(|n| !n.is_empty()),
            address: l.address.filter(|a| !a.is_empty()),
            url: None,
        }),
        contacts: body.contacts.into_iter().map(|c| SharedContact { name: Some(c.name), phones: c.phones }).collect(),
    };
    // One message to the channel: it checks its bound, has the reply validated and stored, and
    // sends it (actor/channel.rs `enqueue`).
    let Some(channel) = channel_actor(platform) else {
        return response::unavailable("the channel is restarting", 1);
    };
    let queued = channel
        .call(|reply| ChannelMsg::Enqueue { target, draft: Box::new(draft), reply }, Some(ENQUEUE_DEADLINE))
        .await;
    match queued {
        Ok(CallResult::Success(Ok(message))) => response::json(StatusCode::ACCEPTED, &json!({ "message": message })),
        Ok(CallResult::Success(Err(refusal))) => {
            tracing::warn!(message = "Reply not queued.", %platform, error = %refusal);
            match refusal {
                EnqueueRefusal::NotConfigured { .. } => unprocessable("sending_not_configured", &refusal.to_string()),
                EnqueueRefusal::QueueFull { .. } => {
                    response::error(StatusCode::TOO_MANY_REQUESTS, "queue_full", &refusal.to_string())
                }
                EnqueueRefusal::Store(PersistError::Invalid(reason)) => unprocessable("invalid_message", &reason),
                EnqueueRefusal::Store(PersistError::Refused(reason)) => unprocessable("window_closed", &reason),
                EnqueueRefusal::Store(PersistError::NotWritable(_)) => {
                    response::store_not_writable("the reply was not queued")
                }
                EnqueueRefusal::Store(PersistError::Failed(_)) => {
                    response::unavailable("the reply could not be stored", 1)
                }
                EnqueueRefusal::StoreUnavailable => response::unavailable("the store did not answer", 1),
            }
        }
        _ => response::unavailable("the channel did not answer", 1),
    }
}

fn unprocessable(code: &str, message: &str) -> Response<Body> {
    response::error(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}
