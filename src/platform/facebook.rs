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
    let own_time = timestamp_field(item, "timestamp");
    let occurred_at = own_time.unwrap_or(ctx.received_at);
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
        "postback" => Some(postback_event(body, &user, occurred_at)),
        "reaction" => reaction_event(body, &user, occurred_at),
        "delivery" | "read" => Some(receipt_event(event_key, body, &user, item)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MessageError;

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
}
