//! WhatsApp Business Cloud API (object `whatsapp_business_account`): the GET handshake, the
//! `X-Hub-Signature-256` check, the webhook parser, and the send request and its answer
//! (PLATFORMS.md section 2).
//!
//! The handshake, the signature, the Graph error shape and the token calls are Meta's and identical to
//! Messenger's, so they are the `facebook` module's functions; only the bodies differ.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::model::{
    ActionKind, Attachment, ContentKind, Direction, EventKind, InboundEvent, Location, MessageContent, MessageError,
    OutboundAction, OutboundMessage, Platform, Receipt, ReceiptKind, SharedContact, Template, Timestamp,
};
use crate::secret::Secret;

use super::facebook::{self, GraphError};
use super::json::{self, content_key, event_time_field, id_field, str_field};
use super::{
    ApiRequest, ApiResponse, BuildError, HandshakeReply, ParseContext, ParseError, SendContext, SendOutcome,
    SignatureForm, SignedRequest, VerifyError,
};

/// The header that carries the signature (lower-case: headers are looked up case-insensitively).
pub const SIGNATURE_HEADER: &str = facebook::SIGNATURE_HEADER;

/// Answers Meta's GET subscription check, exactly as for Messenger (PLATFORMS.md 2.1).
pub fn verify_handshake(verify_token: &Secret, query: &str) -> Result<HandshakeReply, VerifyError> {
    facebook::verify_handshake(verify_token, query)
}

/// Checks `X-Hub-Signature-256: sha256=<hex>` over the raw body with the Meta app secret (PLATFORMS.md 2.2).
pub fn verify_signature(app_secret: &Secret, request: &SignedRequest<'_>) -> Result<SignatureForm, VerifyError> {
    facebook::verify_signature(app_secret, request)
}

/// The header value Meta would send for `body`: `sha256=<lower-case hex>` (for tests and `simulate`).
pub fn sign_webhook(app_secret: &Secret, body: &[u8]) -> String {
    facebook::sign_webhook(app_secret, body)
}

/// Parses a verified WhatsApp body into one event per `messages[]`, `statuses[]` and `errors[]` element
/// of every change of every entry, in body order.
///
/// Only a body that is not a WhatsApp webhook at all is an error. A malformed element, an unknown status
/// or a change of another field becomes [`EventKind::Unknown`] with its JSON as `raw`.
pub fn parse_webhook(body: &[u8], ctx: &ParseContext<'_>) -> Result<Vec<InboundEvent>, ParseError> {
    let root = super::json::parse_body(body)?;
    let Value::Object(fields) = &root else {
        return Err(ParseError::NotAnObject);
    };
    const EXPECTED_OBJECT: &str = "whatsapp_business_account";
    match fields.get("object") {
        Some(Value::String(object)) if object == EXPECTED_OBJECT => {}
        Some(other) => {
            let found = other.as_str().map_or_else(|| other.to_string(), str::to_owned);
            return Err(ParseError::UnexpectedValue { field: "object", expected: EXPECTED_OBJECT, found });
        }
        None => return Err(ParseError::MissingField("object")),
    }
    let entries = fields.get("entry").and_then(Value::as_array).ok_or(ParseError::MissingField("entry"))?;

    let mut events = Vec::new();
    for entry in entries {
        let business_account_id = id_field(entry, "id");
        match entry.get("changes").and_then(Value::as_array) {
            Some(changes) => {
                for change in changes {
                    change_events(change, business_account_id.as_deref(), ctx, &mut events);
                }
            }
            None => {
                // An entry without changes is kept, not dropped.
                let account_id = business_account_id.unwrap_or_else(|| ctx.account_id.to_owned());
                events.push(unknown_event("entry".into(), account_id, None, ctx.received_at, entry));
            }
        }
    }
    Ok(events)
}

/// Appends the events of one `changes[]` element.
fn change_events(
    change: &Value,
    business_account_id: Option<&str>,
    ctx: &ParseContext<'_>,
    events: &mut Vec<InboundEvent>,
) {
    let value = change.get("value").filter(|v| v.is_object());
    // Route on phone_number_id: it is our account and the id we send from (PLATFORMS.md 2.3).
    let account_id = value
        .and_then(|v| v.get("metadata"))
        .and_then(|m| id_field(m, "phone_number_id").or_else(|| id_field(m, "display_phone_number")))
        .or_else(|| business_account_id.map(str::to_owned))
        .unwrap_or_else(|| ctx.account_id.to_owned());

    let field = str_field(change, "field");
    if let Some(value) = value.filter(|_| field.as_deref() == Some("smb_message_echoes")) {
        // Coexistence: what the business sent from the WhatsApp Business app on the same number.
        let echoes = value.get("message_echoes").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        if echoes.is_empty() {
            events.push(unknown_event("smb_message_echoes.empty".into(), account_id, None, ctx.received_at, change));
            return;
        }
        let names = contact_names(value);
        events.extend(echoes.iter().map(|echo| echo_event(echo, &account_id, &names, ctx)));
        return;
    }
    let Some(value) = value.filter(|_| field.as_deref() == Some("messages")) else {
        let event_type = field.unwrap_or_else(|| "change".into());
        events.push(unknown_event(event_type, account_id, None, ctx.received_at, change));
        return;
    };

    let elements = |key: &str| value.get(key).and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let (messages, statuses, errors) = (elements("messages"), elements("statuses"), elements("errors"));
    if messages.is_empty() && statuses.is_empty() && errors.is_empty() {
        events.push(unknown_event("messages.empty".into(), account_id, None, ctx.received_at, change));
        return;
    }
    let names = contact_names(value);
    events.extend(messages.iter().map(|message| message_event(message, &account_id, &names, ctx)));
    events.extend(statuses.iter().map(|status| status_event(status, &account_id, ctx)));
    events.extend(errors.iter().map(|error| error_event(error, &account_id, ctx)));
}

/// What `contacts[]` says of each sender, by `wa_id` and by business-scoped `user_id`. Matched by
/// id, never by position: one body may carry several senders.
#[derive(Default)]
struct Contacts {
    names: HashMap<String, String>,
    user_ids: HashMap<String, String>,
}

impl Contacts {
    /// The display name (or, without one, the username) for either id.
    fn name(&self, ids: &[Option<&String>]) -> Option<String> {
        ids.iter().flatten().find_map(|id| self.names.get(*id)).cloned()
    }
}

fn contact_names(value: &Value) -> Contacts {
    let mut contacts = Contacts::default();
    for contact in value.get("contacts").and_then(Value::as_array).map_or(&[][..], Vec::as_slice) {
        let profile = contact.get("profile");
        let name = profile.and_then(|p| str_field(p, "name").or_else(|| str_field(p, "username")));
        let (wa_id, user_id) = (id_field(contact, "wa_id"), id_field(contact, "user_id"));
        if let (Some(wa_id), Some(user_id)) = (&wa_id, &user_id) {
            contacts.user_ids.insert(wa_id.clone(), user_id.clone());
        }
        if let Some(name) = name {
            for id in [wa_id, user_id].into_iter().flatten() {
                contacts.names.insert(id, name.clone());
            }
        }
    }
    contacts
}

/// A person's ids in a message or an echo: the number (`number_key`) and the business-scoped id
/// (`user_key`, else what `contacts[]` pairs with the number). The conversation is keyed by the
/// number when there is one; the other id rides along as the alias.
fn person(element: &Value, number_key: &str, user_key: &str, contacts: &Contacts) -> (Option<String>, Option<String>) {
    let number = id_field(element, number_key);
    let user_id =
        id_field(element, user_key).or_else(|| number.as_ref().and_then(|n| contacts.user_ids.get(n).cloned()));
    match number {
        Some(number) => (Some(number), user_id),
        None => (user_id, None),
    }
}

/// An element we keep but do not model, keyed by its content so a redelivery is recognised.
fn unknown_event(
    event_type: String,
    account_id: String,
    contact_id: Option<String>,
    occurred_at: Timestamp,
    raw: &Value,
) -> InboundEvent {
    InboundEvent {
        contact_alias: None,
        platform: Platform::Whatsapp,
        account_id,
        contact_id: contact_id.clone(),
        contact_name: None,
        sender_id: contact_id,
        dedup_key: format!("unknown:{}", content_key(raw)),
        occurred_at,
        kind: EventKind::Unknown { event_type },
        raw: raw.clone(),
    }
}

/// One inbound `messages[]` element; without a sender (a number or a business-scoped id) or a
/// wamid it is kept as `Unknown`.
fn message_event(message: &Value, account_id: &str, contacts: &Contacts, ctx: &ParseContext<'_>) -> InboundEvent {
    person_message(message, Direction::Inbound, account_id, contacts, ctx)
}

/// One `message_echoes[]` element of `smb_message_echoes`: a message the business sent from the
/// WhatsApp Business app, stored as outbound in the conversation with its recipient (`to`, or the
/// recipient's business-scoped id when the number is withheld).
fn echo_event(echo: &Value, account_id: &str, contacts: &Contacts, ctx: &ParseContext<'_>) -> InboundEvent {
    person_message(echo, Direction::Outbound, account_id, contacts, ctx)
}

/// A message between the business and one person: from them (`from`, `from_user_id`), or to them
/// (`to`, `to_user_id`) for an echo, which our own account sent.
fn person_message(
    element: &Value,
    direction: Direction,
    account_id: &str,
    contacts: &Contacts,
    ctx: &ParseContext<'_>,
) -> InboundEvent {
    let (number_key, user_key, malformed) = match direction {
        Direction::Inbound => ("from", "from_user_id", "message.malformed"),
        Direction::Outbound => ("to", "to_user_id", "message_echo.malformed"),
    };
    let (person_id, alias) = person(element, number_key, user_key, contacts);
    // A missing or implausible time (json::event_time) dates the message by its arrival.
    let occurred_at = event_time_field(element, "timestamp", ctx.received_at).unwrap_or(ctx.received_at);
    let (Some(person_id), Some(wamid)) = (person_id.clone(), id_field(element, "id")) else {
        let sender = if direction == Direction::Inbound { person_id } else { None };
        return unknown_event(malformed.into(), account_id.to_owned(), sender, occurred_at, element);
    };
    let sender_id = match direction {
        Direction::Inbound => person_id.clone(),
        Direction::Outbound => account_id.to_owned(),
    };
    // Only the person's own messages are edited or revoked by them.
    let change = if direction == Direction::Inbound { change_of(element) } else { None };
    InboundEvent {
        platform: Platform::Whatsapp,
        account_id: account_id.to_owned(),
        contact_id: Some(person_id.clone()),
        contact_alias: alias.clone(),
        contact_name: contacts.name(&[Some(&person_id), alias.as_ref()]),
        sender_id: Some(sender_id),
        dedup_key: format!("wamid:{wamid}"),
        occurred_at,
        kind: change.unwrap_or_else(|| EventKind::Message {
            direction,
            platform_message_id: wamid,
            content: message_content(element),
        }),
        raw: element.clone(),
    }
}

/// An `edit` (the new content is the nested `message`) or a `revoke` of an earlier message;
/// None for any other type, and for one without the original's id (kept as a message then).
fn change_of(message: &Value) -> Option<EventKind> {
    match message.get("type").and_then(Value::as_str)? {
        "edit" => {
            let edit = message.get("edit")?;
            let platform_message_id = id_field(edit, "original_message_id")?;
            let content = message_content(edit.get("message").filter(|m| m.is_object())?);
            Some(EventKind::Edit { platform_message_id, content })
        }
        "revoke" => {
            let platform_message_id = id_field(message.get("revoke")?, "original_message_id")?;
            Some(EventKind::Revoke { platform_message_id })
        }
        _ => None,
    }
}

