//! Facebook Messenger (object `page`): the GET handshake, the `X-Hub-Signature-256` check and the
//! webhook parser (PLATFORMS.md section 1).
//!
//! WhatsApp signs and verifies exactly as Messenger does (PLATFORMS.md 2.1, 2.2), so the `whatsapp`
//! module calls the handshake and signature functions here rather than keeping a second copy.

use serde_json::Value;

use crate::model::{
    Attachment, ContentKind, Direction, EventKind, InboundEvent, Location, MessageContent, Platform, Receipt,
    ReceiptKind, Timestamp,
};
use crate::secret::Secret;

use super::json::{self, content_key, id_field, str_field, timestamp_field};
use super::{HandshakeReply, ParseContext, ParseError, SignatureForm, SignedRequest, VerifyError};

/// The header that carries the signature (lower-case: headers are looked up case-insensitively).
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// The prefix Meta puts before the hex digest in [`SIGNATURE_HEADER`].
const SIGNATURE_PREFIX: &str = "sha256=";

/// Answers Meta's GET subscription check (PLATFORMS.md 1.1): `hub.mode=subscribe` and the configured
/// verify token give back `hub.challenge` verbatim, never parsed as a number (leading zeros matter).
pub fn verify_handshake(verify_token: &Secret, query: &str) -> Result<HandshakeReply, VerifyError> {
    let mode = super::query_param(query, "hub.mode");
    let token = super::query_param(query, "hub.verify_token");
    // Refuse before looking at the challenge, so a caller without the token learns nothing else.
    let token_matches = token.as_deref().is_some_and(|token| verify_token.matches(token));
    if mode.as_deref() != Some("subscribe") || !token_matches {
        return Err(VerifyError::HandshakeRefused);
    }
    match super::query_param(query, "hub.challenge") {
        Some(challenge) if !challenge.is_empty() => Ok(HandshakeReply::Text(challenge)),
        _ => Err(VerifyError::MissingParameter("hub.challenge")),
    }
}

