//! Facebook Messenger (object `page`): the GET handshake, the `X-Hub-Signature-256` check, the webhook
//! parser, the Send API request and its answer, and the token calls both Meta channels use
//! (PLATFORMS.md section 1).
//!
//! WhatsApp signs and verifies exactly as Messenger does (PLATFORMS.md 2.1, 2.2), so the `whatsapp`
//! module calls the handshake and signature functions here rather than keeping a second copy.

use std::time::Duration;

use serde_json::{Value, json};

use crate::model::{
    ActionKind, Attachment, ContentKind, Direction, EventKind, InboundEvent, Location, MessageContent, MessageError,
    OutboundAction, OutboundMessage, Platform, Receipt, ReceiptKind, Timestamp,
};
use crate::secret::Secret;

use super::json::{self, content_key, id_field, str_field};
use super::{
    ApiBody, ApiMethod, ApiRequest, ApiResponse, BuildError, HandshakeReply, ParseContext, ParseError, SendContext,
    SendOutcome, SignatureForm, SignedRequest, TokenError, TokenGrant, TokenStatus, VerifyError,
};

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
    let root = super::json::parse_body(body)?;
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
const KNOWN_EVENT_KEYS: [&str; 8] =
    ["message", "message_edit", "postback", "reaction", "delivery", "read", "referral", "account_linking"];

/// Normalises one `messaging[]` item. Never fails: anything we cannot read becomes `Unknown`.
fn messaging_event(item: &Value, page_id: Option<&str>, ctx: &ParseContext<'_>) -> InboundEvent {
    let sender = party_id(item, "sender");
    let recipient = party_id(item, "recipient");
    // A missing or implausible time (json::event_time) dates the event by its arrival.
    let own_time = json::event_time_field(item, "timestamp", ctx.received_at);
    let occurred_at = own_time.unwrap_or(ctx.received_at);
    // What keys an event that has no id of its own: its time when the platform gave a
    // believable one, else its content (the arrival time would differ on a redelivery).
    let time_key = own_time.map_or_else(|| content_key(item), |at| at.as_millis().to_string());
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
    if !KNOWN_EVENT_KEYS.contains(&event_key) {
        return unknown_event(event_key.to_owned(), parties, occurred_at, item);
    }
    let Some(user) = user else {
        return unknown_event(format!("{event_key}.malformed"), parties, occurred_at, item);
    };
    let body = &item[event_key];
    let normalised = match event_key {
        "message" => message_event(body, is_echo),
        "message_edit" => edit_event(body),
        "postback" => Some(postback_event(body, &user, &time_key)),
        "reaction" => reaction_event(body, &user, &time_key),
        "delivery" | "read" => Some(receipt_event(event_key, body, &user, item, ctx)),
        "referral" => Some(referral_event(body, &user, item)),
        "account_linking" => Some(account_linking_event(body, &user, item)),
        // Not reached: every key in KNOWN_EVENT_KEYS has an arm above.
        _ => None,
    };
    let Some((kind, dedup_key)) = normalised else {
        return unknown_event(format!("{event_key}.malformed"), parties, occurred_at, item);
    };
    // Receipts without their own timestamp are dated by the watermark they carry.
    let occurred_at = match &kind {
        EventKind::Receipt(receipt) if own_time.is_none() => receipt.watermark.unwrap_or(occurred_at),
        _ => occurred_at,
    };
    InboundEvent {
        contact_alias: None,
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
        contact_alias: None,
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

/// `message_edit`: the user changed a message (`mid`) to `text`; the `num_edit`-th edit of it.
fn edit_event(edit: &Value) -> Option<(EventKind, String)> {
    let mid = id_field(edit, "mid")?;
    let count = id_field(edit, "num_edit").unwrap_or_default();
    let mut content = MessageContent::empty(ContentKind::Text);
    content.text = str_field(edit, "text");
    Some((EventKind::Edit { platform_message_id: mid.clone(), content }, format!("edit:{mid}:{count}")))
}

/// A `message` (or its echo); `None` without a `mid`, which is the message's only identity. A
/// message with `is_deleted` is the user unsending it.
fn message_event(message: &Value, is_echo: bool) -> Option<(EventKind, String)> {
    let mid = id_field(message, "mid")?;
    if message.get("is_deleted").and_then(Value::as_bool) == Some(true) {
        return Some((EventKind::Revoke { platform_message_id: mid.clone() }, format!("deleted:{mid}")));
    }
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
        latitude: coordinates.get("lat").filter(|v| v.is_number()).and_then(|v| json::coordinate(v, 90.0))?,
        longitude: coordinates.get("long").filter(|v| v.is_number()).and_then(|v| json::coordinate(v, 180.0))?,
        name: str_field(item, "title").or_else(|| str_field(payload, "title")),
        address: None,
        url: str_field(item, "url").or_else(|| str_field(payload, "url")),
    })
}

