//! The one message model that every platform's webhook is normalised into, and the records the
//! operator API shows. Pure data: no I/O.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use crate::time::Timestamp;

/// The four channels Parley speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Facebook,
    Whatsapp,
    Viber,
    Linkedin,
}

impl Platform {
    /// Every platform, in a fixed order.
    pub const ALL: [Platform; 4] = [Platform::Facebook, Platform::Whatsapp, Platform::Viber, Platform::Linkedin];

    /// The name used in routes, config sections and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Platform::Facebook => "facebook",
            Platform::Whatsapp => "whatsapp",
            Platform::Viber => "viber",
            Platform::Linkedin => "linkedin",
        }
    }

    /// A one-byte tag for store keys. Never renumber: it is on disk.
    pub const fn tag(self) -> u8 {
        match self {
            Platform::Facebook => 1,
            Platform::Whatsapp => 2,
            Platform::Viber => 3,
            Platform::Linkedin => 4,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not one of the four platforms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown platform `{0}` (expected facebook, whatsapp, viber or linkedin)")]
pub struct UnknownPlatform(pub String);

impl FromStr for Platform {
    type Err = UnknownPlatform;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| UnknownPlatform(s.to_owned()))
    }
}

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the contact to us.
    Inbound,
    /// From us (this daemon, or the page's own inbox) to the contact.
    Outbound,
}

/// A message's state. Outbound messages move forward only: see [`Status::can_advance_to`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Received,
    Queued,
    Sending,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl Status {
    /// Position in the outbound life cycle; `failed` is terminal and ranks last.
    const fn rank(self) -> u8 {
        match self {
            Status::Received => 0,
            Status::Queued => 1,
            Status::Sending => 2,
            Status::Sent => 3,
            Status::Delivered => 4,
            Status::Read => 5,
            Status::Failed => 6,
        }
    }

    /// True when moving from `self` to `next` is progress. Statuses never go backwards (`read` never
    /// becomes `delivered`) and nothing leaves `failed`; `failed` may follow `sent` or `delivered`
    /// (WhatsApp reports some failures after the send succeeded), but not `read`.
    pub fn can_advance_to(self, next: Status) -> bool {
        match (self, next) {
            (Status::Failed, _) => false,
            (Status::Read, Status::Failed) => false,
            (_, Status::Failed) => true,
            (current, next) => next.rank() > current.rank(),
        }
    }
}

/// What a message carries, beyond its text. Serialised as `kind` on [`Message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentKind {
    /// Plain text.
    Text,
    /// One or more attachments (image, video, audio, file, sticker...), maybe with a caption.
    Media,
    /// A button or menu tap that sends a payload (Messenger postback).
    Postback,
    /// A quick-reply tap: `text` is the button title, `payload` its payload.
    QuickReply,
    /// A WhatsApp interactive reply (button_reply, list_reply): `text` is the title, `payload` the id.
    InteractiveReply,
    /// A WhatsApp template quick-reply button: `text` is the button text, `payload` its payload.
    ButtonReply,
    /// A reaction to another message: `text` is the emoji (empty when removed), `reply_to` the target.
    Reaction,
    /// A shared location, in `location`.
    Location,
    /// Shared contact cards, in `contacts`.
    Contacts,
    /// A WhatsApp catalogue order; the details stay in the raw event.
    Order,
    /// A LinkedIn comment on one of the organization's posts.
    Comment,
    /// A LinkedIn mention of the organization.
    Mention,
    /// A message type the platform itself could not render, or one we do not model; see the raw event.
    Unsupported,
    /// A WhatsApp template we sent: `payload` is the template's name.
    Template,
}

/// A file, picture or link that came with a message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// `image`, `video`, `audio`, `file`, `sticker`, `url`, or the platform's own word for an unknown type.
    pub kind: String,
    /// Where to fetch it, when the platform gives a URL.
    pub url: Option<String>,
    /// The platform's media id (WhatsApp sends an id, not a URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    pub mime_type: Option<String>,
    /// A file name, when there is one.
    pub name: Option<String>,
    /// The caption typed with the media.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
}

/// A shared location.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    pub name: Option<String>,
    pub address: Option<String>,
    pub url: Option<String>,
}

/// A shared contact card.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SharedContact {
    pub name: Option<String>,
    pub phones: Vec<String>,
}

/// The content of one message, whichever way it went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageContent {
    pub kind: ContentKind,
    pub text: Option<String>,
    pub attachments: Vec<Attachment>,
    /// Postback, quick-reply, button or list payload (or the interactive reply's id).
    pub payload: Option<String>,
    /// The platform id of the message this one quotes or reacts to.
    pub reply_to: Option<String>,
    pub location: Option<Location>,
    pub contacts: Vec<SharedContact>,
}

