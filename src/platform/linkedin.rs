//! LinkedIn as a Company Page comment inbox: the `challengeCode` handshake, the `X-LI-Signature`
//! check in both forms the documentation allows, organization social action notifications, replies
//! as organization comments, and token introspection and refresh (PLATFORMS.md section 4).

use serde_json::{Value, json};

use crate::model::{
    ContentKind, Direction, EventKind, InboundEvent, MessageContent, MessageError, OutboundMessage, Platform, Timestamp,
};
use crate::secret::Secret;

use super::json::{self, id_field};
use super::{
    ApiBody, ApiMethod, ApiRequest, ApiResponse, BuildError, HandshakeReply, ParseContext, ParseError, SendContext,
    SendOutcome, SignatureForm, SignedRequest, TokenError, TokenGrant, TokenStatus, VerifyError,
};

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
    let envelope = json::parse_body(body)?;
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
        contact_alias: None,
        platform: Platform::Linkedin,
        account_id: ctx.account_id.to_owned(),
        contact_id: None,
        contact_name: None,
        sender_id: None,
        dedup_key: format!("unknown:{}", json::content_key(&envelope)),
        // Lead notifications carry `occurredAt`, whose unit is unconfirmed; the reader tells them
        // apart. A missing or implausible time (json::event_time) dates the body by its arrival.
        occurred_at: json::event_time_field(&envelope, "occurredAt", ctx.received_at)
            .or_else(|| json::event_time_field(&envelope, "lastModifiedAt", ctx.received_at))
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
        contact_alias: None,
        platform: Platform::Linkedin,
        // Each notification names the organization it is about; one app may serve several.
        account_id: id_field(notification, "organizationalEntity").unwrap_or_else(|| ctx.account_id.to_owned()),
        contact_id: classified.contact_id,
        contact_name: classified.contact_name,
        sender_id: classified.sender_id,
        dedup_key: classified.dedup_key,
        occurred_at: json::event_time_field(notification, "lastModifiedAt", ctx.received_at).unwrap_or(ctx.received_at),
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

// --- sending and tokens (PLATFORMS.md 4.6–4.8) -----------------------------------------------

/// The most characters in a comment. The Comments API page names no limit; 1250 is what LinkedIn's
/// own comment box and several API clients enforce [secondary].
pub const MAX_TEXT_CHARS: usize = 1250;

/// Every versioned REST call names the Rest.li protocol it speaks.
const RESTLI_PROTOCOL_VERSION: &str = "2.0.0";

/// Every LinkedIn URN starts so.
const URN_PREFIX: &str = "urn:li:";

/// A comment URN is `urn:li:comment:(<post URN>,<comment id>)`.
const COMMENT_URN_PREFIX: &str = "urn:li:comment:(";

/// Builds the Comments API call that replies as the organization (`ctx.account_id`).
///
/// The post a LinkedIn comment URN hangs off: `urn:li:comment:(urn:li:activity:1,2)` →
/// `urn:li:activity:1`.
pub fn comment_object(urn: &str) -> Option<&str> {
    let inner = urn.strip_prefix("urn:li:comment:(")?.strip_suffix(')')?;
    let (object, _id) = inner.rsplit_once(',')?;
    Some(object)
}

/// Where a reply in the conversation keyed `contact_id` goes: under the post, and for a thread
/// that is a comment, as a reply to that comment (its parent).
pub fn reply_target(contact_id: &str) -> (String, Option<String>) {
    match comment_object(contact_id) {
        Some(post) => (post.to_owned(), Some(contact_id.to_owned())),
        None => (contact_id.to_owned(), None),
    }
}

/// A top-level comment goes to `POST {api_base}/rest/socialActions/{post URN}/comments` with
/// `object` the post. A reply within a thread names its parent comment: `reply_to`, or the
/// recipient itself when the conversation is a comment thread (CONTRACT.md: the conversation is the
/// post, or the parent comment). A reply goes to `socialActions/{parent comment URN}/comments`, with
/// `object` the post inside the parent's URN and `parentComment` the parent, which is the form the
/// documented `{shareUrn|ugcPostUrn|commentUrn}` path and its clients use. URNs in the path are
/// percent-encoded (`:` `(` `)` `,`). Comments carry text only here: images need LinkedIn's upload
/// flow first.
pub fn build_send_request(ctx: &SendContext<'_>, message: &OutboundMessage) -> Result<ApiRequest, BuildError> {
    crate::platform::refuse_whatsapp_only("LinkedIn", message)?;
    if message.human_agent {
        return Err(BuildError::Unsupported("`human_agent` is Messenger's; LinkedIn has no such tag".into()));
    }
    if message.template.is_some() {
        return Err(BuildError::Unsupported("templates are WhatsApp only".to_owned()));
    }
    if !message.attachments.is_empty() {
        return Err(BuildError::Unsupported(
            "LinkedIn replies are text comments: attachments would need LinkedIn's image upload, which Parley \
             does not do"
                .to_owned(),
        ));
    }
    let target = comment_target(&message.recipient, message.reply_to.as_deref())?;
    if !is_urn(ctx.account_id) {
        return Err(BuildError::Invalid {
            field: "account_id",
            reason: "the organization URN (urn:li:organization:…) the reply is posted as is required".to_owned(),
        });
    }
    if ctx.api_version.trim().is_empty() {
        return Err(BuildError::Invalid {
            field: "api_version",
            reason: "LinkedIn-Version (YYYYMM) is required".into(),
        });
    }
    let text = message.text.as_deref().filter(|text| !text.trim().is_empty()).ok_or(BuildError::Empty)?;
    let length = text.chars().count();
    if length > MAX_TEXT_CHARS {
        return Err(BuildError::TextTooLong { platform: Platform::Linkedin, length, max: MAX_TEXT_CHARS });
    }

    let mut body = json!({ "actor": ctx.account_id, "object": target.post, "message": { "text": text } });
    if let (Some(parent), Some(fields)) = (target.parent, body.as_object_mut()) {
        fields.insert("parentComment".to_owned(), Value::String(parent.to_owned()));
    }
    Ok(ApiRequest {
        method: ApiMethod::Post,
        url: format!(
            "{}/rest/socialActions/{}/comments",
            ctx.api_base.trim_end_matches('/'),
            percent_encode(target.parent.unwrap_or(target.post))
        ),
        headers: vec![
            ("Authorization", format!("Bearer {}", ctx.access_token.expose())),
            ("LinkedIn-Version", ctx.api_version.to_owned()),
            ("X-Restli-Protocol-Version", RESTLI_PROTOCOL_VERSION.to_owned()),
        ],
        body: ApiBody::Json(serde_json::to_vec(&body).expect("a serde_json::Value always serialises")),
    })
}

