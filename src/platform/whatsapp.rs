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
        // As for known statuses: the recipient is the conversation, but not the sender.
        return InboundEvent {
            sender_id: None,
            ..unknown_event(event_type, account_id.to_owned(), recipient, occurred_at, status)
        };
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