impl MessageContent {
    /// A plain text message.
    pub fn text(kind: ContentKind, text: impl Into<String>) -> Self {
        MessageContent {
            kind,
            text: Some(text.into()),
            attachments: Vec::new(),
            payload: None,
            reply_to: None,
            location: None,
            contacts: Vec::new(),
        }
    }

    /// Empty content of a kind, to be filled in.
    pub fn empty(kind: ContentKind) -> Self {
        MessageContent {
            kind,
            text: None,
            attachments: Vec::new(),
            payload: None,
            reply_to: None,
            location: None,
            contacts: Vec::new(),
        }
    }

    /// A one-line preview for the conversation list.
    pub fn preview(&self) -> String {
        if let Some(text) = self.text.as_deref().filter(|t| !t.is_empty()) {
            return text.chars().take(200).collect();
        }
        match self.kind {
            ContentKind::Location => "[location]".into(),
            ContentKind::Contacts => "[contact]".into(),
            ContentKind::Order => "[order]".into(),
            ContentKind::Reaction => "[reaction removed]".into(),
            _ => match self.attachments.first() {
                Some(a) => format!("[{}]", a.kind),
                None => format!(
                    "[{}]",
                    serde_json::to_value(self.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                ),
            },
        }
    }
}

/// What a platform said went wrong with a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageError {
    /// The platform's own code, as a string (`131047`, `6`, `REVOKED_ACCESS_TOKEN`).
    pub code: String,
    pub message: String,
    /// True when retrying cannot help.
    pub permanent: bool,
}

/// Which receipt a platform sent for our outbound messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptKind {
    Sent,
    Delivered,
    Read,
    Failed,
}

impl ReceiptKind {
    /// The message status this receipt moves a message to.
    pub const fn status(self) -> Status {
        match self {
            ReceiptKind::Sent => Status::Sent,
            ReceiptKind::Delivered => Status::Delivered,
            ReceiptKind::Read => Status::Read,
            ReceiptKind::Failed => Status::Failed,
        }
    }
}

/// A delivery, read or failure report for messages we sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub kind: ReceiptKind,
    /// The platform ids it names (mids, wamid, Viber message_token as decimal). May be empty for a
    /// pure watermark.
    pub message_ids: Vec<String>,
    /// Everything we sent to this contact at or before this instant is covered (Messenger watermarks,
    /// Viber `seen`).
    pub watermark: Option<Timestamp>,
    pub error: Option<MessageError>,
}

/// What happened, once normalised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A message in the conversation, from the contact or (an echo) from our own account.
    Message { direction: Direction, platform_message_id: String, content: MessageContent },
    /// A delivery/read/failed/sent report about our outbound messages.
    Receipt(Receipt),
    /// The contact subscribed (Viber).
    Subscribed,
    /// The contact unsubscribed (Viber); sends to them will fail.
    Unsubscribed,
    /// The contact opened the chat (Viber); not a subscription.
    ConversationStarted { context: Option<String>, subscribed: Option<bool> },
    /// Something the platform reports that is not a message: a referral, account linking, a LinkedIn
    /// like or share, Viber's webhook check. `name` says which; `detail` is a short human summary.
    Activity { name: String, detail: Option<String> },
    /// The sender changed a message they sent before (`platform_message_id`): `content` is what
    /// it says now.
    Edit { platform_message_id: String, content: MessageContent },
    /// The sender deleted (revoked) a message they sent before.
    Revoke { platform_message_id: String },
    /// An event type we do not know, kept raw. Never an error.
    Unknown { event_type: String },
}

impl EventKind {
    /// A short stable name for logs and metrics.
    pub fn name(&self) -> &str {
        match self {
            EventKind::Message { .. } => "message",
            EventKind::Receipt(r) => match r.kind {
                ReceiptKind::Sent => "receipt.sent",
                ReceiptKind::Delivered => "receipt.delivered",
                ReceiptKind::Read => "receipt.read",
                ReceiptKind::Failed => "receipt.failed",
            },
            EventKind::Subscribed => "subscribed",
            EventKind::Unsubscribed => "unsubscribed",
            EventKind::ConversationStarted { .. } => "conversation_started",
            EventKind::Activity { name, .. } => name,
            EventKind::Edit { .. } => "edit",
            EventKind::Revoke { .. } => "revoke",
            EventKind::Unknown { .. } => "unknown",
        }
    }
}