/// Where a comment goes: the post it hangs under and, for a reply, the parent comment.
struct CommentTarget<'a> {
    post: &'a str,
    parent: Option<&'a str>,
}

/// Reads the recipient (a post or comment URN) and `reply_to` (a comment URN) into a target.
fn comment_target<'a>(recipient: &'a str, reply_to: Option<&'a str>) -> Result<CommentTarget<'a>, BuildError> {
    if !is_urn(recipient) {
        return Err(BuildError::Invalid {
            field: "recipient",
            reason: "a post URN (urn:li:activity:…, urn:li:share:… or urn:li:ugcPost:…) or a comment URN is required"
                .to_owned(),
        });
    }
    let recipient_is_comment = recipient.starts_with("urn:li:comment:");
    if recipient_is_comment && comment_thread(recipient).is_none() {
        return Err(BuildError::Invalid {
            field: "recipient",
            reason: "a comment URN has the form urn:li:comment:(<post URN>,<id>)".to_owned(),
        });
    }
    let parent = match reply_to {
        Some(parent) if comment_thread(parent).is_none() => {
            return Err(BuildError::Invalid {
                field: "reply_to",
                reason: "the parent must be a comment URN urn:li:comment:(<post URN>,<id>)".to_owned(),
            });
        }
        Some(parent) => Some(parent),
        None => recipient_is_comment.then_some(recipient),
    };
    // A reply's `object` is the post named inside its parent, which may be the activity form of the
    // share or ugcPost the conversation was opened on.
    let post = parent.and_then(comment_thread).unwrap_or(recipient);
    Ok(CommentTarget { post, parent })
}

/// The post URN inside `urn:li:comment:(<post URN>,<id>)`, when the URN has that form.
fn comment_thread(urn: &str) -> Option<&str> {
    let inner = urn.strip_prefix(COMMENT_URN_PREFIX)?.strip_suffix(')')?;
    let (thread, id) = inner.rsplit_once(',')?;
    (is_urn(thread) && !id.is_empty()).then_some(thread)
}

