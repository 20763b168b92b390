//! LinkedIn as a Company Page comment inbox: the `challengeCode` handshake, the `X-LI-Signature`
//! check in both forms the documentation allows, and organization social action notifications
//! (PLATFORMS.md section 4).

use serde_json::{Value, json};

use crate::model::{ContentKind, Direction, EventKind, InboundEvent, MessageContent, Platform};
use crate::secret::Secret;

use super::json::{self, id_field};
use super::{HandshakeReply, ParseContext, ParseError, SignatureForm, SignedRequest, VerifyError};

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "x-li-signature";

/// The literal LinkedIn's documentation puts before the body (and some senders before the header value).
const SIGNATURE_PREFIX: &str = "hmacsha256=";

/// Bytes in an HMAC-SHA256 digest; any other length cannot be a LinkedIn signature.
const DIGEST_LEN: usize = 32;

/// The `type` of a batch of comments, mentions, likes and shares on the organization's posts.
const SOCIAL_ACTIONS_TYPE: &str = "ORGANIZATION_SOCIAL_ACTION_NOTIFICATIONS";

/// How much of the post's text names a thread in the conversation list.
const THREAD_TITLE_CHARS: usize = 80;

/// Answers `GET ?challengeCode=C` with `{challengeCode, challengeResponse: hex HMAC(client secret, C)}`.
pub fn verify_handshake(secret: &Secret, query: &str) -> Result<HandshakeReply, VerifyError> {
    if secret.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    let code = super::query_param(query, "challengeCode")
        .filter(|code| !code.is_empty())
        .ok_or(VerifyError::MissingParameter("challengeCode"))?;
    let response = super::sign_hex(secret.expose().as_bytes(), &[code.as_bytes()]);
    Ok(HandshakeReply::Json(json!({ "challengeCode": code, "challengeResponse": response })))
}