/// One event out of a webhook body, normalised. A body may hold many.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboundEvent {
    pub platform: Platform,
    /// Our side: the Page id, WhatsApp phone_number_id, Viber bot, LinkedIn organization URN.
    pub account_id: String,
    /// The other side of the conversation this event belongs to: a PSID, wa_id, Viber user id, or for
    /// LinkedIn the post (or parent comment) URN that the thread hangs off. `None` for events that
    /// belong to no conversation (Viber's webhook check).
    pub contact_id: Option<String>,
    /// A display name for the contact when the platform gives one.
    pub contact_name: Option<String>,
    /// The contact's other id on platforms that give two for one person (WhatsApp: the
    /// business-scoped user id beside the phone number). The store keeps one conversation per
    /// person whichever of the two a webhook carries (`store/contacts.rs`).
    pub contact_alias: Option<String>,
    /// Who produced the event: the contact, our own account (echoes), or a LinkedIn commenter.
    pub sender_id: Option<String>,
    /// Unique per platform for this event; a redelivery carries the same key (PLATFORMS.md x.5).
    pub dedup_key: String,
    pub occurred_at: Timestamp,
    pub kind: EventKind,
    /// The event's own JSON element, exactly as the platform sent it (parsed, not re-ordered).
    pub raw: serde_json::Value,
}

/// A conversation as the operator API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub platform: Platform,
    pub account_id: String,
    pub contact_id: String,
    pub contact_name: Option<String>,
    pub last_message_text: Option<String>,
    pub last_message_at: Option<Timestamp>,
    /// Inbound messages since the operator last read the conversation.
    pub unread: u64,
    pub created_at: Timestamp,
    /// The latest activity of any kind (messages, subscriptions); orders the conversation list.
    pub updated_at: Timestamp,
    /// When the person last wrote (the platform's time of their newest message): what the
    /// messaging window counts from (`window.rs`). Null when they never wrote, and in records of
    /// builds before windows, until their next message (`Store::enqueue` reads it from the
    /// timeline then).
    #[serde(default)]
    pub last_inbound_at: Option<Timestamp>,
}

/// A conversation as the API and the live feed show it: the stored record and its messaging
/// window at the time it is shown (`{"open_until", "outside"}`; null for platforms without one).
#[derive(Serialize)]
pub struct ConversationView<'c> {
    #[serde(flatten)]
    pub conversation: &'c Conversation,
    pub window: Option<crate::window::Window>,
}

impl Conversation {
    /// This conversation with its window at `now`.
    pub fn view(&self, now: Timestamp) -> ConversationView<'_> {
        ConversationView { conversation: self, window: crate::window::window(self.platform, self.last_inbound_at, now) }
    }
}

/// A message as the operator API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub platform: Platform,
    pub direction: Direction,
    /// mid, wamid, Viber message_token as decimal, LinkedIn comment URN or notificationId; null until sent.
    pub platform_message_id: Option<String>,
    pub sender_id: Option<String>,
    pub text: Option<String>,
    pub attachments: Vec<Attachment>,
    pub sent_at: Timestamp,
    pub status: Status,
    pub error: Option<MessageError>,
    pub kind: ContentKind,
    pub payload: Option<String>,
    pub reply_to: Option<String>,
    pub location: Option<Location>,
    pub contacts: Vec<SharedContact>,
    /// When Parley stored it.
    pub received_at: Timestamp,
    /// Outbound only: when the request that the platform accepted was made. Delivery and read
    /// watermarks are compared with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatched_at: Option<Timestamp>,
    /// What the message said before each edit or its revoke, oldest first (the sender's changes;
    /// the current text is `text`).
    #[serde(default)]
    pub previous: Vec<PreviousVersion>,
    /// When the sender deleted it (its last words are in `previous`); null while it stands.
    #[serde(default)]
    pub revoked_at: Option<Timestamp>,
}

impl Message {
    /// Its one-line preview for the conversation list (`MessageContent::preview`), or
    /// `[deleted]` once the sender deleted it.
    pub fn preview(&self) -> String {
        if self.revoked_at.is_some() {
            return "[deleted]".to_owned();
        }
        let mut content = MessageContent::empty(self.kind);
        content.text.clone_from(&self.text);
        content.attachments.clone_from(&self.attachments);
        content.preview()
    }
}

/// A message as it was before an edit or a revoke.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreviousVersion {
    pub text: Option<String>,
    pub attachments: Vec<Attachment>,
    /// When it stopped being the current version (the edit's or revoke's time).
    pub until: Timestamp,
}

/// A WhatsApp message template (the only thing WhatsApp lets a business send outside the 24-hour
/// window).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// The approved template's name.
    pub name: String,
    /// Its language code, e.g. `pt_BR`.
    pub language: String,
    /// The `components` array as the Cloud API takes it (header/body/button parameters); may be empty.
    #[serde(default)]
    pub components: Vec<serde_json::Value>,
}