/// Checks `X-Hub-Signature-256: sha256=<hex>` against an HMAC-SHA256 of the raw body keyed by the app
/// secret, in constant time (PLATFORMS.md 1.2). The legacy SHA-1 `X-Hub-Signature` is ignored.
pub fn verify_signature(app_secret: &Secret, request: &SignedRequest<'_>) -> Result<SignatureForm, VerifyError> {
    if app_secret.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    let header = request.signature_header.ok_or(VerifyError::MissingSignature { header: SIGNATURE_HEADER })?;
    let digest = meta_signature_digest(header).ok_or(VerifyError::MalformedSignature)?;
    if super::hmac_matches(app_secret.expose().as_bytes(), &[request.body], &digest) {
        Ok(SignatureForm::MetaSha256)
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// The header value Meta would send for `body`: `sha256=<lower-case hex>` (for tests and `simulate`).
pub fn sign_webhook(app_secret: &Secret, body: &[u8]) -> String {
    format!("{SIGNATURE_PREFIX}{}", super::sign_hex(app_secret.expose().as_bytes(), &[body]))
}

/// The 32 digest bytes of a `sha256=<64 hex>` header value. The prefix may be in any case and the value
/// may carry surrounding whitespace; a bare digest without the prefix is not Meta's form and is refused.
fn meta_signature_digest(header: &str) -> Option<Vec<u8>> {
    let header = header.trim();
    let prefix = header.get(..SIGNATURE_PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(SIGNATURE_PREFIX) {
        return None;
    }
    let hex = &header[SIGNATURE_PREFIX.len()..];
    if hex.len() != 64 {
        return None;
    }
    super::decode_hex(hex)
}

/// Parses a verified Messenger body into one event per `messaging[]` / `standby[]` item, in body order.
///
/// Only a body that is not a Messenger webhook at all is an error. Inside it, an item that is malformed
/// or of a type we do not model becomes [`EventKind::Unknown`] with the item as `raw`, so nothing is lost.
/// The App Dashboard's test shapes (`{"field", "value"}` bodies and `entry[].changes[]`) are accepted too.
pub fn parse_webhook(body: &[u8], ctx: &ParseContext<'_>) -> Result<Vec<InboundEvent>, ParseError> {
    let root: Value = serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let Value::Object(fields) = &root else {
        return Err(ParseError::NotAnObject);
    };
    if !fields.contains_key("object") && fields.contains_key("field") && fields.contains_key("value") {
        // The dashboard's "Test" button posts a bare change with no envelope and no page id.
        return Ok(vec![change_event(&root, None, ctx)]);
    }
    match fields.get("object") {
        Some(Value::String(object)) if object == "page" => {}
        Some(other) => {
            let found = other.as_str().map_or_else(|| other.to_string(), str::to_owned);
            return Err(ParseError::UnexpectedValue { field: "object", expected: "page", found });
        }
        None => return Err(ParseError::MissingField("object")),
    }
    let entries = fields.get("entry").and_then(Value::as_array).ok_or(ParseError::MissingField("entry"))?;

    let mut events = Vec::new();
    for entry in entries {
        entry_events(entry, ctx, &mut events);
    }
    Ok(events)
}

/// Appends the events of one `entry[]` element.
fn entry_events(entry: &Value, ctx: &ParseContext<'_>, events: &mut Vec<InboundEvent>) {
    let page_id = id_field(entry, "id");
    let mut found_batch = false;
    // Standby items (we are not the thread owner under the handover protocol) have the same shape.
    for batch in ["messaging", "standby"] {
        if let Some(items) = entry.get(batch).and_then(Value::as_array) {
            found_batch = true;
            events.extend(items.iter().map(|item| messaging_event(item, page_id.as_deref(), ctx)));
        }
    }
    if let Some(changes) = entry.get("changes").and_then(Value::as_array) {
        found_batch = true;
        events.extend(changes.iter().map(|change| change_event(change, page_id.as_deref(), ctx)));
    }
    if !found_batch {
        // An entry with none of the batches we know (or not even an object) is kept, not dropped.
        let parties = Parties { account_id: account_or_default(page_id, ctx), contact_id: None, sender_id: None };
        events.push(unknown_event("entry".into(), parties, ctx.received_at, entry));
    }
}

/// One `{"field", "value"}` change from the dashboard test shape: the value is a messaging item.
fn change_event(change: &Value, page_id: Option<&str>, ctx: &ParseContext<'_>) -> InboundEvent {
    match change.get("value") {
        Some(value @ Value::Object(_)) => messaging_event(value, page_id, ctx),
        _ => {
            let event_type = str_field(change, "field").unwrap_or_else(|| "change".into());
            let parties = Parties {
                account_id: account_or_default(page_id.map(str::to_owned), ctx),
                contact_id: None,
                sender_id: None,
            };
            unknown_event(event_type, parties, ctx.received_at, change)
        }
    }
}

/// Who an event is between: our Page, the user, and whoever produced it.
struct Parties {
    account_id: String,
    contact_id: Option<String>,
    sender_id: Option<String>,
}

/// The keys of a messaging item that are envelope, not event.
const ENVELOPE_KEYS: [&str; 3] = ["sender", "recipient", "timestamp"];

/// The event keys we model, in the order we look for them.
const KNOWN_EVENT_KEYS: [&str; 7] =
    ["message", "postback", "reaction", "delivery", "read", "referral", "account_linking"];

/// Normalises one `messaging[]` item. Never fails: anything we cannot read becomes `Unknown`.
fn messaging_event(item: &Value, page_id: Option<&str>, ctx: &ParseContext<'_>) -> InboundEvent {
    let sender = party_id(item, "sender");
    let recipient = party_id(item, "recipient");
    let occurred_at = timestamp_field(item, "timestamp").unwrap_or(ctx.received_at);
    let event_key =
        KNOWN_EVENT_KEYS.into_iter().find(|key| item.get(key).is_some_and(Value::is_object)).or_else(|| {
            item.as_object()
                .and_then(|fields| fields.keys().map(String::as_str).find(|key| !ENVELOPE_KEYS.contains(key)))
        });

    let is_echo = event_key == Some("message")
        && item.get("message").and_then(|m| m.get("is_echo")).and_then(Value::as_bool) == Some(true);
    // Echoes are the Page's own messages: the Page is the sender and the user the recipient.
    let (page, user) = if is_echo { (sender, recipient) } else { (recipient, sender) };
    let parties = Parties {
        account_id: account_or_default(page.clone().or_else(|| page_id.map(str::to_owned)), ctx),
        contact_id: user.clone(),
        sender_id: if is_echo { page } else { user.clone() },
    };

    let Some(event_key) = event_key else {
        return unknown_event("messaging".into(), parties, occurred_at, item);
    };
    let Some(user) = user else {
        return unknown_event(format!("{event_key}.malformed"), parties, occurred_at, item);
    };
    let body = &item[event_key];
    let normalised = match event_key {
        "message" => message_event(body, is_echo),
        "postback" => Some(postback_event(body, &user, occurred_at)),
        "reaction" => reaction_event(body, &user, occurred_at),
        "delivery" | "read" => Some(receipt_event(event_key, body, &user, item)),
        "referral" => Some(referral_event(body, &user, item)),
        "account_linking" => Some(account_linking_event(body, &user, item)),
        _ => return unknown_event(event_key.to_owned(), parties, occurred_at, item),
    };
    let Some((kind, dedup_key)) = normalised else {
        return unknown_event(format!("{event_key}.malformed"), parties, occurred_at, item);
    };
    // Receipts without their own timestamp are dated by the watermark they carry.
    let occurred_at = match &kind {
        EventKind::Receipt(receipt) if item.get("timestamp").is_none() => receipt.watermark.unwrap_or(occurred_at),
        _ => occurred_at,
    };
    InboundEvent {
        platform: Platform::Facebook,
        account_id: parties.account_id,
        contact_id: parties.contact_id,
        contact_name: None,
        sender_id: parties.sender_id,
        dedup_key,
        occurred_at,
        kind,
        raw: item.clone(),
    }
}

/// `item[side].id`, or `user_ref` for people writing through the chat plugin.
fn party_id(item: &Value, side: &str) -> Option<String> {
    let party = item.get(side)?;
    id_field(party, "id").or_else(|| id_field(party, "user_ref"))
}

/// The account id named by the body, else the one the channel was configured with.
fn account_or_default(account_id: Option<String>, ctx: &ParseContext<'_>) -> String {
    account_id.unwrap_or_else(|| ctx.account_id.to_owned())
}

/// An event we keep but do not model, keyed by its content so a redelivery is recognised.
fn unknown_event(event_type: String, parties: Parties, occurred_at: Timestamp, raw: &Value) -> InboundEvent {
    InboundEvent {
        platform: Platform::Facebook,
        account_id: parties.account_id,
        contact_id: parties.contact_id,
        contact_name: None,
        sender_id: parties.sender_id,
        dedup_key: format!("unknown:{}", content_key(raw)),
        occurred_at,
        kind: EventKind::Unknown { event_type },
        raw: raw.clone(),
    }
}

/// A `message` (or its echo); `None` without a `mid`, which is the message's only identity.
fn message_event(message: &Value, is_echo: bool) -> Option<(EventKind, String)> {
    let mid = id_field(message, "mid")?;
    let direction = if is_echo { Direction::Outbound } else { Direction::Inbound };
    let content = message_content(message);
    Some((EventKind::Message { direction, platform_message_id: mid.clone(), content }, format!("mid:{mid}")))
}

/// What a `message` carries: text, a quick-reply tap, attachments, a location or nothing we can show.
fn message_content(message: &Value) -> MessageContent {
    let text = str_field(message, "text");
    let attachments: &[Value] = message.get("attachments").and_then(Value::as_array).map_or(&[], Vec::as_slice);

    let mut content = if let Some(payload) = message.get("quick_reply").and_then(|q| str_field(q, "payload")) {
        let mut content = MessageContent::empty(ContentKind::QuickReply);
        content.payload = Some(payload);
        content
    } else if let Some(location) = attachments.iter().find_map(attachment_location) {
        let mut content = MessageContent::empty(ContentKind::Location);
        content.location = Some(location);
        content.attachments = attachments.iter().filter(|a| attachment_location(a).is_none()).map(attachment).collect();
        content
    } else if !attachments.is_empty() {
        let mut content = MessageContent::empty(ContentKind::Media);
        content.attachments = attachments.iter().map(attachment).collect();
        content
    } else if let Some(sticker_id) = id_field(message, "sticker_id") {
        // A sticker sent without an attachment list still shows as a sticker, not as nothing.
        let mut content = MessageContent::empty(ContentKind::Media);
        content.attachments.push(Attachment {
            kind: "sticker".into(),
            media_id: Some(sticker_id),
            ..Default::default()
        });
        content
    } else if text.is_some() {
        MessageContent::empty(ContentKind::Text)
    } else {
        MessageContent::empty(ContentKind::Unsupported)
    };
    content.text = text;
    content.reply_to = message.get("reply_to").and_then(|r| id_field(r, "mid"));
    content
}

/// One attachment, its type kept as Messenger names it so new types survive (`reel`, `ig_post`, ...).
fn attachment(item: &Value) -> Attachment {
    let payload = item.get("payload").filter(|p| p.is_object());
    let sticker_id = payload.and_then(|p| id_field(p, "sticker_id"));
    let kind = match &sticker_id {
        Some(_) => "sticker".to_owned(),
        None => str_field(item, "type").unwrap_or_else(|| "unknown".into()),
    };
    Attachment {
        kind,
        // A shared link arrives as `fallback`, with its URL beside the payload rather than inside it.
        url: payload.and_then(|p| str_field(p, "url")).or_else(|| str_field(item, "url")),
        media_id: sticker_id,
        mime_type: None,
        name: str_field(item, "title").or_else(|| payload.and_then(|p| str_field(p, "title"))),
        caption: None,
    }
}

/// A `location` attachment (older docs: `payload.coordinates.lat/long`), if this is one with coordinates.
fn attachment_location(item: &Value) -> Option<Location> {
    if item.get("type").and_then(Value::as_str) != Some("location") {
        return None;
    }
    let payload = item.get("payload")?;
    let coordinates = payload.get("coordinates")?;
    Some(Location {
        latitude: coordinates.get("lat").and_then(Value::as_f64)?,
        longitude: coordinates.get("long").and_then(Value::as_f64)?,
        name: str_field(item, "title").or_else(|| str_field(payload, "title")),
        address: None,
        url: str_field(item, "url").or_else(|| str_field(payload, "url")),
    })
}

/// A button, Get Started or menu tap. Before Graph v11.0 postbacks had no `mid`, so the key is built
/// from who tapped what when (PLATFORMS.md 1.5).
fn postback_event(postback: &Value, user: &str, occurred_at: Timestamp) -> (EventKind, String) {
    let payload = str_field(postback, "payload");
    let (platform_message_id, dedup_key) = match id_field(postback, "mid") {
        Some(mid) => (mid.clone(), format!("mid:{mid}")),
        None => {
            let key = format!("postback:{user}:{}:{}", occurred_at.as_millis(), payload.as_deref().unwrap_or_default());
            (key.clone(), key)
        }
    };
    let mut content = MessageContent::empty(ContentKind::Postback);
    content.text = str_field(postback, "title");
    content.payload = payload;
    (EventKind::Message { direction: Direction::Inbound, platform_message_id, content }, dedup_key)
}

/// A reaction to a message; `None` without the target `mid`. Reactions have no id of their own, so the
/// key is `(user, target, action, time)` (PLATFORMS.md 1.5).
fn reaction_event(reaction: &Value, user: &str, occurred_at: Timestamp) -> Option<(EventKind, String)> {
    let target = id_field(reaction, "mid")?;
    let action = str_field(reaction, "action").unwrap_or_else(|| "react".into());
    let key = format!("reaction:{user}:{target}:{action}:{}", occurred_at.as_millis());
    let mut content = MessageContent::empty(ContentKind::Reaction);
    if action != "unreact" {
        content.text = str_field(reaction, "emoji").or_else(|| str_field(reaction, "reaction"));
    }
    content.reply_to = Some(target);
    content.payload = Some(action);
    Some((EventKind::Message { direction: Direction::Inbound, platform_message_id: key.clone(), content }, key))
}

/// A `delivery` or `read` watermark about our messages to `user`.
fn receipt_event(event_key: &str, receipt: &Value, user: &str, item: &Value) -> (EventKind, String) {
    let kind = if event_key == "read" { ReceiptKind::Read } else { ReceiptKind::Delivered };
    let watermark = timestamp_field(receipt, "watermark");
    let message_ids = receipt
        .get("mids")
        .and_then(Value::as_array)
        .map_or_else(Vec::new, |mids| mids.iter().filter_map(json::id_string).collect());
    // A watermark names the event; without one only the content can tell a redelivery apart.
    let instant = watermark.map_or_else(|| content_key(item), |w| w.as_millis().to_string());
    let dedup_key = format!("{event_key}:{user}:{instant}");
    (EventKind::Receipt(Receipt { kind, message_ids, watermark, error: None }), dedup_key)
}

/// A user re-entering through an m.me link, ad or QR code.
fn referral_event(referral: &Value, user: &str, item: &Value) -> (EventKind, String) {
    let detail = ["ref", "source", "type"]
        .into_iter()
        .filter_map(|key| str_field(referral, key).map(|value| format!("{key}={value}")))
        .collect::<Vec<_>>()
        .join(", ");
    let kind = EventKind::Activity { name: "referral".into(), detail: Some(detail).filter(|d| !d.is_empty()) };
    (kind, format!("referral:{user}:{}", content_key(item)))
}

/// Account linking or unlinking. The `authorization_code` is a credential and stays out of `detail`.
fn account_linking_event(linking: &Value, user: &str, item: &Value) -> (EventKind, String) {
    let kind = EventKind::Activity { name: "account_linking".into(), detail: str_field(linking, "status") };
    (kind, format!("account_linking:{user}:{}", content_key(item)))
}