/// The content of a message by its `type` (PLATFORMS.md 2.3); a type we do not model is `Unsupported`.
fn message_content(message: &Value) -> MessageContent {
    let message_type = message.get("type").and_then(Value::as_str).unwrap_or_default();
    let body = message.get(message_type).filter(|b| b.is_object()).unwrap_or(&Value::Null);
    let mut content = match message_type {
        "text" => text_content(ContentKind::Text, str_field(body, "body")),
        "image" | "video" | "audio" | "document" | "sticker" => media_content(message_type, body),
        "location" => match location(body) {
            Some(location) => {
                let mut content = MessageContent::empty(ContentKind::Location);
                content.location = Some(location);
                content
            }
            None => MessageContent::empty(ContentKind::Unsupported),
        },
        "contacts" => {
            let mut content = MessageContent::empty(ContentKind::Contacts);
            let cards = message.get("contacts").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
            content.contacts = cards.iter().map(shared_contact).collect();
            content
        }
        "interactive" => interactive_content(body),
        "button" => {
            let mut content = text_content(ContentKind::ButtonReply, str_field(body, "text"));
            content.payload = str_field(body, "payload");
            content
        }
        "reaction" => {
            // An empty or missing emoji means the reaction was removed.
            text_content(ContentKind::Reaction, str_field(body, "emoji"))
        }
        "order" => text_content(ContentKind::Order, str_field(body, "text")),
        _ => MessageContent::empty(ContentKind::Unsupported),
    };
    content.reply_to = if message_type == "reaction" {
        id_field(body, "message_id")
    } else {
        message.get("context").and_then(|c| id_field(c, "id"))
    };
    content
}

/// Content of `kind` whose text may be absent.
fn text_content(kind: ContentKind, text: Option<String>) -> MessageContent {
    let mut content = MessageContent::empty(kind);
    content.text = text;
    content
}

/// An image, video, audio, document or sticker: WhatsApp sends a media id to fetch, never a URL.
fn media_content(message_type: &str, media: &Value) -> MessageContent {
    let kind = match message_type {
        "document" => "file",
        "audio" if media.get("voice").and_then(Value::as_bool) == Some(true) => "voice",
        other => other,
    };
    let caption = str_field(media, "caption");
    let attachment = Attachment {
        kind: kind.to_owned(),
        url: None,
        media_id: id_field(media, "id"),
        mime_type: str_field(media, "mime_type"),
        name: str_field(media, "filename"),
        caption: caption.clone(),
    };
    let mut content = text_content(ContentKind::Media, caption);
    content.attachments.push(attachment);
    content
}

/// A shared place; `None` without both coordinates (numbers or numeric strings, in range).
fn location(body: &Value) -> Option<Location> {
    Some(Location {
        latitude: body.get("latitude").and_then(|v| json::coordinate(v, 90.0))?,
        longitude: body.get("longitude").and_then(|v| json::coordinate(v, 180.0))?,
        name: str_field(body, "name"),
        address: str_field(body, "address"),
        url: str_field(body, "url"),
    })
}

/// One shared contact card: its formatted name and phone numbers.
fn shared_contact(card: &Value) -> SharedContact {
    let phones = card.get("phones").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    SharedContact {
        name: card.get("name").and_then(|n| str_field(n, "formatted_name")),
        phones: phones.iter().filter_map(|p| str_field(p, "phone")).collect(),
    }
}

/// A tap on an interactive message: the reply object is named by `interactive.type`.
fn interactive_content(interactive: &Value) -> MessageContent {
    let reply_type = interactive.get("type").and_then(Value::as_str).unwrap_or_default();
    let reply = interactive.get(reply_type).unwrap_or(&Value::Null);
    if reply_type == "nfm_reply" {
        // A WhatsApp Flow's answer: what the user saw (`body`) and what they filled in (`response_json`).
        let mut content = text_content(ContentKind::InteractiveReply, str_field(reply, "body"));
        content.payload = str_field(reply, "response_json");
        return content;
    }
    let mut content = text_content(ContentKind::InteractiveReply, str_field(reply, "title"));
    content.payload = id_field(reply, "id");
    content
}

/// One `statuses[]` element: a receipt for a message we sent.
fn status_event(status: &Value, account_id: &str, ctx: &ParseContext<'_>) -> InboundEvent {
    // A user who withholds the number is named by the business-scoped id alone.
    let recipient = id_field(status, "recipient_id").or_else(|| id_field(status, "recipient_user_id"));
    let occurred_at = event_time_field(status, "timestamp", ctx.received_at).unwrap_or(ctx.received_at);
    let status_name = str_field(status, "status");
    let receipt_kind = match status_name.as_deref() {
        Some("sent") => Some(ReceiptKind::Sent),
        Some("delivered") => Some(ReceiptKind::Delivered),
        // `played`: a voice message was listened to, which is past being read.
        Some("read" | "played") => Some(ReceiptKind::Read),
        Some("failed") => Some(ReceiptKind::Failed),
        _ => None,
    };
    let (Some(kind), Some(wamid), Some(status_name)) = (receipt_kind, id_field(status, "id"), status_name.clone())
    else {
        let event_type = format!("status.{}", status_name.as_deref().unwrap_or("malformed"));
        // As for known statuses: the recipient is the conversation, but not the sender.
        return InboundEvent {
            contact_alias: None,
            sender_id: None,
            ..unknown_event(event_type, account_id.to_owned(), recipient, occurred_at, status)
        };
    };
    let error = match kind {
        ReceiptKind::Failed => Some(failure(status)),
        _ => None,
    };
    InboundEvent {
        contact_alias: None,
        platform: Platform::Whatsapp,
        account_id: account_id.to_owned(),
        contact_id: recipient,
        contact_name: None,
        // The wire names no sender for a status; the platform itself reports it.
        sender_id: None,
        dedup_key: format!("status:{wamid}:{status_name}"),
        occurred_at,
        kind: EventKind::Receipt(Receipt { kind, message_ids: vec![wamid], watermark: None, error }),
        raw: status.clone(),
    }
}

/// Why a message failed: the first of `errors[]`. A `failed` status is terminal, so it is permanent.
fn failure(status: &Value) -> MessageError {
    let first = status.get("errors").and_then(Value::as_array).and_then(|errors| errors.first());
    let Some(error) = first else {
        return MessageError { code: "unknown".into(), message: "failed without an error".into(), permanent: true };
    };
    let details = error.get("error_data").and_then(|d| str_field(d, "details"));
    MessageError {
        code: id_field(error, "code").unwrap_or_else(|| "unknown".into()),
        message: details
            .or_else(|| str_field(error, "message"))
            .or_else(|| str_field(error, "title"))
            .unwrap_or_default(),
        permanent: true,
    }
}

/// A `value`-level error (e.g. 131000): stored as an activity so the body is never dropped.
fn error_event(error: &Value, account_id: &str, ctx: &ParseContext<'_>) -> InboundEvent {
    let code = id_field(error, "code").unwrap_or_else(|| "unknown".into());
    let explanation = str_field(error, "title")
        .or_else(|| error.get("error_data").and_then(|d| str_field(d, "details")))
        .or_else(|| str_field(error, "message"))
        .unwrap_or_default();
    InboundEvent {
        contact_alias: None,
        platform: Platform::Whatsapp,
        account_id: account_id.to_owned(),
        contact_id: None,
        contact_name: None,
        sender_id: None,
        dedup_key: format!("error:{}", content_key(error)),
        occurred_at: ctx.received_at,
        kind: EventKind::Activity { name: "error".into(), detail: Some(format!("{code}: {explanation}")) },
        raw: error.clone(),
    }
}

// --- sending ---------------------------------------------------------------------------------

/// The longest text (or caption) WhatsApp takes, in Unicode scalar values (`chars()`), not bytes.
/// 4096 is what BSP documentation (360dialog) and the whatsapp-api-js SDK state; Meta's own page was
/// not read (PLATFORMS.md 2.6 marks it unconfirmed).
pub const MAX_TEXT_CHARS: usize = 4096;

/// Throughput is being upgraded (131057): Meta says this lasts up to a minute (PLATFORMS.md 2.7).
const MAINTENANCE_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Builds the Cloud API request for one message (PLATFORMS.md 2.6).
///
/// `POST {api_base}/{phone_number_id}/messages` with `Authorization: Bearer`. The message is text, a
/// template, or one attachment by link with the text as its caption where the media type takes one.
/// `biz_opaque_callback_data` carries our id so the status webhooks can be matched back, and
/// `reply_to` becomes `context.message_id` (a quoted reply).
pub fn build_send_request(ctx: &SendContext<'_>, message: &OutboundMessage) -> Result<ApiRequest, BuildError> {
    if message.human_agent {
        return Err(BuildError::Unsupported("`human_agent` is Messenger's; WhatsApp has no such tag".into()));
    }
    let (recipient_field, to) = addressee(&message.recipient)?;
    if message.attachments.len() > 1 {
        return Err(BuildError::Unsupported(format!(
            "WhatsApp takes one attachment per message; send the {} attachments as separate messages",
            message.attachments.len()
        )));
    }
    let text = message.text.as_deref().filter(|text| !text.is_empty());
    let attachment = message.attachments.first();
    let card = message.location.is_some() || !message.contacts.is_empty();
    if card && (text.is_some() || attachment.is_some() || message.template.is_some())
        || message.location.is_some() && !message.contacts.is_empty()
    {
        return Err(BuildError::Unsupported(
            "a location or contact cards are a WhatsApp message of their own; send the rest separately".into(),
        ));
    }
    if message.link_preview && (text.is_none() || attachment.is_some() || message.template.is_some()) {
        return Err(BuildError::Unsupported("`link_preview` applies to a text message".into()));
    }
    if let Some(location) = &message.location {
        crate::platform::check_location(location)?;
    }

    let (message_type, content) = match (&message.template, attachment) {
        _ if message.location.is_some() => ("location", location_object(message.location.as_ref())),
        _ if !message.contacts.is_empty() => ("contacts", contacts_array(&message.contacts)?),
        (Some(_), _) if text.is_some() || attachment.is_some() => {
            return Err(BuildError::Unsupported(
                "a WhatsApp template carries its own text; send the text or attachment as a separate message".into(),
            ));
        }
        (Some(template), _) => ("template", template_object(template)?),
        (None, Some(attachment)) => media_object(attachment, text)?,
        (None, None) => match text {
            Some(text) => {
                check_text_length(text)?;
                ("text", json!({ "preview_url": message.link_preview, "body": text }))
            }
            None => return Err(BuildError::Empty),
        },
    };

    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "type": message_type,
        "biz_opaque_callback_data": message.id,
    });
    body[recipient_field] = Value::String(to);
    body[message_type] = content;
    if let Some(reply_to) = message.reply_to.as_deref().filter(|id| !id.is_empty()) {
        body["context"] = json!({ "message_id": reply_to });
    }
    Ok(facebook::graph_post(ctx, &body))
}

/// The `location` object of a location message (PLATFORMS.md 2.6 and Meta, "Location messages").
fn location_object(location: Option<&Location>) -> Value {
    let Some(location) = location else { return Value::Null };
    let mut object = json!({ "latitude": location.latitude, "longitude": location.longitude });
    if let Some(name) = location.name.as_deref().filter(|n| !n.is_empty()) {
        object["name"] = json!(name);
    }
    if let Some(address) = location.address.as_deref().filter(|a| !a.is_empty()) {
        object["address"] = json!(address);
    }
    object
}