/// A button, Get Started or menu tap. Before Graph v11.0 postbacks had no `mid`, so the key is built
/// from who tapped what when (PLATFORMS.md 1.5); `time_key` is the item's time in milliseconds.
fn postback_event(postback: &Value, user: &str, time_key: &str) -> (EventKind, String) {
    let payload = str_field(postback, "payload");
    let (platform_message_id, dedup_key) = match id_field(postback, "mid") {
        Some(mid) => (mid.clone(), format!("mid:{mid}")),
        None => {
            let key = format!("postback:{user}:{time_key}:{}", payload.as_deref().unwrap_or_default());
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
fn reaction_event(reaction: &Value, user: &str, time_key: &str) -> Option<(EventKind, String)> {
    let target = id_field(reaction, "mid")?;
    let action = str_field(reaction, "action").unwrap_or_else(|| "react".into());
    let key = format!("reaction:{user}:{target}:{action}:{time_key}");
    let mut content = MessageContent::empty(ContentKind::Reaction);
    if action != "unreact" {
        content.text = str_field(reaction, "emoji").or_else(|| str_field(reaction, "reaction"));
    }
    content.reply_to = Some(target);
    content.payload = Some(action);
    Some((EventKind::Message { direction: Direction::Inbound, platform_message_id: key.clone(), content }, key))
}

/// A `delivery` or `read` watermark about our messages to `user`. An implausible watermark is
/// dropped, not replaced by the arrival time: that could cover messages sent after the read.
fn receipt_event(
    event_key: &str,
    receipt: &Value,
    user: &str,
    item: &Value,
    ctx: &ParseContext<'_>,
) -> (EventKind, String) {
    let kind = if event_key == "read" { ReceiptKind::Read } else { ReceiptKind::Delivered };
    let watermark = json::event_time_field(receipt, "watermark", ctx.received_at);
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

// --- sending ---------------------------------------------------------------------------------

/// The longest text Messenger takes, in Unicode scalar values (`chars()`), not bytes.
///
/// The Send API reference says text "has a 2000 character limit" (PLATFORMS.md 1.6 paraphrases it as
/// "under 2000"). We read it as inclusive: 2000 is accepted, 2001 is refused before queueing. If Meta
/// turns out to count exclusively, a 2000-character message fails at send time with a permanent Graph
/// error (code 100) rather than here, which loses nothing but the early 422.
pub const MAX_TEXT_CHARS: usize = 2000;

/// Where our message id rides along so the echo can be matched back (`message.metadata`).
const METADATA_PREFIX: &str = "parley:";

/// Messenger wants `metadata` under 1000 characters (PLATFORMS.md 1.6).
const MAX_METADATA_CHARS: usize = 999;

/// Builds the Send API request for one message (PLATFORMS.md 1.6).
///
/// `POST {api_base}/{page-id}/messages` with the Page token as `Authorization: Bearer`, never in the
/// query string, so it cannot land in a proxy's access log. A message is either text or one attachment
/// by URL: Messenger takes one of the two per request, so both together are refused rather than
/// silently split (the caller decides whether two messages are acceptable). A `reply_to` is
/// refused: quoting a message through the Send API is not something PLATFORMS.md or Meta's pages we
/// read confirm, and accepting it only to send an unquoted message would mislead the operator.
pub fn build_send_request(ctx: &SendContext<'_>, message: &OutboundMessage) -> Result<ApiRequest, BuildError> {
    crate::platform::refuse_whatsapp_only("Messenger", message)?;
    if message.reply_to.as_deref().is_some_and(|r| !r.is_empty()) {
        return Err(BuildError::Unsupported(
            "Messenger replies cannot quote a message; send it without `reply_to` (it is the next message in the thread)"
                .into(),
        ));
    }
    if message.recipient.trim().is_empty() {
        return Err(BuildError::Invalid { field: "recipient", reason: "a Messenger recipient is a PSID".into() });
    }
    if message.template.is_some() {
        return Err(BuildError::Unsupported(
            "templates are WhatsApp only; send the text of the template as a Messenger message".into(),
        ));
    }
    if message.attachments.len() > 1 {
        return Err(BuildError::Unsupported(format!(
            "Messenger takes one attachment per message; send the {} attachments as separate messages",
            message.attachments.len()
        )));
    }
    let text = message.text.as_deref().filter(|text| !text.is_empty());
    let attachment = message.attachments.first();
    let metadata = format!("{METADATA_PREFIX}{}", message.id);
    if metadata.chars().count() > MAX_METADATA_CHARS {
        return Err(BuildError::Invalid { field: "id", reason: "too long for Messenger's metadata".into() });
    }

    let content = match (text, attachment) {
        (None, None) => return Err(BuildError::Empty),
        (Some(_), Some(_)) => {
            return Err(BuildError::Unsupported(
                "Messenger takes text or one attachment per message, not both; send the text and the attachment \
                 as two messages"
                    .into(),
            ));
        }
        (Some(text), None) => {
            check_text_length(text)?;
            json!({ "text": text, "metadata": metadata })
        }
        (None, Some(attachment)) => {
            json!({ "attachment": attachment_payload(attachment)?, "metadata": metadata })
        }
    };
    // A person's reply goes with the HUMAN_AGENT tag (PLATFORMS.md 1.6, 2026: the only tag left),
    // which lets it go up to 7 days after the user's last message; nothing else is ever tagged.
    let body = if message.human_agent {
        json!({
            "recipient": { "id": message.recipient },
            "messaging_type": "MESSAGE_TAG",
            "tag": "HUMAN_AGENT",
            "message": content,
        })
    } else {
        json!({
            "recipient": { "id": message.recipient },
            "messaging_type": "RESPONSE",
            "message": content,
        })
    };
    Ok(graph_post(ctx, &body))
}

/// Refuses text longer than [`MAX_TEXT_CHARS`].
fn check_text_length(text: &str) -> Result<(), BuildError> {
    let length = text.chars().count();
    if length > MAX_TEXT_CHARS {
        return Err(BuildError::TextTooLong { platform: Platform::Facebook, length, max: MAX_TEXT_CHARS });
    }
    Ok(())
}

/// `message.attachment` for one attachment sent by URL.
fn attachment_payload(attachment: &Attachment) -> Result<Value, BuildError> {
    let kind = match attachment.kind.as_str() {
        kind @ ("image" | "video" | "audio" | "file") => kind,
        other => {
            return Err(BuildError::Unsupported(format!(
                "Messenger cannot send a `{other}` attachment; send an image, video, audio or file"
            )));
        }
    };
    if attachment.caption.as_deref().is_some_and(|caption| !caption.is_empty()) {
        // Dropping it would lose what the operator wrote; Messenger attachments have no caption.
        return Err(BuildError::Unsupported(
            "Messenger attachments take no caption; send the caption as a separate text message".into(),
        ));
    }
    let url = attachment.url.as_deref().filter(|url| !url.is_empty()).ok_or_else(|| BuildError::Invalid {
        field: "attachments",
        reason: "Messenger sends attachments by URL and this one has none".into(),
    })?;
    // `is_reusable` lets Meta cache the upload, so a second send of the same URL is cheaper.
    Ok(json!({ "type": kind, "payload": { "url": url, "is_reusable": true } }))
}

/// Builds a sender action (`typing_on`, `typing_off` or `mark_seen`) for `recipient`: the same endpoint
/// and credential as a send, with only `recipient` and `sender_action` in the body (PLATFORMS.md 1.6).
pub fn build_sender_action_request(ctx: &SendContext<'_>, recipient: &str, action: &str) -> ApiRequest {
    graph_post(ctx, &json!({ "recipient": { "id": recipient }, "sender_action": action }))
}

/// `POST {api_base}/{account}/messages` with a JSON body and the token as a Bearer header. WhatsApp's
/// Cloud API uses the same edge and the same credential placement.
/// An engagement action as Send API sender actions (PLATFORMS.md 1.6; Meta, "Sender Actions"):
/// `mark_seen`, `typing_on`/`typing_off`, and `react` (payload `message_id` and `reaction`) or
/// `unreact` (payload `message_id` only). Read and typing are two requests.
pub fn build_action_requests(ctx: &SendContext<'_>, action: &OutboundAction) -> Result<Vec<ApiRequest>, BuildError> {
    let recipient = action.recipient.trim();
    if recipient.is_empty() {
        return Err(BuildError::Invalid { field: "recipient", reason: "empty".into() });
    }
    let sender_action = |name: &str| json!({ "recipient": { "id": recipient }, "sender_action": name });
    let bodies = match &action.kind {
        ActionKind::MarkRead { typing: false, .. } => vec![sender_action("mark_seen")],
        ActionKind::MarkRead { typing: true, .. } => vec![sender_action("mark_seen"), sender_action("typing_on")],
        ActionKind::Typing { on: true, .. } => vec![sender_action("typing_on")],
        ActionKind::Typing { on: false, .. } => vec![sender_action("typing_off")],
        ActionKind::React { message_id, .. } if message_id.trim().is_empty() => {
            return Err(BuildError::Invalid { field: "message_id", reason: "empty".into() });
        }
        ActionKind::React { message_id, emoji } if emoji.is_empty() => vec![json!({
            "recipient": { "id": recipient }, "sender_action": "unreact", "payload": { "message_id": message_id }
        })],
        ActionKind::React { message_id, emoji } => vec![json!({
            "recipient": { "id": recipient }, "sender_action": "react",
            "payload": { "message_id": message_id, "reaction": emoji }
        })],
    };
    Ok(bodies.iter().map(|body| graph_post(ctx, body)).collect())
}

pub(super) fn graph_post(ctx: &SendContext<'_>, body: &Value) -> ApiRequest {
    ApiRequest {
        method: ApiMethod::Post,
        url: format!("{}/{}/messages", ctx.api_base.trim_end_matches('/'), percent_encode(ctx.account_id)),
        headers: vec![("Authorization", format!("Bearer {}", ctx.access_token.expose()))],
        body: ApiBody::Json(serde_json::to_vec(body).expect("a serde_json::Value always serialises")),
    }
}

/// Tells a Send API answer apart: sent with its `message_id`, retry later, failed for good, or a dead
/// token (PLATFORMS.md 1.6).
///
/// The decision rests on the Graph `error.code` (and `error_subcode`), not on the HTTP status, which
/// Graph sets loosely. Only when the body is not a Graph error (a proxy's HTML page, an empty 500) does
/// the status decide, through [`classify_without_graph_error`]. A 2xx without a `message_id` is
/// `Failed` with code `no_message_id`: Meta may well have delivered it, so retrying could send it twice,
/// and the echo (which carries our `metadata`) is the place to learn more.
pub fn classify_send_response(response: &ApiResponse) -> SendOutcome {
    let body: Option<Value> = serde_json::from_slice(&response.body).ok();
    if let Some(error) = body.as_ref().and_then(GraphError::from_body) {
        return classify_messenger_error(response, error);
    }
    if is_success(response.status) {
        return match body.as_ref().and_then(|b| id_field(b, "message_id")) {
            Some(platform_message_id) => SendOutcome::Sent { platform_message_id },
            None => SendOutcome::Failed(no_message_id(response.status)),
        };
    }
    classify_without_graph_error(response)
}

/// Messenger's error table (PLATFORMS.md 1.6). Codes not in the table fail permanently: retrying an
/// error nobody has described risks duplicates and hammering, and the code is kept for the operator.
fn classify_messenger_error(response: &ApiResponse, error: GraphError) -> SendOutcome {
    let message = error.message.clone().or_else(|| error.details.clone()).unwrap_or_default();
    match error.code {
        // 1200 temporary send failure; 2 unexpected, retry later; 4 app limit; 613 rate limit; 32 Page limit.
        1200 | 2 | 4 | 613 | 32 => error.retry(response.retry_after(), message, false),
        190 => SendOutcome::TokenRejected(error.message_error(message, false)),
        _ => SendOutcome::Failed(error.message_error(message, true)),
    }
}

/// A Graph API error body, `{"error": {"code", "error_subcode", "message", "error_data": {"details"}}}`,
/// read leniently: codes may be numbers or strings.
pub(super) struct GraphError {
    pub(super) code: i64,
    pub(super) subcode: Option<i64>,
    pub(super) message: Option<String>,
    /// WhatsApp's `error_data.details`, the explanation Meta asks integrations to use.
    pub(super) details: Option<String>,
}

impl GraphError {
    /// The `error` object of a body, if it has a usable integer `code`.
    pub(super) fn from_body(body: &Value) -> Option<GraphError> {
        let error = body.get("error").filter(|e| e.is_object())?;
        Some(GraphError {
            code: error.get("code").and_then(json::integer)?,
            subcode: error.get("error_subcode").and_then(json::integer),
            message: str_field(error, "message"),
            details: error.get("error_data").and_then(|d| str_field(d, "details")),
        })
    }

    /// `code`, or `code/subcode` when there is a subcode (`10/2018278`).
    pub(super) fn code_string(&self) -> String {
        match self.subcode {
            Some(subcode) => format!("{}/{subcode}", self.code),
            None => self.code.to_string(),
        }
    }

    /// The error as stored on the message.
    pub(super) fn message_error(&self, message: String, permanent: bool) -> MessageError {
        MessageError { code: self.code_string(), message, permanent }
    }

    /// A temporary failure: after `Retry-After` if the platform said, else the code's own hint.
    pub(super) fn retry(&self, after: Option<Duration>, message: String, recipient_only: bool) -> SendOutcome {
        SendOutcome::Retry { after, error: self.message_error(message, false), recipient_only }
    }
}

/// True for a 2xx status.
pub(super) fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// The error for a 2xx answer that names no new message.
pub(super) fn no_message_id(status: u16) -> MessageError {
    MessageError {
        code: "no_message_id".into(),
        message: format!(
            "the platform answered {status} without a message id; it may have been delivered, so it is not retried"
        ),
        permanent: true,
    }
}

/// An answer that is not a Graph error (a proxy's HTML page, an empty body): the HTTP status decides.
/// 429 and 5xx are temporary (honouring `Retry-After`), 401 is the credential, anything else fails.
pub(super) fn classify_without_graph_error(response: &ApiResponse) -> SendOutcome {
    let status = response.status;
    let error = |permanent| MessageError {
        code: format!("http_{status}"),
        message: format!("the platform answered HTTP {status} without a Graph error body"),
        permanent,
    };
    match status {
        429 | 500..=599 => {
            SendOutcome::Retry { after: response.retry_after(), error: error(false), recipient_only: false }
        }
        401 => SendOutcome::TokenRejected(error(false)),
        _ => SendOutcome::Failed(error(true)),
    }
}

/// The User Profile API: a contact's name from its PSID (`profile.rs`).
pub mod profile;

// --- tokens (used by both Meta channels) -------------------------------------------------------

/// Builds `GET {api_base}/debug_token?input_token=…&access_token={app-id}|{app-secret}` (PLATFORMS.md 1.8).
///
/// Both tokens travel in the query, as Meta documents the call; the values are percent-encoded, the
/// request's `Debug` never shows the query, and the shell must not log the URL.
pub fn build_debug_token_request(
    api_base: &str,
    input_token: &Secret,
    app_id: &str,
    app_secret: &Secret,
) -> ApiRequest {
    let app_token = format!("{app_id}|{}", app_secret.expose());
    graph_get(api_base, "debug_token", &[("input_token", input_token.expose()), ("access_token", &app_token)])
}

/// Reads a `debug_token` answer: `data.is_valid` and `data.expires_at` in Unix seconds, where `0` means
/// the token never expires (a Page token from a long-lived user token, a system-user token).
///
/// An invalid token is not an error: Graph answers 200 with `is_valid: false`. An error body (a bad app
/// token, say) is a [`TokenError`] carrying the Graph message.
pub fn parse_debug_token(response: &ApiResponse) -> Result<TokenStatus, TokenError> {
    let body = token_body(response)?;
    let data = body.get("data").ok_or_else(|| token_error(response, "the answer has no `data`"))?;
    let valid = data
        .get("is_valid")
        .and_then(Value::as_bool)
        .ok_or_else(|| token_error(response, "`data.is_valid` is missing"))?;
    let expires_at = data.get("expires_at").and_then(json::integer).filter(|secs| *secs > 0).map(Timestamp::from_secs);
    Ok(TokenStatus { valid, expires_at })
}

/// Builds the exchange of a short-lived user token for a long-lived one (about 60 days):
/// `GET {api_base}/oauth/access_token?grant_type=fb_exchange_token&client_id=…&client_secret=…&fb_exchange_token=…`
/// (PLATFORMS.md 1.8).
pub fn build_token_exchange_request(
    api_base: &str,
    app_id: &str,
    app_secret: &Secret,
    short_lived: &Secret,
) -> ApiRequest {
    graph_get(
        api_base,
        "oauth/access_token",
        &[
            ("grant_type", "fb_exchange_token"),
            ("client_id", app_id),
            ("client_secret", app_secret.expose()),
            ("fb_exchange_token", short_lived.expose()),
        ],
    )
}

/// Reads `{"access_token", "token_type", "expires_in"}` from a token exchange. Meta issues no refresh
/// token: a long-lived token is exchanged again, or the user logs in again.
pub fn parse_token_grant(response: &ApiResponse) -> Result<TokenGrant, TokenError> {
    let body = token_body(response)?;
    let access_token =
        str_field(&body, "access_token").ok_or_else(|| token_error(response, "the answer has no `access_token`"))?;
    let expires_in = body.get("expires_in").and_then(json::integer).and_then(|secs| u64::try_from(secs).ok());
    Ok(TokenGrant {
        access_token: Secret::new(access_token),
        expires_in,
        refresh_token: None,
        refresh_token_expires_in: None,
    })
}

/// A GET on the Graph API with a percent-encoded query.
/// Builds `GET {api_base}/{page-id}?fields=access_token&access_token={user token}`: the Page's own
/// token, which never expires when the user token was long-lived (PLATFORMS.md 1.8).
pub fn build_page_token_request(api_base: &str, page_id: &str, user_token: &Secret) -> ApiRequest {
    graph_get(api_base, page_id, &[("fields", "access_token"), ("access_token", user_token.expose())])
}

/// Reads the Page token from `{"access_token": …, "id": …}`.
pub fn parse_page_token(response: &ApiResponse) -> Result<Secret, TokenError> {
    let body = token_body(response)?;
    str_field(&body, "access_token")
        .map(Secret::new)
        .ok_or_else(|| token_error(response, "the answer has no `access_token`: is the user an admin of the Page?"))
}

fn graph_get(api_base: &str, path: &str, query: &[(&str, &str)]) -> ApiRequest {
    let query: Vec<String> =
        query.iter().map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value))).collect();
    ApiRequest {
        method: ApiMethod::Get,
        url: format!("{}/{path}?{}", api_base.trim_end_matches('/'), query.join("&")),
        headers: Vec::new(),
        body: ApiBody::Empty,
    }
}

/// The JSON of a token endpoint's 2xx answer; a Graph error or anything else is a [`TokenError`].
fn token_body(response: &ApiResponse) -> Result<Value, TokenError> {
    let body: Option<Value> = serde_json::from_slice(&response.body).ok();
    if let Some(error) = body.as_ref().and_then(|b| b.get("error")).filter(|e| e.is_object()) {
        let message = str_field(error, "message").unwrap_or_else(|| "Graph error without a message".into());
        return Err(token_error(response, &message));
    }
    match body {
        Some(body @ Value::Object(_)) if is_success(response.status) => Ok(body),
        Some(_) if is_success(response.status) => Err(token_error(response, "the answer is not a JSON object")),
        Some(_) => Err(token_error(response, "the answer is not a Graph error")),
        None => Err(token_error(response, "the answer is not JSON")),
    }
}

fn token_error(response: &ApiResponse, message: &str) -> TokenError {
    TokenError { status: response.status, message: message.to_owned() }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so any value is safe in a query or
/// a path segment (`|` becomes `%7C`, `+` becomes `%2B`).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push_str(&super::encode_hex(&[byte]).to_ascii_uppercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Template;

    const PAGE: &str = "104857600123456";
    const USER: &str = "7212345678901234";
    const RECEIVED_AT: Timestamp = Timestamp::from_millis(1_718_999_999_000);

    fn ctx() -> ParseContext<'static> {
        ParseContext { account_id: "configured-page", received_at: RECEIVED_AT }
    }

    fn parse(fixture: &str) -> Vec<InboundEvent> {
        parse_webhook(fixture.as_bytes(), &ctx()).expect("fixture is a valid Messenger body")
    }

    /// The direction, mid and content of a message event; any other kind fails the test.
    fn message(event: &InboundEvent) -> (Direction, &str, &MessageContent) {
        match &event.kind {
            EventKind::Message { direction, platform_message_id, content } => {
                (*direction, platform_message_id.as_str(), content)
            }
            other => panic!("expected a message, got {other:?}"),
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

    /// `body.entry[entry].messaging[item]`, what `raw` must be.
    fn messaging_item(body: &str, entry: usize, item: usize) -> Value {
        let root: Value = serde_json::from_str(body).expect("fixture is JSON");
        root["entry"][entry]["messaging"][item].clone()
    }

    // --- signature ---------------------------------------------------------------------------

    const VECTOR_SECRET: &str = "app-secret-0123";
    const VECTOR_BODY: &[u8] = br#"{"object":"page","entry":[]}"#;
    const VECTOR_HEADER: &str = "sha256=8dd0039448c33fbf53594013e01f923b96df82e87c37259962555eb49ffd4c62";

    fn signed<'a>(header: Option<&'a str>, body: &'a [u8]) -> SignedRequest<'a> {
        SignedRequest { signature_header: header, query: None, body }
    }

    fn verify(secret: &str, header: Option<&str>, body: &[u8]) -> Result<SignatureForm, VerifyError> {
        verify_signature(&Secret::new(secret), &signed(header, body))
    }

    #[test]
    fn platforms_md_test_vector_verifies() {
        assert_eq!(verify(VECTOR_SECRET, Some(VECTOR_HEADER), VECTOR_BODY), Ok(SignatureForm::MetaSha256));
    }

    #[test]
    fn sign_webhook_reproduces_the_test_vector() {
        assert_eq!(sign_webhook(&Secret::new(VECTOR_SECRET), VECTOR_BODY), VECTOR_HEADER);
    }

    #[test]
    fn a_signed_fixture_round_trips_through_verification() {
        let body = include_bytes!("../../tests/fixtures/facebook/emoji_and_right_to_left.json");
        let secret = Secret::new("a-real-looking-app-secret-9f8e7d");
        let header = sign_webhook(&secret, body);
        let request = SignedRequest { signature_header: Some(&header), query: None, body };
        assert_eq!(verify_signature(&secret, &request), Ok(SignatureForm::MetaSha256));
    }

    #[test]
    fn a_wrong_signature_is_refused() {
        let wrong = "sha256=8dd0039448c33fbf53594013e01f923b96df82e87c37259962555eb49ffd4c63";
        assert_eq!(verify(VECTOR_SECRET, Some(wrong), VECTOR_BODY), Err(VerifyError::BadSignature));
    }

    #[test]
    fn a_missing_header_names_the_header() {
        assert_eq!(
            verify(VECTOR_SECRET, None, VECTOR_BODY),
            Err(VerifyError::MissingSignature { header: "x-hub-signature-256" })
        );
    }

    #[test]
    fn another_platforms_secret_does_not_verify() {
        // A Viber bot token or LinkedIn client secret configured by mistake must not pass.
        assert_eq!(
            verify("445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9", Some(VECTOR_HEADER), VECTOR_BODY),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn a_body_changed_by_one_byte_after_signing_is_refused() {
        assert_eq!(
            verify(VECTOR_SECRET, Some(VECTOR_HEADER), br#"{"object":"page","entry":[ ]}"#),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(VECTOR_SECRET, Some(VECTOR_HEADER), br#"{"object":"pagf","entry":[]}"#),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn upper_case_hex_is_accepted() {
        let upper = format!("sha256={}", VECTOR_HEADER["sha256=".len()..].to_ascii_uppercase());
        assert_eq!(verify(VECTOR_SECRET, Some(&upper), VECTOR_BODY), Ok(SignatureForm::MetaSha256));
    }

    #[test]
    fn prefix_case_and_surrounding_whitespace_are_tolerated() {
        let hex = &VECTOR_HEADER["sha256=".len()..];
        for header in [
            format!("SHA256={hex}"),
            format!("Sha256={hex}"),
            format!("  sha256={hex}\t "),
            format!("\n{VECTOR_HEADER}"),
        ] {
            assert_eq!(verify(VECTOR_SECRET, Some(&header), VECTOR_BODY), Ok(SignatureForm::MetaSha256), "{header:?}");
        }
    }

    #[test]
    fn signatures_not_of_the_meta_form_are_malformed() {
        let hex = &VECTOR_HEADER["sha256=".len()..];
        for header in [
            hex.to_owned(),
            format!("sha1={hex}"),
            format!("sha256= {hex}"),
            format!("sha256={}", &hex[..62]),
            format!("sha256={hex}00"),
            format!("sha256={}zz", &hex[..62]),
            "sha256=".to_owned(),
            String::new(),
            "sha25".to_owned(),
            "sha256=é".to_owned(),
        ] {
            assert_eq!(
                verify(VECTOR_SECRET, Some(&header), VECTOR_BODY),
                Err(VerifyError::MalformedSignature),
                "{header:?}"
            );
        }
    }

    #[test]
    fn an_empty_secret_is_no_secret_even_with_a_header() {
        assert_eq!(verify("", Some(VECTOR_HEADER), VECTOR_BODY), Err(VerifyError::NoSecret));
        assert_eq!(verify("", None, VECTOR_BODY), Err(VerifyError::NoSecret));
    }

    // --- handshake ---------------------------------------------------------------------------

    fn handshake(query: &str) -> Result<HandshakeReply, VerifyError> {
        verify_handshake(&Secret::new("my-verify-token"), query)
    }

    #[test]
    fn the_right_token_gets_the_challenge_back() {
        assert_eq!(
            handshake("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=my-verify-token"),
            Ok(HandshakeReply::Text("1158201444".into()))
        );
    }

    #[test]
    fn a_wrong_or_missing_token_is_refused() {
        assert_eq!(
            handshake("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=my-verify-tokeN"),
            Err(VerifyError::HandshakeRefused)
        );
        assert_eq!(handshake("hub.mode=subscribe&hub.challenge=1158201444"), Err(VerifyError::HandshakeRefused));
        assert_eq!(
            handshake("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token="),
            Err(VerifyError::HandshakeRefused)
        );
    }

    #[test]
    fn a_wrong_or_missing_mode_is_refused() {
        assert_eq!(
            handshake("hub.mode=unsubscribe&hub.challenge=1158201444&hub.verify_token=my-verify-token"),
            Err(VerifyError::HandshakeRefused)
        );
        assert_eq!(
            handshake("hub.challenge=1158201444&hub.verify_token=my-verify-token"),
            Err(VerifyError::HandshakeRefused)
        );
    }

    #[test]
    fn a_missing_challenge_is_a_missing_parameter() {
        assert_eq!(
            handshake("hub.mode=subscribe&hub.verify_token=my-verify-token"),
            Err(VerifyError::MissingParameter("hub.challenge"))
        );
    }

    #[test]
    fn a_challenge_with_leading_zeros_is_echoed_exactly() {
        // Longer than any integer type, with leading zeros: parsing it as a number would change it.
        let query =
            "hub.verify_token=my%2Dverify%2Dtoken&hub.challenge=000123456789012345678901234567890&hub.mode=subscribe";
        assert_eq!(handshake(query), Ok(HandshakeReply::Text("000123456789012345678901234567890".into())));
    }

    // --- parsing: bodies ---------------------------------------------------------------------

    #[test]
    fn a_body_that_is_not_json_is_an_error() {
        let body = include_str!("../../tests/fixtures/facebook/not_json.txt");
        assert!(matches!(parse_webhook(body.as_bytes(), &ctx()), Err(ParseError::NotJson(_))));
        assert!(matches!(parse_webhook(b"", &ctx()), Err(ParseError::NotJson(_))));
    }

    #[test]
    fn a_body_that_is_not_an_object_is_an_error() {
        assert_eq!(parse_webhook(br#"[{"object":"page"}]"#, &ctx()), Err(ParseError::NotAnObject));
    }

    #[test]
    fn a_whatsapp_body_is_the_wrong_object() {
        let body = include_str!("../../tests/fixtures/facebook/wrong_object.json");
        assert_eq!(
            parse_webhook(body.as_bytes(), &ctx()),
            Err(ParseError::UnexpectedValue {
                field: "object",
                expected: "page",
                found: "whatsapp_business_account".into()
            })
        );
        assert_eq!(
            parse_webhook(br#"{"object":7,"entry":[]}"#, &ctx()),
            Err(ParseError::UnexpectedValue { field: "object", expected: "page", found: "7".into() })
        );
        assert_eq!(parse_webhook(br#"{"entry":[]}"#, &ctx()), Err(ParseError::MissingField("object")));
    }

    #[test]
    fn a_missing_or_non_array_entry_is_an_error() {
        let body = include_str!("../../tests/fixtures/facebook/missing_entry.json");
        assert_eq!(parse_webhook(body.as_bytes(), &ctx()), Err(ParseError::MissingField("entry")));
        assert_eq!(parse_webhook(br#"{"object":"page"}"#, &ctx()), Err(ParseError::MissingField("entry")));
    }

    #[test]
    fn an_empty_batch_gives_no_events() {
        assert_eq!(parse_webhook(VECTOR_BODY, &ctx()), Ok(vec![]));
    }

    #[test]
    fn no_prefix_of_any_fixture_makes_the_parser_panic() {
        for body in [
            include_str!("../../tests/fixtures/facebook/mixed_attachments_with_text.json"),
            include_str!("../../tests/fixtures/facebook/emoji_and_right_to_left.json"),
            include_str!("../../tests/fixtures/facebook/malformed_elements.json"),
            include_str!("../../tests/fixtures/facebook/dashboard_test_event.json"),
        ] {
            for end in 0..body.len() {
                let _ = parse_webhook(&body.as_bytes()[..end], &ctx());
            }
        }
    }

    // --- parsing: messages -------------------------------------------------------------------

    #[test]
    fn a_text_message_is_an_inbound_text_in_the_users_conversation() {
        let body = include_str!("../../tests/fixtures/facebook/text_message.json");
        let events = parse(body);
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.platform, Platform::Facebook);
        assert_eq!(event.account_id, PAGE);
        assert_eq!(event.contact_id.as_deref(), Some(USER));
        assert_eq!(event.sender_id.as_deref(), Some(USER));
        assert_eq!(event.contact_name, None);
        assert_eq!(event.dedup_key, "mid:m_Zx8Kq2v0aB3cD4eF5gH6");
        assert_eq!(event.occurred_at, Timestamp::from_millis(1_718_000_000_045));
        assert_eq!(event.raw, messaging_item(body, 0, 0));
        let (direction, mid, content) = message(event);
        assert_eq!((direction, mid), (Direction::Inbound, "m_Zx8Kq2v0aB3cD4eF5gH6"));
        assert_eq!(content, &MessageContent::text(ContentKind::Text, "Hi, has my order shipped?"));
    }

    #[test]
    fn a_quick_reply_keeps_its_title_and_payload_and_a_reply_names_the_quoted_message() {
        let events = parse(include_str!("../../tests/fixtures/facebook/quick_reply_and_reply_to.json"));
        assert_eq!(events.len(), 2);
        let (_, _, quick) = message(&events[0]);
        assert_eq!(quick.kind, ContentKind::QuickReply);
        assert_eq!(quick.text.as_deref(), Some("Yes, cancel it"));
        assert_eq!(quick.payload.as_deref(), Some("CANCEL_ORDER_7781"));
        let (_, mid, reply) = message(&events[1]);
        assert_eq!(mid, "m_Rp0001");
        assert_eq!(reply.kind, ContentKind::Text);
        assert_eq!(reply.reply_to.as_deref(), Some("m_Out0007"));
    }

    #[test]
    fn an_attachment_only_message_is_media_without_text() {
        let events = parse(include_str!("../../tests/fixtures/facebook/image_attachment_only.json"));
        let (_, mid, content) = message(&events[0]);
        assert_eq!(mid, "m_At0001");
        assert_eq!(content.kind, ContentKind::Media);
        assert_eq!(content.text, None);
        assert_eq!(
            content.attachments,
            vec![Attachment {
                kind: "image".into(),
                url: Some("https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1&sig=x".into()),
                ..Default::default()
            }]
        );
    }

    #[test]
    fn every_attachment_is_kept_with_its_own_type_and_the_text_beside_them() {
        let events = parse(include_str!("../../tests/fixtures/facebook/mixed_attachments_with_text.json"));
        let (_, _, content) = message(&events[0]);
        assert_eq!(content.kind, ContentKind::Media);
        assert_eq!(content.text.as_deref(), Some("Photos of the damaged box and the receipt"));
        let kinds: Vec<&str> = content.attachments.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(kinds, ["image", "file", "audio", "fallback", "reel", "template", "appointment_booking"]);
        let fallback = &content.attachments[3];
        assert_eq!(fallback.url.as_deref(), Some("https://l.facebook.com/l.php?u=https%3A%2F%2Ftrack.example%2F7781"));
        assert_eq!(fallback.name.as_deref(), Some("Parcel tracking | Acme Post"));
        assert_eq!(content.attachments[4].url.as_deref(), Some("https://www.facebook.com/reel/100200300400500"));
        assert_eq!(content.attachments[5].url, None);
        assert!(content.attachments.iter().all(|a| a.mime_type.is_none()));
    }

    #[test]
    fn stickers_locations_and_empty_messages_get_their_own_content() {
        let events = parse(include_str!("../../tests/fixtures/facebook/sticker_and_location.json"));
        assert_eq!(events.len(), 3);

        let (_, _, sticker) = message(&events[0]);
        assert_eq!(sticker.kind, ContentKind::Media);
        assert_eq!(sticker.attachments.len(), 1);
        assert_eq!(sticker.attachments[0].kind, "sticker");
        assert_eq!(sticker.attachments[0].media_id.as_deref(), Some("369239263222822"));
        assert!(sticker.attachments[0].url.as_deref().is_some_and(|u| u.ends_with("_n.png")));

        let (_, _, place) = message(&events[1]);
        assert_eq!(place.kind, ContentKind::Location);
        assert!(place.attachments.is_empty());
        let location = place.location.as_ref().expect("a location");
        assert_eq!((location.latitude, location.longitude), (38.7223, -9.1393));
        assert_eq!(location.name.as_deref(), Some("Pinned Location"));

        let (_, mid, empty) = message(&events[2]);
        assert_eq!(mid, "m_Em0001");
        assert_eq!(empty, &MessageContent::empty(ContentKind::Unsupported));
    }

    #[test]
    fn a_sticker_in_the_2026_form_is_a_sticker_attachment() {
        // Since 2026-08-30 the only form: `attachments[].type = "sticker"` (PLATFORMS.md, 2026).
        let body = r#"{"object":"page","entry":[{"id":"104857600123456","time":1,"messaging":[{
            "sender":{"id":"7212345678901234"},"recipient":{"id":"104857600123456"},"timestamp":1718000000000,
            "message":{"mid":"m_STICKER1","attachments":[{"type":"sticker","payload":{"url":"https://cdn.example/s.png","sticker_id":369239263222822}}]}}]}]}"#;
        let events = parse_webhook(body.as_bytes(), &ctx()).unwrap();
        let EventKind::Message { content, .. } = &events[0].kind else { panic!("{:?}", events[0].kind) };
        assert_eq!(content.kind, ContentKind::Media);
        let sticker = &content.attachments[0];
        assert_eq!((sticker.kind.as_str(), sticker.media_id.as_deref()), ("sticker", Some("369239263222822")));
        assert_eq!(sticker.url.as_deref(), Some("https://cdn.example/s.png"));
        assert_eq!(content.preview(), "[sticker]");
    }

    #[test]
    fn an_edit_and_an_unsent_message_name_the_original_mid() {
        let Some(edit) = crate::platform::real_world_body("facebook", "restfb__message_edit.json") else { return };
        let events = parse_webhook(edit.as_bytes(), &ctx()).unwrap();
        let EventKind::Edit { platform_message_id, content } = &events[0].kind else { panic!("{:?}", events[0].kind) };
        assert_eq!(platform_message_id, "mid.1457764197618:41d102a3e1ae206a38");
        assert_eq!(content.text.as_deref(), Some("hello, world!"));
        assert_eq!(events[0].dedup_key, "edit:mid.1457764197618:41d102a3e1ae206a38:37");
        assert_eq!(events[0].contact_id.as_deref(), Some("987654321432"));
        let Some(deleted) = crate::platform::real_world_body("facebook", "restfb__message_deleted.json") else {
            return;
        };
        let events = parse_webhook(deleted.as_bytes(), &ctx()).unwrap();
        assert_eq!(events[0].kind, EventKind::Revoke { platform_message_id: "message_id".into() });
        assert_eq!(events[0].dedup_key, "deleted:message_id");
    }

    #[test]
    fn echo_lands_in_the_users_conversation() {
        let body = include_str!("../../tests/fixtures/facebook/echo.json");
        let events = parse(body);
        let event = &events[0];
        assert_eq!(event.account_id, PAGE);
        assert_eq!(event.contact_id.as_deref(), Some(USER));
        assert_eq!(event.sender_id.as_deref(), Some(PAGE));
        assert_eq!(event.dedup_key, "mid:m_Out0008");
        assert_eq!(event.raw["message"]["app_id"], 1_234_567_890_123_u64);
        let (direction, mid, content) = message(event);
        assert_eq!((direction, mid), (Direction::Outbound, "m_Out0008"));
        assert_eq!(content.text.as_deref(), Some("It shipped this morning."));
    }

    #[test]
    fn deliveries_and_reads_are_receipts_dated_by_their_watermark() {
        let events = parse(include_str!("../../tests/fixtures/facebook/delivery_and_read.json"));
        assert_eq!(events.len(), 3);
        let watermark = Timestamp::from_millis(1_718_000_200_999);

        assert_eq!(
            receipt(&events[0]),
            &Receipt {
                kind: ReceiptKind::Delivered,
                message_ids: vec!["m_Out0008".into(), "m_Out0009".into()],
                watermark: Some(watermark),
                error: None::<MessageError>,
            }
        );
        assert_eq!(events[0].occurred_at, watermark, "no timestamp: dated by the watermark");
        assert_eq!(events[0].contact_id.as_deref(), Some(USER));
        assert_eq!(events[0].account_id, PAGE);
        assert_eq!(events[0].dedup_key, "delivery:7212345678901234:1718000200999");

        assert!(receipt(&events[1]).message_ids.is_empty(), "mids may be missing");
        assert_eq!(events[1].dedup_key, "delivery:7212345678901234:1718000250000");

        let read = receipt(&events[2]);
        assert_eq!((read.kind, read.watermark), (ReceiptKind::Read, Some(watermark)));
        assert!(read.message_ids.is_empty());
        assert_eq!(events[2].occurred_at, Timestamp::from_millis(1_718_000_300_000));
        assert_eq!(events[2].dedup_key, "read:7212345678901234:1718000200999");
    }

    #[test]
    fn a_postback_uses_its_mid_or_a_key_of_who_tapped_what_when() {
        let events = parse(include_str!("../../tests/fixtures/facebook/postbacks.json"));
        let (direction, mid, content) = message(&events[0]);
        assert_eq!((direction, mid), (Direction::Inbound, "m_Pb0001"));
        assert_eq!(events[0].dedup_key, "mid:m_Pb0001");
        assert_eq!(content.kind, ContentKind::Postback);
        assert_eq!(content.text.as_deref(), Some("Get Started"));
        assert_eq!(content.payload.as_deref(), Some("GET_STARTED"));

        let (_, mid, content) = message(&events[1]);
        assert_eq!(mid, "postback:7212345678901234:1718000401000:TRACK_ORDER");
        assert_eq!(events[1].dedup_key, mid);
        assert_eq!(content.payload.as_deref(), Some("TRACK_ORDER"));
    }

    #[test]
    fn reactions_carry_the_emoji_or_name_and_unreact_has_no_text() {
        let events = parse(include_str!("../../tests/fixtures/facebook/reactions.json"));
        assert_eq!(events.len(), 3);
        let expected = [
            (Some("\u{2764}\u{fe0f}"), "react", "reaction:7212345678901234:m_Out0008:react:1718000500000"),
            (Some("wow"), "react", "reaction:7212345678901234:m_Out0008:react:1718000500500"),
            (None, "unreact", "reaction:7212345678901234:m_Out0008:unreact:1718000501000"),
        ];
        for (event, (text, action, key)) in events.iter().zip(expected) {
            let (direction, mid, content) = message(event);
            assert_eq!((direction, mid), (Direction::Inbound, key));
            assert_eq!(event.dedup_key, key);
            assert_eq!(content.kind, ContentKind::Reaction);
            assert_eq!(content.text.as_deref(), text);
            assert_eq!(content.payload.as_deref(), Some(action));
            assert_eq!(content.reply_to.as_deref(), Some("m_Out0008"));
        }
    }

    #[test]
    fn referral_and_account_linking_are_activities_without_the_authorization_code() {
        let events = parse(include_str!("../../tests/fixtures/facebook/referral_and_account_linking.json"));
        assert_eq!(
            events[0].kind,
            EventKind::Activity {
                name: "referral".into(),
                detail: Some("ref=summer-promo, source=SHORTLINK, type=OPEN_THREAD".into())
            }
        );
        assert_eq!(
            events[1].kind,
            EventKind::Activity { name: "account_linking".into(), detail: Some("linked".into()) }
        );
        assert!(!format!("{:?}", events[1].kind).contains("acme-7f3a"));
        assert_eq!(events[1].contact_id.as_deref(), Some(USER));
        assert_ne!(events[0].dedup_key, events[1].dedup_key);
    }

    #[test]
    fn unmodelled_events_are_kept_as_unknown_with_their_raw_item() {
        let body = include_str!("../../tests/fixtures/facebook/unmodelled_events.json");
        let events = parse(body);
        let types: Vec<&str> = events.iter().map(unknown_type).collect();
        assert_eq!(types, ["optin", "pass_thread_control", "policy_enforcement"]);
        for (index, event) in events.iter().enumerate() {
            assert_eq!(event.raw, messaging_item(body, 0, index));
            assert_eq!(event.dedup_key, format!("unknown:{}", content_key(&event.raw)));
            assert_eq!(event.account_id, PAGE);
        }
        assert_eq!(events[0].contact_id.as_deref(), Some(USER));
        assert_eq!(events[0].occurred_at, Timestamp::from_millis(1_718_000_800_000));
        assert_eq!(events[2].contact_id, None, "policy_enforcement has no sender");
    }

    #[test]
    fn every_item_of_every_entry_comes_out_in_body_order() {
        let body = include_str!("../../tests/fixtures/facebook/batch_of_entries.json");
        let events = parse(body);
        let summary: Vec<(&str, Option<&str>, &str)> =
            events.iter().map(|e| (e.account_id.as_str(), e.contact_id.as_deref(), e.dedup_key.as_str())).collect();
        assert_eq!(
            summary,
            [
                (PAGE, Some(USER), "mid:m_Bt0001"),
                (PAGE, Some("6398765432109876"), "mid:m_Bt0002"),
                (PAGE, Some(USER), "read:7212345678901234:1718000999000"),
                ("209876543210987", Some("5550001112223334"), "mid:m_Bt0003"),
                ("209876543210987", Some("5550001112223334"), "mid:m_Bt0004"),
            ]
        );
        assert_eq!(events[1].raw, messaging_item(body, 0, 1));
        let standby: Value = serde_json::from_str::<Value>(body).expect("JSON")["entry"][1]["standby"][0].clone();
        assert_eq!(events[4].raw, standby);
    }

    #[test]
    fn emoji_and_right_to_left_text_are_kept_exactly() {
        let events = parse(include_str!("../../tests/fixtures/facebook/emoji_and_right_to_left.json"));
        let texts: Vec<&str> = events.iter().map(|e| message(e).2.text.as_deref().expect("text")).collect();
        assert_eq!(texts, ["مرحبا، هل وصل طلبي؟ 📦", "שלום! 👋🏽 תודה 👨\u{200d}👩\u{200d}👧", "Obrigada 🙏 — שלום",]);
        assert_eq!(texts[1].as_bytes()[..2], [0xd7, 0xa9], "Hebrew shin, UTF-8 encoded");
    }

    /// `fixture` with every `messaging[].timestamp` set to `time`, as bytes.
    fn with_item_times(fixture: &str, field: &str, time: &Value) -> Vec<u8> {
        let mut body: Value = serde_json::from_str(fixture).unwrap();
        for item in body["entry"][0]["messaging"].as_array_mut().unwrap() {
            match field {
                "timestamp" => item["timestamp"] = time.clone(),
                watermark => {
                    for receipt in ["delivery", "read"] {
                        if item.get(receipt).is_some() {
                            item[receipt][watermark] = time.clone();
                        }
                    }
                }
            }
        }
        body.to_string().into_bytes()
    }

    #[test]
    fn implausible_times_date_events_by_their_arrival_keep_the_raw_value_and_a_stable_key() {
        let later =
            ParseContext { account_id: "configured-page", received_at: RECEIVED_AT.saturating_add_millis(9_000) };
        let fixtures = [
            include_str!("../../tests/fixtures/facebook/text_message.json"),
            include_str!("../../tests/fixtures/facebook/postbacks.json"),
            include_str!("../../tests/fixtures/facebook/reactions.json"),
            include_str!("../../tests/fixtures/facebook/echo.json"),
        ];
        for time in json::implausible_times() {
            for fixture in fixtures {
                let body = with_item_times(fixture, "timestamp", &time);
                let events = parse_webhook(&body, &ctx()).unwrap();
                let redelivered = parse_webhook(&body, &later).unwrap();
                assert!(!events.is_empty());
                for (event, again) in events.iter().zip(&redelivered) {
                    assert!(matches!(event.kind, EventKind::Message { .. }), "{time}: {:?}", event.kind);
                    assert_eq!(event.occurred_at, RECEIVED_AT, "{time}");
                    assert_eq!(event.raw["timestamp"], time, "the platform's value stays in raw");
                    assert_eq!(event.dedup_key, again.dedup_key, "a redelivery keeps its key: {time}");
                }
                let keys: std::collections::HashSet<_> = events.iter().map(|e| &e.dedup_key).collect();
                assert_eq!(keys.len(), events.len(), "distinct events keep distinct keys: {time}");
            }
        }
    }

    #[test]
    fn an_implausible_watermark_is_dropped_and_the_receipt_kept() {
        let fixture = include_str!("../../tests/fixtures/facebook/delivery_and_read.json");
        let later =
            ParseContext { account_id: "configured-page", received_at: RECEIVED_AT.saturating_add_millis(9_000) };
        for time in json::implausible_times() {
            let body = with_item_times(fixture, "watermark", &time);
            let events = parse_webhook(&body, &ctx()).unwrap();
            let redelivered = parse_webhook(&body, &later).unwrap();
            assert_eq!(receipt(&events[0]).watermark, None, "{time}");
            assert_eq!(receipt(&events[0]).message_ids, ["m_Out0008", "m_Out0009"]);
            assert_eq!(events[0].occurred_at, RECEIVED_AT, "no timestamp and no usable watermark");
            assert_eq!(events[2].occurred_at, Timestamp::from_millis(1_718_000_300_000), "its own timestamp");
            for (event, again) in events.iter().zip(&redelivered) {
                assert_eq!(event.dedup_key, again.dedup_key, "{time}");
            }
        }
    }

    #[test]
    fn a_time_a_day_ahead_of_the_arrival_is_believed_and_one_beyond_is_not() {
        let fixture = include_str!("../../tests/fixtures/facebook/text_message.json");
        let a_day = RECEIVED_AT.saturating_add_millis(crate::time::MAX_EVENT_LEAD_MILLIS);
        let body = with_item_times(fixture, "timestamp", &json!(a_day.as_millis()));
        assert_eq!(parse_webhook(&body, &ctx()).unwrap()[0].occurred_at, a_day);
        let body = with_item_times(fixture, "timestamp", &json!(a_day.as_millis() + 1));
        assert_eq!(parse_webhook(&body, &ctx()).unwrap()[0].occurred_at, RECEIVED_AT);
        // Seconds and milliseconds of the same instant read the same.
        let body = with_item_times(fixture, "timestamp", &json!("1718000000"));
        assert_eq!(parse_webhook(&body, &ctx()).unwrap()[0].occurred_at, Timestamp::from_secs(1_718_000_000));
    }

    #[test]
    fn the_dashboard_test_event_is_parsed_with_its_string_seconds_timestamp() {
        let body = include_str!("../../tests/fixtures/facebook/dashboard_test_event.json");
        let events = parse(body);
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.account_id, "23245");
        assert_eq!(event.contact_id.as_deref(), Some("12334"));
        assert_eq!(event.occurred_at, Timestamp::from_secs(1_527_459_824));
        let value = serde_json::from_str::<Value>(body).expect("JSON")["value"].clone();
        assert_eq!(event.raw, value);
        let (_, _, content) = message(event);
        assert_eq!(content.kind, ContentKind::Postback);
        assert_eq!(content.payload.as_deref(), Some("USER-DEFINED-PAYLOAD"));
    }

    #[test]
    fn dashboard_changes_inside_an_entry_are_parsed_as_messaging_items() {
        let events = parse(include_str!("../../tests/fixtures/facebook/dashboard_changes_entry.json"));
        assert_eq!(events.len(), 2);
        let (_, mid, content) = message(&events[0]);
        assert_eq!((mid, content.text.as_deref()), ("test_message_id", Some("test_message")));
        assert_eq!(events[0].account_id, "23245");
        assert_eq!(events[0].occurred_at, Timestamp::from_millis(1_527_459_824_000));
        assert_eq!(unknown_type(&events[1]), "feed");
        assert_eq!(events[1].raw["value"], "not a messaging item");
    }

    #[test]
    fn numeric_ids_read_the_same_as_string_ids() {
        let events = parse(include_str!("../../tests/fixtures/facebook/numeric_ids.json"));
        assert_eq!(events[0].account_id, PAGE);
        assert_eq!(events[0].contact_id.as_deref(), Some(USER));
        assert_eq!(events[0].occurred_at, Timestamp::from_millis(1_718_001_300_100));
        assert_eq!(events[1].contact_id.as_deref(), Some(USER), "numeric echo still lands with the user");
        assert_eq!(events[1].sender_id.as_deref(), Some(PAGE));
        assert_eq!(message(&events[1]).0, Direction::Outbound);
    }

    #[test]
    fn an_item_without_a_sender_becomes_unknown_not_an_error() {
        let body = include_str!("../../tests/fixtures/facebook/malformed_elements.json");
        let events = parse(body);
        assert_eq!(events.len(), 4);

        assert_eq!(unknown_type(&events[0]), "message.malformed");
        assert_eq!(events[0].raw, messaging_item(body, 0, 0));
        assert_eq!(events[0].account_id, PAGE);
        assert_eq!(events[0].contact_id, None);
        assert_eq!(events[0].occurred_at, Timestamp::from_millis(1_718_001_400_100));

        assert_eq!(unknown_type(&events[1]), "message.malformed", "a message without a mid has no identity");
        assert_eq!(events[1].contact_id.as_deref(), Some(USER));

        assert_eq!(events[2].contact_id.as_deref(), Some("cp-user-ref-5f2a"), "chat plugin user_ref");
        assert_eq!(message(&events[2]).1, "m_Cp0001");

        assert_eq!(unknown_type(&events[3]), "messaging");
        assert_eq!(events[3].raw, "not even an object");
        assert_eq!(events[3].occurred_at, RECEIVED_AT);
        assert_eq!(events[3].account_id, PAGE);
    }

    #[test]
    fn an_entry_without_any_batch_is_kept_as_unknown() {
        let events = parse(r#"{"object":"page","entry":[{"id":"104857600123456","time":1718001500000}, 42]}"#);
        assert_eq!(events.iter().map(unknown_type).collect::<Vec<_>>(), ["entry", "entry"]);
        assert_eq!(events[0].account_id, PAGE);
        assert_eq!(events[1].account_id, "configured-page");
        assert_ne!(events[0].dedup_key, events[1].dedup_key);
    }

    #[test]
    fn a_redelivery_gives_the_same_dedup_keys() {
        let all = [
            include_str!("../../tests/fixtures/facebook/batch_of_entries.json"),
            include_str!("../../tests/fixtures/facebook/delivery_and_read.json"),
            include_str!("../../tests/fixtures/facebook/postbacks.json"),
            include_str!("../../tests/fixtures/facebook/reactions.json"),
            include_str!("../../tests/fixtures/facebook/referral_and_account_linking.json"),
            include_str!("../../tests/fixtures/facebook/unmodelled_events.json"),
        ];
        let later =
            ParseContext { account_id: "configured-page", received_at: Timestamp::from_millis(1_719_000_000_000) };
        let mut keys = Vec::new();
        for body in all {
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
    const PAGE_TOKEN: &str = "EAAGm0PX4ZCpsBAPageToken7f3a";

    fn send_ctx(token: &Secret) -> SendContext<'_> {
        SendContext { api_base: GRAPH, account_id: PAGE, access_token: token, sender_name: "", api_version: "" }
    }

    fn outbound(text: Option<&str>, attachments: Vec<Attachment>) -> OutboundMessage {
        OutboundMessage {
            human_agent: false,
            link_preview: false,
            location: None,
            contacts: vec![],
            id: "msg_01J0ABCDEF".into(),
            recipient: USER.into(),
            reply_to: None,
            text: text.map(str::to_owned),
            attachments,
            template: None,
        }
    }

    fn by_url(kind: &str, url: &str) -> Attachment {
        Attachment { kind: kind.into(), url: Some(url.into()), ..Default::default() }
    }

    fn build(message: &OutboundMessage) -> Result<ApiRequest, BuildError> {
        build_send_request(&send_ctx(&Secret::new(PAGE_TOKEN)), message)
    }

    fn json_body(request: &ApiRequest) -> Value {
        match &request.body {
            ApiBody::Json(bytes) => serde_json::from_slice(bytes).expect("the body is JSON"),
            other => panic!("expected a JSON body, got {}", if *other == ApiBody::Empty { "none" } else { "a form" }),
        }
    }

    fn unsupported(result: Result<ApiRequest, BuildError>) -> String {
        match result {
            Err(BuildError::Unsupported(reason)) => reason,
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }

    #[test]
    fn a_text_goes_to_the_page_messages_edge_with_the_token_in_the_header_only() {
        let request = build(&outbound(Some("It shipped this morning."), vec![])).expect("builds");
        assert_eq!(request.method, ApiMethod::Post);
        assert_eq!(request.url, "https://graph.facebook.com/v21.0/104857600123456/messages");
        assert_eq!(request.headers, vec![("Authorization", format!("Bearer {PAGE_TOKEN}"))]);
        assert!(!request.url.contains(PAGE_TOKEN) && !request.url.contains("access_token"));
        assert_eq!(
            json_body(&request),
            json!({
                "recipient": { "id": USER },
                "messaging_type": "RESPONSE",
                "message": { "text": "It shipped this morning.", "metadata": "parley:msg_01J0ABCDEF" }
            })
        );
        let debug = format!("{request:?}");
        assert!(!debug.contains(PAGE_TOKEN), "{debug}");
        assert_eq!(
            debug,
            r#"Post https://graph.facebook.com/v21.0/104857600123456/messages headers=["Authorization"]"#
        );
    }

    #[test]
    fn a_trailing_slash_on_the_api_base_does_not_double_the_slash() {
        let token = Secret::new(PAGE_TOKEN);
        let ctx = SendContext { api_base: "https://graph.facebook.com/v21.0/", ..send_ctx(&token) };
        let request = build_send_request(&ctx, &outbound(Some("hi"), vec![])).expect("builds");
        assert_eq!(request.url, "https://graph.facebook.com/v21.0/104857600123456/messages");
    }

    #[test]
    fn each_attachment_kind_is_sent_by_url_as_a_reusable_attachment() {
        for kind in ["image", "video", "audio", "file"] {
            let url = format!("https://cdn.example.com/receipt-7781.{kind}");
            let request = build(&outbound(None, vec![by_url(kind, &url)])).expect("builds");
            assert_eq!(
                json_body(&request),
                json!({
                    "recipient": { "id": USER },
                    "messaging_type": "RESPONSE",
                    "message": {
                        "attachment": { "type": kind, "payload": { "url": url, "is_reusable": true } },
                        "metadata": "parley:msg_01J0ABCDEF"
                    }
                }),
                "{kind}"
            );
        }
    }

    fn action_bodies(kind: ActionKind) -> Result<Vec<Value>, BuildError> {
        let action = OutboundAction { recipient: USER.into(), kind };
        let requests = build_action_requests(&send_ctx(&Secret::new(PAGE_TOKEN)), &action)?;
        for request in &requests {
            assert_eq!(request.url, format!("{GRAPH}/{PAGE}/messages"));
        }
        Ok(requests.iter().map(json_body).collect())
    }

    #[test]
    fn engagement_actions_are_the_documented_sender_actions() {
        let seen = json!({ "recipient": { "id": USER }, "sender_action": "mark_seen" });
        let typing_on = json!({ "recipient": { "id": USER }, "sender_action": "typing_on" });
        let read = |typing| ActionKind::MarkRead { message_id: None, typing };
        assert_eq!(action_bodies(read(false)).unwrap(), std::slice::from_ref(&seen));
        assert_eq!(action_bodies(read(true)).unwrap(), [seen, typing_on.clone()], "two requests, in order");
        assert_eq!(action_bodies(ActionKind::Typing { on: true, message_id: None }).unwrap(), [typing_on]);
        assert_eq!(
            action_bodies(ActionKind::Typing { on: false, message_id: None }).unwrap(),
            [json!({ "recipient": { "id": USER }, "sender_action": "typing_off" })]
        );
        let react = |emoji: &str| ActionKind::React { message_id: "m_AbC123".into(), emoji: emoji.into() };
        assert_eq!(
            action_bodies(react("😊")).unwrap(),
            [json!({ "recipient": { "id": USER }, "sender_action": "react",
                     "payload": { "message_id": "m_AbC123", "reaction": "😊" } })]
        );
        assert_eq!(
            action_bodies(react("")).unwrap(),
            [
                json!({ "recipient": { "id": USER }, "sender_action": "unreact", "payload": { "message_id": "m_AbC123" } })
            ]
        );
        let no_message = ActionKind::React { message_id: " ".into(), emoji: "👍".into() };
        assert!(matches!(action_bodies(no_message), Err(BuildError::Invalid { field: "message_id", .. })));
    }

    #[test]
    fn a_sender_actions_answer_without_a_message_id_is_done() {
        let answer = |status, body: &str| ApiResponse { status, headers: vec![], body: body.as_bytes().to_vec() };
        let done = crate::platform::classify_action_response(
            Platform::Facebook,
            &answer(200, r#"{"recipient_id":"7212345678901234"}"#),
        );
        assert_eq!(done, crate::platform::ActionOutcome::Done);
        let window = r#"{"error":{"message":"(#10) This message is sent outside of allowed window.","type":"OAuthException","code":10,"error_subcode":2018278}}"#;
        assert!(matches!(
            crate::platform::classify_action_response(Platform::Facebook, &answer(400, window)),
            crate::platform::ActionOutcome::Failed(e) if e.code.starts_with("10")
        ));
        let busy = r#"{"error":{"message":"(#613) Calls to this api have exceeded the rate limit.","code":613}}"#;
        assert!(matches!(
            crate::platform::classify_action_response(Platform::Facebook, &answer(400, busy)),
            crate::platform::ActionOutcome::Retry { .. }
        ));
    }

    #[test]
    fn locations_contact_cards_and_link_previews_are_refused() {
        let mut pin = outbound(None, vec![]);
        pin.location = Some(Location { latitude: 1.0, longitude: 2.0, name: None, address: None, url: None });
        assert!(unsupported(build(&pin)).contains("location"));
        let mut card = outbound(None, vec![]);
        card.contacts = vec![crate::model::SharedContact { name: Some("Rui".into()), phones: vec![] }];
        assert!(unsupported(build(&card)).contains("contact"));
        let mut preview = outbound(Some("https://example.com"), vec![]);
        preview.link_preview = true;
        assert!(unsupported(build(&preview)).contains("link_preview"));
    }

    #[test]
    fn a_human_agent_reply_is_tagged_and_nothing_else_is() {
        let mut message = outbound(Some("Your refund was approved today."), vec![]);
        let plain = json_body(&build(&message).expect("builds"));
        assert_eq!(plain["messaging_type"], "RESPONSE");
        assert!(plain.get("tag").is_none());
        message.human_agent = true;
        let tagged = json_body(&build(&message).expect("builds"));
        assert_eq!(
            (tagged["messaging_type"].as_str(), tagged["tag"].as_str()),
            (Some("MESSAGE_TAG"), Some("HUMAN_AGENT"))
        );
        assert_eq!(tagged["message"], plain["message"]);
    }

    #[test]
    fn reply_to_is_refused_rather_than_sent_unquoted() {
        let mut message = outbound(Some("Following up"), vec![]);
        message.reply_to = Some("m_In0001".into());
        assert!(matches!(build(&message), Err(BuildError::Unsupported(reason)) if reason.contains("reply_to")));
        message.reply_to = Some(String::new());
        assert!(build(&message).is_ok(), "an empty reply_to is none");
    }

    #[test]
    fn emoji_text_of_exactly_the_limit_is_accepted_and_one_more_character_is_not() {
        // 2000 four-byte emoji: 8000 bytes, but 2000 characters.
        let at_limit = "📦".repeat(MAX_TEXT_CHARS);
        assert!(build(&outbound(Some(&at_limit), vec![])).is_ok());
        let over = format!("{at_limit}a");
        assert_eq!(
            build(&outbound(Some(&over), vec![])),
            Err(BuildError::TextTooLong { platform: Platform::Facebook, length: 2001, max: 2000 })
        );
    }

    #[test]
    fn a_message_with_nothing_to_send_is_empty() {
        assert_eq!(build(&outbound(None, vec![])), Err(BuildError::Empty));
        assert_eq!(build(&outbound(Some(""), vec![])), Err(BuildError::Empty), "empty text is no text");
    }

    #[test]
    fn a_blank_recipient_is_invalid() {
        let mut message = outbound(Some("hi"), vec![]);
        message.recipient = "  ".into();
        assert!(matches!(build(&message), Err(BuildError::Invalid { field: "recipient", .. })));
    }

    #[test]
    fn text_with_an_attachment_must_be_sent_as_two_messages() {
        let reason =
            unsupported(build(&outbound(Some("Your receipt"), vec![by_url("image", "https://c.example/r.png")])));
        assert!(reason.contains("send the text and the attachment as two messages"), "{reason}");
    }

    #[test]
    fn more_than_one_attachment_is_unsupported() {
        let two = vec![by_url("image", "https://c.example/1.png"), by_url("image", "https://c.example/2.png")];
        assert!(unsupported(build(&outbound(None, two))).contains("one attachment per message"));
    }

    #[test]
    fn a_template_is_whatsapp_only() {
        let mut message = outbound(None, vec![]);
        message.template = Some(Template { name: "order_update".into(), language: "pt_BR".into(), components: vec![] });
        assert!(unsupported(build(&message)).contains("templates are WhatsApp only"));
    }

    #[test]
    fn a_sticker_or_a_captioned_attachment_is_unsupported_and_a_url_is_required() {
        let reason = unsupported(build(&outbound(None, vec![by_url("sticker", "https://c.example/s.webp")])));
        assert!(reason.contains("`sticker`"), "{reason}");

        let captioned = Attachment { caption: Some("The box".into()), ..by_url("image", "https://c.example/box.jpg") };
        assert!(unsupported(build(&outbound(None, vec![captioned]))).contains("no caption"));

        let by_id =
            Attachment { kind: "image".into(), media_id: Some("1479537139650973".into()), ..Default::default() };
        assert!(matches!(build(&outbound(None, vec![by_id])), Err(BuildError::Invalid { field: "attachments", .. })));
    }

    #[test]
    fn a_sender_action_uses_the_send_endpoint_and_header() {
        let token = Secret::new(PAGE_TOKEN);
        let request = build_sender_action_request(&send_ctx(&token), USER, "typing_on");
        assert_eq!(request.method, ApiMethod::Post);
        assert_eq!(request.url, "https://graph.facebook.com/v21.0/104857600123456/messages");
        assert_eq!(request.headers, vec![("Authorization", format!("Bearer {PAGE_TOKEN}"))]);
        assert_eq!(json_body(&request), json!({ "recipient": { "id": USER }, "sender_action": "typing_on" }));
        assert!(!format!("{request:?}").contains(PAGE_TOKEN));
    }

    // --- classifying answers -------------------------------------------------------------------

    fn answer(status: u16, body: &str) -> ApiResponse {
        ApiResponse {
            status,
            headers: vec![("content-type".into(), "application/json; charset=UTF-8".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    fn with_retry_after(mut response: ApiResponse, seconds: &str) -> ApiResponse {
        response.headers.push(("retry-after".into(), seconds.into()));
        response
    }

    /// A Graph error body as Meta sends it.
    fn graph_error(code: i64, subcode: Option<i64>, message: &str) -> String {
        let mut error =
            json!({ "message": message, "type": "OAuthException", "code": code, "fbtrace_id": "A1b2C3d4E5f" });
        if let Some(subcode) = subcode {
            error["error_subcode"] = json!(subcode);
        }
        json!({ "error": error }).to_string()
    }

    fn retry_error(outcome: SendOutcome) -> (Option<Duration>, MessageError, bool) {
        match outcome {
            SendOutcome::Retry { after, error, recipient_only } => (after, error, recipient_only),
            other => panic!("expected Retry, got {other:?}"),
        }
    }

    #[test]
    fn a_message_id_means_sent() {
        let outcome =
            classify_send_response(&answer(200, r#"{"recipient_id":"7212345678901234","message_id":"m_Out0008"}"#));
        assert_eq!(outcome, SendOutcome::Sent { platform_message_id: "m_Out0008".into() });
        let no_recipient = classify_send_response(&answer(200, r#"{"message_id":"m_Out0009"}"#));
        assert_eq!(no_recipient, SendOutcome::Sent { platform_message_id: "m_Out0009".into() });
    }

    #[test]
    fn a_2xx_without_a_message_id_fails_without_a_retry_that_could_duplicate() {
        for body in [r#"{"recipient_id":"7212345678901234"}"#, "", "OK", "[]"] {
            match classify_send_response(&answer(200, body)) {
                SendOutcome::Failed(error) => {
                    assert_eq!(error.code, "no_message_id");
                    assert!(error.permanent);
                }
                other => panic!("{body:?}: expected Failed, got {other:?}"),
            }
        }
    }

    #[test]
    fn throttling_codes_retry_and_honour_retry_after() {
        let cases = [
            (1200, None, "(#1200) Temporary send message failure. Please try again later", 500),
            (2, None, "An unexpected error has occurred. Please retry your request later.", 500),
            (4, Some(2_018_022), "(#4) Application request limit reached", 400),
            (613, None, "(#613) Calls to this api have exceeded the rate limit.", 400),
            (32, None, "(#32) Page request limit reached", 400),
        ];
        for (code, subcode, message, status) in cases {
            let body = graph_error(code, subcode, message);
            let (after, error, recipient_only) = retry_error(classify_send_response(&answer(status, &body)));
            let expected_code = subcode.map_or_else(|| code.to_string(), |s| format!("{code}/{s}"));
            assert_eq!(error, MessageError { code: expected_code, message: message.into(), permanent: false });
            assert_eq!((after, recipient_only), (None, false), "{code}: no hint, the channel backs off");

            let (after, _, _) = retry_error(classify_send_response(&with_retry_after(answer(status, &body), "17")));
            assert_eq!(after, Some(Duration::from_secs(17)), "{code}");
        }
    }

    #[test]
    fn code_190_rejects_the_token_whatever_the_subcode() {
        let body = graph_error(190, Some(463), "Error validating access token: Session has expired on Monday.");
        match classify_send_response(&answer(400, &body)) {
            SendOutcome::TokenRejected(error) => {
                assert_eq!(error.code, "190/463");
                assert!(!error.permanent);
                assert!(error.message.starts_with("Error validating access token"));
            }
            other => panic!("expected TokenRejected, got {other:?}"),
        }
        assert!(matches!(
            classify_send_response(&answer(401, &graph_error(190, None, "Invalid OAuth access token."))),
            SendOutcome::TokenRejected(MessageError { ref code, .. }) if code == "190"
        ));
    }

    #[test]
    fn permanent_codes_fail_with_code_and_subcode() {
        let cases = [
            (100, Some(2_018_001), "(#100) No matching user found"),
            (10, Some(2_018_278), "(#10) This message is sent outside of allowed window."),
            (200, None, "(#200) Requires pages_messaging permission to manage the object"),
            (230, None, "(#230) Requires pages_messaging_subscriptions permission"),
            (551, Some(1_545_041), "(#551) This person isn't available right now."),
            (368, None, "(#368) The action attempted has been deemed abusive or is otherwise disallowed"),
            (10904, None, "(#10904) The Page has messaging disabled"),
            (1_609_005, None, "A code no table lists yet"),
        ];
        for (code, subcode, message) in cases {
            let outcome = classify_send_response(&answer(400, &graph_error(code, subcode, message)));
            let expected_code = subcode.map_or_else(|| code.to_string(), |s| format!("{code}/{s}"));
            assert_eq!(
                outcome,
                SendOutcome::Failed(MessageError { code: expected_code, message: message.into(), permanent: true })
            );
        }
    }

    #[test]
    fn the_error_code_decides_not_the_http_status() {
        // A throttling code under a 200, and a permanent code under a 500.
        let (_, error, _) = retry_error(classify_send_response(&answer(200, &graph_error(613, None, "slow down"))));
        assert_eq!(error.code, "613");
        let outcome = classify_send_response(&answer(500, &graph_error(10, Some(2_018_278), "outside window")));
        assert!(matches!(outcome, SendOutcome::Failed(MessageError { permanent: true, .. })));
        // Codes and subcodes sent as strings read the same.
        let stringly = r#"{"error":{"message":"(#10) outside","code":"10","error_subcode":"2018278"}}"#;
        assert!(matches!(
            classify_send_response(&answer(400, stringly)),
            SendOutcome::Failed(MessageError { ref code, .. }) if code == "10/2018278"
        ));
    }

    #[test]
    fn a_proxys_html_502_retries_and_honours_retry_after() {
        let html = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>\
                    <hr><center>nginx</center></body></html>";
        let response = ApiResponse {
            status: 502,
            headers: vec![("content-type".into(), "text/html".into()), ("retry-after".into(), "30".into())],
            body: html.as_bytes().to_vec(),
        };
        let (after, error, recipient_only) = retry_error(classify_send_response(&response));
        assert_eq!((after, recipient_only), (Some(Duration::from_secs(30)), false));
        assert_eq!((error.code.as_str(), error.permanent), ("http_502", false));
        assert!(!error.message.contains("nginx"), "the body is not copied into the error");
    }

    #[test]
    fn an_empty_500_and_a_bare_429_retry_with_back_off() {
        let (after, error, _) = retry_error(classify_send_response(&answer(500, "")));
        assert_eq!((after, error.code.as_str()), (None, "http_500"));
        let (after, error, _) =
            retry_error(classify_send_response(&with_retry_after(answer(429, "Too Many Requests"), "5")));
        assert_eq!((after, error.code.as_str()), (Some(Duration::from_secs(5)), "http_429"));
        let (after, _, _) = retry_error(classify_send_response(&with_retry_after(answer(503, ""), "soon")));
        assert_eq!(after, None, "a Retry-After that is not seconds is ignored");
    }

    #[test]
    fn a_bare_401_rejects_the_token_and_other_4xx_fail() {
        assert!(matches!(
            classify_send_response(&answer(401, "Unauthorized")),
            SendOutcome::TokenRejected(MessageError { ref code, permanent: false, .. }) if code == "http_401"
        ));
        assert!(matches!(
            classify_send_response(&answer(404, "<html>Not Found</html>")),
            SendOutcome::Failed(MessageError { ref code, permanent: true, .. }) if code == "http_404"
        ));
        // An `error` without a usable code is not a Graph error either.
        assert!(matches!(
            classify_send_response(&answer(400, r#"{"error":{"message":"no code"}}"#)),
            SendOutcome::Failed(MessageError { ref code, .. }) if code == "http_400"
        ));
    }

    #[test]
    fn no_body_makes_classification_panic() {
        let bodies: [&[u8]; 8] = [
            b"",
            b"null",
            b"\xff\xfe\x00garbage",
            br#"{"error":null}"#,
            br#"{"error":{"code":1.5e300,"error_subcode":[]}}"#,
            br#"{"message_id":12345678901234567890}"#,
            br#"{"error":"string"}"#,
            br#"{"error":{"code":-1,"error_data":"x"}}"#,
        ];
        for body in bodies {
            for status in [200, 400, 500] {
                let _ = classify_send_response(&ApiResponse { status, headers: vec![], body: body.to_vec() });
            }
        }
    }

    // --- tokens --------------------------------------------------------------------------------

    const APP_ID: &str = "1234567890123";
    const APP_SECRET: &str = "app+secret/0123&x=y";

    #[test]
    fn debug_token_puts_both_tokens_percent_encoded_in_the_query() {
        let request = build_debug_token_request(GRAPH, &Secret::new("EAAG token+/="), APP_ID, &Secret::new(APP_SECRET));
        assert_eq!(request.method, ApiMethod::Get);
        assert_eq!(
            request.url,
            "https://graph.facebook.com/v21.0/debug_token?input_token=EAAG%20token%2B%2F%3D\
             &access_token=1234567890123%7Capp%2Bsecret%2F0123%26x%3Dy"
        );
        assert!(request.body == ApiBody::Empty);
        assert!(request.headers.is_empty());
        let query = request.url.split_once('?').expect("a query").1;
        assert_eq!(
            super::super::query_param(query, "access_token").as_deref(),
            Some("1234567890123|app+secret/0123&x=y")
        );
        let debug = format!("{request:?}");
        assert!(!debug.contains("secret") && !debug.contains("EAAG"), "{debug}");
    }

    #[test]
    fn debug_token_reads_validity_and_expiry() {
        let valid = answer(
            200,
            r#"{"data":{"app_id":"1234567890123","type":"PAGE","application":"Parley","data_access_expires_at":1725000000,
                "expires_at":1723000000,"is_valid":true,"issued_at":1718000000,"scopes":["pages_messaging"],
                "user_id":"104857600123456"}}"#,
        );
        assert_eq!(
            parse_debug_token(&valid),
            Ok(TokenStatus { valid: true, expires_at: Some(Timestamp::from_secs(1_723_000_000)) })
        );
        let never = answer(200, r#"{"data":{"type":"SYSTEM_USER","expires_at":0,"is_valid":true}}"#);
        assert_eq!(parse_debug_token(&never), Ok(TokenStatus { valid: true, expires_at: None }));
        let expired = answer(
            200,
            r#"{"data":{"app_id":"1234567890123","type":"USER","expires_at":1718003600,"is_valid":false,
                "error":{"code":190,"message":"Error validating access token: Session has expired.","subcode":463}}}"#,
        );
        assert_eq!(
            parse_debug_token(&expired),
            Ok(TokenStatus { valid: false, expires_at: Some(Timestamp::from_secs(1_718_003_600)) })
        );
    }

    #[test]
    fn debug_token_errors_carry_the_graph_message() {
        let bad_app = answer(400, &graph_error(190, None, "Invalid OAuth access token - Cannot parse access token"));
        assert_eq!(
            parse_debug_token(&bad_app),
            Err(TokenError { status: 400, message: "Invalid OAuth access token - Cannot parse access token".into() })
        );
        assert_eq!(parse_debug_token(&answer(502, "<html>")).map_err(|e| e.status), Err(502));
        assert!(parse_debug_token(&answer(200, r#"{"data":{}}"#)).is_err());
        assert!(parse_debug_token(&answer(200, "[]")).is_err());
    }

    #[test]
    fn the_token_exchange_is_a_get_with_four_encoded_parameters() {
        let request =
            build_token_exchange_request(GRAPH, APP_ID, &Secret::new(APP_SECRET), &Secret::new("EAAShortLived|1h"));
        assert_eq!(request.method, ApiMethod::Get);
        assert_eq!(
            request.url,
            "https://graph.facebook.com/v21.0/oauth/access_token?grant_type=fb_exchange_token&client_id=1234567890123\
             &client_secret=app%2Bsecret%2F0123%26x%3Dy&fb_exchange_token=EAAShortLived%7C1h"
        );
        assert!(!format!("{request:?}").contains("EAAShortLived"));
    }

    #[test]
    fn a_token_grant_is_read_and_an_error_is_not() {
        let grant = parse_token_grant(&answer(
            200,
            r#"{"access_token":"EAALongLived60d","token_type":"bearer","expires_in":5183944}"#,
        ))
        .expect("a grant");
        assert_eq!(grant.access_token.expose(), "EAALongLived60d");
        assert_eq!(grant.expires_in, Some(5_183_944));
        assert_eq!((grant.refresh_token, grant.refresh_token_expires_in), (None, None));

        let without_expiry = parse_token_grant(&answer(200, r#"{"access_token":"EAA","token_type":"bearer"}"#));
        assert_eq!(without_expiry.expect("a grant").expires_in, None);

        let expired = answer(400, &graph_error(190, Some(463), "Error validating access token: Session has expired"));
        assert_eq!(
            parse_token_grant(&expired).map_err(|e| e.message),
            Err("Error validating access token: Session has expired".into())
        );
        assert!(parse_token_grant(&answer(200, r#"{"token_type":"bearer"}"#)).is_err());
        assert!(
            !format!("{:?}", parse_token_grant(&answer(200, r#"{"access_token":"EAAsecret"}"#))).contains("EAAsecret")
        );
    }

    #[test]
    fn percent_encoding_keeps_unreserved_characters_and_escapes_the_rest() {
        assert_eq!(percent_encode("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(percent_encode("a b+c|d/é"), "a%20b%2Bc%7Cd%2F%C3%A9");
    }
}