/// `urn:li:<type>:<id>` with something after the prefix and no whitespace anywhere.
fn is_urn(text: &str) -> bool {
    text.len() > URN_PREFIX.len() && text.starts_with(URN_PREFIX) && !text.contains(char::is_whitespace)
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for path segments and form values.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
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

/// Reads the Comments API's answer. 2xx means the comment exists: it is `Sent` even when no id can be
/// found (a retry would post it twice), with an empty id. Errors carry LinkedIn's envelope
/// `{status, serviceErrorCode, code, message}`; the code is `serviceErrorCode`, else `code`, else
/// `http_<status>`.
pub fn classify_send_response(response: &ApiResponse) -> SendOutcome {
    let status = response.status;
    let body = serde_json::from_slice::<Value>(&response.body).ok().filter(Value::is_object);
    if (200..=299).contains(&status) {
        return SendOutcome::Sent { platform_message_id: created_comment_urn(response, body.as_ref()) };
    }
    let (code, message) = error_envelope(status, body.as_ref());
    let error = |permanent| MessageError { code: code.clone(), message: message.clone(), permanent };
    match status {
        // Invalid (65600), revoked (65601) or expired: refresh once, else the channel is down.
        401 => SendOutcome::TokenRejected(error(false)),
        // Daily quotas and the per-minute comment throttle apply to the app and member, not one thread.
        429 => SendOutcome::Retry { after: response.retry_after(), error: error(false), recipient_only: false },
        // 403 (permission or admin role lost), 400/422 (validation), 404 (post deleted) and the rest.
        400..=499 => SendOutcome::Failed(error(true)),
        _ => SendOutcome::Retry { after: response.retry_after(), error: error(false), recipient_only: false },
    }
}

/// The new comment's id, preferring its URN (inbound comments and the `ADMIN_COMMENT` echo are keyed
/// by it): the body's `commentUrn` or `$URN`, a URN in `x-restli-id`, a URN composed from the body's
/// `object` and the bare id, else the bare id, else empty.
fn created_comment_urn(response: &ApiResponse, body: Option<&Value>) -> String {
    let from_body = |key: &str| body.and_then(|body| json::str_field(body, key)).filter(|urn| is_urn(urn));
    let header = response.header("x-restli-id").map(percent_decode).filter(|id| !id.trim().is_empty());
    if let Some(urn) = from_body("commentUrn").or_else(|| from_body("$URN")) {
        return urn;
    }
    if let Some(urn) = header.as_deref().filter(|id| is_urn(id)) {
        return urn.to_owned();
    }
    let bare_id = header.or_else(|| body.and_then(|body| id_field(body, "id")));
    match (from_body("object"), bare_id) {
        (Some(post), Some(id)) => format!("urn:li:comment:({post},{id})"),
        (None, Some(id)) => id,
        (_, None) => String::new(),
    }
}

/// `(code, message)` from an error answer, never the raw body (it may be an HTML page).
fn error_envelope(status: u16, body: Option<&Value>) -> (String, String) {
    let service_code = body.and_then(|body| id_field(body, "serviceErrorCode"));
    let symbolic = body.and_then(|body| json::str_field(body, "code"));
    let text = body.and_then(|body| json::str_field(body, "message"));
    let message = match (&service_code, &symbolic, text) {
        (Some(_), Some(symbolic), Some(text)) => format!("{symbolic}: {text}"),
        (_, _, Some(text)) => text,
        (_, Some(symbolic), None) => symbolic.clone(),
        (_, None, None) => format!("LinkedIn answered HTTP {status}"),
    };
    let code = service_code.or(symbolic).unwrap_or_else(|| format!("http_{status}"));
    (code, message)
}

/// Decodes `%XX` escapes; anything else, including an invalid escape, is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(super::decode_hex);
        match escaped {
            Some(decoded) => {
                out.extend(decoded);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `POST {oauth_base}/introspectToken` with the form `client_id, client_secret, token`.
pub fn build_introspect_request(
    oauth_base: &str,
    client_id: &str,
    client_secret: &Secret,
    token: &Secret,
) -> ApiRequest {
    form_request(
        oauth_base,
        "introspectToken",
        &[("client_id", client_id), ("client_secret", client_secret.expose()), ("token", token.expose())],
    )
}

/// Reads an introspection answer: valid when `active` is true and `status` (if given) is `active`;
/// `expires_at` is in epoch seconds. 400 (bad client id or token), 401 (bad secret) and an answer
/// without `active` are errors.
pub fn parse_introspection(response: &ApiResponse) -> Result<TokenStatus, TokenError> {
    let answer = token_answer(response)?;
    let active = answer.get("active").and_then(Value::as_bool).ok_or_else(|| TokenError {
        status: response.status,
        message: "introspection answer has no `active`".to_owned(),
    })?;
    let status_active = answer.get("status").and_then(Value::as_str).is_none_or(|s| s.eq_ignore_ascii_case("active"));
    let expires_at =
        answer.get("expires_at").and_then(json::integer).filter(|secs| *secs > 0).map(Timestamp::from_secs);
    Ok(TokenStatus { valid: active && status_active, expires_at })
}

/// `POST {oauth_base}/accessToken` with `grant_type=refresh_token&refresh_token=…&client_id=…&client_secret=…`.
pub fn build_refresh_request(
    oauth_base: &str,
    client_id: &str,
    client_secret: &Secret,
    refresh_token: &Secret,
) -> ApiRequest {
    form_request(
        oauth_base,
        "accessToken",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
            ("client_id", client_id),
            ("client_secret", client_secret.expose()),
        ],
    )
}

/// Reads a token grant: `access_token` is required; the lifetimes are seconds. LinkedIn issues a new
/// refresh token with each refresh, whose expiry does not slide. OAuth errors
/// (`{"error","error_description"}`) are [`TokenError`]s.
pub fn parse_token_grant(response: &ApiResponse) -> Result<TokenGrant, TokenError> {
    let answer = token_answer(response)?;
    let access_token = json::str_field(&answer, "access_token").ok_or_else(|| TokenError {
        status: response.status,
        message: "token answer has no access_token".to_owned(),
    })?;
    let seconds = |key: &str| answer.get(key).and_then(json::integer).and_then(|secs| u64::try_from(secs).ok());
    Ok(TokenGrant {
        access_token: Secret::new(access_token),
        expires_in: seconds("expires_in"),
        refresh_token: json::str_field(&answer, "refresh_token").map(Secret::new),
        refresh_token_expires_in: seconds("refresh_token_expires_in"),
    })
}

/// A form POST to the OAuth endpoint `path`; the credentials are in the body, never the URL.
fn form_request(oauth_base: &str, path: &str, fields: &[(&str, &str)]) -> ApiRequest {
    let form: Vec<String> =
        fields.iter().map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value))).collect();
    ApiRequest {
        method: ApiMethod::Post,
        url: format!("{}/{path}", oauth_base.trim_end_matches('/')),
        headers: Vec::new(),
        body: ApiBody::Form(form.join("&").into_bytes()),
    }
}

