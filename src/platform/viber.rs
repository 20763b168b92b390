//! Viber bots (REST bot API): the `X-Viber-Content-Signature` check, the callbacks Viber POSTs to
//! the webhook, one event per POST, and the outbound side: `send_message`, `get_account_info` and
//! `set_webhook` requests and the reading of their answers (PLATFORMS.md section 3).

use serde_json::{Value, json};

use crate::model::{
    Attachment, ContentKind, Direction, EventKind, InboundEvent, Location, MessageContent, MessageError,
    OutboundMessage, Platform, Receipt, ReceiptKind, SharedContact, Timestamp,
};
use crate::secret::Secret;

use super::json::{self, id_field, str_field};
use super::{
    ApiBody, ApiMethod, ApiRequest, ApiResponse, BuildError, HandshakeReply, ParseContext, ParseError, SendContext,
    SendOutcome, SignatureForm, SignedRequest, TokenError, VerifyError,
};

/// The header that carries the signature: bare hex of HMAC-SHA256(bot token, raw body).
pub const SIGNATURE_HEADER: &str = "x-viber-content-signature";

/// The query parameter Viber's Node SDK reads the same signature from.
const SIGNATURE_QUERY_PARAMETER: &str = "sig";

/// Bytes in an HMAC-SHA256 digest; any other length cannot be a Viber signature.
const DIGEST_LEN: usize = 32;

/// Viber has no GET handshake: it checks a new webhook URL with a signed `webhook` POST instead
/// (PLATFORMS.md 3.1), so every GET is refused.
pub fn verify_handshake(_secret: &Secret, _query: &str) -> Result<HandshakeReply, VerifyError> {
    Err(VerifyError::HandshakeNotSupported)
}