/// The most contact cards one WhatsApp message may carry (Meta, "Contacts messages").
const MAX_CONTACT_CARDS: usize = 257;

/// The `contacts` array of a contacts message: each card's `name.formatted_name` (required, with
/// a `first_name`, which Meta also requires) and its phones.
fn contacts_array(contacts: &[SharedContact]) -> Result<Value, BuildError> {
    if contacts.len() > MAX_CONTACT_CARDS {
        return Err(BuildError::Invalid {
            field: "contacts",
            reason: format!("at most {MAX_CONTACT_CARDS} cards per message, not {}", contacts.len()),
        });
    }
    let mut cards = Vec::with_capacity(contacts.len());
    for contact in contacts {
        let Some(name) = contact.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) else {
            return Err(BuildError::Invalid { field: "contacts.name", reason: "every card needs a name".into() });
        };
        let first_name = name.split_whitespace().next().unwrap_or(name);
        let phones: Vec<Value> = contact
            .phones
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|phone| json!({ "phone": phone }))
            .collect();
        cards.push(json!({ "name": { "formatted_name": name, "first_name": first_name }, "phones": phones }));
    }
    Ok(Value::Array(cards))
}

/// A business-scoped user id (BSUID): a two-letter country code, a dot, then alphanumerics (up to
/// 128), e.g. `US.13491208655302741918`; a parent BSUID has `ENT.` after the country
/// (`US.ENT.11815799212886844830`). A phone number never has a letter, so the two cannot be confused.
pub fn is_business_scoped_user_id(id: &str) -> bool {
    let mut parts = id.split('.');
    let country = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let alphanumeric =
        |part: &&str| !part.is_empty() && part.len() <= 128 && part.bytes().all(|b| b.is_ascii_alphanumeric());
    country.len() == 2
        && country.bytes().all(|b| b.is_ascii_uppercase())
        && match rest.as_slice() {
            [id] => alphanumeric(id),
            ["ENT", id] => alphanumeric(id),
            _ => false,
        }
}

/// The recipient as the Cloud API wants it: digits only, country code first. A leading `+` and spaces
/// are dropped (operators paste `+55 11 98765-4321`-like numbers); anything else that is not a digit is
/// refused rather than guessed at.
fn normalise_recipient(recipient: &str) -> Result<String, BuildError> {
    let trimmed = recipient.trim();
    let without_plus = trimmed.strip_prefix('+').unwrap_or(trimmed);
    let digits: String = without_plus.chars().filter(|c| *c != ' ').collect();
    let invalid = |reason: &str| BuildError::Invalid { field: "recipient", reason: reason.to_owned() };
    if digits.is_empty() {
        return Err(invalid("a WhatsApp recipient is a phone number or wa_id"));
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("a WhatsApp number may hold only digits, spaces and a leading `+`"));
    }
    Ok(digits)
}

/// Refuses text longer than [`MAX_TEXT_CHARS`].
fn check_text_length(text: &str) -> Result<(), BuildError> {
    let length = text.chars().count();
    if length > MAX_TEXT_CHARS {
        return Err(BuildError::TextTooLong { platform: Platform::Whatsapp, length, max: MAX_TEXT_CHARS });
    }
    Ok(())
}

/// The `template` object; `components` only when there are any (an empty array is not the same as none
/// to every Graph version).
fn template_object(template: &Template) -> Result<Value, BuildError> {
    if template.name.trim().is_empty() {
        return Err(BuildError::Invalid { field: "template.name", reason: "the approved template's name".into() });
    }
    if template.language.trim().is_empty() {
        return Err(BuildError::Invalid { field: "template.language", reason: "a language code such as pt_BR".into() });
    }
    let mut object = json!({ "name": template.name, "language": { "code": template.language } });
    if !template.components.is_empty() {
        object["components"] = Value::Array(template.components.clone());
    }
    Ok(object)
}

/// The message type and media object for one attachment by link. The caption is the message's text,
/// else the attachment's own caption; audio takes none, so text with audio is refused.
fn media_object(attachment: &Attachment, text: Option<&str>) -> Result<(&'static str, Value), BuildError> {
    let media_type = match attachment.kind.as_str() {
        "image" => "image",
        "video" => "video",
        "audio" => "audio",
        "file" => "document",
        other => {
            return Err(BuildError::Unsupported(format!(
                "WhatsApp cannot send a `{other}` attachment here; send an image, video, audio or file"
            )));
        }
    };
    let link = attachment.url.as_deref().filter(|url| !url.is_empty()).ok_or_else(|| BuildError::Invalid {
        field: "attachments",
        reason: "attachments are sent by link and this one has no URL".into(),
    })?;
    let caption = text.or(attachment.caption.as_deref().filter(|caption| !caption.is_empty()));
    let mut object = json!({ "link": link });
    match (media_type, caption) {
        ("audio", Some(_)) => {
            return Err(BuildError::Unsupported(
                "WhatsApp audio takes no caption; send the text and the audio as two messages".into(),
            ));
        }
        (_, Some(caption)) => {
            check_text_length(caption)?;
            object["caption"] = json!(caption);
        }
        (_, None) => {}
    }
    if let Some(name) = attachment.name.as_deref().filter(|name| media_type == "document" && !name.is_empty()) {
        object["filename"] = json!(name);
    }
    Ok((media_type, object))
}

/// Marks an inbound message (and everything before it) as read: the blue ticks (PLATFORMS.md 2.6).
/// Answered with `{"success": true}`.
pub fn build_mark_read_request(ctx: &SendContext<'_>, wamid: &str) -> ApiRequest {
    facebook::graph_post(ctx, &json!({ "messaging_product": "whatsapp", "status": "read", "message_id": wamid }))
}

/// The field and value that address a message: a user known only by their business-scoped id by
/// `recipient`, a number by `to` (Meta, "Business-scoped user IDs": `to` is required unless
/// `recipient` is given).
fn addressee(recipient: &str) -> Result<(&'static str, String), BuildError> {
    if is_business_scoped_user_id(recipient.trim()) {
        Ok(("recipient", recipient.trim().to_owned()))
    } else {
        Ok(("to", normalise_recipient(recipient)?))
    }
}

/// An engagement action on the Cloud API (PLATFORMS.md 2.6; Meta, "Typing indicators"): a read
/// receipt `{"status": "read", "message_id"}` (it covers the messages before it too), with
/// `typing_indicator` to show typing; a reaction message (an empty `emoji` removes ours). There is
/// no typing without a message to mark read, and no "typing off": WhatsApp ends the indicator on
/// the reply or after 25 seconds.
pub fn build_action_requests(ctx: &SendContext<'_>, action: &OutboundAction) -> Result<Vec<ApiRequest>, BuildError> {
    let read_receipt = |message_id: &Option<String>, typing: bool| -> Result<Value, BuildError> {
        let Some(message_id) = message_id.as_deref().map(str::trim).filter(|id| !id.is_empty()) else {
            return Err(BuildError::Unsupported(
                "WhatsApp marks a message read, and shows typing, only after the customer wrote one".into(),
            ));
        };
        let mut body = json!({ "messaging_product": "whatsapp", "status": "read", "message_id": message_id });
        if typing {
            body["typing_indicator"] = json!({ "type": "text" });
        }
        Ok(body)
    };
    let body = match &action.kind {
        ActionKind::MarkRead { message_id, typing } => read_receipt(message_id, *typing)?,
        ActionKind::Typing { on: true, message_id } => read_receipt(message_id, true)?,
        ActionKind::Typing { on: false, .. } => {
            return Err(BuildError::Unsupported(
                "WhatsApp has no typing off: the indicator ends with the reply or after 25 seconds".into(),
            ));
        }
        ActionKind::React { message_id, emoji } => {
            if message_id.trim().is_empty() {
                return Err(BuildError::Invalid { field: "message_id", reason: "empty".into() });
            }
            let (recipient_field, to) = addressee(&action.recipient)?;
            let mut body = json!({ "messaging_product": "whatsapp", "recipient_type": "individual",
                    "type": "reaction", "reaction": { "message_id": message_id, "emoji": emoji } });
            body[recipient_field] = Value::String(to);
            body
        }
    };
    Ok(vec![facebook::graph_post(ctx, &body)])
}

/// Tells a Cloud API answer apart: sent with `messages[0].id`, retry later, failed for good, or a dead
/// token (PLATFORMS.md 2.6).
///
/// The decision rests on `error.code`, not on the HTTP status; the explanation kept is
/// `error_data.details`, which Meta asks integrations to use instead of the `message` title. A body
/// that is not a Graph error falls back on the status (429 and 5xx retry, 401 is the token). A 2xx
/// without an id is `Failed` with code `no_message_id`, not retried: Meta may have accepted it, and the
/// status webhooks (which carry our `biz_opaque_callback_data`) will say.
///
/// Some failures (131026, 131047, 131049...) arrive later as a `failed` status webhook instead; the
/// parser turns those into receipts.
pub fn classify_send_response(response: &ApiResponse) -> SendOutcome {
    let body: Option<Value> = serde_json::from_slice(&response.body).ok();
    if let Some(error) = body.as_ref().and_then(GraphError::from_body) {
        return classify_whatsapp_error(response, error);
    }
    if facebook::is_success(response.status) {
        let first = body.as_ref().and_then(|b| b.get("messages")).and_then(|m| m.get(0));
        return match first.and_then(|m| id_field(m, "id")) {
            Some(platform_message_id) => SendOutcome::Sent { platform_message_id },
            None => SendOutcome::Failed(facebook::no_message_id(response.status)),
        };
    }
    facebook::classify_without_graph_error(response)
}

