//! Viber bots (REST bot API): the `X-Viber-Content-Signature` check and the callbacks Viber POSTs to
//! the webhook, one event per POST (PLATFORMS.md section 3).

use serde_json::Value;

use crate::model::{
    Attachment, ContentKind, Direction, EventKind, InboundEvent, Location, MessageContent, MessageError, Platform,
    Receipt, ReceiptKind, SharedContact,
};
use crate::secret::Secret;

use super::json::{self, id_field, str_field};
use super::{HandshakeReply, ParseContext, ParseError, SignatureForm, SignedRequest, VerifyError};

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
    // The header wins whenever it is present: a wrong header is refused outright rather than
    // giving an attacker a second place to try.
    let (signature, form) = match request.signature_header {
        Some(value) => (value.to_owned(), SignatureForm::Header),
        None => match request.query.and_then(|query| super::query_param(query, SIGNATURE_QUERY_PARAMETER)) {
            Some(value) => (value, SignatureForm::QueryParameter),
            None => return Err(VerifyError::MissingSignature { header: SIGNATURE_HEADER }),
        },
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
    let callback: Value = serde_json::from_slice(body).map_err(|error| ParseError::NotJson(error.to_string()))?;
    if !callback.is_object() {
        return Err(ParseError::NotAnObject);
    }
    let event_type = callback.get("event").and_then(Value::as_str).ok_or(ParseError::MissingField("event"))?;
    let classified = match event_type {
        "message" => classify_message(&callback),
        "subscribed" => classify_subscribed(&callback),
        "unsubscribed" => classify_unsubscribed(&callback),
        "conversation_started" => classify_conversation_started(&callback),
        "delivered" => classify_receipt(&callback, "delivered", ReceiptKind::Delivered),
        "seen" => classify_receipt(&callback, "seen", ReceiptKind::Read),
        "failed" => classify_receipt(&callback, "failed", ReceiptKind::Failed),
        "webhook" => Some(classify_webhook_check(&callback)),
        _ => None,
    }
    .unwrap_or_else(|| Classified::unknown(event_type, &callback));

    Ok(vec![InboundEvent {
        platform: Platform::Viber,
        // Viber bodies never name the bot they were sent to.
        account_id: ctx.account_id.to_owned(),
        contact_id: classified.contact_id,
        contact_name: classified.contact_name,
        sender_id: classified.sender_id,
        dedup_key: classified.dedup_key,
        occurred_at: json::timestamp_field(&callback, "timestamp").unwrap_or(ctx.received_at),
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
        "sticker" => media_content("sticker", message, None),
        "url" => {
            let url = str_field(message, "media")?;
            let mut content = media_content("url", message, None);
            content.text = Some(url);
            content
        }
        "location" => {
            let place = message.get("location")?;
            let mut content = MessageContent::empty(ContentKind::Location);
            content.location = Some(Location {
                latitude: coordinate(place.get("lat")?, 90.0)?,
                longitude: coordinate(place.get("lon")?, 180.0)?,
                name: None,
                address: str_field(place, "address"),
                url: None,
            });
            content
        }
        "contact" => {
            let card = message.get("contact").filter(|card| card.is_object())?;
            let mut content = MessageContent::empty(ContentKind::Contacts);
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

/// A latitude or longitude, as a number or a numeric string, within `±limit` degrees.
fn coordinate(value: &Value, limit: f64) -> Option<f64> {
    let degrees = match value {
        Value::Number(number) => number.as_f64()?,
        Value::String(text) => text.trim().parse().ok()?,
        _ => return None,
    };
    (degrees.is_finite() && degrees.abs() <= limit).then_some(degrees)
}

/// `subscribed`: carries a whole `user` object.
fn classify_subscribed(callback: &Value) -> Option<Classified> {
    let user = callback.get("user")?;
    let user_id = id_field(user, "id")?;
    let dedup_key = membership_dedup_key("subscribed", callback, &user_id);
    Some(Classified::from_user(user_id, str_field(user, "name"), dedup_key, EventKind::Subscribed))
}

/// `unsubscribed`: carries only `user_id`.
fn classify_unsubscribed(callback: &Value) -> Option<Classified> {
    let user_id = id_field(callback, "user_id")?;
    let dedup_key = membership_dedup_key("unsubscribed", callback, &user_id);
    Some(Classified::from_user(user_id, None, dedup_key, EventKind::Unsubscribed))
}

/// `conversation_started`: the user opened the chat; not a subscription.
fn classify_conversation_started(callback: &Value) -> Option<Classified> {
    let user = callback.get("user")?;
    let user_id = id_field(user, "id")?;
    let dedup_key = membership_dedup_key("conversation_started", callback, &user_id);
    let kind = EventKind::ConversationStarted {
        context: str_field(callback, "context"),
        subscribed: callback.get("subscribed").and_then(Value::as_bool),
    };
    Some(Classified::from_user(user_id, str_field(user, "name"), dedup_key, kind))
}

/// `(event, message_token)`, falling back to `(event, user, timestamp)` (PLATFORMS.md 3.5). With
/// neither a token nor a time, the body's content is the only thing a redelivery repeats.
fn membership_dedup_key(event_type: &str, callback: &Value, user_id: &str) -> String {
    match (id_field(callback, "message_token"), json::timestamp_field(callback, "timestamp")) {
        (Some(token), _) => format!("{event_type}:{token}"),
        (None, Some(at)) => format!("{event_type}:{user_id}:{}", at.as_millis()),
        (None, None) => format!("{event_type}:{user_id}:{}", json::content_key(callback)),
    }
}

/// `delivered`, `seen` and `failed`: reports about our own message `message_token`.
fn classify_receipt(callback: &Value, event_type: &str, kind: ReceiptKind) -> Option<Classified> {
    let token = id_field(callback, "message_token")?;
    let user_id = id_field(callback, "user_id")?;
    // `seen` is sent once for everything the user had unread, so it also covers earlier messages.
    // Only the body's own time may serve: the arrival time could cover messages sent after the read.
    let watermark = match kind {
        ReceiptKind::Read => json::timestamp_field(callback, "timestamp"),
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
    fn a_wrong_header_is_rejected_even_when_the_sig_parameter_is_right() {
        let wrong = VECTOR_SIGNATURE.replace('0', "f");
        let query = format!("sig={VECTOR_SIGNATURE}");
        let request = SignedRequest { signature_header: Some(&wrong), query: Some(&query), body: VECTOR_BODY };
        assert_eq!(verify_signature(&token(), &request), Err(VerifyError::BadSignature));
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
    fn a_location_without_coordinates_is_kept_as_unknown() {
        let body = br#"{"event":"message","timestamp":1718000014000,"message_token":5741311803571721107,
            "sender":{"id":"u1"},"message":{"type":"location","location":{"lat":"north"}}}"#;
        let events = parse_webhook(body, &ctx()).expect("parses");
        assert_eq!(events[0].kind, EventKind::Unknown { event_type: "message".into() });
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
        let bodies: [&[u8]; 7] = [
            br#"{"event":"message","message_token":1.5,"sender":{"id":"u"},"message":{"type":"text","text":"x"}}"#,
            br#"{"event":"message","message_token":1,"sender":"u","message":{"type":"text"}}"#,
            br#"{"event":"message","message_token":1,"sender":{"id":"u"},"message":{"type":7}}"#,
            br#"{"event":"message","message_token":-1,"sender":{"id":"u"},"message":{"type":"location","location":{"lat":1e300,"lon":0}}}"#,
            br#"{"event":"conversation_started","user":null,"subscribed":"yes"}"#,
            br#"{"event":"subscribed","user":{"id":""},"timestamp":"tomorrow"}"#,
            br#"{"event":"","timestamp":-5}"#,
        ];
        for body in bodies {
            let events = parse_webhook(body, &ctx()).expect("a JSON object with an event is never an error");
            assert_eq!(events.len(), 1);
            assert!(matches!(events[0].kind, EventKind::Unknown { .. }), "{:?}", events[0].kind);
        }
    }
}