/// The JSON object of a successful token endpoint answer; an OAuth error, another HTTP error or a
/// body that is not a JSON object is a [`TokenError`] that never quotes the body whole.
fn token_answer(response: &ApiResponse) -> Result<Value, TokenError> {
    let status = response.status;
    let answer = serde_json::from_slice::<Value>(&response.body).ok().filter(Value::is_object);
    let oauth_error = answer.as_ref().and_then(|answer| json::str_field(answer, "error"));
    match (answer, oauth_error) {
        (Some(answer), Some(error)) => {
            let message = match json::str_field(&answer, "error_description") {
                Some(description) => format!("{error}: {description}"),
                None => error,
            };
            Err(TokenError { status, message })
        }
        (Some(answer), None) if (200..=299).contains(&status) => Ok(answer),
        (Some(answer), None) => Err(TokenError { status, message: error_envelope(status, Some(&answer)).1 }),
        (None, _) if (200..=299).contains(&status) => {
            Err(TokenError { status, message: "token endpoint answer is not a JSON object".to_owned() })
        }
        (None, _) => Err(TokenError { status, message: format!("token endpoint answered HTTP {status}") }),
    }
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
    fn implausible_times_date_notifications_by_their_arrival_and_stay_raw() {
        let fixtures = [
            include_str!("../../tests/fixtures/linkedin/comment.json"),
            include_str!("../../tests/fixtures/linkedin/activities.json"),
            include_str!("../../tests/fixtures/linkedin/share_mention.json"),
            include_str!("../../tests/fixtures/linkedin/batch_several_commenters.json"),
        ];
        let later = ParseContext {
            account_id: "urn:li:organization:configured",
            received_at: RECEIVED_AT.saturating_add_millis(9_000),
        };
        for time in json::implausible_times() {
            for fixture in fixtures {
                let original = parse(fixture);
                let mut body: Value = serde_json::from_str(fixture).unwrap();
                for notification in body["notifications"].as_array_mut().unwrap() {
                    notification["lastModifiedAt"] = time.clone();
                }
                let body = body.to_string();
                let events = parse_webhook(body.as_bytes(), &ctx()).unwrap();
                let redelivered = parse_webhook(body.as_bytes(), &later).unwrap();
                assert_eq!(events.len(), original.len());
                for ((event, original), again) in events.iter().zip(&original).zip(&redelivered) {
                    assert_eq!(event.occurred_at, RECEIVED_AT, "{time}");
                    assert_eq!(event.raw["lastModifiedAt"], time, "the platform's value stays in raw");
                    assert_eq!(event.kind, original.kind, "{time}");
                    assert_eq!(event.dedup_key, again.dedup_key, "a redelivery keeps its key: {time}");
                }
            }
            let mut lead: Value =
                serde_json::from_str(include_str!("../../tests/fixtures/linkedin/lead_action.json")).unwrap();
            lead["occurredAt"] = time.clone();
            let event = &parse_webhook(lead.to_string().as_bytes(), &ctx()).unwrap()[0];
            assert_eq!(event.occurred_at, RECEIVED_AT, "occurredAt {time}");
            lead["lastModifiedAt"] = json!(1_718_000_000_123_i64);
            let event = &parse_webhook(lead.to_string().as_bytes(), &ctx()).unwrap()[0];
            assert_eq!(event.occurred_at, Timestamp::from_millis(1_718_000_000_123), "falls back to lastModifiedAt");
        }
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

    // --- sending ------------------------------------------------------------------------------

    const ACCESS_TOKEN: &str = "AQXdSP_W41_UPs5ioT_t8HESyODB4FqbkJ8LrV_5mff4gPODzOYR";
    const POST: &str = "urn:li:activity:7190000000000000001";
    const PARENT: &str = "urn:li:comment:(urn:li:activity:7190000000000000001,7190000000000000099)";
    const ENCODED_POST: &str = "urn%3Ali%3Aactivity%3A7190000000000000001";
    const ENCODED_PARENT: &str =
        "urn%3Ali%3Acomment%3A%28urn%3Ali%3Aactivity%3A7190000000000000001%2C7190000000000000099%29";

    fn send_ctx(token: &Secret) -> SendContext<'_> {
        SendContext {
            api_base: "https://api.linkedin.com",
            account_id: ORGANIZATION,
            access_token: token,
            sender_name: "",
            api_version: "202506",
        }
    }

    #[test]
    fn a_comment_urn_names_its_post_and_a_reply_in_its_thread_goes_under_the_post() {
        let comment = "urn:li:comment:(urn:li:activity:7190000000000000001,7190000000000000099)";
        assert_eq!(comment_object(comment), Some("urn:li:activity:7190000000000000001"));
        assert_eq!(comment_object("urn:li:activity:7190000000000000001"), None);
        assert_eq!(comment_object("urn:li:comment:broken"), None);
        assert_eq!(reply_target(comment), ("urn:li:activity:7190000000000000001".to_owned(), Some(comment.to_owned())));
        assert_eq!(reply_target("urn:li:share:7"), ("urn:li:share:7".to_owned(), None));
    }

    fn reply(recipient: &str, reply_to: Option<&str>, text: Option<&str>) -> OutboundMessage {
        OutboundMessage {
            human_agent: false,
            link_preview: false,
            location: None,
            contacts: vec![],
            id: "01J0MSG0000000000000000002".into(),
            recipient: recipient.into(),
            reply_to: reply_to.map(str::to_owned),
            text: text.map(str::to_owned),
            attachments: Vec::new(),
            template: None,
        }
    }

    fn build(message: &OutboundMessage) -> Result<ApiRequest, BuildError> {
        build_send_request(&send_ctx(&Secret::new(ACCESS_TOKEN)), message)
    }

    fn json_body(request: &ApiRequest) -> Value {
        match &request.body {
            ApiBody::Json(bytes) => serde_json::from_slice(bytes).expect("the body is JSON"),
            _ => panic!("expected a JSON body"),
        }
    }

    fn form_body(request: &ApiRequest) -> String {
        match &request.body {
            ApiBody::Form(bytes) => String::from_utf8(bytes.clone()).expect("a form body is ASCII"),
            _ => panic!("expected a form body"),
        }
    }

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> ApiResponse {
        ApiResponse {
            status,
            headers: headers.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_comment_on_a_post_is_posted_as_the_organization_with_the_encoded_post_in_the_path() {
        let request = build(&reply(POST, None, Some("Yes, we ship to Portugal in 3–5 days. 🇵🇹"))).expect("builds");
        assert_eq!(request.method, ApiMethod::Post);
        assert_eq!(request.url, format!("https://api.linkedin.com/rest/socialActions/{ENCODED_POST}/comments"));
        assert_eq!(
            request.headers,
            vec![
                ("Authorization", format!("Bearer {ACCESS_TOKEN}")),
                ("LinkedIn-Version", "202506".to_owned()),
                ("X-Restli-Protocol-Version", "2.0.0".to_owned()),
            ]
        );
        assert_eq!(
            json_body(&request),
            json!({
                "actor": ORGANIZATION,
                "object": POST,
                "message": { "text": "Yes, we ship to Portugal in 3–5 days. 🇵🇹" }
            })
        );
        assert!(!request.url.contains(ACCESS_TOKEN));
        assert!(!format!("{request:?}").contains(ACCESS_TOKEN));
    }

    #[test]
    fn share_and_ugc_post_urns_are_encoded_the_same_way() {
        for (urn, encoded) in [
            ("urn:li:share:7190000000000000002", "urn%3Ali%3Ashare%3A7190000000000000002"),
            ("urn:li:ugcPost:7190000000000000003", "urn%3Ali%3AugcPost%3A7190000000000000003"),
        ] {
            let request = build(&reply(urn, None, Some("Thanks!"))).expect("builds");
            assert_eq!(request.url, format!("https://api.linkedin.com/rest/socialActions/{encoded}/comments"));
            assert_eq!(json_body(&request)["object"], urn);
        }
    }

    #[test]
    fn a_reply_goes_to_the_parent_comment_and_names_it_as_parent_comment() {
        let request = build(&reply(POST, Some(PARENT), Some("Juniors welcome!"))).expect("builds");
        assert_eq!(request.url, format!("https://api.linkedin.com/rest/socialActions/{ENCODED_PARENT}/comments"));
        assert_eq!(
            json_body(&request),
            json!({
                "actor": ORGANIZATION,
                "object": POST,
                "message": { "text": "Juniors welcome!" },
                "parentComment": PARENT
            })
        );
    }

    #[test]
    fn a_reply_names_the_post_inside_its_parent_even_when_the_conversation_used_another_form() {
        let request = build(&reply("urn:li:ugcPost:7190000000000000003", Some(PARENT), Some("hi"))).expect("builds");
        assert_eq!(json_body(&request)["object"], POST);
    }

    #[test]
    fn a_comment_thread_as_the_recipient_is_a_reply_to_that_comment() {
        // CONTRACT.md: a thread's conversation is its parent comment, so `to` may be the comment URN.
        let from_thread = build(&reply(PARENT, None, Some("Juniors welcome!"))).expect("builds");
        assert_eq!(from_thread, build(&reply(POST, Some(PARENT), Some("Juniors welcome!"))).unwrap());
    }

    #[test]
    fn a_recipient_or_parent_that_is_not_a_linkedin_urn_is_invalid() {
        for recipient in ["7190000000000000001", "", "urn:li:", "urn:li:activity: 1", "https://www.linkedin.com/feed/"]
        {
            assert!(
                matches!(
                    build(&reply(recipient, None, Some("hi"))),
                    Err(BuildError::Invalid { field: "recipient", .. })
                ),
                "{recipient:?}"
            );
        }
        assert!(matches!(
            build(&reply("urn:li:comment:7190000000000000099", None, Some("hi"))),
            Err(BuildError::Invalid { field: "recipient", .. })
        ));
        for parent in [POST, "urn:li:comment:(7190000000000000001,99)", "urn:li:comment:(urn:li:activity:1,)"] {
            assert!(
                matches!(
                    build(&reply(POST, Some(parent), Some("hi"))),
                    Err(BuildError::Invalid { field: "reply_to", .. })
                ),
                "{parent:?}"
            );
        }
    }

    #[test]
    fn an_account_that_is_not_a_urn_or_a_missing_version_is_invalid_and_the_credential_is_not_judged() {
        let token = Secret::new(ACCESS_TOKEN);
        let message = reply(POST, None, Some("hi"));
        let ctx = SendContext { account_id: "2414183", ..send_ctx(&token) };
        assert!(matches!(build_send_request(&ctx, &message), Err(BuildError::Invalid { field: "account_id", .. })));
        let ctx = SendContext { api_version: "", ..send_ctx(&token) };
        assert!(matches!(build_send_request(&ctx, &message), Err(BuildError::Invalid { field: "api_version", .. })));
        // Validation builds without a credential (`platform::prepare_outbound`).
        let empty = Secret::new("");
        assert!(build_send_request(&send_ctx(&empty), &message).is_ok());
    }

    #[test]
    fn attachments_and_templates_are_unsupported() {
        let mut message = reply(POST, None, Some("see attached"));
        message.attachments.push(crate::model::Attachment {
            kind: "image".into(),
            url: Some("https://cdn.example.com/a.jpg".into()),
            ..Default::default()
        });
        assert!(matches!(build(&message), Err(BuildError::Unsupported(_))));
        let mut message = reply(POST, None, Some("hi"));
        message.template =
            Some(crate::model::Template { name: "hello".into(), language: "en".into(), components: vec![] });
        assert_eq!(build(&message), Err(BuildError::Unsupported("templates are WhatsApp only".into())));
    }

    #[test]
    fn an_empty_comment_is_empty_and_one_over_1250_characters_is_too_long() {
        for text in [None, Some(""), Some(" \t\n")] {
            assert_eq!(build(&reply(POST, None, text)), Err(BuildError::Empty), "{text:?}");
        }
        let at_limit = "ü".repeat(MAX_TEXT_CHARS);
        assert!(build(&reply(POST, None, Some(&at_limit))).is_ok());
        let over = format!("{at_limit}!");
        assert_eq!(
            build(&reply(POST, None, Some(&over))),
            Err(BuildError::TextTooLong { platform: Platform::Linkedin, length: 1251, max: 1250 })
        );
    }

    #[test]
    fn urn_encoding_escapes_colons_parentheses_and_commas_and_keeps_unreserved_characters() {
        assert_eq!(percent_encode(PARENT), ENCODED_PARENT);
        assert_eq!(percent_encode("a-b_c.d~e f/g+h=é"), "a-b_c.d~e%20f%2Fg%2Bh%3D%C3%A9");
        assert_eq!(percent_decode(ENCODED_PARENT), PARENT);
        assert_eq!(percent_decode("100%zz%4"), "100%zz%4");
    }

    #[test]
    fn a_201_with_the_comment_urn_in_the_body_is_sent_under_that_urn() {
        let created = answer(
            201,
            &[("x-restli-id", "7190000000000000150"), ("content-type", "application/json")],
            r#"{"actor":"urn:li:organization:2414183","id":"7190000000000000150",
                "commentUrn":"urn:li:comment:(urn:li:activity:7190000000000000001,7190000000000000150)",
                "object":"urn:li:activity:7190000000000000001","message":{"text":"Yes!"},
                "created":{"actor":"urn:li:person:AdminP3rson","time":1718000000000}}"#,
        );
        assert_eq!(
            classify_send_response(&created),
            SendOutcome::Sent {
                platform_message_id: "urn:li:comment:(urn:li:activity:7190000000000000001,7190000000000000150)".into()
            }
        );
    }

    #[test]
    fn a_201_with_only_x_restli_id_is_sent_under_that_id() {
        let encoded_urn = answer(
            201,
            &[("x-restli-id", "urn%3Ali%3Acomment%3A%28urn%3Ali%3Aactivity%3A7190000000000000001%2C42%29")],
            "",
        );
        assert_eq!(
            classify_send_response(&encoded_urn),
            SendOutcome::Sent { platform_message_id: "urn:li:comment:(urn:li:activity:7190000000000000001,42)".into() }
        );
        let bare_id = answer(201, &[("x-restli-id", "7190000000000000150")], "");
        assert_eq!(
            classify_send_response(&bare_id),
            SendOutcome::Sent { platform_message_id: "7190000000000000150".into() }
        );
    }

    #[test]
    fn a_bare_id_with_the_post_in_the_body_becomes_the_comment_urn_and_no_id_at_all_is_still_sent() {
        let composed = answer(200, &[], r#"{"id":7190000000000000150,"object":"urn:li:activity:7190000000000000001"}"#);
        assert_eq!(
            classify_send_response(&composed),
            SendOutcome::Sent {
                platform_message_id: "urn:li:comment:(urn:li:activity:7190000000000000001,7190000000000000150)".into()
            }
        );
        let dollar_urn = answer(200, &[], r#"{"$URN":"urn:li:comment:(urn:li:share:5,6)"}"#);
        assert_eq!(
            classify_send_response(&dollar_urn),
            SendOutcome::Sent { platform_message_id: "urn:li:comment:(urn:li:share:5,6)".into() }
        );
        // The comment exists; a retry would post it twice.
        assert_eq!(
            classify_send_response(&answer(201, &[], "")),
            SendOutcome::Sent { platform_message_id: String::new() }
        );
    }

    #[test]
    fn a_revoked_token_is_rejected_with_its_service_error_code() {
        let revoked = answer(
            401,
            &[("content-type", "application/json")],
            r#"{"status":401,"serviceErrorCode":65601,"code":"REVOKED_ACCESS_TOKEN","message":"The token used in the request has been revoked by the user"}"#,
        );
        assert_eq!(
            classify_send_response(&revoked),
            SendOutcome::TokenRejected(MessageError {
                code: "65601".into(),
                message: "REVOKED_ACCESS_TOKEN: The token used in the request has been revoked by the user".into(),
                permanent: false,
            })
        );
        let expired = answer(
            401,
            &[],
            r#"{"status":401,"serviceErrorCode":65600,"code":"INVALID_ACCESS_TOKEN","message":"Invalid access token"}"#,
        );
        assert!(matches!(classify_send_response(&expired), SendOutcome::TokenRejected(ref e) if e.code == "65600"));
        let bare = answer(401, &[], "");
        assert!(matches!(classify_send_response(&bare), SendOutcome::TokenRejected(ref e) if e.code == "http_401"));
    }

    #[test]
    fn a_403_is_a_permanent_failure() {
        let forbidden = answer(
            403,
            &[],
            r#"{"status":403,"serviceErrorCode":100,"code":"ACCESS_DENIED","message":"Not enough permissions to access: partnerApiSocialActions.CREATE.20250601"}"#,
        );
        assert_eq!(
            classify_send_response(&forbidden),
            SendOutcome::Failed(MessageError {
                code: "100".into(),
                message: "ACCESS_DENIED: Not enough permissions to access: partnerApiSocialActions.CREATE.20250601"
                    .into(),
                permanent: true,
            })
        );
    }

    #[test]
    fn validation_errors_are_permanent_with_the_code_string_when_there_is_no_service_code() {
        let unprocessable = answer(
            422,
            &[],
            r#"{"status":422,"code":"UNPROCESSABLE_ENTITY","message":"ERROR :: /message/text :: length exceeds 1250"}"#,
        );
        assert_eq!(
            classify_send_response(&unprocessable),
            SendOutcome::Failed(MessageError {
                code: "UNPROCESSABLE_ENTITY".into(),
                message: "ERROR :: /message/text :: length exceeds 1250".into(),
                permanent: true,
            })
        );
        let bad_request = answer(400, &[], r#"{"status":400,"message":"Invalid URN"}"#);
        assert!(matches!(
            classify_send_response(&bad_request),
            SendOutcome::Failed(ref e) if e.code == "http_400" && e.message == "Invalid URN" && e.permanent
        ));
    }

    #[test]
    fn a_429_is_retried_after_retry_after_for_the_whole_channel() {
        let throttled = answer(
            429,
            &[("retry-after", "60")],
            r#"{"status":429,"message":"Comment create throttled: creation rate limit exceeded for member"}"#,
        );
        match classify_send_response(&throttled) {
            SendOutcome::Retry { after, error, recipient_only } => {
                assert_eq!(after, Some(std::time::Duration::from_secs(60)));
                assert!(!recipient_only);
                assert_eq!(error.code, "http_429");
                assert!(!error.permanent);
                assert!(error.message.contains("throttled"));
            }
            other => panic!("expected a retry, got {other:?}"),
        }
        assert!(matches!(classify_send_response(&answer(429, &[], "")), SendOutcome::Retry { after: None, .. }));
    }

    #[test]
    fn a_500_html_page_is_retried_without_quoting_the_page() {
        let page = answer(
            500,
            &[("content-type", "text/html")],
            "<!DOCTYPE html><html><head><title>LinkedIn</title></head><body>Something went wrong</body></html>",
        );
        assert_eq!(
            classify_send_response(&page),
            SendOutcome::Retry {
                after: None,
                error: MessageError {
                    code: "http_500".into(),
                    message: "LinkedIn answered HTTP 500".into(),
                    permanent: false
                },
                recipient_only: false,
            }
        );
        assert!(matches!(classify_send_response(&answer(503, &[], "{}")), SendOutcome::Retry { .. }));
    }

    #[test]
    fn hostile_answers_never_panic() {
        for status in [0, 100, 200, 204, 302, 401, 404, 429, 500, 999] {
            for body in
                ["", "null", "[]", "\u{0}", r#"{"serviceErrorCode":1.5,"code":[],"message":{}}"#, r#"{"id":{}}"#]
            {
                let _ = classify_send_response(&answer(status, &[("x-restli-id", "%E2%28%A1")], body));
            }
        }
    }

    // --- tokens -------------------------------------------------------------------------------

    const OAUTH_BASE: &str = "https://www.linkedin.com/oauth/v2";
    const CLIENT_ID: &str = "86yw3ao4ztpqjh";
    const APP_SECRET: &str = "WPL_AP1.s3cr3t+/=&value";
    const REFRESH_TOKEN: &str = "AQWIqIu4RW0Qxtv9Xn_2g0-5bQ-refresh&token=";

    #[test]
    fn introspection_posts_a_percent_encoded_form_and_keeps_secrets_out_of_url_and_debug() {
        let request = build_introspect_request(
            &format!("{OAUTH_BASE}/"),
            CLIENT_ID,
            &Secret::new(APP_SECRET),
            &Secret::new(ACCESS_TOKEN),
        );
        assert_eq!(request.method, ApiMethod::Post);
        assert_eq!(request.url, "https://www.linkedin.com/oauth/v2/introspectToken");
        assert!(request.headers.is_empty());
        let form = form_body(&request);
        assert_eq!(super::super::query_param(&form, "client_id").as_deref(), Some(CLIENT_ID));
        assert_eq!(super::super::query_param(&form, "client_secret").as_deref(), Some(APP_SECRET));
        assert_eq!(super::super::query_param(&form, "token").as_deref(), Some(ACCESS_TOKEN));
        assert_eq!(form.split('&').count(), 3);
        let shown = format!("{request:?}");
        for secret in [APP_SECRET, ACCESS_TOKEN] {
            assert!(!request.url.contains(secret));
            assert!(!shown.contains(secret));
        }
    }

    #[test]
    fn refresh_posts_the_refresh_grant_as_a_form() {
        let request =
            build_refresh_request(OAUTH_BASE, CLIENT_ID, &Secret::new(APP_SECRET), &Secret::new(REFRESH_TOKEN));
        assert_eq!(request.method, ApiMethod::Post);
        assert_eq!(request.url, "https://www.linkedin.com/oauth/v2/accessToken");
        let form = form_body(&request);
        let names: Vec<&str> = form.split('&').filter_map(|pair| pair.split('=').next()).collect();
        assert_eq!(names, ["grant_type", "refresh_token", "client_id", "client_secret"]);
        assert_eq!(super::super::query_param(&form, "grant_type").as_deref(), Some("refresh_token"));
        assert_eq!(super::super::query_param(&form, "refresh_token").as_deref(), Some(REFRESH_TOKEN));
        assert_eq!(super::super::query_param(&form, "client_id").as_deref(), Some(CLIENT_ID));
        assert_eq!(super::super::query_param(&form, "client_secret").as_deref(), Some(APP_SECRET));
        let shown = format!("{request:?}");
        assert!(!shown.contains(REFRESH_TOKEN) && !shown.contains(APP_SECRET));
    }

    #[test]
    fn an_active_token_is_valid_until_its_expiry_in_seconds() {
        let response = answer(
            200,
            &[],
            r#"{"active":true,"client_id":"86yw3ao4ztpqjh","authorized_at":1718000000,"created_at":1718000000,
                "status":"active","expires_at":1723184000,"scope":"r_organization_social,w_organization_social",
                "auth_type":"3L"}"#,
        );
        assert_eq!(
            parse_introspection(&response),
            Ok(TokenStatus { valid: true, expires_at: Some(Timestamp::from_secs(1_723_184_000)) })
        );
    }

    #[test]
    fn an_expired_or_revoked_token_is_not_valid() {
        let expired = answer(200, &[], r#"{"active":false,"status":"expired","expires_at":1718000000}"#);
        assert_eq!(
            parse_introspection(&expired),
            Ok(TokenStatus { valid: false, expires_at: Some(Timestamp::from_secs(1_718_000_000)) })
        );
        let revoked = answer(200, &[], r#"{"active":false,"status":"revoked"}"#);
        assert_eq!(parse_introspection(&revoked), Ok(TokenStatus { valid: false, expires_at: None }));
        // `status` has the last word even if `active` disagrees.
        let contradictory = answer(200, &[], r#"{"active":true,"status":"revoked","expires_at":"1723184000"}"#);
        assert_eq!(parse_introspection(&contradictory).map(|status| status.valid), Ok(false));
    }

    #[test]
    fn introspection_errors_are_token_errors() {
        let bad_secret =
            answer(401, &[], r#"{"error":"invalid_client","error_description":"Client authentication failed"}"#);
        assert_eq!(
            parse_introspection(&bad_secret),
            Err(TokenError { status: 401, message: "invalid_client: Client authentication failed".into() })
        );
        for response in [answer(400, &[], "Bad Request"), answer(200, &[], "{}"), answer(200, &[], "<html>")] {
            assert!(parse_introspection(&response).is_err(), "{response:?}");
        }
    }

    #[test]
    fn a_refresh_grant_gives_new_tokens_and_their_lifetimes() {
        let response = answer(
            200,
            &[],
            r#"{"access_token":"AQUvlL_new_access","expires_in":5184000,"refresh_token":"AQWnew_refresh",
                "refresh_token_expires_in":525600,"scope":"r_organization_social,w_organization_social"}"#,
        );
        let grant = parse_token_grant(&response).expect("a grant");
        assert_eq!(grant.access_token.expose(), "AQUvlL_new_access");
        assert_eq!(grant.expires_in, Some(5_184_000));
        assert_eq!(grant.refresh_token.as_ref().map(Secret::expose), Some("AQWnew_refresh"));
        assert_eq!(grant.refresh_token_expires_in, Some(525_600));
        assert!(!format!("{grant:?}").contains("AQUvlL_new_access"));

        let without_refresh = answer(200, &[], r#"{"access_token":"AQUvlL_new_access","expires_in":"5184000"}"#);
        let grant = parse_token_grant(&without_refresh).expect("a grant");
        assert_eq!(
            (grant.expires_in, grant.refresh_token, grant.refresh_token_expires_in),
            (Some(5_184_000), None, None)
        );
    }

    #[test]
    fn an_oauth_error_or_a_grant_without_an_access_token_is_a_token_error() {
        let expired_refresh = answer(
            400,
            &[],
            r#"{"error":"invalid_request","error_description":"The provided authorization grant or refresh token is invalid, expired or revoked"}"#,
        );
        assert_eq!(
            parse_token_grant(&expired_refresh),
            Err(TokenError {
                status: 400,
                message:
                    "invalid_request: The provided authorization grant or refresh token is invalid, expired or revoked"
                        .into()
            })
        );
        for response in [
            answer(200, &[], r#"{"expires_in":5184000}"#),
            answer(200, &[], r#"{"access_token":""}"#),
            answer(200, &[], r#"{"error":"server_error"}"#),
            answer(502, &[], "<html>Bad Gateway</html>"),
            answer(200, &[], "not json"),
        ] {
            let error = parse_token_grant(&response).expect_err("not a usable grant");
            assert!(!error.message.contains("html"), "{error:?}");
        }
    }
}