/// What the operator asked to send, before a platform module validated it into an
/// [`OutboundMessage`] (`platform::prepare_outbound`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboundDraft {
    pub text: Option<String>,
    pub attachments: Vec<Attachment>,
    pub template: Option<Template>,
    pub reply_to: Option<String>,
    /// A person wrote it (Messenger's `HUMAN_AGENT`; see `OutboundMessage::human_agent`).
    pub human_agent: bool,
    /// See `OutboundMessage`.
    pub link_preview: bool,
    pub location: Option<Location>,
    pub contacts: Vec<SharedContact>,
}

/// One message to send, as the channel actor hands it to a platform's `build_send_request`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboundMessage {
    /// Our message id; sent along where the platform echoes it back (Messenger `metadata`, WhatsApp
    /// `biz_opaque_callback_data`, Viber `tracking_data`) so receipts and echoes can be matched.
    pub id: String,
    /// Who receives it: a PSID, a WhatsApp number or wa_id, a Viber user id, or for LinkedIn the
    /// post (activity or share URN) the comment goes under.
    pub recipient: String,
    /// A platform message to quote (WhatsApp `context`) or, for LinkedIn, the parent comment URN.
    pub reply_to: Option<String>,
    pub text: Option<String>,
    /// At most one attachment per message, sent by URL (`kind`: image, video, audio or file).
    pub attachments: Vec<Attachment>,
    /// WhatsApp only.
    pub template: Option<Template>,
    /// Messenger only: a person wrote it, and it goes with the `HUMAN_AGENT` tag (allowed up to 7
    /// days after the user's last message). Never set on automated replies.
    #[serde(default)]
    pub human_agent: bool,
    /// WhatsApp only: the first link of the text is shown with a preview (`preview_url`).
    #[serde(default)]
    pub link_preview: bool,
    /// A location pin (WhatsApp, Viber); a message of its own.
    #[serde(default)]
    pub location: Option<Location>,
    /// Contact cards (WhatsApp; one on Viber); a message of their own.
    #[serde(default)]
    pub contacts: Vec<SharedContact>,
}

/// An engagement action: what an agent does in a conversation besides writing (mark it read, show
/// typing, react to a message). Not a message: nothing is stored; the channel sends it paced by
/// the same limiter as messages (it counts against the platform's rate) and answers the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundAction {
    /// Who sees it: a PSID, a WhatsApp number or business-scoped id.
    pub recipient: String,
    pub kind: ActionKind,
}

/// What an engagement action does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionKind {
    /// The customer sees that their messages were read: WhatsApp's read receipt of `message_id`
    /// (which also covers the messages before it), Messenger's `mark_seen`. With `typing`, the
    /// typing indicator is shown as well.
    MarkRead { message_id: Option<String>, typing: bool },
    /// The typing indicator on or off. WhatsApp shows it only with a read receipt of
    /// `message_id` and ends it itself (on the reply, or after 25 seconds).
    Typing { on: bool, message_id: Option<String> },
    /// A reaction to the platform message `message_id`; an empty `emoji` removes ours.
    React { message_id: String, emoji: String },
}

impl ActionKind {
    /// Its name in logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            ActionKind::MarkRead { .. } => "mark_read",
            ActionKind::Typing { on: true, .. } => "typing_on",
            ActionKind::Typing { on: false, .. } => "typing_off",
            ActionKind::React { emoji, .. } if emoji.is_empty() => "unreact",
            ActionKind::React { .. } => "react",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_names_round_trip() {
        for p in Platform::ALL {
            assert_eq!(p.as_str().parse::<Platform>(), Ok(p));
            assert_eq!(serde_json::to_value(p).unwrap(), serde_json::json!(p.as_str()));
        }
        assert!("telegram".parse::<Platform>().is_err());
    }

    #[test]
    fn status_only_moves_forward() {
        assert!(Status::Queued.can_advance_to(Status::Sent));
        assert!(Status::Sent.can_advance_to(Status::Read));
        assert!(!Status::Read.can_advance_to(Status::Delivered));
        assert!(!Status::Delivered.can_advance_to(Status::Delivered));
        assert!(Status::Sent.can_advance_to(Status::Failed));
        assert!(!Status::Failed.can_advance_to(Status::Read));
        assert!(!Status::Read.can_advance_to(Status::Failed));
    }

    #[test]
    fn preview_prefers_text_then_attachment_kind() {
        let mut c = MessageContent::empty(ContentKind::Media);
        c.attachments.push(Attachment { kind: "image".into(), ..Default::default() });
        assert_eq!(c.preview(), "[image]");
        c.text = Some("caption".into());
        assert_eq!(c.preview(), "caption");
        assert_eq!(MessageContent::empty(ContentKind::Location).preview(), "[location]");
    }
}