/// Checks `X-LI-Signature` under the client secret. Which bytes LinkedIn signs is unconfirmed
/// (PLATFORMS.md 4.2), so both readings are accepted: HMAC over the body, or over `"hmacsha256="` +
/// body; the header may carry an `hmacsha256=` prefix in any case. The form that matched is returned
/// so the first real delivery settles the question in the logs.
pub fn verify_signature(secret: &Secret, request: &SignedRequest<'_>) -> Result<SignatureForm, VerifyError> {
    if secret.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    let header = request.signature_header.ok_or(VerifyError::MissingSignature { header: SIGNATURE_HEADER })?;
    let digest = decode_signature(header).ok_or(VerifyError::MalformedSignature)?;
    let key = secret.expose().as_bytes();
    if super::hmac_matches(key, &[request.body], &digest) {
        Ok(SignatureForm::LinkedinBody)
    } else if super::hmac_matches(key, &[SIGNATURE_PREFIX.as_bytes(), request.body], &digest) {
        Ok(SignatureForm::LinkedinPrefixedBody)
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// The digest in a header value: whitespace trimmed, an optional `hmacsha256=` (any case) removed.
fn decode_signature(header: &str) -> Option<Vec<u8>> {
    let value = header.trim();
    // `get` rather than slicing: a multi-byte character at the boundary yields `None`, not a panic.
    let hex = match value.get(..SIGNATURE_PREFIX.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(SIGNATURE_PREFIX) => &value[SIGNATURE_PREFIX.len()..],
        _ => value,
    };
    super::decode_hex(hex).filter(|digest| digest.len() == DIGEST_LEN)
}

/// The `X-LI-Signature` value in the documentation's literal form: bare lower-case hex of
/// HMAC-SHA256(client secret, `"hmacsha256="` + body). For tests and `parley simulate`.
pub fn sign_webhook(secret: &Secret, body: &[u8]) -> String {
    super::sign_hex(secret.expose().as_bytes(), &[SIGNATURE_PREFIX.as_bytes(), body])
}

/// Turns a verified body into one event per notification, in body order. A notification we cannot
/// read, and a body `type` we do not model (such as `LEAD_ACTION`), are kept as
/// [`EventKind::Unknown`]; only a body that is not a JSON object with a `type` (and, for social
/// actions, a `notifications` array) is an error.
pub fn parse_webhook(body: &[u8], ctx: &ParseContext<'_>) -> Result<Vec<InboundEvent>, ParseError> {
    let envelope: Value = serde_json::from_slice(body).map_err(|error| ParseError::NotJson(error.to_string()))?;
    if !envelope.is_object() {
        return Err(ParseError::NotAnObject);
    }
    let body_type = envelope.get("type").and_then(Value::as_str).ok_or(ParseError::MissingField("type"))?;
    if body_type != SOCIAL_ACTIONS_TYPE {
        return Ok(vec![unknown_body(body_type.to_owned(), envelope, ctx)]);
    }
    let notifications =
        envelope.get("notifications").and_then(Value::as_array).ok_or(ParseError::MissingField("notifications"))?;
    Ok(notifications.iter().map(|notification| parse_notification(notification, ctx)).collect())
}

/// A whole body of a type we do not model, kept as one event for quarantine.
fn unknown_body(body_type: String, envelope: Value, ctx: &ParseContext<'_>) -> InboundEvent {
    InboundEvent {
        platform: Platform::Linkedin,
        account_id: ctx.account_id.to_owned(),
        contact_id: None,
        contact_name: None,
        sender_id: None,
        dedup_key: format!("unknown:{}", json::content_key(&envelope)),
        // Lead notifications carry `occurredAt`, whose unit is unconfirmed; the reader tells them apart.
        occurred_at: json::timestamp_field(&envelope, "occurredAt")
            .or_else(|| json::timestamp_field(&envelope, "lastModifiedAt"))
            .unwrap_or(ctx.received_at),
        kind: EventKind::Unknown { event_type: body_type },
        raw: envelope,
    }
}

/// One element of `notifications[]`, never an error.
fn parse_notification(notification: &Value, ctx: &ParseContext<'_>) -> InboundEvent {
    let action = notification.get("action").and_then(Value::as_str);
    let classified = match (action, id_field(notification, "notificationId")) {
        (Some(action), Some(notification_id)) => classify_action(action, &notification_id, notification),
        _ => None,
    }
    .unwrap_or_else(|| Classified::unknown(action, notification));
    InboundEvent {
        platform: Platform::Linkedin,
        // Each notification names the organization it is about; one app may serve several.
        account_id: id_field(notification, "organizationalEntity").unwrap_or_else(|| ctx.account_id.to_owned()),
        contact_id: classified.contact_id,
        contact_name: classified.contact_name,
        sender_id: classified.sender_id,
        dedup_key: classified.dedup_key,
        occurred_at: json::timestamp_field(notification, "lastModifiedAt").unwrap_or(ctx.received_at),
        kind: classified.kind,
        raw: notification.clone(),
    }
}

/// What one notification says, before the fields every event shares are added.
struct Classified {
    contact_id: Option<String>,
    contact_name: Option<String>,
    sender_id: Option<String>,
    dedup_key: String,
    kind: EventKind,
}

impl Classified {
    /// A notification we do not model, or one missing what we need, kept for quarantine.
    fn unknown(action: Option<&str>, notification: &Value) -> Self {
        let event_type = match action {
            Some(action) => format!("action.{action}"),
            None => "notification".to_owned(),
        };
        Classified {
            contact_id: None,
            contact_name: None,
            sender_id: None,
            dedup_key: format!("unknown:{}", json::content_key(notification)),
            kind: EventKind::Unknown { event_type },
        }
    }
}

/// Dispatches on `action`; `None` for an action we do not model or one missing its thread.
fn classify_action(action: &str, notification_id: &str, notification: &Value) -> Option<Classified> {
    match action {
        "COMMENT" => classify_comment(notification, notification_id, Direction::Inbound),
        // A comment by one of our own admins: the same thread, like a Messenger echo.
        "ADMIN_COMMENT" => classify_comment(notification, notification_id, Direction::Outbound),
        "SHARE_MENTION" => classify_mention(notification, notification_id),
        "COMMENT_EDIT" => {
            let new_text = generated(notification, "comment").and_then(text_of);
            Some(classify_activity(notification, notification_id, "comment_edit", new_text))
        }
        "COMMENT_DELETE" => Some(classify_activity(notification, notification_id, "comment_delete", None)),
        "LIKE" => Some(classify_activity(notification, notification_id, "like", None)),
        "SHARE" => Some(classify_activity(notification, notification_id, "share", None)),
        _ => None,
    }
}

/// `COMMENT` and `ADMIN_COMMENT`: a message in the thread of the post, or of the parent comment when
/// the comment is a reply. Needs at least one of those to know which thread.
fn classify_comment(notification: &Value, notification_id: &str, direction: Direction) -> Option<Classified> {
    let comment = generated(notification, "comment");
    let parent_comment = comment.and_then(|comment| id_field(comment, "parentComment"));
    let post = id_field(notification, "sourcePost").or_else(|| comment.and_then(|comment| id_field(comment, "object")));
    let thread = parent_comment.clone().or(post)?;
    let comment_urn = comment
        .and_then(|comment| id_field(comment, "entity"))
        .or_else(|| id_field(notification, "generatedActivity"))
        .unwrap_or_else(|| notification_id.to_owned());
    let mut content = MessageContent::empty(ContentKind::Comment);
    content.text = comment.and_then(text_of);
    content.reply_to = parent_comment;
    Some(Classified {
        contact_id: Some(thread),
        contact_name: thread_title(notification),
        sender_id: comment.and_then(author_of),
        dedup_key: notification_key(notification_id),
        kind: EventKind::Message { direction, platform_message_id: comment_urn, content },
    })
}

/// `SHARE_MENTION`: someone's post mentions the organization; the thread is that post.
fn classify_mention(notification: &Value, notification_id: &str) -> Option<Classified> {
    // Which key holds the mentioning post is not pinned down; read the plausible ones.
    let post = ["share", "post", "ugcPost", "comment"].iter().find_map(|key| generated(notification, key));
    let mentioning_post = id_field(notification, "generatedActivity");
    let thread = mentioning_post.clone().or_else(|| id_field(notification, "sourcePost"))?;
    let text = post.and_then(text_of);
    let mut content = MessageContent::empty(ContentKind::Mention);
    content.text = text.clone();
    Some(Classified {
        contact_id: Some(thread),
        // The thread is the mentioning post itself, so its own text names it best.
        contact_name: text.as_deref().and_then(title_from).or_else(|| thread_title(notification)),
        sender_id: post.and_then(author_of),
        dedup_key: notification_key(notification_id),
        kind: EventKind::Message {
            direction: Direction::Inbound,
            platform_message_id: mentioning_post.unwrap_or_else(|| notification_id.to_owned()),
            content,
        },
    })
}

/// Likes, shares, edits and deletions: something that happened on a post, not a message in it.
fn classify_activity(notification: &Value, notification_id: &str, name: &str, detail: Option<String>) -> Classified {
    let decorated = decorated_objects(notification);
    Classified {
        contact_id: id_field(notification, "sourcePost")
            .or_else(|| decorated.clone().find_map(|object| id_field(object, "object"))),
        contact_name: thread_title(notification),
        sender_id: id_field(notification, "actor").or_else(|| decorated.clone().find_map(author_of)),
        dedup_key: notification_key(notification_id),
        kind: EventKind::Activity { name: name.to_owned(), detail },
    }
}

/// The notification id is LinkedIn's own de-duplication key (PLATFORMS.md 4.5).
fn notification_key(notification_id: &str) -> String {
    format!("notification:{notification_id}")
}

/// `decoratedGeneratedActivity[key]`, when it is an object.
fn generated<'a>(notification: &'a Value, key: &str) -> Option<&'a Value> {
    notification.get("decoratedGeneratedActivity")?.get(key).filter(|object| object.is_object())
}

