//! WhatsApp Business Cloud API (object `whatsapp_business_account`): the GET handshake, the
//! `X-Hub-Signature-256` check and the webhook parser (PLATFORMS.md section 2).
//!
//! The handshake and the signature are Meta's and identical to Messenger's, so they are the `facebook`
//! module's functions; only the body differs.

use std::collections::HashMap;

use serde_json::Value;

use crate::model::{
    Attachment, ContentKind, Direction, EventKind, InboundEvent, Location, MessageContent, MessageError, Platform,
    Receipt, ReceiptKind, SharedContact, Timestamp,
};
use crate::secret::Secret;

use super::json::{content_key, id_field, str_field, timestamp_field};
use super::{HandshakeReply, ParseContext, ParseError, SignatureForm, SignedRequest, VerifyError, facebook};

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
    let root: Value = serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
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

/// Display names by `wa_id`. Matched by id, never by position: one body may carry several senders.
fn contact_names(value: &Value) -> HashMap<String, String> {
    let contacts = value.get("contacts").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    contacts
        .iter()
        .filter_map(|contact| {
            let name = contact.get("profile").and_then(|p| str_field(p, "name"))?;
            Some((id_field(contact, "wa_id")?, name))
        })
        .collect()
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

/// One inbound `messages[]` element; without a sender or a wamid it is kept as `Unknown`.
fn message_event(
    message: &Value,
    account_id: &str,
    names: &HashMap<String, String>,
    ctx: &ParseContext<'_>,
) -> InboundEvent {
    let from = id_field(message, "from");
    let occurred_at = timestamp_field(message, "timestamp").unwrap_or(ctx.received_at);
    let (Some(from), Some(wamid)) = (from.clone(), id_field(message, "id")) else {
        return unknown_event("message.malformed".into(), account_id.to_owned(), from, occurred_at, message);
    };
    InboundEvent {
        platform: Platform::Whatsapp,
        account_id: account_id.to_owned(),
        contact_id: Some(from.clone()),
        contact_name: names.get(&from).cloned(),
        sender_id: Some(from),
        dedup_key: format!("wamid:{wamid}"),
        occurred_at,
        kind: EventKind::Message {
            direction: Direction::Inbound,
            platform_message_id: wamid,
            content: message_content(message),
        },
        raw: message.clone(),
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

/// A shared place; `None` without both coordinates.
fn location(body: &Value) -> Option<Location> {
    let coordinate = |key: &str| body.get(key).and_then(|v| v.as_f64().or_else(|| v.as_str()?.trim().parse().ok()));
    Some(Location {
        latitude: coordinate("latitude")?,
        longitude: coordinate("longitude")?,
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
    let mut content = text_content(ContentKind::InteractiveReply, str_field(reply, "title"));
    content.payload = id_field(reply, "id");
    content
}

/// One `statuses[]` element: a receipt for a message we sent.
fn status_event(status: &Value, account_id: &str, ctx: &ParseContext<'_>) -> InboundEvent {
    let recipient = id_field(status, "recipient_id");
    let occurred_at = timestamp_field(status, "timestamp").unwrap_or(ctx.received_at);
    let status_name = str_field(status, "status");
    let receipt_kind = match status_name.as_deref() {
        Some("sent") => Some(ReceiptKind::Sent),
        Some("delivered") => Some(ReceiptKind::Delivered),
        Some("read") => Some(ReceiptKind::Read),
        Some("failed") => Some(ReceiptKind::Failed),
        _ => None,
    };
    let (Some(kind), Some(wamid), Some(status_name)) = (receipt_kind, id_field(status, "id"), status_name.clone())
    else {
        let event_type = format!("status.{}", status_name.as_deref().unwrap_or("malformed"));
        return unknown_event(event_type, account_id.to_owned(), recipient, occurred_at, status);
    };
    let error = match kind {
        ReceiptKind::Failed => Some(failure(status)),
        _ => None,
    };
    InboundEvent {
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