/// WhatsApp's error table (PLATFORMS.md 2.6). Codes not listed as temporary or as the token fail
/// permanently, including 131048 (spam rate limit): retrying it only lowers the number's quality.
fn classify_whatsapp_error(response: &ApiResponse, error: GraphError) -> SendOutcome {
    let message = error.details.clone().or_else(|| error.message.clone()).unwrap_or_default();
    let retry_after = response.retry_after();
    match error.code {
        // 4 app call limit, 80007 WABA limit, 130429 throughput, 131000 something went wrong,
        // 1 unknown, 2 service temporarily unavailable.
        4 | 80007 | 130429 | 131000 | 1 | 2 => error.retry(retry_after, message, false),
        131057 => error.retry(retry_after.or(Some(MAINTENANCE_RETRY_AFTER)), message, false),
        // Too many messages to this one number: the others may go on. Meta suggests 4^x s back-off.
        131056 => error.retry(retry_after, message, true),
        0 | 190 => SendOutcome::TokenRejected(error.message_error(message, false)),
        _ => SendOutcome::Failed(error.message_error(message, true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{ApiBody, ApiMethod};

    const PHONE_NUMBER_ID: &str = "106540352242922";
    const ANA: &str = "5511987654321";
    const RECEIVED_AT: Timestamp = Timestamp::from_millis(1_718_999_999_000);

    fn ctx() -> ParseContext<'static> {
        ParseContext { account_id: "configured-number", received_at: RECEIVED_AT }
    }

    fn parse(fixture: &str) -> Vec<InboundEvent> {
        parse_webhook(fixture.as_bytes(), &ctx()).expect("fixture is a valid WhatsApp body")
    }

    /// The wamid and content of an inbound message event; any other kind fails the test.
    fn message(event: &InboundEvent) -> (&str, &MessageContent) {
        match &event.kind {
            EventKind::Message { direction: Direction::Inbound, platform_message_id, content } => {
                (platform_message_id.as_str(), content)
            }
            other => panic!("expected an inbound message, got {other:?}"),
        }
    }

    fn receipt(event: &InboundEvent) -> &Receipt {
        match &event.kind {
            EventKind::Receipt(receipt) => receipt,
            other => panic!("expected a receipt, got {other:?}"),
        }
    }

    fn unknown_type(event: &InboundEvent) -> &str {
        match &event.kind {
            EventKind::Unknown { event_type } => event_type,
            other => panic!("expected an unknown event, got {other:?}"),
        }
    }

    /// `body.entry[entry].changes[change].value[list][item]`, what `raw` must be.
    fn element(body: &str, change: usize, list: &str, item: usize) -> Value {
        let root: Value = serde_json::from_str(body).expect("fixture is JSON");
        root["entry"][0]["changes"][change]["value"][list][item].clone()
    }

    #[test]
    fn a_flow_reply_keeps_its_body_as_text_and_its_response_json_as_payload() {
        let Some(body) = crate::platform::real_world_body("whatsapp", "pywa__flow_nfm_reply.json") else { return };
        let events = parse(&body);
        let (wamid, content) = message(&events[0]);
        assert_eq!(wamid, "wamid.wegrchytvwcggt==");
        assert_eq!((content.kind, content.text.as_deref()), (ContentKind::InteractiveReply, Some("Sent")));
        let response: Value = serde_json::from_str(content.payload.as_deref().expect("the response JSON")).unwrap();
        assert_eq!(response["delivery_rating"], "4");
        assert_eq!(content.reply_to.as_deref(), Some("wamid.gvwegfretge=="));
    }

    #[test]
    fn an_echo_from_the_business_app_is_an_outbound_message_to_its_recipient() {
        let Some(body) = crate::platform::real_world_body("whatsapp", "pywa__smb_echo_text.json") else { return };
        let events = parse(&body);
        assert_eq!(events.len(), 1);
        let event = &events[0];
        let EventKind::Message { direction, platform_message_id, content } = &event.kind else {
            panic!("{:?}", event.kind)
        };
        assert_eq!((*direction, platform_message_id.as_str()), (Direction::Outbound, "<WHATSAPP_MESSAGE_ID>"));
        assert_eq!(content.text.as_deref(), Some("Test message"));
        assert_eq!(event.contact_id.as_deref(), Some("<WHATSAPP_USER_PHONE_NUMBER>"));
        assert_eq!(event.account_id, "1122334455667");
        assert_eq!(event.sender_id.as_deref(), Some("1122334455667"));
        assert_eq!(event.raw, element(&body, 0, "message_echoes", 0));
        // Without the number, the recipient's business-scoped id is the conversation.
        let without_number = body.replace(r#""to": "<WHATSAPP_USER_PHONE_NUMBER>","#, "");
        assert_eq!(parse(&without_number)[0].contact_id.as_deref(), Some("<BSUID>"));
        // An echo change without echoes is kept, not dropped.
        let empty = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"smb_message_echoes","value":{"metadata":{"phone_number_id":"1"},"message_echoes":[]}}]}]}"#;
        assert_eq!(unknown_type(&parse(empty)[0]), "smb_message_echoes.empty");
    }

    // --- signature and handshake (Meta's, shared with Messenger) -------------------------------

    const VECTOR_SECRET: &str = "app-secret-0123";
    const VECTOR_BODY: &[u8] = br#"{"object":"whatsapp_business_account","entry":[]}"#;
    const VECTOR_HEADER: &str = "sha256=84199fbd4a1e11c21a139a9c021114d2008bfe4fdd754bc12ad059ac5c52d31f";

    fn verify(secret: &str, header: Option<&str>, body: &[u8]) -> Result<SignatureForm, VerifyError> {
        verify_signature(&Secret::new(secret), &SignedRequest { signature_header: header, query: None, body })
    }

    #[test]
    fn platforms_md_test_vector_verifies() {
        assert_eq!(verify(VECTOR_SECRET, Some(VECTOR_HEADER), VECTOR_BODY), Ok(SignatureForm::MetaSha256));
        assert_eq!(sign_webhook(&Secret::new(VECTOR_SECRET), VECTOR_BODY), VECTOR_HEADER);
    }

    #[test]
    fn a_signed_fixture_round_trips_through_verification() {
        let body = include_bytes!("../../tests/fixtures/whatsapp/batch_of_entries.json");
        let secret = Secret::new("whatsapp-app-secret-4c3b2a");
        let header = sign_webhook(&secret, body);
        assert_eq!(verify("whatsapp-app-secret-4c3b2a", Some(&header), body), Ok(SignatureForm::MetaSha256));
    }

    #[test]
    fn wrong_missing_foreign_and_stale_signatures_are_refused() {
        let wrong = "sha256=84199fbd4a1e11c21a139a9c021114d2008bfe4fdd754bc12ad059ac5c52d31e";
        assert_eq!(verify(VECTOR_SECRET, Some(wrong), VECTOR_BODY), Err(VerifyError::BadSignature));
        assert_eq!(
            verify(VECTOR_SECRET, None, VECTOR_BODY),
            Err(VerifyError::MissingSignature { header: "x-hub-signature-256" })
        );
        // Another platform's secret (a LinkedIn client secret) configured by mistake.
        assert_eq!(
            verify("WPL_AP1.k3c4Hq9ZzXv0aB1c", Some(VECTOR_HEADER), VECTOR_BODY),
            Err(VerifyError::BadSignature)
        );
        // Messenger's vector signs a different body: the same secret, one changed byte, no match.
        let messenger_header = "sha256=8dd0039448c33fbf53594013e01f923b96df82e87c37259962555eb49ffd4c62";
        assert_eq!(verify(VECTOR_SECRET, Some(messenger_header), VECTOR_BODY), Err(VerifyError::BadSignature));
        let mut changed = VECTOR_BODY.to_vec();
        changed[12] ^= 0x20;
        assert_eq!(verify(VECTOR_SECRET, Some(VECTOR_HEADER), &changed), Err(VerifyError::BadSignature));
    }

    #[test]
    fn upper_case_hex_and_prefix_and_whitespace_variants_are_accepted() {
        let hex = &VECTOR_HEADER["sha256=".len()..];
        for header in
            [format!("sha256={}", hex.to_ascii_uppercase()), format!("SHA256={hex}"), format!(" \tsha256={hex} ")]
        {
            assert_eq!(verify(VECTOR_SECRET, Some(&header), VECTOR_BODY), Ok(SignatureForm::MetaSha256), "{header:?}");
        }
    }

    #[test]
    fn bare_hex_or_a_sha1_header_is_malformed_and_an_empty_secret_is_no_secret() {
        let hex = &VECTOR_HEADER["sha256=".len()..];
        assert_eq!(verify(VECTOR_SECRET, Some(hex), VECTOR_BODY), Err(VerifyError::MalformedSignature));
        assert_eq!(
            verify(VECTOR_SECRET, Some("sha1=0f3b8c2a1d9e7f6a5b4c3d2e1f0a9b8c7d6e5f4a"), VECTOR_BODY),
            Err(VerifyError::MalformedSignature)
        );
        assert_eq!(verify("", Some(VECTOR_HEADER), VECTOR_BODY), Err(VerifyError::NoSecret));
    }

    #[test]
    fn the_handshake_is_metas() {
        let token = Secret::new("wa-verify-token");
        assert_eq!(
            verify_handshake(&token, "hub.mode=subscribe&hub.challenge=0042&hub.verify_token=wa-verify-token"),
            Ok(HandshakeReply::Text("0042".into()))
        );
        assert_eq!(
            verify_handshake(&token, "hub.mode=subscribe&hub.challenge=0042&hub.verify_token=other"),
            Err(VerifyError::HandshakeRefused)
        );
        assert_eq!(
            verify_handshake(&token, "hub.mode=subscribe&hub.verify_token=wa-verify-token"),
            Err(VerifyError::MissingParameter("hub.challenge"))
        );
        assert_eq!(SIGNATURE_HEADER, "x-hub-signature-256");
    }

    // --- parsing: bodies ---------------------------------------------------------------------

    #[test]
    fn bodies_that_are_not_whatsapp_webhooks_are_errors() {
        let truncated = include_str!("../../tests/fixtures/whatsapp/truncated.json");
        assert!(matches!(parse_webhook(truncated.as_bytes(), &ctx()), Err(ParseError::NotJson(_))));
        assert_eq!(parse_webhook(b"\"whatsapp\"", &ctx()), Err(ParseError::NotAnObject));
        let messenger = include_str!("../../tests/fixtures/whatsapp/wrong_object.json");
        assert_eq!(
            parse_webhook(messenger.as_bytes(), &ctx()),
            Err(ParseError::UnexpectedValue {
                field: "object",
                expected: "whatsapp_business_account",
                found: "page".into()
            })
        );
        let no_entry = include_str!("../../tests/fixtures/whatsapp/missing_entry.json");
        assert_eq!(parse_webhook(no_entry.as_bytes(), &ctx()), Err(ParseError::MissingField("entry")));
    }

    #[test]
    fn no_prefix_of_any_fixture_makes_the_parser_panic() {
        for body in [
            include_str!("../../tests/fixtures/whatsapp/batch_of_entries.json"),
            include_str!("../../tests/fixtures/whatsapp/statuses.json"),
            include_str!("../../tests/fixtures/whatsapp/emoji_and_right_to_left.json"),
            include_str!("../../tests/fixtures/whatsapp/value_errors_and_malformed.json"),
        ] {
            for end in 0..body.len() {
                let _ = parse_webhook(&body.as_bytes()[..end], &ctx());
            }
        }
    }

    // --- parsing: messages -------------------------------------------------------------------

    #[test]
    fn a_text_message_is_an_inbound_text_from_a_named_contact() {
        let body = include_str!("../../tests/fixtures/whatsapp/text.json");
        let events = parse(body);
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.platform, Platform::Whatsapp);
        assert_eq!(event.account_id, PHONE_NUMBER_ID);
        assert_eq!(event.contact_id.as_deref(), Some(ANA));
        assert_eq!(event.sender_id.as_deref(), Some(ANA));
        assert_eq!(event.contact_name.as_deref(), Some("Ana Souza"));
        assert_eq!(event.occurred_at, Timestamp::from_secs(1_718_000_000));
        assert_eq!(event.dedup_key, "wamid:wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFjNFQjBDMkE0RjI5RTY3QTAwMQA=");
        assert_eq!(event.raw, element(body, 0, "messages", 0));
        let (wamid, content) = message(event);
        assert_eq!(wamid, "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFjNFQjBDMkE0RjI5RTY3QTAwMQA=");
        assert_eq!(content, &MessageContent::text(ContentKind::Text, "Hi! Did my order arrive?"));
    }

    #[test]
    fn media_messages_carry_a_media_id_and_their_caption() {
        let events = parse(include_str!("../../tests/fixtures/whatsapp/media.json"));
        let attachments: Vec<(&str, &Attachment, Option<&str>)> = events
            .iter()
            .map(|e| {
                let (wamid, content) = message(e);
                assert_eq!(content.kind, ContentKind::Media);
                assert_eq!(content.attachments.len(), 1);
                (wamid, &content.attachments[0], content.text.as_deref())
            })
            .collect();
        let summary: Vec<(&str, &str, Option<&str>, Option<&str>)> = attachments
            .iter()
            .map(|(wamid, a, _)| (*wamid, a.kind.as_str(), a.media_id.as_deref(), a.mime_type.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                ("wamid.IMG001", "image", Some("1479537139650973"), Some("image/jpeg")),
                ("wamid.VID001", "video", Some("1580002233445566"), Some("video/mp4")),
                ("wamid.AUD001", "voice", Some("1681112233445566"), Some("audio/ogg; codecs=opus")),
                ("wamid.AUD002", "audio", Some("1682223344556677"), Some("audio/mpeg")),
                ("wamid.DOC001", "file", Some("1793334455667788"), Some("application/pdf")),
                ("wamid.STK001", "sticker", Some("1804445566778899"), Some("image/webp")),
            ]
        );
        assert!(attachments.iter().all(|(_, a, _)| a.url.is_none()), "WhatsApp sends ids, not URLs");
        let (_, image, image_text) = attachments[0];
        assert_eq!(image.caption.as_deref(), Some("The box arrived like this"));
        assert_eq!(image_text, Some("The box arrived like this"));
        let (_, document, _) = attachments[4];
        assert_eq!(document.name.as_deref(), Some("invoice.pdf"));
        assert_eq!(document.caption.as_deref(), Some("Invoice 7781"));
        assert_eq!(attachments[1].2, None, "a video without caption has no text");
    }

    #[test]
    fn locations_and_shared_contacts_are_kept() {
        let events = parse(include_str!("../../tests/fixtures/whatsapp/location_and_contacts.json"));
        let (_, place) = message(&events[0]);
        assert_eq!(place.kind, ContentKind::Location);
        assert_eq!(
            place.location,
            Some(Location {
                latitude: 38.7223,
                longitude: -9.1393,
                name: Some("Acme Store Baixa".into()),
                address: Some("Rua Augusta 100, Lisboa".into()),
                url: Some("https://acme.example/stores/baixa".into()),
            })
        );
        let (_, pin) = message(&events[1]);
        assert_eq!(
            pin.location,
            Some(Location { latitude: -23.5505, longitude: -46.6333, name: None, address: None, url: None })
        );
        let (_, cards) = message(&events[2]);
        assert_eq!(cards.kind, ContentKind::Contacts);
        assert_eq!(
            cards.contacts,
            vec![
                SharedContact {
                    name: Some("Rui Costa".into()),
                    phones: vec!["+351 912 345 678".into(), "+351 213 000 000".into()]
                },
                SharedContact { name: Some("Loja Acme".into()), phones: vec![] },
            ]
        );
    }

    #[test]
    fn interactive_and_button_replies_keep_title_and_payload_and_point_at_our_message() {
        let events = parse(include_str!("../../tests/fixtures/whatsapp/replies_and_buttons.json"));
        let summary: Vec<_> = events
            .iter()
            .map(|e| {
                let (_, c) = message(e);
                (c.kind, c.text.as_deref(), c.payload.as_deref(), c.reply_to.as_deref())
            })
            .collect();
        assert_eq!(
            summary,
            [
                (ContentKind::InteractiveReply, Some("Confirm"), Some("confirm_7781"), Some("wamid.OUT0001")),
                (ContentKind::InteractiveReply, Some("3 pm"), Some("slot_3"), Some("wamid.OUT0002")),
                (ContentKind::ButtonReply, Some("Stop promotions"), Some("STOP_PROMOS"), Some("wamid.OUT0003")),
                (ContentKind::Text, Some("Replying to this one"), None, Some("wamid.OUT0004")),
            ]
        );
    }

    #[test]
    fn reactions_orders_and_unsupported_types_are_still_messages() {
        let body = include_str!("../../tests/fixtures/whatsapp/reactions_orders_unsupported.json");
        let events = parse(body);
        assert_eq!(events.len(), 6);
        let (wamid, reaction) = message(&events[0]);
        assert_eq!(wamid, "wamid.RCT001");
        assert_eq!(events[0].dedup_key, "wamid:wamid.RCT001");
        assert_eq!(reaction.kind, ContentKind::Reaction);
        assert_eq!(reaction.text.as_deref(), Some("😮"));
        assert_eq!(reaction.reply_to.as_deref(), Some("wamid.OUT0005"));
        let (_, removed) = message(&events[1]);
        assert_eq!((removed.kind, removed.text.as_deref()), (ContentKind::Reaction, None));
        assert_eq!(removed.reply_to.as_deref(), Some("wamid.OUT0005"));

        let (_, order) = message(&events[2]);
        assert_eq!((order.kind, order.text.as_deref()), (ContentKind::Order, Some("Gift wrap please")));
        let (_, silent_order) = message(&events[3]);
        assert_eq!((silent_order.kind, silent_order.text.as_deref()), (ContentKind::Order, None));

        for (index, wamid) in [(4, "wamid.UNS001"), (5, "wamid.NEW001")] {
            let (id, content) = message(&events[index]);
            assert_eq!(id, wamid);
            assert_eq!(content, &MessageContent::empty(ContentKind::Unsupported));
            assert_eq!(events[index].raw, element(body, 0, "messages", index), "raw kept for later");
        }
    }

    #[test]
    fn statuses_are_receipts_keyed_by_wamid_and_status() {
        let body = include_str!("../../tests/fixtures/whatsapp/statuses.json");
        let events = parse(body);
        assert_eq!(events.len(), 6);
        let wamid = "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEkQ5RjBBRTQ0QjE1MjQ0NjU5OAA=";
        for (index, kind) in [ReceiptKind::Sent, ReceiptKind::Delivered, ReceiptKind::Read].into_iter().enumerate() {
            let event = &events[index];
            assert_eq!(
                receipt(event),
                &Receipt { kind, message_ids: vec![wamid.into()], watermark: None, error: None }
            );
            assert_eq!(event.contact_id.as_deref(), Some(ANA));
            assert_eq!(event.account_id, PHONE_NUMBER_ID);
            assert_eq!(event.raw, element(body, 0, "statuses", index));
        }
        assert_eq!(events[1].dedup_key, format!("status:{wamid}:delivered"));
        assert_eq!(events[1].occurred_at, Timestamp::from_secs(1_718_000_105));

        let failed = receipt(&events[3]);
        assert_eq!(failed.kind, ReceiptKind::Failed);
        assert_eq!(
            failed.error,
            Some(MessageError {
                code: "131047".into(),
                message: "Message failed to send because more than 24 hours have passed since the customer last \
                          replied to this number."
                    .into(),
                permanent: true,
            })
        );
        assert_eq!(events[3].contact_id.as_deref(), Some("447700900123"));
        assert_eq!(events[3].dedup_key, "status:wamid.FAIL0001:failed");
        let failed_without_details = receipt(&events[4]).error.as_ref().expect("an error");
        assert_eq!(
            (failed_without_details.code.as_str(), failed_without_details.message.as_str()),
            ("131026", "Message undeliverable")
        );

        assert!(events.iter().all(|e| e.sender_id.is_none()), "a status names no sender");
        assert_eq!(unknown_type(&events[5]), "status.deleted");
        assert_eq!(events[5].contact_id.as_deref(), Some(ANA));
        assert_eq!(events[5].raw, element(body, 0, "statuses", 5));
        assert!(events[5].dedup_key.starts_with("unknown:"));
    }

    const BSUID: &str = "US.13491208655302741918";

    /// A one-message body from a user whose ids are given as `sender` (message fields) and
    /// `contact` (the `contacts[]` element).
    fn from_user(sender: &str, contact: &str) -> String {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{
            "messaging_product":"whatsapp","metadata":{{"phone_number_id":"{PHONE_NUMBER_ID}"}},
            "contacts":[{contact}],
            "messages":[{{{sender},"id":"wamid.BSUID1","timestamp":"1718000000","type":"text","text":{{"body":"hi"}}}}]}}}}]}}]}}"#
        )
    }

    #[test]
    fn a_user_who_withholds_the_number_is_known_by_the_business_scoped_id() {
        let body = from_user(
            &format!(r#""from_user_id":"{BSUID}""#),
            &format!(r#"{{"profile":{{"username":"@ana.souza"}},"user_id":"{BSUID}"}}"#),
        );
        let events = parse(&body);
        let (wamid, content) = message(&events[0]);
        assert_eq!((wamid, content.text.as_deref()), ("wamid.BSUID1", Some("hi")));
        assert_eq!(events[0].contact_id.as_deref(), Some(BSUID));
        assert_eq!(events[0].sender_id.as_deref(), Some(BSUID));
        assert_eq!(events[0].contact_alias, None);
        assert_eq!(events[0].contact_name.as_deref(), Some("@ana.souza"), "the username, without a name");
    }

    #[test]
    fn a_number_and_a_business_scoped_id_are_the_contact_and_its_alias() {
        // In the message itself, or paired with the number in contacts[] (pywa's shape).
        for (sender, contact) in [
            (
                format!(r#""from":"{ANA}","from_user_id":"{BSUID}""#),
                format!(r#"{{"profile":{{"name":"Ana"}},"wa_id":"{ANA}"}}"#),
            ),
            (
                format!(r#""from":"{ANA}""#),
                format!(r#"{{"profile":{{"name":"Ana"}},"wa_id":"{ANA}","user_id":"{BSUID}"}}"#),
            ),
        ] {
            let events = parse(&from_user(&sender, &contact));
            assert_eq!(events[0].contact_id.as_deref(), Some(ANA), "{sender}");
            assert_eq!(events[0].contact_alias.as_deref(), Some(BSUID), "{sender}");
            assert_eq!(events[0].contact_name.as_deref(), Some("Ana"));
        }
        // Neither: not a message of anyone's.
        let events = parse(&from_user(r#""context":{}"#, "{}"));
        assert_eq!(unknown_type(&events[0]), "message.malformed");
    }

    #[test]
    fn played_is_read_and_a_status_names_a_user_by_the_business_scoped_id_without_the_number() {
        let Some(body) = crate::platform::real_world_body("whatsapp", "pywa__status_played.json") else { return };
        let events = parse(&body);
        assert_eq!(receipt(&events[0]).kind, ReceiptKind::Read);
        let status = |fields: &str| {
            format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{
                "metadata":{{"phone_number_id":"{PHONE_NUMBER_ID}"}},"statuses":[{{"id":"wamid.OUT1","status":"delivered","timestamp":"1718000000",{fields}}}]}}}}]}}]}}"#
            )
        };
        let events = parse(&status(&format!(r#""recipient_user_id":"{BSUID}""#)));
        assert_eq!(receipt(&events[0]).kind, ReceiptKind::Delivered);
        assert_eq!(events[0].contact_id.as_deref(), Some(BSUID));
        let events = parse(&status(&format!(r#""recipient_id":"{ANA}","recipient_user_id":"{BSUID}""#)));
        assert_eq!(events[0].contact_id.as_deref(), Some(ANA));
    }

    #[test]
    fn an_edit_and_a_revoke_name_the_original_message() {
        let Some(edited) = crate::platform::real_world_body("whatsapp", "pywa__edited_image.json") else { return };
        let events = parse(&edited);
        let EventKind::Edit { platform_message_id, content } = &events[0].kind else { panic!("{:?}", events[0].kind) };
        assert_eq!(platform_message_id, "wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQzQUNCNjk5RDUwNUZGMUZEM0VBRAA=");
        assert_eq!((content.kind, content.text.as_deref()), (ContentKind::Media, Some("Updated image caption")));
        assert_eq!(content.attachments[0].media_id.as_deref(), Some("1234567890"));
        assert_eq!(events[0].dedup_key, "wamid:wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=");
        let Some(revoked) = crate::platform::real_world_body("whatsapp", "pywa__revoke.json") else { return };
        let events = parse(&revoked);
        assert_eq!(events[0].kind, EventKind::Revoke { platform_message_id: "<ORIGINAL_WHATSAPP_MESSAGE_ID>".into() });
        // Without the original's id an edit is not a change of anything: kept as the message it is.
        let orphan = edited
            .replace(r#""original_message_id": "wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQzQUNCNjk5RDUwNUZGMUZEM0VBRAA=","#, "");
        assert!(matches!(parse(&orphan)[0].kind, EventKind::Message { .. }));
    }

    #[test]
    fn business_scoped_ids_are_told_from_numbers() {
        for id in [BSUID, "US.ENT.11815799212886844830", "BR.a1B2"] {
            assert!(is_business_scoped_user_id(id), "{id}");
        }
        for id in
            ["5511987654321", "+55 11 98765-4321", "us.123", "USA.123", "US.", "US.12.34", "US.ENT.", "US.12-3", ""]
        {
            assert!(!is_business_scoped_user_id(id), "{id}");
        }
        assert!(!is_business_scoped_user_id(&format!("US.{}", "1".repeat(129))));
    }

    #[test]
    fn a_reply_to_a_business_scoped_id_goes_by_recipient_not_to() {
        let mut message = outbound(Some("hello"), vec![]);
        message.recipient = BSUID.into();
        let body = json_body(&build(&message).expect("builds"));
        assert_eq!(body["recipient"], BSUID);
        assert!(body.get("to").is_none(), "{body}");
        assert_eq!(body["text"]["body"], "hello");
    }

    #[test]
    fn several_senders_are_named_by_wa_id_not_by_position() {
        let events = parse(include_str!("../../tests/fixtures/whatsapp/several_senders.json"));
        let people: Vec<(Option<&str>, Option<&str>, Option<&str>)> = events
            .iter()
            .map(|e| (e.contact_id.as_deref(), e.contact_name.as_deref(), message(e).1.text.as_deref()))
            .collect();
        assert_eq!(
            people,
            [
                (Some(ANA), Some("Ana Souza"), Some("from Ana")),
                (Some("919876543210"), Some("Priya Raman"), Some("from Priya")),
                (Some("351912345678"), Some("Rui Costa"), Some("from Rui")),
                (Some("14155550100"), None, Some("no contacts entry for me")),
            ]
        );
    }

    #[test]
    fn every_message_and_status_of_every_change_comes_out_in_body_order() {
        let events = parse(include_str!("../../tests/fixtures/whatsapp/batch_of_entries.json"));
        let summary: Vec<(&str, &str)> = events.iter().map(|e| (e.account_id.as_str(), e.dedup_key.as_str())).collect();
        assert_eq!(
            summary[..6],
            [
                (PHONE_NUMBER_ID, "wamid:wamid.BT001"),
                (PHONE_NUMBER_ID, "wamid:wamid.BT002"),
                (PHONE_NUMBER_ID, "status:wamid.OUT0100:delivered"),
                (PHONE_NUMBER_ID, "status:wamid.OUT0100:read"),
                ("207651463353033", "wamid:wamid.BT003"),
                ("207651463353033", "status:wamid.OUT0200:sent"),
            ]
        );
        assert_eq!(events.len(), 7);
        assert_eq!(unknown_type(&events[6]), "message_template_status_update");
        assert_eq!(events[6].account_id, "203301230451409", "no metadata: the WABA id");
        assert_eq!(events[6].raw["value"]["message_template_id"], 123_456_789_012_345_u64);
        assert_eq!(events[6].raw["field"], "message_template_status_update", "raw is the whole change");
    }

    #[test]
    fn emoji_and_right_to_left_text_and_names_are_kept_exactly() {
        let events = parse(include_str!("../../tests/fixtures/whatsapp/emoji_and_right_to_left.json"));
        let texts: Vec<(&str, &str)> = events
            .iter()
            .map(|e| (e.contact_name.as_deref().expect("a name"), message(e).1.text.as_deref().expect("text")))
            .collect();
        assert_eq!(
            texts,
            [
                ("فاطمة الزهراء 🌸", "مرحبا، هل وصل طلبي؟ 📦"),
                ("נועה כהן", "שלום! 👋🏽 תודה 👨\u{200d}👩\u{200d}👧"),
                ("נועה כהן", "הקופסה 😢"),
            ]
        );
        assert_eq!(message(&events[2]).1.attachments[0].caption.as_deref(), Some("הקופסה 😢"));
    }

    /// `fixture` with the `timestamp` of every message and status set to `time`, as bytes.
    fn with_times(fixture: &str, time: &Value) -> Vec<u8> {
        let mut body: Value = serde_json::from_str(fixture).unwrap();
        let value = &mut body["entry"][0]["changes"][0]["value"];
        for key in ["messages", "statuses"] {
            for element in value.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten() {
                element["timestamp"] = time.clone();
            }
        }
        body.to_string().into_bytes()
    }

    #[test]
    fn implausible_times_date_messages_and_statuses_by_their_arrival_and_stay_raw() {
        let fixtures = [
            include_str!("../../tests/fixtures/whatsapp/text.json"),
            include_str!("../../tests/fixtures/whatsapp/statuses.json"),
            include_str!("../../tests/fixtures/whatsapp/reactions_orders_unsupported.json"),
            include_str!("../../tests/fixtures/whatsapp/replies_and_buttons.json"),
        ];
        let later =
            ParseContext { account_id: "configured-number", received_at: RECEIVED_AT.saturating_add_millis(9_000) };
        for time in crate::platform::json::implausible_times() {
            for fixture in fixtures {
                let original = parse(fixture);
                let body = with_times(fixture, &time);
                let events = parse_webhook(&body, &ctx()).unwrap();
                let redelivered = parse_webhook(&body, &later).unwrap();
                assert_eq!(events.len(), original.len());
                for ((event, original), again) in events.iter().zip(&original).zip(&redelivered) {
                    assert_eq!(event.occurred_at, RECEIVED_AT, "{time}");
                    assert_eq!(event.raw["timestamp"], time, "the platform's value stays in raw");
                    assert_eq!(event.kind, original.kind, "{time}");
                    assert_eq!(event.dedup_key, again.dedup_key, "a redelivery keeps its key: {time}");
                }
            }
        }
    }

    #[test]
    fn the_microsecond_timestamp_that_poisoned_the_store_is_not_believed() {
        let body = with_times(include_str!("../../tests/fixtures/whatsapp/text.json"), &json!("1000000000000000"));
        let event = &parse_webhook(&body, &ctx()).unwrap()[0];
        assert_eq!(event.occurred_at, RECEIVED_AT);
        assert_eq!(message(event).0, "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFjNFQjBDMkE0RjI5RTY3QTAwMQA=");
        // Milliseconds of a plausible instant are still read (the 10^11 rule).
        let body = with_times(include_str!("../../tests/fixtures/whatsapp/text.json"), &json!("1718000000123"));
        assert_eq!(parse_webhook(&body, &ctx()).unwrap()[0].occurred_at, Timestamp::from_millis(1_718_000_000_123));
    }

    #[test]
    fn a_location_with_a_nan_or_infinite_coordinate_is_unsupported_not_a_record_that_cannot_be_read() {
        // Found by the fuzz harness: `"NaN"` parsed as f64, was stored as `null`, and the
        // message record no longer decoded.
        for latitude in [json!("NaN"), json!("inf"), json!("-infinity"), json!("1e999"), json!(90.5), json!(-1e300)] {
            let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
                "value": {"metadata": {"phone_number_id": "1"}, "messages": [{"from": "972987654321", "id": "wamid.L",
                "timestamp": "1718000000", "type": "location", "location": {"latitude": latitude, "longitude": -122.2164385}}]}}]}]});
            let event = parse_webhook(body.to_string().as_bytes(), &ctx()).unwrap().remove(0);
            let (_, content) = message(&event);
            assert_eq!((content.kind, &content.location), (ContentKind::Unsupported, &None), "{latitude}");
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(serde_json::from_str::<InboundEvent>(&json).unwrap(), event);
        }
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"1"},"messages":[{"from":"9","id":"wamid.M","timestamp":"1718000000","type":"location","location":{"latitude":" -90 ","longitude":"180"}}]}}]}]}"#;
        let location = message(&parse_webhook(body, &ctx()).unwrap()[0]).1.location.clone().unwrap();
        assert_eq!((location.latitude, location.longitude), (-90.0, 180.0));
    }

    #[test]
    fn numeric_ids_and_timestamps_read_the_same_as_strings() {
        let events = parse(include_str!("../../tests/fixtures/whatsapp/numeric_fields.json"));
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].account_id, PHONE_NUMBER_ID);
        assert_eq!(events[0].contact_id.as_deref(), Some(ANA));
        assert_eq!(events[0].contact_name.as_deref(), Some("Ana Souza"));
        assert_eq!(events[0].occurred_at, Timestamp::from_secs(1_718_000_500));
        assert_eq!(events[1].contact_id.as_deref(), Some(ANA));
        assert_eq!(events[1].occurred_at, Timestamp::from_secs(1_718_000_501));
    }

    #[test]
    fn malformed_elements_value_errors_and_other_fields_are_kept_not_errors() {
        let body = include_str!("../../tests/fixtures/whatsapp/value_errors_and_malformed.json");
        let events = parse(body);
        assert_eq!(events.len(), 6);
        // No phone_number_id in metadata: the display number stands in.
        assert!(events[..3].iter().all(|e| e.account_id == "15550001111"));

        assert_eq!(unknown_type(&events[0]), "message.malformed", "no sender");
        assert_eq!(events[0].raw, element(body, 0, "messages", 0));
        assert_eq!(events[0].contact_id, None);
        assert_eq!(events[0].occurred_at, Timestamp::from_secs(1_718_000_600));
        assert_eq!(unknown_type(&events[1]), "message.malformed", "no wamid");
        assert_eq!(events[1].contact_id.as_deref(), Some(ANA));

        assert_eq!(
            events[2].kind,
            EventKind::Activity { name: "error".into(), detail: Some("131000: Something went wrong".into()) }
        );
        assert_eq!(events[2].dedup_key, format!("error:{}", content_key(&element(body, 0, "errors", 0))));
        assert_eq!(events[2].occurred_at, RECEIVED_AT);

        assert_eq!(unknown_type(&events[3]), "status.malformed", "a status without its status");
        assert_eq!(events[3].account_id, "102290129340398", "no metadata at all: the WABA id");

        assert_eq!(unknown_type(&events[4]), "account_update");
        assert_eq!(unknown_type(&events[5]), "entry");
        assert_eq!(events[5].raw["time"], 1_718_000_603);
    }

    #[test]
    fn a_redelivery_gives_the_same_dedup_keys() {
        let later =
            ParseContext { account_id: "configured-number", received_at: Timestamp::from_millis(1_719_000_000_000) };
        let mut keys = Vec::new();
        for body in [
            include_str!("../../tests/fixtures/whatsapp/batch_of_entries.json"),
            include_str!("../../tests/fixtures/whatsapp/statuses.json"),
            include_str!("../../tests/fixtures/whatsapp/value_errors_and_malformed.json"),
            include_str!("../../tests/fixtures/whatsapp/reactions_orders_unsupported.json"),
        ] {
            let first: Vec<String> = parse(body).into_iter().map(|e| e.dedup_key).collect();
            let again: Vec<String> =
                parse_webhook(body.as_bytes(), &later).expect("parses").into_iter().map(|e| e.dedup_key).collect();
            assert_eq!(first, again);
            keys.extend(first);
        }
        let distinct: std::collections::HashSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "every event has its own key: {keys:?}");
    }

    // --- sending -------------------------------------------------------------------------------

    const GRAPH: &str = "https://graph.facebook.com/v21.0";
    const SYSTEM_TOKEN: &str = "EAAJSystemUserToken9c8b";
    const OUR_ID: &str = "msg_01J0WAOUT001";

    fn send_ctx(token: &Secret) -> SendContext<'_> {
        SendContext {
            api_base: GRAPH,
            account_id: PHONE_NUMBER_ID,
            access_token: token,
            sender_name: "",
            api_version: "",
        }
    }

    fn outbound(text: Option<&str>, attachments: Vec<Attachment>) -> OutboundMessage {
        OutboundMessage {
            human_agent: false,
            link_preview: false,
            location: None,
            contacts: vec![],
            id: OUR_ID.into(),
            recipient: ANA.into(),
            reply_to: None,
            text: text.map(str::to_owned),
            attachments,
            template: None,
        }
    }

    fn by_url(kind: &str, url: &str) -> Attachment {
        Attachment { kind: kind.into(), url: Some(url.into()), ..Default::default() }
    }

    fn order_update(components: Vec<Value>) -> Template {
        Template { name: "order_update".into(), language: "pt_BR".into(), components }
    }

    fn build(message: &OutboundMessage) -> Result<ApiRequest, BuildError> {
        build_send_request(&send_ctx(&Secret::new(SYSTEM_TOKEN)), message)
    }

    fn action_body(recipient: &str, kind: ActionKind) -> Result<Value, BuildError> {
        let action = OutboundAction { recipient: recipient.into(), kind };
        let requests = build_action_requests(&send_ctx(&Secret::new(SYSTEM_TOKEN)), &action)?;
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].url, format!("{GRAPH}/{PHONE_NUMBER_ID}/messages"));
        Ok(json_body(&requests[0]))
    }

    #[test]
    fn link_previews_locations_and_contact_cards_are_the_documented_messages() {
        let mut preview = outbound(Some("Track it at https://example.com/t/7781"), vec![]);
        preview.link_preview = true;
        let body = json_body(&build(&preview).expect("builds"));
        assert_eq!(body["text"], json!({ "preview_url": true, "body": "Track it at https://example.com/t/7781" }));

        let mut pin = outbound(None, vec![]);
        pin.location = Some(Location {
            latitude: -23.5617,
            longitude: -46.6559,
            name: Some("Loja Paulista".into()),
            address: Some("Av. Paulista, 1578".into()),
            url: None,
        });
        let body = json_body(&build(&pin).expect("builds"));
        assert_eq!(body["type"], "location");
        assert_eq!(
            body["location"],
            json!({ "latitude": -23.5617, "longitude": -46.6559, "name": "Loja Paulista", "address": "Av. Paulista, 1578" })
        );
        assert_eq!(body["biz_opaque_callback_data"], OUR_ID);

        let mut cards = outbound(None, vec![]);
        cards.contacts =
            vec![SharedContact { name: Some("Rui Costa".into()), phones: vec!["+351 912 345 678".into()] }];
        let body = json_body(&build(&cards).expect("builds"));
        assert_eq!(body["type"], "contacts");
        assert_eq!(
            body["contacts"],
            json!([{ "name": { "formatted_name": "Rui Costa", "first_name": "Rui" }, "phones": [{ "phone": "+351 912 345 678" }] }])
        );

        // What cannot go: out-of-range coordinates, a card without a name, a pin with text, a
        // preview without text.
        let mut far = pin.clone();
        far.location.as_mut().unwrap().latitude = 91.0;
        assert!(matches!(build(&far), Err(BuildError::Invalid { field: "location.latitude", .. })));
        let mut nameless = cards.clone();
        nameless.contacts[0].name = Some(" ".into());
        assert!(matches!(build(&nameless), Err(BuildError::Invalid { field: "contacts.name", .. })));
        let mut pin_with_text = pin.clone();
        pin_with_text.text = Some("here".into());
        assert!(matches!(build(&pin_with_text), Err(BuildError::Unsupported(_))));
        let mut preview_of_nothing = pin;
        preview_of_nothing.link_preview = true;
        assert!(matches!(build(&preview_of_nothing), Err(BuildError::Unsupported(_))));
    }

    #[test]
    fn engagement_actions_are_read_receipts_typing_indicators_and_reactions() {
        let wamid = Some("wamid.IN0001".to_owned());
        assert_eq!(
            action_body(ANA, ActionKind::MarkRead { message_id: wamid.clone(), typing: false }).unwrap(),
            json!({ "messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN0001" })
        );
        let with_typing = json!({ "messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN0001",
                                  "typing_indicator": { "type": "text" } });
        assert_eq!(
            action_body(ANA, ActionKind::MarkRead { message_id: wamid.clone(), typing: true }).unwrap(),
            with_typing
        );
        assert_eq!(action_body(ANA, ActionKind::Typing { on: true, message_id: wamid.clone() }).unwrap(), with_typing);
        assert!(matches!(
            action_body(ANA, ActionKind::Typing { on: false, message_id: wamid }),
            Err(BuildError::Unsupported(reason)) if reason.contains("25 seconds")
        ));
        assert!(matches!(
            action_body(ANA, ActionKind::MarkRead { message_id: None, typing: false }),
            Err(BuildError::Unsupported(_))
        ));
        let react = |emoji: &str| ActionKind::React { message_id: "wamid.IN0001".into(), emoji: emoji.into() };
        assert_eq!(
            action_body("+55 11 98765 4321", react("👍")).unwrap(),
            json!({ "messaging_product": "whatsapp", "recipient_type": "individual", "to": ANA,
                    "type": "reaction", "reaction": { "message_id": "wamid.IN0001", "emoji": "👍" } })
        );
        // Removing it is an empty emoji; a business-scoped id is addressed by `recipient`.
        assert_eq!(
            action_body("US.13491208655302741918", react("")).unwrap(),
            json!({ "messaging_product": "whatsapp", "recipient_type": "individual", "recipient": "US.13491208655302741918",
                    "type": "reaction", "reaction": { "message_id": "wamid.IN0001", "emoji": "" } })
        );
    }

    #[test]
    fn a_read_receipts_success_answer_is_done() {
        let answer = ApiResponse { status: 200, headers: vec![], body: br#"{"success":true}"#.to_vec() };
        assert_eq!(
            crate::platform::classify_action_response(Platform::Whatsapp, &answer),
            crate::platform::ActionOutcome::Done
        );
    }

    fn json_body(request: &ApiRequest) -> Value {
        match &request.body {
            ApiBody::Json(bytes) => serde_json::from_slice(bytes).expect("the body is JSON"),
            _ => panic!("expected a JSON body"),
        }
    }

    /// The body every send shares, with `extra` merged in.
    fn envelope(extra: Value) -> Value {
        let mut body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": ANA,
            "biz_opaque_callback_data": OUR_ID,
        });
        for (key, value) in extra.as_object().expect("an object") {
            body[key] = value.clone();
        }
        body
    }

    fn unsupported(result: Result<ApiRequest, BuildError>) -> String {
        match result {
            Err(BuildError::Unsupported(reason)) => reason,
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }

    #[test]
    fn a_text_goes_to_the_phone_number_edge_with_the_token_in_the_header_only() {
        let request = build(&outbound(Some("Yes, it arrives tomorrow."), vec![])).expect("builds");
        assert_eq!(request.method, ApiMethod::Post);
        assert_eq!(request.url, "https://graph.facebook.com/v21.0/106540352242922/messages");
        assert_eq!(request.headers, vec![("Authorization", format!("Bearer {SYSTEM_TOKEN}"))]);
        assert!(!request.url.contains(SYSTEM_TOKEN));
        assert_eq!(
            json_body(&request),
            envelope(json!({ "type": "text", "text": { "preview_url": false, "body": "Yes, it arrives tomorrow." } }))
        );
        assert!(!format!("{request:?}").contains(SYSTEM_TOKEN));
    }

    #[test]
    fn reply_to_becomes_the_quoted_context() {
        let mut message = outbound(Some("Replying to this one"), vec![]);
        message.reply_to = Some("wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFjNFQjBDMkE0RjI5RTY3QTAwMQA=".into());
        assert_eq!(
            json_body(&build(&message).expect("builds")),
            envelope(json!({
                "type": "text",
                "text": { "preview_url": false, "body": "Replying to this one" },
                "context": { "message_id": "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFjNFQjBDMkE0RjI5RTY3QTAwMQA=" }
            }))
        );
    }

    #[test]
    fn a_plus_and_spaces_are_stripped_from_the_number_and_other_characters_refused() {
        for written in ["+55 11 98765 4321", "5511987654321", " +5511987654321 "] {
            let mut message = outbound(Some("hi"), vec![]);
            message.recipient = written.into();
            assert_eq!(json_body(&build(&message).expect("builds"))["to"], ANA, "{written:?}");
        }
        for written in ["+55 (11) 98765-4321", "55119876x4321", "++5511987654321", "", " + ", "٥٥١١"] {
            let mut message = outbound(Some("hi"), vec![]);
            message.recipient = written.into();
            assert!(
                matches!(build(&message), Err(BuildError::Invalid { field: "recipient", .. })),
                "{written:?} should be refused"
            );
        }
    }

    #[test]
    fn a_template_is_sent_with_its_components_or_without_the_key_when_there_are_none() {
        let components = vec![json!({ "type": "body", "parameters": [ { "type": "text", "text": "#7781" } ] })];
        let mut message = outbound(None, vec![]);
        message.template = Some(order_update(components.clone()));
        assert_eq!(
            json_body(&build(&message).expect("builds")),
            envelope(json!({
                "type": "template",
                "template": { "name": "order_update", "language": { "code": "pt_BR" }, "components": components }
            }))
        );

        message.template = Some(order_update(vec![]));
        assert_eq!(
            json_body(&build(&message).expect("builds")),
            envelope(
                json!({ "type": "template", "template": { "name": "order_update", "language": { "code": "pt_BR" } } })
            )
        );
    }

    #[test]
    fn a_template_needs_a_name_and_a_language_and_goes_alone() {
        let mut message = outbound(None, vec![]);
        message.template = Some(Template { name: " ".into(), ..order_update(vec![]) });
        assert!(matches!(build(&message), Err(BuildError::Invalid { field: "template.name", .. })));
        message.template = Some(Template { language: String::new(), ..order_update(vec![]) });
        assert!(matches!(build(&message), Err(BuildError::Invalid { field: "template.language", .. })));

        message.template = Some(order_update(vec![]));
        message.text = Some("and some text".into());
        assert!(unsupported(build(&message)).contains("template carries its own text"));
        message.text = None;
        message.attachments = vec![by_url("image", "https://cdn.example.com/box.jpg")];
        assert!(unsupported(build(&message)).contains("template carries its own text"));
    }

    #[test]
    fn each_attachment_kind_is_sent_by_link_with_the_text_as_caption() {
        let cases = [
            ("image", "image", "https://cdn.example.com/box.jpg"),
            ("video", "video", "https://cdn.example.com/unboxing.mp4"),
            ("file", "document", "https://cdn.example.com/invoice-7781.pdf"),
        ];
        for (kind, media_type, url) in cases {
            let request = build(&outbound(Some("Your order"), vec![by_url(kind, url)])).expect("builds");
            assert_eq!(
                json_body(&request),
                envelope(json!({ "type": media_type, media_type: { "link": url, "caption": "Your order" } })),
                "{kind}"
            );
        }
        let audio = build(&outbound(None, vec![by_url("audio", "https://cdn.example.com/note.mp3")])).expect("builds");
        assert_eq!(
            json_body(&audio),
            envelope(json!({ "type": "audio", "audio": { "link": "https://cdn.example.com/note.mp3" } }))
        );
    }

    #[test]
    fn a_document_keeps_its_file_name_and_an_attachment_caption_stands_in_for_text() {
        let invoice = Attachment {
            name: Some("invoice-7781.pdf".into()),
            caption: Some("Your invoice".into()),
            ..by_url("file", "https://cdn.example.com/invoice-7781.pdf")
        };
        assert_eq!(
            json_body(&build(&outbound(None, vec![invoice])).expect("builds")),
            envelope(json!({
                "type": "document",
                "document": {
                    "link": "https://cdn.example.com/invoice-7781.pdf",
                    "filename": "invoice-7781.pdf",
                    "caption": "Your invoice"
                }
            }))
        );
        let named_image =
            Attachment { name: Some("box.jpg".into()), ..by_url("image", "https://cdn.example.com/box.jpg") };
        let body = json_body(&build(&outbound(None, vec![named_image])).expect("builds"));
        assert_eq!(body["image"], json!({ "link": "https://cdn.example.com/box.jpg" }), "filename is for documents");
    }

    #[test]
    fn audio_with_text_stickers_several_attachments_and_missing_links_are_refused() {
        let with_text = outbound(Some("listen"), vec![by_url("audio", "https://cdn.example.com/note.mp3")]);
        assert!(unsupported(build(&with_text)).contains("audio takes no caption"));
        let sticker = outbound(None, vec![by_url("sticker", "https://cdn.example.com/s.webp")]);
        assert!(unsupported(build(&sticker)).contains("`sticker`"));
        let two = outbound(
            None,
            vec![by_url("image", "https://cdn.example.com/1.jpg"), by_url("image", "https://cdn.example.com/2.jpg")],
        );
        assert!(unsupported(build(&two)).contains("one attachment per message"));
        let by_id =
            Attachment { kind: "image".into(), media_id: Some("1479537139650973".into()), ..Default::default() };
        assert!(matches!(build(&outbound(None, vec![by_id])), Err(BuildError::Invalid { field: "attachments", .. })));
    }

    #[test]
    fn text_and_captions_are_limited_to_4096_characters_not_bytes() {
        let at_limit = "ש".repeat(MAX_TEXT_CHARS);
        assert!(build(&outbound(Some(&at_limit), vec![])).is_ok());
        let over = format!("{at_limit}👋");
        let too_long = Err(BuildError::TextTooLong { platform: Platform::Whatsapp, length: 4097, max: 4096 });
        assert_eq!(build(&outbound(Some(&over), vec![])), too_long);
        assert_eq!(build(&outbound(Some(&over), vec![by_url("image", "https://cdn.example.com/box.jpg")])), too_long);
    }

    #[test]
    fn a_message_with_nothing_to_send_is_empty() {
        assert_eq!(build(&outbound(None, vec![])), Err(BuildError::Empty));
        assert_eq!(build(&outbound(Some(""), vec![])), Err(BuildError::Empty));
    }

    #[test]
    fn mark_read_names_the_inbound_wamid() {
        let token = Secret::new(SYSTEM_TOKEN);
        let request = build_mark_read_request(&send_ctx(&token), "wamid.IN0001");
        assert_eq!(request.method, ApiMethod::Post);
        assert_eq!(request.url, "https://graph.facebook.com/v21.0/106540352242922/messages");
        assert_eq!(request.headers, vec![("Authorization", format!("Bearer {SYSTEM_TOKEN}"))]);
        assert_eq!(
            json_body(&request),
            json!({ "messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN0001" })
        );
    }

    // --- classifying answers -------------------------------------------------------------------

    fn answer(status: u16, body: &str) -> ApiResponse {
        ApiResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    fn with_retry_after(mut response: ApiResponse, seconds: &str) -> ApiResponse {
        response.headers.push(("retry-after".into(), seconds.into()));
        response
    }

    /// A Cloud API error body: a `(#code) title` message and the explanation in `error_data.details`.
    fn cloud_error(code: i64, title: &str, details: &str) -> String {
        json!({ "error": {
            "message": format!("(#{code}) {title}"),
            "type": "OAuthException",
            "code": code,
            "error_data": { "messaging_product": "whatsapp", "details": details },
            "fbtrace_id": "Az8or2yhqkZfEZ"
        } })
        .to_string()
    }

    fn retry_error(outcome: SendOutcome) -> (Option<Duration>, MessageError, bool) {
        match outcome {
            SendOutcome::Retry { after, error, recipient_only } => (after, error, recipient_only),
            other => panic!("expected Retry, got {other:?}"),
        }
    }

    #[test]
    fn the_first_messages_id_means_sent() {
        let body = r#"{"messaging_product":"whatsapp","contacts":[{"input":"+55 11 98765 4321","wa_id":"5511987654321"}],
            "messages":[{"id":"wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEkQ5RjBBRTQ0QjE1MjQ0NjU5OAA=","message_status":"accepted"}]}"#;
        assert_eq!(
            classify_send_response(&answer(200, body)),
            SendOutcome::Sent {
                platform_message_id: "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYEkQ5RjBBRTQ0QjE1MjQ0NjU5OAA=".into()
            }
        );
    }

    #[test]
    fn a_2xx_without_a_message_id_fails_without_a_retry_that_could_duplicate() {
        for body in [r#"{"messaging_product":"whatsapp","messages":[]}"#, r#"{"success":true}"#, "", "<html>"] {
            match classify_send_response(&answer(200, body)) {
                SendOutcome::Failed(error) => {
                    assert_eq!((error.code.as_str(), error.permanent), ("no_message_id", true))
                }
                other => panic!("{body:?}: expected Failed, got {other:?}"),
            }
        }
    }

    #[test]
    fn throttling_and_temporary_codes_retry_and_honour_retry_after() {
        let cases = [
            (4, "Too many calls", "Application request limit reached", 429),
            (80007, "Rate limit issues", "The WhatsApp Business Account has reached its rate limit.", 400),
            (130429, "Rate limit hit", "Cloud API message throughput has been reached.", 400),
            (131000, "Something went wrong", "Message failed to send because of an unknown error.", 500),
            (1, "API Unknown", "Invalid request or possible server error.", 400),
            (2, "API Service", "Temporary due to downtime or due to being overloaded.", 503),
        ];
        for (code, title, details, status) in cases {
            let body = cloud_error(code, title, details);
            let (after, error, recipient_only) = retry_error(classify_send_response(&answer(status, &body)));
            assert_eq!(error, MessageError { code: code.to_string(), message: details.into(), permanent: false });
            assert_eq!((after, recipient_only), (None, false), "{code}");
            let (after, _, _) = retry_error(classify_send_response(&with_retry_after(answer(status, &body), "12")));
            assert_eq!(after, Some(Duration::from_secs(12)), "{code}");
        }
    }

    #[test]
    fn the_pair_rate_limit_holds_back_only_that_recipient() {
        let body = cloud_error(
            131056,
            "(Business Account, Consumer Account) pair rate limit hit",
            "Message failed to send because there were too many messages sent from this phone number to the same \
             phone number in a short period of time.",
        );
        let (after, error, recipient_only) = retry_error(classify_send_response(&answer(400, &body)));
        assert!(recipient_only);
        assert_eq!((after, error.code.as_str(), error.permanent), (None, "131056", false));
        let (after, _, recipient_only) =
            retry_error(classify_send_response(&with_retry_after(answer(400, &body), "8")));
        assert_eq!((after, recipient_only), (Some(Duration::from_secs(8)), true));
    }

    #[test]
    fn a_number_in_maintenance_retries_after_a_minute_unless_told_otherwise() {
        let body = cloud_error(131057, "Account in maintenance mode", "Business Account is in maintenance mode");
        let (after, error, _) = retry_error(classify_send_response(&answer(400, &body)));
        assert_eq!((after, error.code.as_str()), (Some(Duration::from_secs(60)), "131057"));
        let (after, _, _) = retry_error(classify_send_response(&with_retry_after(answer(400, &body), "20")));
        assert_eq!(after, Some(Duration::from_secs(20)));
    }

    #[test]
    fn codes_0_and_190_reject_the_token() {
        for (code, title, details) in [
            (0, "AuthException", "We were unable to authenticate the app user."),
            (190, "Access token has expired", "Error validating access token: Session has expired on Sunday."),
        ] {
            assert_eq!(
                classify_send_response(&answer(401, &cloud_error(code, title, details))),
                SendOutcome::TokenRejected(MessageError {
                    code: code.to_string(),
                    message: details.into(),
                    permanent: false
                })
            );
        }
    }

    #[test]
    fn permanent_codes_fail_with_the_details_as_message() {
        let cases = [
            (3, "Capability or permissions issue"),
            (10, "Permission denied"),
            (200, "Permission error"),
            (299, "Permission error"),
            (131048, "Spam rate limit hit"),
            (131047, "Re-engagement message"),
            (131026, "Message Undeliverable"),
            (131049, "This message was not delivered to maintain healthy ecosystem engagement."),
            (131051, "Unsupported message type"),
            (131031, "Account has been locked"),
            (368, "Temporarily blocked for policies violations"),
            (100, "Invalid parameter"),
            (132000, "Number of parameters does not match the expected number of params"),
            (132001, "Template does not exist"),
            (132016, "Template is paused"),
            (133010, "Phone number Not Registered"),
        ];
        for (code, title) in cases {
            let details = format!("details for {code}");
            assert_eq!(
                classify_send_response(&answer(400, &cloud_error(code, title, &details))),
                SendOutcome::Failed(MessageError { code: code.to_string(), message: details, permanent: true }),
                "{code}"
            );
        }
    }

    #[test]
    fn without_details_the_message_is_used_and_a_subcode_is_kept() {
        let body = r#"{"error":{"message":"(#100) Invalid parameter","type":"OAuthException","code":100,
            "error_subcode":2494010,"fbtrace_id":"AbC"}}"#;
        assert_eq!(
            classify_send_response(&answer(400, body)),
            SendOutcome::Failed(MessageError {
                code: "100/2494010".into(),
                message: "(#100) Invalid parameter".into(),
                permanent: true
            })
        );
    }

    #[test]
    fn a_proxys_html_502_an_empty_500_and_a_bare_429_retry() {
        let html = answer(502, "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>");
        let (after, error, _) = retry_error(classify_send_response(&with_retry_after(html, "3")));
        assert_eq!((after, error.code.as_str(), error.permanent), (Some(Duration::from_secs(3)), "http_502", false));
        let (after, error, _) = retry_error(classify_send_response(&answer(500, "")));
        assert_eq!((after, error.code.as_str()), (None, "http_500"));
        let (after, error, recipient_only) = retry_error(classify_send_response(&answer(429, "rate limited")));
        assert_eq!((after, error.code.as_str(), recipient_only), (None, "http_429", false));
    }

    #[test]
    fn a_bare_401_rejects_the_token_and_other_4xx_fail() {
        assert!(matches!(
            classify_send_response(&answer(401, "")),
            SendOutcome::TokenRejected(MessageError { ref code, .. }) if code == "http_401"
        ));
        assert!(matches!(
            classify_send_response(&answer(413, "Payload Too Large")),
            SendOutcome::Failed(MessageError { ref code, permanent: true, .. }) if code == "http_413"
        ));
    }

    #[test]
    fn no_body_makes_classification_panic() {
        let bodies: [&[u8]; 8] = [
            b"",
            b"\x00\xff",
            br#"{"messages":"wamid"}"#,
            br#"{"messages":[null]}"#,
            br#"{"messages":[{"id":1.5}]}"#,
            br#"{"error":{"code":"not a number","error_data":null}}"#,
            br#"{"error":{"code":131056,"error_data":{"details":7}}}"#,
            br#"[{"error":{}}]"#,
        ];
        for body in bodies {
            for status in [200, 400, 503] {
                let _ = classify_send_response(&ApiResponse { status, headers: vec![], body: body.to_vec() });
            }
        }
    }
}