/// Every object inside `decoratedGeneratedActivity` (the comment, like or share it describes).
fn decorated_objects(notification: &Value) -> impl Iterator<Item = &Value> + Clone {
    notification
        .get("decoratedGeneratedActivity")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|activity| activity.values())
        .filter(|object| object.is_object())
}

/// Who wrote a comment or post: `owner` in the captures seen, `actor` or `author` elsewhere in the API.
fn author_of(object: &Value) -> Option<String> {
    ["owner", "actor", "author"].iter().find_map(|key| id_field(object, key))
}

/// The text of a comment or post. Captures show both `text` and `message.text`; posts use `commentary`.
fn text_of(object: &Value) -> Option<String> {
    ["text", "message", "commentary"].iter().find_map(|key| match object.get(key)? {
        Value::String(text) => Some(text.clone()),
        nested => nested.get("text")?.as_str().map(str::to_owned),
    })
}

/// A short name for the thread: the start of the post's text, when LinkedIn decorated the post.
fn thread_title(notification: &Value) -> Option<String> {
    notification.get("decoratedSourcePost").and_then(text_of).as_deref().and_then(title_from)
}

/// The first [`THREAD_TITLE_CHARS`] characters (not bytes: a title never splits a character).
fn title_from(text: &str) -> Option<String> {
    let title: String = text.trim().chars().take(THREAD_TITLE_CHARS).collect();
    (!title.is_empty()).then_some(title)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;

    const CLIENT_SECRET: &str = "li-client-secret";
    /// PLATFORMS.md 4.2 test vectors.
    const VECTOR_BODY: &[u8] = br#"{"type":"ORGANIZATION_SOCIAL_ACTION_NOTIFICATIONS","notifications":[]}"#;
    const VECTOR_BODY_SIGNATURE: &str = "4456294421cbd1147f0fd939b17f540599ee9abb483b3df42f332e18c8c3161f";
    const VECTOR_PREFIXED_SIGNATURE: &str = "b16bb3f667e1aa0c637fdee295bb40e387af021a39c0d4a26c8970f71bd1c011";
    const ORGANIZATION: &str = "urn:li:organization:2414183";
    const RECEIVED_AT: Timestamp = Timestamp::from_millis(1_718_100_000_000);

    fn ctx() -> ParseContext<'static> {
        ParseContext { account_id: "urn:li:organization:configured", received_at: RECEIVED_AT }
    }

    fn secret() -> Secret {
        Secret::new(CLIENT_SECRET)
    }

    fn signed<'a>(signature: &'a str, body: &'a [u8]) -> SignedRequest<'a> {
        SignedRequest { signature_header: Some(signature), query: None, body }
    }

    fn parse(fixture: &str) -> Vec<InboundEvent> {
        parse_webhook(fixture.as_bytes(), &ctx()).expect("fixture parses")
    }

    fn message_parts(event: &InboundEvent) -> (Direction, &str, &MessageContent) {
        match &event.kind {
            EventKind::Message { direction, platform_message_id, content } => {
                (*direction, platform_message_id, content)
            }
            other => panic!("expected a message, got {other:?}"),
        }
    }

    // --- handshake ----------------------------------------------------------------------------

    #[test]
    fn challenge_test_vector_from_platforms_md_is_answered_as_json() {
        let reply = verify_handshake(&secret(), "challengeCode=8f1b6c2e-5d4a-4e7b-9c3d-2a1f0e9d8c7b");
        assert_eq!(
            reply,
            Ok(HandshakeReply::Json(json!({
                "challengeCode": "8f1b6c2e-5d4a-4e7b-9c3d-2a1f0e9d8c7b",
                "challengeResponse": "b2bb01c7432863767f8e7dbe63c908d0a68a41f021cc39ba22637602aae5d4aa",
            })))
        );
    }

    #[test]
    fn challenge_with_an_application_id_still_answers_the_code() {
        let reply =
            verify_handshake(&secret(), "applicationId=77001&challengeCode=8f1b6c2e-5d4a-4e7b-9c3d-2a1f0e9d8c7b");
        let Ok(HandshakeReply::Json(body)) = reply else { panic!("expected a JSON reply, got {reply:?}") };
        assert_eq!(body["challengeResponse"], "b2bb01c7432863767f8e7dbe63c908d0a68a41f021cc39ba22637602aae5d4aa");
    }

    #[test]
    fn challenge_without_a_code_is_a_missing_parameter() {
        for query in ["", "applicationId=77001", "challengeCode="] {
            assert_eq!(
                verify_handshake(&secret(), query),
                Err(VerifyError::MissingParameter("challengeCode")),
                "{query:?}"
            );
        }
    }

    #[test]
    fn challenge_with_no_client_secret_is_refused() {
        assert_eq!(verify_handshake(&Secret::new(""), "challengeCode=abc"), Err(VerifyError::NoSecret));
    }

    // --- signatures ---------------------------------------------------------------------------

    #[test]
    fn hmac_over_the_body_verifies_with_and_without_the_prefix() {
        for header in [
            VECTOR_BODY_SIGNATURE.to_owned(),
            format!("hmacsha256={VECTOR_BODY_SIGNATURE}"),
            format!("HMACSHA256={VECTOR_BODY_SIGNATURE}"),
            format!("HmacSha256={}", VECTOR_BODY_SIGNATURE.to_uppercase()),
        ] {
            assert_eq!(
                verify_signature(&secret(), &signed(&header, VECTOR_BODY)),
                Ok(SignatureForm::LinkedinBody),
                "{header}"
            );
        }
    }

    #[test]
    fn hmac_over_the_prefixed_body_verifies_with_and_without_the_prefix() {
        for header in [
            VECTOR_PREFIXED_SIGNATURE.to_owned(),
            format!(" hmacsha256={VECTOR_PREFIXED_SIGNATURE} "),
            format!("HMACSHA256={}", VECTOR_PREFIXED_SIGNATURE.to_uppercase()),
        ] {
            assert_eq!(
                verify_signature(&secret(), &signed(&header, VECTOR_BODY)),
                Ok(SignatureForm::LinkedinPrefixedBody),
                "{header}"
            );
        }
    }

    #[test]
    fn sign_webhook_produces_the_documentation_literal_form() {
        assert_eq!(sign_webhook(&secret(), VECTOR_BODY), VECTOR_PREFIXED_SIGNATURE);
        let body = include_str!("../../tests/fixtures/linkedin/batch_several_commenters.json").as_bytes();
        assert_eq!(
            verify_signature(&secret(), &signed(&sign_webhook(&secret(), body), body)),
            Ok(SignatureForm::LinkedinPrefixedBody)
        );
    }

    #[test]
    fn a_wrong_signature_is_rejected() {
        let wrong = VECTOR_BODY_SIGNATURE.replace("4456", "4457");
        assert_eq!(verify_signature(&secret(), &signed(&wrong, VECTOR_BODY)), Err(VerifyError::BadSignature));
    }

    #[test]
    fn a_body_changed_by_one_byte_after_signing_is_rejected_in_both_forms() {
        let tampered = br#"{"type":"ORGANIZATION_SOCIAL_ACTION_NOTIFICATIONS","notifications":{}}"#;
        assert_eq!(tampered.len(), VECTOR_BODY.len());
        for signature in [VECTOR_BODY_SIGNATURE, VECTOR_PREFIXED_SIGNATURE] {
            assert_eq!(verify_signature(&secret(), &signed(signature, tampered)), Err(VerifyError::BadSignature));
        }
    }

    #[test]
    fn a_signature_made_with_another_platforms_secret_is_rejected() {
        let viber_token = Secret::new("445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9");
        let forged = sign_webhook(&viber_token, VECTOR_BODY);
        assert_eq!(verify_signature(&secret(), &signed(&forged, VECTOR_BODY)), Err(VerifyError::BadSignature));
    }

    #[test]
    fn a_missing_header_is_a_missing_signature_even_with_a_sig_parameter() {
        let request = SignedRequest {
            signature_header: None,
            query: Some("sig=4456294421cbd1147f0fd939b17f540599ee9abb483b3df42f332e18c8c3161f"),
            body: VECTOR_BODY,
        };
        assert_eq!(
            verify_signature(&secret(), &request),
            Err(VerifyError::MissingSignature { header: "x-li-signature" })
        );
    }

    #[test]
    fn a_signature_that_is_not_a_hex_digest_is_malformed() {
        for garbage in ["", "hmacsha256=", "sha256=4456", "hmacsha256=zz", "hmacsha256é=00", "4456294421cbd114"] {
            assert_eq!(
                verify_signature(&secret(), &signed(garbage, VECTOR_BODY)),
                Err(VerifyError::MalformedSignature),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn an_empty_client_secret_refuses_every_request() {
        assert_eq!(
            verify_signature(&Secret::new(""), &signed(VECTOR_BODY_SIGNATURE, VECTOR_BODY)),
            Err(VerifyError::NoSecret)
        );
    }

    // --- parsing ------------------------------------------------------------------------------

    #[test]
    fn a_comment_is_an_inbound_message_in_the_posts_thread() {
        let events = parse(include_str!("../../tests/fixtures/linkedin/comment.json"));
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.platform, Platform::Linkedin);
        assert_eq!(event.account_id, ORGANIZATION);
        assert_eq!(event.contact_id.as_deref(), Some("urn:li:activity:7190000000000000001"));
        assert_eq!(event.contact_name.as_deref(), Some("Our spring collection is live"));
        assert_eq!(event.sender_id.as_deref(), Some("urn:li:person:AbC123xYz"));
        assert_eq!(event.dedup_key, "notification:8812345001");
        assert_eq!(event.occurred_at, Timestamp::from_millis(1_718_000_000_123));
        let (direction, id, content) = message_parts(event);
        assert_eq!(direction, Direction::Inbound);
        assert_eq!(id, "urn:li:comment:(urn:li:activity:7190000000000000001,7190000000000000099)");
        assert_eq!(content.kind, ContentKind::Comment);
        assert_eq!(content.text.as_deref(), Some("Do you ship to Portugal?"));
        assert_eq!(content.reply_to, None);
    }

    #[test]
    fn a_batch_of_several_commenters_comes_out_whole_and_in_order() {
        let events = parse(include_str!("../../tests/fixtures/linkedin/batch_several_commenters.json"));
        let keys: Vec<&str> = events.iter().map(|event| event.dedup_key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "notification:8812345101",
                "notification:8812345102",
                "notification:8812345103",
                "notification:8812345104"
            ]
        );
        let senders: Vec<Option<&str>> = events.iter().map(|event| event.sender_id.as_deref()).collect();
        assert_eq!(
            senders,
            [
                Some("urn:li:person:Ann4Commenter"),
                Some("urn:li:person:YaelB3nDavid"),
                Some(ORGANIZATION),
                Some("urn:li:person:C4rlosM")
            ]
        );
        assert!(events.iter().all(|event| event.account_id == ORGANIZATION));
    }

    #[test]
    fn a_reply_is_threaded_under_its_parent_comment() {
        let events = parse(include_str!("../../tests/fixtures/linkedin/batch_several_commenters.json"));
        let parent = "urn:li:comment:(urn:li:activity:7190000000000000201,7190000000000000210)";
        let reply = &events[1];
        assert_eq!(reply.contact_id.as_deref(), Some(parent));
        let (_, id, content) = message_parts(reply);
        assert_eq!(id, "urn:li:comment:(urn:li:activity:7190000000000000201,7190000000000000211)");
        assert_eq!(content.reply_to.as_deref(), Some(parent));
        // The top-level comment it answers lives in the post's thread.
        assert_eq!(events[0].contact_id.as_deref(), Some("urn:li:activity:7190000000000000201"));
    }

    #[test]
    fn comment_text_under_message_and_right_to_left_emoji_text_are_kept_byte_for_byte() {
        let events = parse(include_str!("../../tests/fixtures/linkedin/batch_several_commenters.json"));
        let (_, _, content) = message_parts(&events[1]);
        assert_eq!(content.text.as_deref(), Some("גם אני רוצה לדעת 🙋‍♀️ وأنا أيضاً"));
    }

    #[test]
    fn notification_ids_as_numbers_and_as_strings_give_the_same_key_shape() {
        let events = parse(include_str!("../../tests/fixtures/linkedin/batch_several_commenters.json"));
        assert!(events[0].raw["notificationId"].is_u64());
        assert!(events[1].raw["notificationId"].is_string());
        assert_eq!(events[0].dedup_key, "notification:8812345101");
        assert_eq!(events[1].dedup_key, "notification:8812345102");
    }

    #[test]
    fn an_admin_comment_is_an_outbound_message_in_the_same_thread() {
        let events = parse(include_str!("../../tests/fixtures/linkedin/batch_several_commenters.json"));
        let (direction, _, content) = message_parts(&events[2]);
        assert_eq!(direction, Direction::Outbound);
        assert_eq!(content.kind, ContentKind::Comment);
        assert_eq!(content.text.as_deref(), Some("Yes! Juniors are welcome 🎉"));
        assert_eq!(events[2].contact_id, events[1].contact_id);
    }

    #[test]
    fn the_thread_title_is_the_first_80_characters_of_the_post() {
        let events = parse(include_str!("../../tests/fixtures/linkedin/batch_several_commenters.json"));
        let title = events[0].contact_name.as_deref().expect("the post was decorated");
        assert_eq!(title.chars().count(), 80);
        assert_eq!(title, "We are hiring! Join our logistics team in Lisbon, Porto or remote. Applications ");
        // No decorated post, no title.
        assert_eq!(events[3].contact_name, None);
    }

    #[test]
    fn a_comment_without_source_post_is_threaded_on_the_comments_object() {
        let events = parse(include_str!("../../tests/fixtures/linkedin/batch_several_commenters.json"));
        assert_eq!(events[3].contact_id.as_deref(), Some("urn:li:activity:7190000000000000301"));
    }

    #[test]
    fn last_modified_at_as_a_number_and_as_a_string_is_read_as_milliseconds() {
        let events = parse(include_str!("../../tests/fixtures/linkedin/batch_several_commenters.json"));
        assert_eq!(events[0].occurred_at, Timestamp::from_millis(1_718_000_100_000));
        assert_eq!(events[3].occurred_at, Timestamp::from_millis(1_718_000_280_000));
    }

    #[test]
    fn a_share_mention_is_an_inbound_mention_in_the_mentioning_posts_thread() {
        let events = parse(include_str!("../../tests/fixtures/linkedin/share_mention.json"));
        let event = &events[0];
        assert_eq!(event.contact_id.as_deref(), Some("urn:li:activity:7190000000000000401"));
        assert_eq!(event.sender_id.as_deref(), Some("urn:li:person:D1anaWrites"));
        assert_eq!(event.dedup_key, "notification:8812345201");
        let (direction, id, content) = message_parts(event);
        assert_eq!(direction, Direction::Inbound);
        assert_eq!(id, "urn:li:activity:7190000000000000401");
        assert_eq!(content.kind, ContentKind::Mention);
        assert_eq!(content.text.as_deref(), Some("Thanks to Parcel Co for getting my order to Faro in two days!"));
    }

    #[test]
    fn likes_shares_edits_and_deletions_are_activities_on_the_post() {
        let events = parse(include_str!("../../tests/fixtures/linkedin/activities.json"));
        let kinds: Vec<&EventKind> = events.iter().map(|event| &event.kind).collect();
        assert_eq!(
            kinds,
            [
                &EventKind::Activity { name: "like".into(), detail: None },
                &EventKind::Activity { name: "share".into(), detail: None },
                &EventKind::Activity {
                    name: "comment_edit".into(),
                    detail: Some("Do you ship to Portugal and Spain?".into())
                },
                &EventKind::Activity { name: "comment_delete".into(), detail: None },
            ]
        );
        assert!(events.iter().all(|event| event.contact_id.as_deref() == Some("urn:li:activity:7190000000000000001")));
        let senders: Vec<Option<&str>> = events.iter().map(|event| event.sender_id.as_deref()).collect();
        assert_eq!(
            senders,
            [
                Some("urn:li:person:L1kerPers0n"),
                Some("urn:li:person:Sh4rerPers0n"),
                Some("urn:li:person:AbC123xYz"),
                None
            ]
        );
        assert_eq!(events[3].dedup_key, "notification:8812345304");
    }

    #[test]
    fn unknown_and_malformed_notifications_are_kept_in_place_as_unknown() {
        let fixture = include_str!("../../tests/fixtures/linkedin/unknown_and_malformed.json");
        let events = parse(fixture);
        let elements = serde_json::from_str::<Value>(fixture).unwrap()["notifications"].clone();
        assert_eq!(events.len(), 5);
        let expected_types = ["action.REPOST_REACTION", "action.COMMENT", "action.COMMENT", "notification"];
        for (index, expected) in expected_types.iter().enumerate() {
            assert_eq!(events[index].kind, EventKind::Unknown { event_type: (*expected).into() }, "element {index}");
            assert_eq!(events[index].raw, elements[index]);
            assert_eq!(events[index].dedup_key, format!("unknown:{}", json::content_key(&elements[index])));
        }
        // The element that is not even an object names no organization: the configured one stands in.
        assert_eq!(events[3].account_id, "urn:li:organization:configured");
        assert_eq!(events[3].occurred_at, RECEIVED_AT);
        // The good comment after the broken ones is still read.
        assert_eq!(events[4].dedup_key, "notification:8812345405");
        assert_eq!(message_parts(&events[4]).2.text.as_deref(), Some("I come after the broken ones"));
    }

    #[test]
    fn a_lead_notification_is_kept_whole_as_unknown() {
        let fixture = include_str!("../../tests/fixtures/linkedin/lead_action.json");
        let events = parse(fixture);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::Unknown { event_type: "LEAD_ACTION".into() });
        assert_eq!(events[0].raw, serde_json::from_str::<Value>(fixture).unwrap());
        assert_eq!(events[0].occurred_at, Timestamp::from_millis(1_718_000_700_000));
        assert_eq!(events[0].account_id, "urn:li:organization:configured");
    }

    #[test]
    fn an_unknown_body_type_is_kept_whole_as_one_unknown_event() {
        let fixture = include_str!("../../tests/fixtures/linkedin/unknown_type.json");
        let events = parse(fixture);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::Unknown { event_type: "ORGANIZATION_FOLLOWER_NOTIFICATIONS".into() });
        let whole: Value = serde_json::from_str(fixture).unwrap();
        assert_eq!(events[0].dedup_key, format!("unknown:{}", json::content_key(&whole)));
        assert_eq!(events[0].raw, whole);
    }

    #[test]
    fn an_empty_batch_gives_no_events() {
        assert_eq!(parse_webhook(VECTOR_BODY, &ctx()), Ok(Vec::new()));
    }

    #[test]
    fn a_body_that_is_not_a_social_action_envelope_is_a_parse_error() {
        assert!(matches!(parse_webhook(b"{\"type\":", &ctx()), Err(ParseError::NotJson(_))));
        assert!(matches!(parse_webhook(b"not json", &ctx()), Err(ParseError::NotJson(_))));
        assert_eq!(parse_webhook(b"[]", &ctx()), Err(ParseError::NotAnObject));
        assert_eq!(parse_webhook(b"{\"notifications\":[]}", &ctx()), Err(ParseError::MissingField("type")));
        for missing in [
            &br#"{"type":"ORGANIZATION_SOCIAL_ACTION_NOTIFICATIONS"}"#[..],
            br#"{"type":"ORGANIZATION_SOCIAL_ACTION_NOTIFICATIONS","notifications":{"0":{}}}"#,
        ] {
            assert_eq!(parse_webhook(missing, &ctx()), Err(ParseError::MissingField("notifications")));
        }
    }

    #[test]
    fn hostile_notifications_never_panic_and_become_unknown() {
        let body = br#"{"type":"ORGANIZATION_SOCIAL_ACTION_NOTIFICATIONS","notifications":[
            null, [], "COMMENT", {"action":7,"notificationId":1},
            {"action":"COMMENT","notificationId":1.5,"sourcePost":"urn:li:activity:1"},
            {"action":"SHARE_MENTION","notificationId":2},
            {"action":"COMMENT","notificationId":3,"decoratedGeneratedActivity":{"comment":"flat"}},
            {"action":"COMMENT","notificationId":4,"sourcePost":"","decoratedGeneratedActivity":[]}
        ]}"#;
        let events = parse_webhook(body, &ctx()).expect("a well-formed envelope is never an error");
        assert_eq!(events.len(), 8);
        for event in &events {
            assert!(matches!(event.kind, EventKind::Unknown { .. }), "{:?}", event.kind);
        }
    }
}