/// Checks the body's HMAC-SHA256 under the bot token, taken from the header or, when the header is
/// absent, from the `sig` query parameter.
pub fn verify_signature(secret: &Secret, request: &SignedRequest<'_>) -> Result<SignatureForm, VerifyError> {
    if secret.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    // One signature, from the header or from `sig`: two different ones (a header and another
    // `sig`, or `sig` twice) are ambiguous and refused, never judged by whichever comes first.
    // The header wins when `sig` carries the same value (a URL that also has it).
    let from_query: Vec<String> =
        request.query.map(|query| super::query_params(query, SIGNATURE_QUERY_PARAMETER).collect()).unwrap_or_default();
    if from_query.len() > 1 {
        return Err(VerifyError::AmbiguousSignature);
    }
    let (signature, form) = match (request.signature_header, from_query.into_iter().next()) {
        (Some(header), Some(query)) if !header.trim().eq_ignore_ascii_case(query.trim()) => {
            return Err(VerifyError::AmbiguousSignature);
        }
        (Some(header), _) => (header.to_owned(), SignatureForm::Header),
        (None, Some(query)) => (query, SignatureForm::QueryParameter),
        (None, None) => return Err(VerifyError::MissingSignature { header: SIGNATURE_HEADER }),
    };
    let digest = super::decode_hex(signature.trim())
        .filter(|digest| digest.len() == DIGEST_LEN)
        .ok_or(VerifyError::MalformedSignature)?;
    if super::hmac_matches(secret.expose().as_bytes(), &[request.body], &digest) {
        Ok(form)
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// The `X-Viber-Content-Signature` value Viber would send with `body` (for tests and `parley simulate`).
pub fn sign_webhook(secret: &Secret, body: &[u8]) -> String {
    super::sign_hex(secret.expose().as_bytes(), &[body])
}

/// Turns one verified Viber callback into exactly one event. An unknown or malformed callback is
/// kept as [`EventKind::Unknown`]; only a body that is not a JSON object with an `event` is an error.
pub fn parse_webhook(body: &[u8], ctx: &ParseContext<'_>) -> Result<Vec<InboundEvent>, ParseError> {
    let callback = json::parse_body(body)?;
    if !callback.is_object() {
        return Err(ParseError::NotAnObject);
    }
    let event_type = callback.get("event").and_then(Value::as_str).ok_or(ParseError::MissingField("event"))?;
    // A missing or implausible time (json::event_time) dates the event by its arrival.
    let own_time = json::event_time_field(&callback, "timestamp", ctx.received_at);
    let classified = match event_type {
        "message" => classify_message(&callback),
        "subscribed" => classify_subscribed(&callback, own_time),
        "unsubscribed" => classify_unsubscribed(&callback, own_time),
        "conversation_started" => classify_conversation_started(&callback, own_time),
        "delivered" => classify_receipt(&callback, "delivered", ReceiptKind::Delivered, own_time),
        "seen" => classify_receipt(&callback, "seen", ReceiptKind::Read, own_time),
        "failed" => classify_receipt(&callback, "failed", ReceiptKind::Failed, own_time),
        "webhook" => Some(classify_webhook_check(&callback)),
        _ => None,
    }
    .unwrap_or_else(|| Classified::unknown(event_type, &callback));

    Ok(vec![InboundEvent {
        contact_alias: None,
        platform: Platform::Viber,
        // Viber bodies never name the bot they were sent to.
        account_id: ctx.account_id.to_owned(),
        contact_id: classified.contact_id,
        contact_name: classified.contact_name,
        sender_id: classified.sender_id,
        dedup_key: classified.dedup_key,
        occurred_at: own_time.unwrap_or(ctx.received_at),
        kind: classified.kind,
        raw: callback,
    }])
}

/// What one callback says, before the fields every event shares are added.
struct Classified {
    contact_id: Option<String>,
    contact_name: Option<String>,
    sender_id: Option<String>,
    dedup_key: String,
    kind: EventKind,
}

impl Classified {
    /// A callback we do not model, or one missing what we need, kept whole for quarantine.
    fn unknown(event_type: &str, callback: &Value) -> Self {
        Classified {
            contact_id: None,
            contact_name: None,
            sender_id: None,
            dedup_key: format!("unknown:{}", json::content_key(callback)),
            kind: EventKind::Unknown { event_type: event_type.to_owned() },
        }
    }

    /// An event that belongs to the conversation with `user_id`, who produced it.
    fn from_user(user_id: String, contact_name: Option<String>, dedup_key: String, kind: EventKind) -> Self {
        Classified { contact_id: Some(user_id.clone()), contact_name, sender_id: Some(user_id), dedup_key, kind }
    }
}

/// `message`: the user wrote to the bot. Needs a token and a sender; the content decides the rest.
fn classify_message(callback: &Value) -> Option<Classified> {
    let token = id_field(callback, "message_token")?;
    let sender = callback.get("sender")?;
    let sender_id = id_field(sender, "id")?;
    let content = message_content(callback.get("message")?)?;
    Some(Classified::from_user(
        sender_id,
        str_field(sender, "name"),
        format!("message:{token}"),
        EventKind::Message { direction: Direction::Inbound, platform_message_id: token, content },
    ))
}

/// The `message` object by its `type` (PLATFORMS.md 3.3). `None` when a known type lacks the field
/// that makes it that type; an unknown type is [`ContentKind::Unsupported`], not an error.
fn message_content(message: &Value) -> Option<MessageContent> {
    // Viber lets a picture carry typed text; other media may too, so read it for all of them.
    let caption = str_field(message, "text");
    let content = match message.get("type")?.as_str()? {
        "text" => MessageContent::text(ContentKind::Text, message.get("text")?.as_str()?),
        "picture" => media_content("image", message, caption),
        "video" => media_content("video", message, caption),
        "file" => media_content("file", message, caption),
        // The sticker id has no place in the model and stays in the raw event.
        "sticker" => media_content("sticker", message, caption),
        "url" => {
            let url = str_field(message, "media")?;
            let mut content = media_content("url", message, None);
            content.text = Some(url);
            content
        }
        "location" => {
            // Coordinates out of range or unreadable leave the place out; the message is still
            // stored (as a location, with what Viber sent in `raw`), never dropped.
            let place = message.get("location").filter(|place| place.is_object());
            let mut content = MessageContent::empty(ContentKind::Location);
            content.text = caption;
            content.location = place.and_then(|place| {
                Some(Location {
                    latitude: json::coordinate(place.get("lat")?, 90.0)?,
                    longitude: json::coordinate(place.get("lon")?, 180.0)?,
                    name: None,
                    address: str_field(place, "address"),
                    url: None,
                })
            });
            content
        }
        "contact" => {
            let card = message.get("contact").filter(|card| card.is_object())?;
            let mut content = MessageContent::empty(ContentKind::Contacts);
            content.text = caption;
            content.contacts.push(SharedContact {
                name: str_field(card, "name"),
                phones: str_field(card, "phone_number").into_iter().collect(),
            });
            content
        }
        _ => {
            let mut content = MessageContent::empty(ContentKind::Unsupported);
            content.text = caption;
            content
        }
    };
    Some(content)
}

/// A one-attachment media message; the caption is both the message text and the attachment's caption.
fn media_content(kind: &str, message: &Value, caption: Option<String>) -> MessageContent {
    let mut content = MessageContent::empty(ContentKind::Media);
    content.attachments.push(Attachment {
        kind: kind.to_owned(),
        url: str_field(message, "media"),
        media_id: None,
        mime_type: None,
        name: str_field(message, "file_name"),
        caption: caption.clone(),
    });
    content.text = caption;
    content
}

/// `subscribed`: carries a whole `user` object. `own_time` is the callback's believable time.
fn classify_subscribed(callback: &Value, own_time: Option<Timestamp>) -> Option<Classified> {
    let user = callback.get("user")?;
    let user_id = id_field(user, "id")?;
    let dedup_key = membership_dedup_key("subscribed", callback, &user_id, own_time);
    Some(Classified::from_user(user_id, str_field(user, "name"), dedup_key, EventKind::Subscribed))
}

/// `unsubscribed`: carries only `user_id`.
fn classify_unsubscribed(callback: &Value, own_time: Option<Timestamp>) -> Option<Classified> {
    let user_id = id_field(callback, "user_id")?;
    let dedup_key = membership_dedup_key("unsubscribed", callback, &user_id, own_time);
    Some(Classified::from_user(user_id, None, dedup_key, EventKind::Unsubscribed))
}

/// `conversation_started`: the user opened the chat; not a subscription.
fn classify_conversation_started(callback: &Value, own_time: Option<Timestamp>) -> Option<Classified> {
    let user = callback.get("user")?;
    let user_id = id_field(user, "id")?;
    let dedup_key = membership_dedup_key("conversation_started", callback, &user_id, own_time);
    let kind = EventKind::ConversationStarted {
        context: str_field(callback, "context"),
        subscribed: callback.get("subscribed").and_then(Value::as_bool),
    };
    Some(Classified::from_user(user_id, str_field(user, "name"), dedup_key, kind))
}

/// `(event, message_token)`, falling back to `(event, user, timestamp)` (PLATFORMS.md 3.5). With
/// neither a token nor a believable time, the body's content is the only thing a redelivery repeats.
fn membership_dedup_key(event_type: &str, callback: &Value, user_id: &str, own_time: Option<Timestamp>) -> String {
    match (id_field(callback, "message_token"), own_time) {
        (Some(token), _) => format!("{event_type}:{token}"),
        (None, Some(at)) => format!("{event_type}:{user_id}:{}", at.as_millis()),
        (None, None) => format!("{event_type}:{user_id}:{}", json::content_key(callback)),
    }
}

/// `delivered`, `seen` and `failed`: reports about our own message `message_token`.
fn classify_receipt(
    callback: &Value,
    event_type: &str,
    kind: ReceiptKind,
    own_time: Option<Timestamp>,
) -> Option<Classified> {
    let token = id_field(callback, "message_token")?;
    let user_id = id_field(callback, "user_id")?;
    // `seen` is sent once for everything the user had unread, so it also covers earlier messages.
    // Only the body's own time may serve: the arrival time could cover messages sent after the read.
    // An implausible one is no watermark at all.
    let watermark = match kind {
        ReceiptKind::Read => own_time,
        _ => None,
    };
    let error = match kind {
        ReceiptKind::Failed => Some(MessageError {
            code: "failed".to_owned(),
            message: str_field(callback, "desc").unwrap_or_else(|| "delivery failed".to_owned()),
            // Viber does not retry a failed message, and resending the same content fails the same way.
            permanent: true,
        }),
        _ => None,
    };
    let dedup_key = format!("{event_type}:{token}:{user_id}");
    let receipt = Receipt { kind, message_ids: vec![token], watermark, error };
    Some(Classified::from_user(user_id, None, dedup_key, EventKind::Receipt(receipt)))
}

/// `webhook`: the check Viber makes right after `set_webhook`; it belongs to no conversation.
fn classify_webhook_check(callback: &Value) -> Classified {
    let dedup_key = match id_field(callback, "message_token") {
        Some(token) => format!("webhook:{token}"),
        None => format!("webhook:{}", json::content_key(callback)),
    };
    Classified {
        contact_id: None,
        contact_name: None,
        sender_id: None,
        dedup_key,
        kind: EventKind::Activity { name: "webhook_check".to_owned(), detail: None },
    }
}

// --- sending (PLATFORMS.md 3.6–3.8) ---------------------------------------------------------

/// The most characters a `text` message may carry [secondary: community clients and BSP docs agree].
pub const MAX_TEXT_CHARS: usize = 7000;

/// The most characters of a picture's description: the REST API documents 768 (older SDK docs say 120).
pub const MAX_PICTURE_TEXT_CHARS: usize = 768;

/// The most characters of a `url` message's link, per the REST API.
const MAX_URL_CHARS: usize = 2000;

/// The most characters of `sender.name`, per the send-message page.
const MAX_SENDER_NAME_CHARS: usize = 28;
/// A `contact` message's name and phone number (Viber REST API, "Contact message").
const MAX_CONTACT_NAME_CHARS: usize = 28;
const MAX_CONTACT_PHONE_CHARS: usize = 18;

/// The header that carries the bot token on every API call. The token never goes in the body or URL.
const AUTH_HEADER: &str = "X-Viber-Auth-Token";

/// The callbacks Parley subscribes to; `message`, `subscribed` and `unsubscribed` come regardless.
const WEBHOOK_EVENT_TYPES: [&str; 6] =
    ["delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started"];

/// How long to wait after status 10 (webhook not set) before sending again: time for the channel to
/// call `set_webhook`.
const WEBHOOK_NOT_SET_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// Builds `POST {api_base}/send_message` for one message.
///
/// Supported: text; one `image` attachment by URL (a `picture`, whose required `text` is the message
/// text, else the attachment's caption, else empty); one `url` attachment (a `url` message, which
/// carries no text). Viber requires the size in bytes for `video` and `file` messages, and our
/// attachments carry none, so those (and audio and stickers) are refused rather than sent wrong.
/// A `reply_to` is refused: Viber bots cannot quote a message. `tracking_data` carries our message
/// id so that echoes can be matched; Viber needs a string there, never null.
pub fn build_send_request(ctx: &SendContext<'_>, message: &OutboundMessage) -> Result<ApiRequest, BuildError> {
    if message.human_agent {
        return Err(BuildError::Unsupported("`human_agent` is Messenger's; Viber has no such tag".into()));
    }
    if message.reply_to.as_deref().is_some_and(|r| !r.is_empty()) {
        return Err(BuildError::Unsupported(
            "Viber bots cannot quote a message; send it without `reply_to`".to_owned(),
        ));
    }
    if message.template.is_some() {
        return Err(BuildError::Unsupported("templates are WhatsApp only".to_owned()));
    }
    if message.attachments.len() > 1 {
        return Err(BuildError::Unsupported(format!(
            "Viber sends one attachment per message; this one has {}",
            message.attachments.len()
        )));
    }
    check_sender_name(ctx.sender_name)?;
    if message.recipient.trim().is_empty() {
        return Err(BuildError::Invalid { field: "recipient", reason: "a Viber user id is required".to_owned() });
    }

    let text = message.text.as_deref().filter(|text| !text.trim().is_empty());
    let mut body = json!({
        "receiver": message.recipient,
        "min_api_version": 1,
        "sender": { "name": ctx.sender_name },
        "tracking_data": message.id,
    });
    if message.link_preview {
        return Err(BuildError::Unsupported(
            "`link_preview` is WhatsApp's; Viber shows link previews by itself".into(),
        ));
    }
    let card = message.location.is_some() || !message.contacts.is_empty();
    if card && (text.is_some() || !message.attachments.is_empty())
        || message.location.is_some() && !message.contacts.is_empty()
    {
        return Err(BuildError::Unsupported(
            "a location or a contact is a Viber message of its own; send the rest separately".into(),
        ));
    }
    let content = match message.attachments.first() {
        None if message.location.is_some() => location_content(message.location.as_ref())?,
        None if !message.contacts.is_empty() => contact_content(&message.contacts)?,
        None => {
            let text = text.ok_or(BuildError::Empty)?;
            check_length(text, MAX_TEXT_CHARS)?;
            json!({ "type": "text", "text": text })
        }
        Some(attachment) => attachment_content(attachment, text)?,
    };
    if let (Some(body), Value::Object(content)) = (body.as_object_mut(), content) {
        body.extend(content);
    }
    Ok(ApiRequest {
        method: ApiMethod::Post,
        url: format!("{}/send_message", ctx.api_base.trim_end_matches('/')),
        headers: auth_headers(ctx.access_token),
        body: ApiBody::Json(serde_json::to_vec(&body).expect("a serde_json::Value always serialises")),
    })
}

/// A `location` message: `{"lat", "lon"}`.
fn location_content(location: Option<&Location>) -> Result<Value, BuildError> {
    let Some(location) = location else { return Err(BuildError::Empty) };
    crate::platform::check_location(location)?;
    Ok(json!({ "type": "location", "location": { "lat": location.latitude, "lon": location.longitude } }))
}

/// A `contact` message: one card, with a name and a phone number.
fn contact_content(contacts: &[SharedContact]) -> Result<Value, BuildError> {
    let [contact] = contacts else {
        return Err(BuildError::Unsupported(format!(
            "Viber sends one contact per message; this one has {}",
            contacts.len()
        )));
    };
    let name = contact.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
    let phone = contact.phones.iter().map(|p| p.trim()).find(|p| !p.is_empty());
    match (name, phone) {
        (Some(name), Some(phone)) => {
            if name.chars().count() > MAX_CONTACT_NAME_CHARS || phone.chars().count() > MAX_CONTACT_PHONE_CHARS {
                return Err(BuildError::Invalid {
                    field: "contacts",
                    reason: format!(
                        "Viber takes a contact name of at most {MAX_CONTACT_NAME_CHARS} and a phone number of at most {MAX_CONTACT_PHONE_CHARS} characters"
                    ),
                });
            }
            Ok(json!({ "type": "contact", "contact": { "name": name, "phone_number": phone } }))
        }
        _ => Err(BuildError::Invalid {
            field: "contacts",
            reason: "a Viber contact needs a name and a phone number".into(),
        }),
    }
}

/// The type-specific fields for a one-attachment message.
fn attachment_content(attachment: &Attachment, text: Option<&str>) -> Result<Value, BuildError> {
    let url =
        attachment.url.as_deref().map(str::trim).filter(|url| !url.is_empty()).ok_or_else(|| BuildError::Invalid {
            field: "attachments",
            reason: "Viber sends media by URL and this attachment has none".into(),
        })?;
    match attachment.kind.as_str() {
        "image" => {
            // Viber requires `text` on a picture; an empty string stands for "no description".
            let description = text.or(attachment.caption.as_deref()).unwrap_or_default();
            check_length(description, MAX_PICTURE_TEXT_CHARS)?;
            Ok(json!({ "type": "picture", "media": url, "text": description }))
        }
        "url" => {
            if text.is_some() {
                return Err(BuildError::Unsupported(
                    "a Viber url message carries no text: send the link inside a text message instead".to_owned(),
                ));
            }
            if url.chars().count() > MAX_URL_CHARS {
                return Err(BuildError::Invalid {
                    field: "attachments",
                    reason: format!("Viber takes links of at most {MAX_URL_CHARS} characters"),
                });
            }
            Ok(json!({ "type": "url", "media": url }))
        }
        "video" | "file" | "audio" => Err(BuildError::Unsupported(format!(
            "Viber needs the size in bytes to send a {}, and the attachment has none: send the link as a \
             `url` attachment or inside the text instead",
            attachment.kind
        ))),
        other => Err(BuildError::Unsupported(format!(
            "Viber attachments here are `image` or `url` by URL; `{other}` is not supported"
        ))),
    }
}

/// `sender.name` is required and at most 28 characters.
fn check_sender_name(name: &str) -> Result<(), BuildError> {
    let length = name.chars().count();
    if name.trim().is_empty() {
        Err(BuildError::Invalid {
            field: "sender_name",
            reason: "Viber requires a sender name (viber.bot_name)".into(),
        })
    } else if length > MAX_SENDER_NAME_CHARS {
        Err(BuildError::Invalid {
            field: "sender_name",
            reason: format!("{length} characters; Viber allows at most {MAX_SENDER_NAME_CHARS}"),
        })
    } else {
        Ok(())
    }
}

/// Characters, not bytes: Viber counts what the user sees.
fn check_length(text: &str, max: usize) -> Result<(), BuildError> {
    let length = text.chars().count();
    if length > max { Err(BuildError::TextTooLong { platform: Platform::Viber, length, max }) } else { Ok(()) }
}

fn auth_headers(bot_token: &Secret) -> Vec<(&'static str, String)> {
    vec![(AUTH_HEADER, bot_token.expose().to_owned())]
}

/// Reads Viber's answer to `send_message`. Viber answers HTTP 200 even on failure and puts the result
/// in the JSON `status` (PLATFORMS.md 3.6), so the HTTP code decides only for 401/403 (token), 429 and
/// 5xx (retry) and other 4xx (permanent).
pub fn classify_send_response(response: &ApiResponse) -> SendOutcome {
    let http = response.status;
    match http {
        200..=299 => {}
        401 | 403 => {
            return SendOutcome::TokenRejected(temporary(format!("http_{http}"), "Viber refused the bot token"));
        }
        400..=499 if http != 429 => {
            return SendOutcome::Failed(permanent(format!("http_{http}"), format!("Viber answered HTTP {http}")));
        }
        _ => return retry(response, format!("http_{http}"), format!("Viber answered HTTP {http}"), false, None),
    }
    let answer: Value = match serde_json::from_slice(&response.body) {
        Ok(answer) => answer,
        Err(_) => return retry(response, "not_json".into(), "Viber's answer is not JSON".into(), false, None),
    };
    let Some(status) = answer.get("status").and_then(json::integer) else {
        return retry(response, "no_status".into(), "Viber's answer has no status".into(), false, None);
    };
    let code = status.to_string();
    let detail = str_field(&answer, "status_message");
    let message = |fallback: &str| detail.clone().unwrap_or_else(|| fallback.to_owned());
    match status {
        // A missing token cannot undo the send: the message went out, and a retry would send it twice.
        0 => SendOutcome::Sent { platform_message_id: id_field(&answer, "message_token").unwrap_or_default() },
        // The per-user limit: 100 messages an hour without a reply; other conversations may go on.
        12 => retry(response, code, message("tooManyRequests"), true, None),
        2 => SendOutcome::TokenRejected(temporary(code, message("invalidAuthToken"))),
        10 => retry(response, code, message("webhookNotSet"), false, Some(WEBHOOK_NOT_SET_RETRY)),
        7 | 8 | 9 | 15 => SendOutcome::Failed(permanent(
            code,
            format!(
                "the bot account cannot send ({}): {}; fix it with Viber, no message will go out until then",
                status_name(status).unwrap_or("account problem"),
                message("no detail")
            ),
        )),
        // 1 (invalidUrl) is documented for set_webhook; on a send it can only mean a bad media URL.
        1 | 3..=6 | 11 | 13 | 14 | 16..=20 => {
            SendOutcome::Failed(permanent(code, message(status_name(status).unwrap_or("failed"))))
        }
        _ => retry(response, code, message("general error"), false, None),
    }
}

/// The names Viber's SDKs give the status codes (PLATFORMS.md 3.6 table).
fn status_name(status: i64) -> Option<&'static str> {
    Some(match status {
        0 => "ok",
        1 => "invalidUrl",
        2 => "invalidAuthToken",
        3 => "badData",
        4 => "missingData",
        5 => "receiverNotRegistered",
        6 => "receiverNotSubscribed",
        7 => "publicAccountBlocked",
        8 => "publicAccountNotFound",
        9 => "publicAccountSuspended",
        10 => "webhookNotSet",
        11 => "receiverNoSuitableDevice",
        12 => "tooManyRequests",
        13 => "apiVersionNotSupported",
        14 => "incompatibleWithVersion",
        15 => "publicAccountNotAuthorized",
        16 => "inchatReplyMessageNotAllowed",
        17 => "publicAccountIsNotInline",
        18 => "noPublicChat",
        19 => "cannotSendBroadcast",
        20 => "broadcastNotAllowed",
        _ => return None,
    })
}

/// A retry, after `Retry-After` when Viber sent one, else after `default` (or the shell's back-off).
fn retry(
    response: &ApiResponse,
    code: String,
    message: String,
    recipient_only: bool,
    default: Option<std::time::Duration>,
) -> SendOutcome {
    SendOutcome::Retry { after: response.retry_after().or(default), error: temporary(code, message), recipient_only }
}

fn temporary(code: String, message: impl Into<String>) -> MessageError {
    MessageError { code, message: message.into(), permanent: false }
}

fn permanent(code: String, message: impl Into<String>) -> MessageError {
    MessageError { code, message: message.into(), permanent: true }
}

/// `POST {api_base}/get_account_info`: the bot's own id and name, used for `/ready`.
pub fn build_account_info_request(api_base: &str, bot_token: &Secret) -> ApiRequest {
    ApiRequest {
        method: ApiMethod::Post,
        url: format!("{}/get_account_info", api_base.trim_end_matches('/')),
        headers: auth_headers(bot_token),
        body: ApiBody::Json(b"{}".to_vec()),
    }
}

/// The bot's `(id, name)` from a `get_account_info` answer. Any nonzero status (2 is a bad token) or
/// an answer without an id is an error.
pub fn parse_account_info(response: &ApiResponse) -> Result<(String, String), TokenError> {
    let fail = |message: String| TokenError { status: response.status, message };
    if !(200..=299).contains(&response.status) {
        return Err(fail(format!("Viber answered HTTP {}", response.status)));
    }
    let answer: Value = serde_json::from_slice(&response.body).map_err(|_| fail("answer is not JSON".into()))?;
    let status = answer.get("status").and_then(json::integer).ok_or_else(|| fail("answer has no status".into()))?;
    if status != 0 {
        let name = status_name(status).unwrap_or("error");
        let detail = str_field(&answer, "status_message").unwrap_or_default();
        return Err(fail(format!("Viber status {status} ({name}) {detail}").trim_end().to_owned()));
    }
    let id = id_field(&answer, "id").ok_or_else(|| fail("answer has no account id".into()))?;
    Ok((id, str_field(&answer, "name").unwrap_or_default()))
}

/// `POST {api_base}/set_webhook` for `url`, asking for the callbacks Parley handles and for user
/// names and avatars (PLATFORMS.md 3.1). Viber then checks the URL with a signed `webhook` callback.
pub fn build_set_webhook_request(api_base: &str, bot_token: &Secret, url: &str) -> ApiRequest {
    let body = json!({
        "url": url,
        "event_types": WEBHOOK_EVENT_TYPES,
        "send_name": true,
        "send_photo": true,
    });
    ApiRequest {
        method: ApiMethod::Post,
        url: format!("{}/set_webhook", api_base.trim_end_matches('/')),
        headers: auth_headers(bot_token),
        body: ApiBody::Json(serde_json::to_vec(&body).expect("a serde_json::Value always serialises")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;

    const BOT_TOKEN: &str = "445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9";
    /// PLATFORMS.md 3.2 test vector.
    const VECTOR_BODY: &[u8] =
        br#"{"event":"webhook","timestamp":1700000000000,"chat_hostname":"SN-CHAT-01_","message_token":5741311803571721087}"#;
    const VECTOR_SIGNATURE: &str = "013b93bf9d982712c57a43152e797c774018260110c3ec2acd1ac552aca62229";
    const RECEIVED_AT: Timestamp = Timestamp::from_millis(1_718_100_000_000);

    fn ctx() -> ParseContext<'static> {
        ParseContext { account_id: "viber-bot-parley", received_at: RECEIVED_AT }
    }

    fn token() -> Secret {
        Secret::new(BOT_TOKEN)
    }

    fn header_request<'a>(signature: &'a str, body: &'a [u8]) -> SignedRequest<'a> {
        SignedRequest { signature_header: Some(signature), query: None, body }
    }

    fn query_request<'a>(query: &'a str, body: &'a [u8]) -> SignedRequest<'a> {
        SignedRequest { signature_header: None, query: Some(query), body }
    }

    fn parse_one(fixture: &str) -> InboundEvent {
        let mut events = parse_webhook(fixture.as_bytes(), &ctx()).expect("fixture parses");
        assert_eq!(events.len(), 1, "Viber sends one event per POST");
        events.remove(0)
    }

    fn message_parts(event: &InboundEvent) -> (&str, &MessageContent) {
        match &event.kind {
            EventKind::Message { direction: Direction::Inbound, platform_message_id, content } => {
                (platform_message_id, content)
            }
            other => panic!("expected an inbound message, got {other:?}"),
        }
    }

    fn single_attachment(content: &MessageContent) -> &Attachment {
        assert_eq!(content.kind, ContentKind::Media);
        assert_eq!(content.attachments.len(), 1);
        &content.attachments[0]
    }

    // --- signatures -------------------------------------------------------------------------

    #[test]
    fn viber_test_vector_from_platforms_md_verifies_in_the_header() {
        assert_eq!(sign_webhook(&token(), VECTOR_BODY), VECTOR_SIGNATURE);
        assert_eq!(
            verify_signature(&token(), &header_request(VECTOR_SIGNATURE, VECTOR_BODY)),
            Ok(SignatureForm::Header)
        );
    }

    #[test]
    fn upper_case_hex_and_surrounding_whitespace_are_accepted() {
        let shouted = format!("  {}\n", VECTOR_SIGNATURE.to_uppercase());
        assert_eq!(verify_signature(&token(), &header_request(&shouted, VECTOR_BODY)), Ok(SignatureForm::Header));
    }

    #[test]
    fn a_wrong_signature_is_rejected() {
        let wrong = VECTOR_SIGNATURE.replace("013b", "013c");
        assert_eq!(verify_signature(&token(), &header_request(&wrong, VECTOR_BODY)), Err(VerifyError::BadSignature));
    }

    #[test]
    fn a_body_changed_by_one_byte_after_signing_is_rejected() {
        let mut tampered = VECTOR_BODY.to_vec();
        let last_digit = tampered.len() - 2;
        tampered[last_digit] = b'8';
        assert_eq!(
            verify_signature(&token(), &header_request(VECTOR_SIGNATURE, &tampered)),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn a_signature_made_with_another_platforms_secret_is_rejected() {
        let facebook_secret = Secret::new("app-secret-0123");
        let signature = sign_webhook(&facebook_secret, VECTOR_BODY);
        assert_eq!(
            verify_signature(&token(), &header_request(&signature, VECTOR_BODY)),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn no_header_and_no_sig_parameter_is_a_missing_signature() {
        let request = SignedRequest { signature_header: None, query: Some("foo=bar"), body: VECTOR_BODY };
        assert_eq!(
            verify_signature(&token(), &request),
            Err(VerifyError::MissingSignature { header: "x-viber-content-signature" })
        );
        let bare = SignedRequest { signature_header: None, query: None, body: VECTOR_BODY };
        assert_eq!(verify_signature(&token(), &bare), Err(VerifyError::MissingSignature { header: SIGNATURE_HEADER }));
    }

    #[test]
    fn a_signature_that_is_not_a_hex_digest_is_malformed() {
        for garbage in ["not-hex", "sha256=013b93bf", "", "013b", &format!("{VECTOR_SIGNATURE}00")] {
            assert_eq!(
                verify_signature(&token(), &header_request(garbage, VECTOR_BODY)),
                Err(VerifyError::MalformedSignature),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn the_sig_query_parameter_is_accepted_when_the_header_is_absent() {
        let query = format!("bot=shop&sig={VECTOR_SIGNATURE}");
        assert_eq!(verify_signature(&token(), &query_request(&query, VECTOR_BODY)), Ok(SignatureForm::QueryParameter));
    }

    #[test]
    fn a_wrong_sig_query_parameter_is_rejected() {
        let query = format!("sig={}", VECTOR_SIGNATURE.replace('0', "1"));
        assert_eq!(verify_signature(&token(), &query_request(&query, VECTOR_BODY)), Err(VerifyError::BadSignature));
    }

    #[test]
    fn a_header_and_a_different_sig_parameter_are_ambiguous_whichever_is_right() {
        let wrong = VECTOR_SIGNATURE.replace('0', "f");
        let (right_query, wrong_query) = (format!("sig={VECTOR_SIGNATURE}"), format!("sig={wrong}"));
        for (header, query) in [(wrong.as_str(), &right_query), (VECTOR_SIGNATURE, &wrong_query)] {
            let request = SignedRequest { signature_header: Some(header), query: Some(query), body: VECTOR_BODY };
            assert_eq!(verify_signature(&token(), &request), Err(VerifyError::AmbiguousSignature));
        }
    }

    #[test]
    fn a_sig_parameter_given_twice_is_ambiguous() {
        let wrong = VECTOR_SIGNATURE.replace('0', "f");
        for query in [format!("sig={VECTOR_SIGNATURE}&sig={wrong}"), format!("sig={wrong}&sig={VECTOR_SIGNATURE}")] {
            assert_eq!(
                verify_signature(&token(), &query_request(&query, VECTOR_BODY)),
                Err(VerifyError::AmbiguousSignature)
            );
        }
    }

    #[test]
    fn a_header_with_the_same_sig_parameter_is_one_signature() {
        let query = format!("sig={}", VECTOR_SIGNATURE.to_uppercase());
        let request =
            SignedRequest { signature_header: Some(VECTOR_SIGNATURE), query: Some(&query), body: VECTOR_BODY };
        assert_eq!(verify_signature(&token(), &request), Ok(SignatureForm::Header));
    }

    #[test]
    fn an_empty_bot_token_refuses_every_request() {
        assert_eq!(
            verify_signature(&Secret::new(""), &header_request(VECTOR_SIGNATURE, VECTOR_BODY)),
            Err(VerifyError::NoSecret)
        );
        // Even a signature made with the empty key must not pass.
        let signed_with_empty = sign_webhook(&Secret::new(""), VECTOR_BODY);
        assert_eq!(
            verify_signature(&Secret::new(""), &header_request(&signed_with_empty, VECTOR_BODY)),
            Err(VerifyError::NoSecret)
        );
    }

    #[test]
    fn what_sign_webhook_produces_verifies_as_a_header() {
        for body in [include_str!("../../tests/fixtures/viber/message_rtl_emoji.json"), WEBHOOK_CHECK_FIXTURE] {
            let signature = sign_webhook(&token(), body.as_bytes());
            assert_eq!(
                verify_signature(&token(), &header_request(&signature, body.as_bytes())),
                Ok(SignatureForm::Header)
            );
        }
    }

    const WEBHOOK_CHECK_FIXTURE: &str = include_str!("../../tests/fixtures/viber/webhook.json");

    #[test]
    fn viber_has_no_get_handshake() {
        assert_eq!(verify_handshake(&token(), "challengeCode=abc"), Err(VerifyError::HandshakeNotSupported));
    }

    // --- parsing ----------------------------------------------------------------------------

    #[test]
    fn text_message_becomes_an_inbound_text_from_the_sender() {
        let event = parse_one(include_str!("../../tests/fixtures/viber/message_text.json"));
        assert_eq!(event.platform, Platform::Viber);
        assert_eq!(event.account_id, "viber-bot-parley");
        assert_eq!(event.contact_id.as_deref(), Some("pttm25kSGUo1919sBORWyA=="));
        assert_eq!(event.sender_id.as_deref(), Some("pttm25kSGUo1919sBORWyA=="));
        assert_eq!(event.contact_name.as_deref(), Some("Ivan P."));
        assert_eq!(event.dedup_key, "message:5741311803571721088");
        assert_eq!(event.occurred_at, Timestamp::from_millis(1_718_000_000_123));
        let (id, content) = message_parts(&event);
        assert_eq!(id, "5741311803571721088");
        assert_eq!(content, &MessageContent::text(ContentKind::Text, "Hello, where is my parcel?"));
        assert_eq!(event.raw["message"]["tracking_data"], "conv-01J0ABC");
    }

    #[test]
    fn viber_message_token_keeps_all_64_bits_as_a_number() {
        let body = br#"{"event":"message","timestamp":1718000000123,"message_token":5741311803571721087,
            "sender":{"id":"u1"},"message":{"type":"text","text":"hi"}}"#;
        let events = parse_webhook(body, &ctx()).expect("parses");
        // 5741311803571721087 is odd and above 2^53: through f64 it would come back as ...088.
        let (id, _) = message_parts(&events[0]);
        assert_eq!(id, "5741311803571721087");
        assert_eq!(events[0].dedup_key, "message:5741311803571721087");
    }

    #[test]
    fn viber_message_token_keeps_all_64_bits_as_a_string_and_a_string_timestamp_is_read() {
        let event = parse_one(include_str!("../../tests/fixtures/viber/message_token_as_string.json"));
        let (id, _) = message_parts(&event);
        assert_eq!(id, "5741311803571721087");
        assert_eq!(event.dedup_key, "message:5741311803571721087");
        assert_eq!(event.occurred_at, Timestamp::from_millis(1_718_000_000_123));
        assert_eq!(event.contact_id.as_deref(), Some("Qk9Tbm9UaGVyZQ+/x=="));
    }

    #[test]
    fn implausible_times_date_callbacks_by_their_arrival_keep_the_raw_value_and_a_stable_key() {
        let later =
            ParseContext { account_id: "viber-bot-parley", received_at: RECEIVED_AT.saturating_add_millis(9_000) };
        let fixtures = [
            include_str!("../../tests/fixtures/viber/message_text.json"),
            include_str!("../../tests/fixtures/viber/subscribed.json"),
            include_str!("../../tests/fixtures/viber/unsubscribed.json"),
            include_str!("../../tests/fixtures/viber/conversation_started_without_token.json"),
            include_str!("../../tests/fixtures/viber/delivered.json"),
            include_str!("../../tests/fixtures/viber/seen.json"),
            include_str!("../../tests/fixtures/viber/failed.json"),
            include_str!("../../tests/fixtures/viber/webhook.json"),
        ];
        for time in json::implausible_times() {
            for fixture in fixtures {
                let original = parse_one(fixture);
                let mut body: Value = serde_json::from_str(fixture).unwrap();
                body["timestamp"] = time.clone();
                let body = body.to_string();
                let event = parse_webhook(body.as_bytes(), &ctx()).unwrap().remove(0);
                let again = parse_webhook(body.as_bytes(), &later).unwrap().remove(0);
                assert_eq!(event.occurred_at, RECEIVED_AT, "{time}");
                assert_eq!(event.raw["timestamp"], time, "the platform's value stays in raw");
                assert_eq!(event.dedup_key, again.dedup_key, "a redelivery keeps its key: {time}");
                assert_eq!(std::mem::discriminant(&event.kind), std::mem::discriminant(&original.kind));
                if let EventKind::Receipt(receipt) = &event.kind {
                    assert_eq!(receipt.watermark, None, "an implausible `seen` time is no watermark: {time}");
                }
            }
        }
    }

    #[test]
    fn a_timestamp_in_seconds_is_converted_and_a_missing_one_falls_back_to_arrival() {
        let in_seconds = br#"{"event":"delivered","timestamp":1718000004,"message_token":1,"user_id":"u1"}"#;
        assert_eq!(
            parse_webhook(in_seconds, &ctx()).unwrap()[0].occurred_at,
            Timestamp::from_millis(1_718_000_004_000)
        );
        let without = br#"{"event":"delivered","message_token":1,"user_id":"u1"}"#;
        assert_eq!(parse_webhook(without, &ctx()).unwrap()[0].occurred_at, RECEIVED_AT);
    }

    #[test]
    fn arabic_hebrew_and_emoji_text_is_kept_byte_for_byte() {
        let event = parse_one(include_str!("../../tests/fixtures/viber/message_rtl_emoji.json"));
        let (_, content) = message_parts(&event);
        assert_eq!(content.text.as_deref(), Some("مرحبا! 👋 שלום, איפה החבילה שלי? 👨‍👩‍👧 🇺🇦"));
        assert_eq!(event.contact_name.as_deref(), Some("سلمى כהן 🌙"));
    }

    #[test]
    fn picture_without_text_is_an_attachment_only_message() {
        let event = parse_one(include_str!("../../tests/fixtures/viber/message_picture_without_text.json"));
        let (_, content) = message_parts(&event);
        assert_eq!(content.text, None);
        let picture = single_attachment(content);
        assert_eq!(picture.kind, "image");
        assert_eq!(
            picture.url.as_deref(),
            Some(
                "https://dl-media.viber.com/1/share/2/long/vibes/icon/image/0x0/95e0/5688fdffdaa81f6d5e9eb5a7e1bc53b1d2a1d2a1.jpg"
            )
        );
        assert_eq!(picture.name.as_deref(), Some("IMG_20240610_101500.jpg"));
        assert_eq!(picture.caption, None);
        assert_eq!(content.preview(), "[image]");
    }

    #[test]
    fn picture_text_is_both_the_message_text_and_the_caption() {
        let event = parse_one(include_str!("../../tests/fixtures/viber/message_picture_with_caption.json"));
        let (_, content) = message_parts(&event);
        assert_eq!(content.text.as_deref(), Some("The box arrived like this 📦"));
        assert_eq!(single_attachment(content).caption.as_deref(), Some("The box arrived like this 📦"));
    }

    #[test]
    fn video_and_file_become_media_attachments() {
        let video = parse_one(include_str!("../../tests/fixtures/viber/message_video.json"));
        let (_, content) = message_parts(&video);
        let clip = single_attachment(content);
        assert_eq!(clip.kind, "video");
        assert_eq!(
            clip.url.as_deref(),
            Some("https://dl-media.viber.com/5/media/2/short/any/sig/video/0x0/c3d4/unboxing.mp4")
        );

        let file = parse_one(include_str!("../../tests/fixtures/viber/message_file.json"));
        let (_, content) = message_parts(&file);
        let document = single_attachment(content);
        assert_eq!(document.kind, "file");
        assert_eq!(document.name.as_deref(), Some("invoice-2024-118.pdf"));
        assert_eq!(
            document.url.as_deref(),
            Some("https://dl-media.viber.com/5/media/2/short/any/sig/file/0x0/e5f6/invoice-2024-118.pdf")
        );
    }

    #[test]
    fn sticker_becomes_a_sticker_attachment_and_keeps_its_id_in_raw() {
        let event = parse_one(include_str!("../../tests/fixtures/viber/message_sticker.json"));
        let (_, content) = message_parts(&event);
        let sticker = single_attachment(content);
        assert_eq!(sticker.kind, "sticker");
        assert_eq!(sticker.url.as_deref(), Some("https://viber.com/app/stickers/custom/46105.png"));
        assert_eq!(event.raw["message"]["sticker_id"], 46105);
    }

    #[test]
    fn url_message_is_a_url_attachment_whose_text_is_the_url() {
        let event = parse_one(include_str!("../../tests/fixtures/viber/message_url.json"));
        let (_, content) = message_parts(&event);
        assert_eq!(content.text.as_deref(), Some("https://shop.example.com/orders/118?lang=uk"));
        let link = single_attachment(content);
        assert_eq!(link.kind, "url");
        assert_eq!(link.url.as_deref(), Some("https://shop.example.com/orders/118?lang=uk"));
    }

    #[test]
    fn location_message_carries_latitude_and_longitude() {
        let event = parse_one(include_str!("../../tests/fixtures/viber/message_location.json"));
        let (_, content) = message_parts(&event);
        assert_eq!(content.kind, ContentKind::Location);
        let place = content.location.as_ref().expect("a location");
        assert_eq!((place.latitude, place.longitude), (50.4501, 30.5234));
    }

    #[test]
    fn contact_message_carries_the_name_and_phone_number() {
        let event = parse_one(include_str!("../../tests/fixtures/viber/message_contact.json"));
        let (_, content) = message_parts(&event);
        assert_eq!(content.kind, ContentKind::Contacts);
        assert_eq!(
            content.contacts,
            vec![SharedContact { name: Some("Petro Courier".into()), phones: vec!["+380501234567".into()] }]
        );
    }

    #[test]
    fn a_message_type_we_do_not_model_is_an_unsupported_message() {
        let event = parse_one(include_str!("../../tests/fixtures/viber/message_unknown_type.json"));
        let (id, content) = message_parts(&event);
        assert_eq!(id, "5741311803571721109");
        assert_eq!(content.kind, ContentKind::Unsupported);
        assert_eq!(event.raw["message"]["type"], "rich_media");
    }

    #[test]
    fn a_message_without_a_sender_is_kept_as_unknown() {
        let fixture = include_str!("../../tests/fixtures/viber/message_without_sender.json");
        let event = parse_one(fixture);
        assert_eq!(event.kind, EventKind::Unknown { event_type: "message".into() });
        let whole: Value = serde_json::from_str(fixture).unwrap();
        assert_eq!(event.dedup_key, format!("unknown:{}", json::content_key(&whole)));
        assert_eq!(event.raw, whole);
        assert_eq!(event.contact_id, None);
    }

    #[test]
    fn a_location_without_readable_coordinates_is_still_a_message_with_its_text() {
        for place in [r#"{"lat":"north"}"#, r#"{"lat":1234,"lon":4312}"#, r#""here""#] {
            let body = format!(
                r#"{{"event":"message","timestamp":1718000014000,"message_token":5741311803571721107,
                "sender":{{"id":"u1"}},"message":{{"type":"location","text":"the shop","location":{place}}}}}"#
            );
            let events = parse_webhook(body.as_bytes(), &ctx()).expect("parses");
            let EventKind::Message { content, platform_message_id, .. } = &events[0].kind else {
                panic!("{place}: {:?}", events[0].kind)
            };
            assert_eq!(platform_message_id, "5741311803571721107");
            assert_eq!((content.kind, content.location.as_ref()), (ContentKind::Location, None), "{place}");
            assert_eq!(content.text.as_deref(), Some("the shop"));
        }
    }

    #[test]
    fn stickers_and_contacts_keep_the_text_they_carry() {
        let sticker = br#"{"event":"message","message_token":5741311803571721108,"sender":{"id":"u1"},
            "message":{"type":"sticker","sticker_id":46105,"text":"for you"}}"#;
        let contact = br#"{"event":"message","message_token":5741311803571721109,"sender":{"id":"u1"},
            "message":{"type":"contact","text":"my colleague","contact":{"name":"Itamar","phone_number":"+972511123123"}}}"#;
        for (body, kind, text) in
            [(&sticker[..], ContentKind::Media, "for you"), (&contact[..], ContentKind::Contacts, "my colleague")]
        {
            let events = parse_webhook(body, &ctx()).expect("parses");
            let EventKind::Message { content, .. } = &events[0].kind else { panic!("{:?}", events[0].kind) };
            assert_eq!((content.kind, content.text.as_deref()), (kind, Some(text)));
        }
    }

    #[test]
    fn subscribed_names_the_user_and_dedups_on_the_token() {
        let event = parse_one(include_str!("../../tests/fixtures/viber/subscribed.json"));
        assert_eq!(event.kind, EventKind::Subscribed);
        assert_eq!(event.contact_id.as_deref(), Some("pttm25kSGUo1919sBORWyA=="));
        assert_eq!(event.contact_name.as_deref(), Some("Ivan P."));
        assert_eq!(event.dedup_key, "subscribed:5741311803571721089");
    }

    #[test]
    fn unsubscribed_names_the_user_id() {
        let event = parse_one(include_str!("../../tests/fixtures/viber/unsubscribed.json"));
        assert_eq!(event.kind, EventKind::Unsubscribed);
        assert_eq!(event.contact_id.as_deref(), Some("pttm25kSGUo1919sBORWyA=="));
        assert_eq!(event.contact_name, None);
        assert_eq!(event.dedup_key, "unsubscribed:5741311803571721090");
        assert_eq!(event.occurred_at, Timestamp::from_millis(1_718_000_002_000));
    }

    #[test]
    fn conversation_started_carries_context_and_subscription_state() {
        let event = parse_one(include_str!("../../tests/fixtures/viber/conversation_started.json"));
        assert_eq!(
            event.kind,
            EventKind::ConversationStarted { context: Some("spring-promo".into()), subscribed: Some(false) }
        );
        assert_eq!(event.contact_id.as_deref(), Some("pttm25kSGUo1919sBORWyA=="));
        assert_eq!(event.contact_name.as_deref(), Some("Ivan P."));
        assert_eq!(event.dedup_key, "conversation_started:5741311803571721091");
    }

    #[test]
    fn conversation_started_without_a_token_dedups_on_user_and_time() {
        let event = parse_one(include_str!("../../tests/fixtures/viber/conversation_started_without_token.json"));
        assert_eq!(event.kind, EventKind::ConversationStarted { context: None, subscribed: Some(true) });
        assert_eq!(event.dedup_key, "conversation_started:bm9Ub2tlblVzZXI5OQ==:1718000003500");
    }

    #[test]
    fn delivered_is_a_delivery_receipt_for_our_message() {
        let event = parse_one(include_str!("../../tests/fixtures/viber/delivered.json"));
        assert_eq!(
            event.kind,
            EventKind::Receipt(Receipt {
                kind: ReceiptKind::Delivered,
                message_ids: vec!["5741311803571721094".into()],
                watermark: None,
                error: None,
            })
        );
        assert_eq!(event.contact_id.as_deref(), Some("pttm25kSGUo1919sBORWyA=="));
        assert_eq!(event.dedup_key, "delivered:5741311803571721094:pttm25kSGUo1919sBORWyA==");
    }

    #[test]
    fn seen_is_a_read_receipt_that_also_covers_earlier_messages() {
        let event = parse_one(include_str!("../../tests/fixtures/viber/seen.json"));
        assert_eq!(
            event.kind,
            EventKind::Receipt(Receipt {
                kind: ReceiptKind::Read,
                message_ids: vec!["5741311803571721095".into()],
                watermark: Some(Timestamp::from_millis(1_718_000_004_500)),
                error: None,
            })
        );
        assert_eq!(event.dedup_key, "seen:5741311803571721095:pttm25kSGUo1919sBORWyA==");
    }

    #[test]
    fn failed_is_a_permanent_failure_carrying_the_description() {
        let event = parse_one(include_str!("../../tests/fixtures/viber/failed.json"));
        let EventKind::Receipt(receipt) = &event.kind else { panic!("expected a receipt, got {:?}", event.kind) };
        assert_eq!(receipt.kind, ReceiptKind::Failed);
        assert_eq!(receipt.message_ids, vec!["5741311803571721096".to_owned()]);
        assert_eq!(
            receipt.error,
            Some(MessageError {
                code: "failed".into(),
                message: "keyboard validation failed: Columns must be between 1 and 6".into(),
                permanent: true,
            })
        );
        assert_eq!(event.dedup_key, "failed:5741311803571721096:pttm25kSGUo1919sBORWyA==");
    }

    #[test]
    fn failed_without_a_description_says_delivery_failed() {
        let body =
            br#"{"event":"failed","timestamp":1718000005000,"message_token":5741311803571721096,"user_id":"u1"}"#;
        let events = parse_webhook(body, &ctx()).expect("parses");
        let EventKind::Receipt(receipt) = &events[0].kind else { panic!("expected a receipt") };
        assert_eq!(receipt.error.as_ref().map(|e| e.message.as_str()), Some("delivery failed"));
    }

    #[test]
    fn webhook_check_is_an_activity_outside_any_conversation() {
        let event = parse_one(WEBHOOK_CHECK_FIXTURE);
        assert_eq!(event.kind, EventKind::Activity { name: "webhook_check".into(), detail: None });
        assert_eq!(event.contact_id, None);
        assert_eq!(event.sender_id, None);
        assert_eq!(event.dedup_key, "webhook:5741311803571721087");
        assert_eq!(event.occurred_at, Timestamp::from_millis(1_718_000_000_000));
    }

    #[test]
    fn an_unknown_event_is_kept_whole_as_unknown() {
        let fixture = include_str!("../../tests/fixtures/viber/unknown_event.json");
        let event = parse_one(fixture);
        assert_eq!(event.kind, EventKind::Unknown { event_type: "client_status".into() });
        assert_eq!(event.raw, serde_json::from_str::<Value>(fixture).unwrap());
        assert!(event.dedup_key.starts_with("unknown:"));
        assert_eq!(event.account_id, "viber-bot-parley");
    }

    #[test]
    fn a_receipt_without_a_user_is_kept_as_unknown() {
        let body = br#"{"event":"seen","timestamp":1718000004500,"message_token":5741311803571721095}"#;
        assert_eq!(parse_webhook(body, &ctx()).unwrap()[0].kind, EventKind::Unknown { event_type: "seen".into() });
    }

    #[test]
    fn a_body_that_is_not_a_json_object_with_an_event_is_a_parse_error() {
        assert!(matches!(parse_webhook(b"{\"event\":", &ctx()), Err(ParseError::NotJson(_))));
        assert!(matches!(parse_webhook(b"", &ctx()), Err(ParseError::NotJson(_))));
        assert_eq!(parse_webhook(b"[{\"event\":\"message\"}]", &ctx()), Err(ParseError::NotAnObject));
        assert_eq!(parse_webhook(b"\"message\"", &ctx()), Err(ParseError::NotAnObject));
        assert_eq!(parse_webhook(b"{\"timestamp\":1}", &ctx()), Err(ParseError::MissingField("event")));
        assert_eq!(parse_webhook(b"{\"event\":7}", &ctx()), Err(ParseError::MissingField("event")));
    }

    #[test]
    fn hostile_shapes_never_panic_and_become_unknown() {
        let bodies: [&[u8]; 6] = [
            br#"{"event":"message","message_token":1.5,"sender":{"id":"u"},"message":{"type":"text","text":"x"}}"#,
            br#"{"event":"message","message_token":1,"sender":"u","message":{"type":"text"}}"#,
            br#"{"event":"message","message_token":1,"sender":{"id":"u"},"message":{"type":7}}"#,
            br#"{"event":"conversation_started","user":null,"subscribed":"yes"}"#,
            br#"{"event":"subscribed","user":{"id":""},"timestamp":"tomorrow"}"#,
            br#"{"event":"","timestamp":-5}"#,
        ];
        for body in bodies {
            let events = parse_webhook(body, &ctx()).expect("a JSON object with an event is never an error");
            assert_eq!(events.len(), 1);
            assert!(matches!(events[0].kind, EventKind::Unknown { .. }), "{:?}", events[0].kind);
        }
        // A location whose coordinates make no sense is still the user's message (its place left out).
        let far = br#"{"event":"message","message_token":-1,"sender":{"id":"u"},"message":{"type":"location","location":{"lat":1e300,"lon":0}}}"#;
        let events = parse_webhook(far, &ctx()).expect("parses");
        assert!(
            matches!(&events[0].kind, EventKind::Message { content, .. } if content.kind == ContentKind::Location && content.location.is_none())
        );
    }

    // --- sending ------------------------------------------------------------------------------

    const API_BASE: &str = "https://chatapi.viber.com/pa";
    const RECEIVER: &str = "pttm25kSGUo1919sBORWyA==";

    fn send_ctx(bot_token: &Secret) -> SendContext<'_> {
        SendContext {
            api_base: API_BASE,
            account_id: "viber-bot-parley",
            access_token: bot_token,
            sender_name: "Acme Support",
            api_version: "",
        }
    }

    fn outbound(text: Option<&str>) -> OutboundMessage {
        OutboundMessage {
            human_agent: false,
            link_preview: false,
            location: None,
            contacts: vec![],
            id: "01J0MSG0000000000000000001".into(),
            recipient: RECEIVER.into(),
            reply_to: None,
            text: text.map(str::to_owned),
            attachments: Vec::new(),
            template: None,
        }
    }

    fn attachment(kind: &str, url: Option<&str>) -> Attachment {
        Attachment { kind: kind.into(), url: url.map(str::to_owned), ..Default::default() }
    }

    fn json_body(request: &ApiRequest) -> Value {
        match &request.body {
            ApiBody::Json(bytes) => serde_json::from_slice(bytes).expect("the body is JSON"),
            _ => panic!("expected a JSON body"),
        }
    }

    fn assert_token_only_in_the_header(request: &ApiRequest) {
        assert_eq!(request.headers, vec![("X-Viber-Auth-Token", BOT_TOKEN.to_owned())]);
        assert!(!request.url.contains(BOT_TOKEN));
        let ApiBody::Json(bytes) = &request.body else { panic!("expected JSON") };
        assert!(!String::from_utf8_lossy(bytes).contains(BOT_TOKEN));
        assert!(!format!("{request:?}").contains(BOT_TOKEN));
    }

    fn answer(status: u16, body: &str) -> ApiResponse {
        ApiResponse { status, headers: vec![("content-type".into(), "application/json".into())], body: body.into() }
    }

    fn viber_status(status: i64, status_message: &str) -> ApiResponse {
        answer(
            200,
            &format!(r#"{{"status":{status},"status_message":"{status_message}","chat_hostname":"SN-CHAT-07_"}}"#),
        )
    }

    fn build(message: &OutboundMessage) -> Result<ApiRequest, BuildError> {
        build_send_request(&send_ctx(&token()), message)
    }

    #[test]
    fn a_location_and_a_contact_are_viber_messages_of_their_own() {
        let mut pin = outbound(None);
        pin.location = Some(Location { latitude: 50.4501, longitude: 30.5234, name: None, address: None, url: None });
        let body = json_body(&build(&pin).expect("builds"));
        assert_eq!(
            (&body["type"], &body["location"]),
            (&json!("location"), &json!({ "lat": 50.4501, "lon": 30.5234 }))
        );
        let mut card = outbound(None);
        card.contacts = vec![SharedContact { name: Some("Ivan P.".into()), phones: vec!["+380501234567".into()] }];
        let body = json_body(&build(&card).expect("builds"));
        assert_eq!(body["contact"], json!({ "name": "Ivan P.", "phone_number": "+380501234567" }));
        let mut two = card.clone();
        two.contacts.push(two.contacts[0].clone());
        assert!(matches!(build(&two), Err(BuildError::Unsupported(_))));
        let mut no_phone = card;
        no_phone.contacts[0].phones.clear();
        assert!(matches!(build(&no_phone), Err(BuildError::Invalid { field: "contacts", .. })));
        let mut preview = outbound(Some("https://example.com"));
        preview.link_preview = true;
        assert!(matches!(build(&preview), Err(BuildError::Unsupported(_))));
    }

    #[test]
    fn a_text_message_is_posted_to_send_message_with_the_token_in_the_header_only() {
        let request = build(&outbound(Some("Your parcel leaves the warehouse today."))).expect("builds");
        assert_eq!(request.method, ApiMethod::Post);
        assert_eq!(request.url, "https://chatapi.viber.com/pa/send_message");
        assert_token_only_in_the_header(&request);
        assert_eq!(
            json_body(&request),
            json!({
                "receiver": RECEIVER,
                "min_api_version": 1,
                "sender": { "name": "Acme Support" },
                "tracking_data": "01J0MSG0000000000000000001",
                "type": "text",
                "text": "Your parcel leaves the warehouse today."
            })
        );
    }

    #[test]
    fn a_trailing_slash_on_the_api_base_does_not_double() {
        let bot_token = token();
        let ctx = SendContext { api_base: "https://chatapi.viber.com/pa/", ..send_ctx(&bot_token) };
        assert_eq!(
            build_send_request(&ctx, &outbound(Some("hi"))).unwrap().url,
            "https://chatapi.viber.com/pa/send_message"
        );
    }

    #[test]
    fn reply_to_is_refused_because_viber_bots_cannot_quote() {
        let mut message = outbound(Some("hi"));
        message.reply_to = Some("5741311803571721087".into());
        assert!(matches!(build(&message), Err(BuildError::Unsupported(reason)) if reason.contains("reply_to")));
    }

    #[test]
    fn text_of_exactly_7000_characters_is_sent_and_one_more_is_too_long() {
        // Multi-byte characters: the limit counts characters, not bytes.
        let at_limit = "ж".repeat(MAX_TEXT_CHARS);
        assert!(build(&outbound(Some(&at_limit))).is_ok());
        let over = format!("{at_limit}👋");
        assert_eq!(
            build(&outbound(Some(&over))),
            Err(BuildError::TextTooLong { platform: Platform::Viber, length: 7001, max: 7000 })
        );
    }

    #[test]
    fn a_message_without_text_or_attachment_is_empty() {
        assert_eq!(build(&outbound(None)), Err(BuildError::Empty));
        assert_eq!(build(&outbound(Some(""))), Err(BuildError::Empty));
        assert_eq!(build(&outbound(Some("  \n "))), Err(BuildError::Empty));
    }

    #[test]
    fn an_image_is_a_picture_whose_text_is_the_message_text() {
        let mut message = outbound(Some("Here is your label 📦"));
        message.attachments.push(attachment("image", Some("https://cdn.example.com/labels/118.jpg")));
        let request = build(&message).expect("builds");
        assert_token_only_in_the_header(&request);
        assert_eq!(
            json_body(&request),
            json!({
                "receiver": RECEIVER,
                "min_api_version": 1,
                "sender": { "name": "Acme Support" },
                "tracking_data": "01J0MSG0000000000000000001",
                "type": "picture",
                "media": "https://cdn.example.com/labels/118.jpg",
                "text": "Here is your label 📦"
            })
        );
    }

    #[test]
    fn a_picture_without_text_uses_the_caption_or_else_an_empty_string() {
        let mut message = outbound(None);
        message.attachments.push(Attachment {
            caption: Some("label".into()),
            ..attachment("image", Some("https://cdn.example.com/l.png"))
        });
        assert_eq!(json_body(&build(&message).unwrap())["text"], "label");
        message.attachments[0].caption = None;
        let body = json_body(&build(&message).unwrap());
        assert_eq!(body["type"], "picture");
        assert_eq!(body["text"], "", "Viber requires `text` on a picture, so it is present and empty");
    }

    #[test]
    fn a_picture_description_over_768_characters_is_too_long() {
        let mut message = outbound(Some(&"a".repeat(769)));
        message.attachments.push(attachment("image", Some("https://cdn.example.com/l.png")));
        assert_eq!(build(&message), Err(BuildError::TextTooLong { platform: Platform::Viber, length: 769, max: 768 }));
    }

    #[test]
    fn a_url_attachment_is_a_url_message_without_text() {
        let mut message = outbound(None);
        message.attachments.push(attachment("url", Some("https://shop.example.com/orders/118?lang=uk")));
        let body = json_body(&build(&message).expect("builds"));
        assert_eq!(body["type"], "url");
        assert_eq!(body["media"], "https://shop.example.com/orders/118?lang=uk");
        assert!(body.get("text").is_none());

        message.text = Some("see this".into());
        assert!(matches!(build(&message), Err(BuildError::Unsupported(_))));

        message.text = None;
        message.attachments[0].url = Some(format!("https://example.com/{}", "x".repeat(2000)));
        assert!(matches!(build(&message), Err(BuildError::Invalid { field: "attachments", .. })));
    }

    #[test]
    fn video_file_audio_and_sticker_attachments_are_unsupported_for_lack_of_a_size() {
        for kind in ["video", "file", "audio"] {
            let mut message = outbound(None);
            message.attachments.push(attachment(kind, Some("https://cdn.example.com/media.bin")));
            match build(&message) {
                Err(BuildError::Unsupported(reason)) => assert!(reason.contains("size"), "{reason}"),
                other => panic!("{kind}: expected Unsupported, got {other:?}"),
            }
        }
        let mut message = outbound(None);
        message.attachments.push(attachment("sticker", Some("https://viber.com/app/stickers/46105.png")));
        assert!(matches!(build(&message), Err(BuildError::Unsupported(_))));
    }

    #[test]
    fn an_attachment_without_a_url_is_invalid() {
        let mut message = outbound(Some("hi"));
        message.attachments.push(Attachment { media_id: Some("1234".into()), ..attachment("image", None) });
        assert!(matches!(build(&message), Err(BuildError::Invalid { field: "attachments", .. })));
    }

    #[test]
    fn more_than_one_attachment_is_unsupported() {
        let mut message = outbound(None);
        message.attachments.push(attachment("image", Some("https://cdn.example.com/1.jpg")));
        message.attachments.push(attachment("image", Some("https://cdn.example.com/2.jpg")));
        assert!(matches!(build(&message), Err(BuildError::Unsupported(_))));
    }

    #[test]
    fn a_template_is_unsupported_because_templates_are_whatsapp_only() {
        let mut message = outbound(Some("hi"));
        message.template =
            Some(crate::model::Template { name: "order_update".into(), language: "en".into(), components: vec![] });
        assert_eq!(build(&message), Err(BuildError::Unsupported("templates are WhatsApp only".into())));
    }

    #[test]
    fn a_sender_name_that_is_empty_or_over_28_characters_is_invalid() {
        let bot_token = token();
        for name in ["", "   ", "Acme Logistics Customer Care!"] {
            let ctx = SendContext { sender_name: name, ..send_ctx(&bot_token) };
            assert!(
                matches!(
                    build_send_request(&ctx, &outbound(Some("hi"))),
                    Err(BuildError::Invalid { field: "sender_name", .. })
                ),
                "{name:?}"
            );
        }
        let ctx = SendContext { sender_name: "Служба підтримки Acme 24/7 ✓", ..send_ctx(&bot_token) };
        assert_eq!(ctx.sender_name.chars().count(), 28);
        assert!(build_send_request(&ctx, &outbound(Some("hi"))).is_ok());
    }

    #[test]
    fn an_empty_recipient_is_invalid_and_the_credential_is_not_judged() {
        let mut message = outbound(Some("hi"));
        message.recipient = String::new();
        assert!(matches!(build(&message), Err(BuildError::Invalid { field: "recipient", .. })));
        // Validation builds without a credential (`platform::prepare_outbound`); the channel
        // checks that it has one before it queues anything.
        let empty = Secret::new("");
        assert!(build_send_request(&send_ctx(&empty), &outbound(Some("hi"))).is_ok());
    }

    #[test]
    fn status_0_is_sent_with_the_64_bit_message_token_kept_exactly() {
        let response = answer(
            200,
            r#"{"status":0,"status_message":"ok","message_token":5741311803571721095,"chat_hostname":"SN-CHAT-07_","billing_status":1}"#,
        );
        // 5741311803571721095 is above 2^53; through f64 it would come back as ...096.
        assert_eq!(
            classify_send_response(&response),
            SendOutcome::Sent { platform_message_id: "5741311803571721095".into() }
        );
        let as_string = answer(200, r#"{"status":"0","message_token":"5741311803571721095"}"#);
        assert_eq!(
            classify_send_response(&as_string),
            SendOutcome::Sent { platform_message_id: "5741311803571721095".into() }
        );
    }

    #[test]
    fn status_12_is_a_retry_for_this_recipient_only_honouring_retry_after() {
        let mut response = viber_status(12, "Too many requests");
        assert_eq!(
            classify_send_response(&response),
            SendOutcome::Retry {
                after: None,
                error: MessageError { code: "12".into(), message: "Too many requests".into(), permanent: false },
                recipient_only: true,
            }
        );
        response.headers.push(("retry-after".into(), "120".into()));
        assert!(matches!(
            classify_send_response(&response),
            SendOutcome::Retry { after: Some(after), recipient_only: true, .. } if after.as_secs() == 120
        ));
    }

    #[test]
    fn status_2_is_a_rejected_token() {
        assert_eq!(
            classify_send_response(&viber_status(2, "invalidAuthToken")),
            SendOutcome::TokenRejected(MessageError {
                code: "2".into(),
                message: "invalidAuthToken".into(),
                permanent: false
            })
        );
    }

    #[test]
    fn status_10_is_a_retry_after_a_minute_while_the_webhook_is_set() {
        assert!(matches!(
            classify_send_response(&viber_status(10, "webhookNotSet")),
            SendOutcome::Retry { after: Some(after), recipient_only: false, ref error }
                if after.as_secs() == 60 && error.code == "10" && !error.permanent
        ));
    }

    #[test]
    fn account_level_statuses_are_permanent_failures_that_say_so() {
        for (status, name) in [
            (7, "publicAccountBlocked"),
            (8, "publicAccountNotFound"),
            (9, "publicAccountSuspended"),
            (15, "publicAccountNotAuthorized"),
        ] {
            match classify_send_response(&viber_status(status, "account problem")) {
                SendOutcome::Failed(error) => {
                    assert_eq!(error.code, status.to_string());
                    assert!(error.permanent);
                    assert!(error.message.contains(name), "{}", error.message);
                    assert!(error.message.contains("account problem"), "{}", error.message);
                }
                other => panic!("status {status}: expected Failed, got {other:?}"),
            }
        }
    }

    #[test]
    fn every_other_documented_status_is_a_permanent_failure_carrying_its_number_and_message() {
        for status in [1, 3, 4, 5, 6, 11, 13, 14, 16, 17, 18, 19, 20] {
            assert_eq!(
                classify_send_response(&viber_status(status, "details from Viber")),
                SendOutcome::Failed(MessageError {
                    code: status.to_string(),
                    message: "details from Viber".into(),
                    permanent: true
                }),
                "status {status}"
            );
        }
        // Without a status_message the status's name stands in.
        assert_eq!(
            classify_send_response(&answer(200, r#"{"status":6}"#)),
            SendOutcome::Failed(MessageError {
                code: "6".into(),
                message: "receiverNotSubscribed".into(),
                permanent: true
            })
        );
    }

    #[test]
    fn an_unknown_nonzero_status_is_retried() {
        assert_eq!(
            classify_send_response(&viber_status(21, "billing problem")),
            SendOutcome::Retry {
                after: None,
                error: MessageError { code: "21".into(), message: "billing problem".into(), permanent: false },
                recipient_only: false,
            }
        );
    }

    #[test]
    fn a_502_html_page_is_retried_and_429_honours_retry_after() {
        let bad_gateway = ApiResponse {
            status: 502,
            headers: vec![("content-type".into(), "text/html".into())],
            body: b"<html><body><h1>502 Bad Gateway</h1></body></html>".to_vec(),
        };
        assert!(matches!(
            classify_send_response(&bad_gateway),
            SendOutcome::Retry { after: None, recipient_only: false, ref error } if error.code == "http_502" && !error.permanent
        ));
        let throttled =
            ApiResponse { status: 429, headers: vec![("retry-after".into(), " 30 ".into())], body: Vec::new() };
        assert!(matches!(
            classify_send_response(&throttled),
            SendOutcome::Retry { after: Some(after), .. } if after.as_secs() == 30
        ));
    }

    #[test]
    fn a_200_that_is_not_json_or_has_no_status_is_retried() {
        for body in ["<html>maintenance</html>", "", "[]", r#"{"status_message":"ok"}"#, r#"{"status":1.5}"#] {
            assert!(matches!(classify_send_response(&answer(200, body)), SendOutcome::Retry { .. }), "{body:?}");
        }
    }

    #[test]
    fn http_401_and_403_reject_the_token_and_other_4xx_fail_permanently() {
        for status in [401, 403] {
            assert!(matches!(
                classify_send_response(&answer(status, "")),
                SendOutcome::TokenRejected(ref error) if error.code == format!("http_{status}") && !error.permanent
            ));
        }
        assert!(matches!(
            classify_send_response(&answer(404, "Not Found")),
            SendOutcome::Failed(ref error) if error.code == "http_404" && error.permanent
        ));
    }

    #[test]
    fn hostile_answers_never_panic() {
        for body in [
            &b"\xff\xfe"[..],
            br#"{"status":0}"#,
            br#"{"status":0,"message_token":1e400}"#,
            br#"{"status":-1}"#,
            br#"{"status":99999999999999999999}"#,
            br#"{"status":null,"message_token":[]}"#,
        ] {
            let _ = classify_send_response(&ApiResponse { status: 200, headers: Vec::new(), body: body.to_vec() });
        }
        // Accepted without a token: the send happened, so it is not retried.
        assert_eq!(
            classify_send_response(&answer(200, r#"{"status":0}"#)),
            SendOutcome::Sent { platform_message_id: String::new() }
        );
    }

    #[test]
    fn account_info_is_requested_with_an_empty_object_and_the_token_in_the_header() {
        let request = build_account_info_request(API_BASE, &token());
        assert_eq!(request.method, ApiMethod::Post);
        assert_eq!(request.url, "https://chatapi.viber.com/pa/get_account_info");
        assert_eq!(json_body(&request), json!({}));
        assert_token_only_in_the_header(&request);
    }

    #[test]
    fn account_info_gives_the_bot_id_and_name() {
        let response = answer(
            200,
            r#"{"status":0,"status_message":"ok","id":"pa:75346594275468546724","name":"Acme Support",
                "uri":"acmesupport","icon":"https://media.example.com/icon.jpg","category":"Shopping",
                "subscribers_count":35,"members":[{"id":"01234567890A=","name":"my name","role":"admin"}]}"#,
        );
        assert_eq!(parse_account_info(&response), Ok(("pa:75346594275468546724".into(), "Acme Support".into())));
    }

    #[test]
    fn account_info_with_a_bad_token_or_a_broken_answer_is_an_error() {
        let rejected = parse_account_info(&viber_status(2, "invalidAuthToken")).expect_err("status 2 is an error");
        assert_eq!(rejected.status, 200);
        assert!(rejected.message.contains("status 2"), "{}", rejected.message);
        assert!(!rejected.message.contains(BOT_TOKEN));
        for response in [answer(200, "not json"), answer(200, r#"{"status":0}"#), answer(503, "")] {
            assert!(parse_account_info(&response).is_err(), "{response:?}");
        }
    }

    #[test]
    fn set_webhook_asks_for_our_events_names_and_photos() {
        let request = build_set_webhook_request(API_BASE, &token(), "https://inbox.example.com/webhooks/viber");
        assert_eq!(request.method, ApiMethod::Post);
        assert_eq!(request.url, "https://chatapi.viber.com/pa/set_webhook");
        assert_token_only_in_the_header(&request);
        assert_eq!(
            json_body(&request),
            json!({
                "url": "https://inbox.example.com/webhooks/viber",
                "event_types": ["delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started"],
                "send_name": true,
                "send_photo": true
            })
        );
    }
}
