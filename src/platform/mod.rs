//! The functional core of each channel: one module per platform, all of one shape.
//!
//! Every platform module offers the same functions, pure (no I/O, no clocks, no actors):
//!
//! - `SIGNATURE_HEADER`: the request header that carries the webhook signature;
//! - `verify_handshake(secret, query)`: answers the platform's GET subscription check;
//! - `verify_signature(secret, request)`: checks the HMAC over the raw body, in constant time;
//! - `parse_webhook(body, ctx)`: turns a verified body into normalised [`InboundEvent`]s.
//!
//! The HTTP front end verifies, the channel actor parses, and neither knows a platform's details.

pub mod facebook;
pub mod json;
pub mod linkedin;
pub mod viber;
pub mod whatsapp;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::model::{InboundEvent, Platform, Timestamp};
use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The parts of a webhook POST that a signature check needs.
#[derive(Clone, Copy, Debug)]
pub struct SignedRequest<'a> {
    /// The value of the platform's `SIGNATURE_HEADER`, if present.
    pub signature_header: Option<&'a str>,
    /// The raw query string (without `?`), if any. Viber's SDK puts the signature in `sig`.
    pub query: Option<&'a str>,
    /// The body exactly as received.
    pub body: &'a [u8],
}

/// Which accepted form a signature had; logged so the first real delivery settles open questions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureForm {
    /// `sha256=<hex>` over the body (Meta).
    MetaSha256,
    /// Bare hex over the body, from the header (Viber).
    Header,
    /// Bare hex over the body, from the `sig` query parameter (Viber's Node SDK).
    QueryParameter,
    /// LinkedIn: HMAC over the raw body.
    LinkedinBody,
    /// LinkedIn: HMAC over `"hmacsha256=" + body` (the documentation's literal reading).
    LinkedinPrefixedBody,
}

/// Why a webhook request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("signature header `{header}` is missing")]
    MissingSignature { header: &'static str },
    #[error("signature is not hex of the expected form")]
    MalformedSignature,
    #[error("signature does not match the body")]
    BadSignature,
    #[error("the request carries more than one signature; exactly one is accepted")]
    AmbiguousSignature,
    #[error("the signing secret is not configured")]
    NoSecret,
    #[error("handshake parameter `{0}` is missing")]
    MissingParameter(&'static str),
    #[error("handshake mode or verify token is wrong")]
    HandshakeRefused,
    #[error("this platform has no GET handshake")]
    HandshakeNotSupported,
}

/// What to answer to a successful GET handshake.
#[derive(Debug, Clone, PartialEq)]
pub enum HandshakeReply {
    /// 200 `text/plain` with exactly this body (Meta's `hub.challenge`).
    Text(String),
    /// 200 `application/json` (LinkedIn's challenge response).
    Json(serde_json::Value),
}

/// What a parser needs besides the body.
#[derive(Clone, Copy, Debug)]
pub struct ParseContext<'a> {
    /// Our account id where the body does not name it (Viber bodies do not name the bot).
    pub account_id: &'a str,
    /// When the body arrived; used when an event carries no time of its own.
    pub received_at: Timestamp,
}

/// The body was correctly signed but is not a webhook we understand; it goes to quarantine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body is not a JSON object")]
    NotAnObject,
    #[error("`{field}` is `{found}`, expected `{expected}`")]
    UnexpectedValue { field: &'static str, expected: &'static str, found: String },
    #[error("required field `{0}` is missing or of the wrong type")]
    MissingField(&'static str),
    #[error("body nests arrays and objects more than {max} deep")]
    TooDeep { max: usize },
}

/// An HTTP method the platform APIs use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiMethod {
    Get,
    Post,
}

/// A request body and its content type.
#[derive(Clone, PartialEq, Eq)]
pub enum ApiBody {
    Empty,
    /// `application/json`.
    Json(Vec<u8>),
    /// `application/x-www-form-urlencoded`.
    Form(Vec<u8>),
}

/// A request to a platform API, built by the pure core and executed by the shell (reqwest). It may
/// carry credentials (headers, query, form body), so its `Debug` shows only the method, the URL
/// without its query, and header names.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiRequest {
    pub method: ApiMethod,
    /// The full URL, query included.
    pub url: String,
    /// Extra headers (`Authorization`, `X-Viber-Auth-Token`, `LinkedIn-Version`...); the content type
    /// follows from `body`.
    pub headers: Vec<(&'static str, String)>,
    pub body: ApiBody,
}

impl std::fmt::Debug for ApiRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.url.split('?').next().unwrap_or_default();
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| *name).collect();
        write!(f, "{:?} {path} headers={names:?}", self.method)
    }
}

/// A platform's answer as the shell received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiResponse {
    pub status: u16,
    /// Header names lower-case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ApiResponse {
    /// A header's value by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// `Retry-After` in whole seconds, if present and numeric.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()).map(std::time::Duration::from_secs)
    }
}

/// Where and as whom a channel sends, without the credential: all that validating a message
/// needs (`prepare_outbound`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendAccount {
    pub api_base: String,
    pub account_id: String,
    pub sender_name: String,
    pub api_version: String,
}

impl SendAccount {
    /// The context to build requests with `token`.
    pub fn context<'a>(&'a self, token: &'a Secret) -> SendContext<'a> {
        SendContext {
            api_base: &self.api_base,
            account_id: &self.account_id,
            access_token: token,
            sender_name: &self.sender_name,
            api_version: &self.api_version,
        }
    }
}

/// Validates and normalises what the operator asked to send into the message the channel will
/// send, once, when it is queued (pure): the recipient and thread as the platform addresses them
/// (a LinkedIn reply goes under the post, as a reply to the comment that is the thread) and every
/// field checked by the platform's own request builder, so that what is queued is what can be
/// sent. The builders never judge the credential: validation builds with none.
pub fn prepare_outbound(
    platform: Platform,
    account: &SendAccount,
    id: &str,
    contact_id: &str,
    draft: &crate::model::OutboundDraft,
) -> Result<crate::model::OutboundMessage, BuildError> {
    let (recipient, thread) = match platform {
        Platform::Linkedin => linkedin::reply_target(contact_id),
        _ => (contact_id.to_owned(), None),
    };
    let message = crate::model::OutboundMessage {
        id: id.to_owned(),
        recipient,
        reply_to: draft.reply_to.clone().filter(|r| !r.is_empty()).or(thread),
        text: draft.text.clone().filter(|t| !t.is_empty()),
        attachments: draft.attachments.clone(),
        template: draft.template.clone(),
        human_agent: draft.human_agent,
        link_preview: draft.link_preview,
        location: draft.location.clone(),
        contacts: draft.contacts.clone(),
    };
    let no_credential = Secret::default();
    build_send_request(platform, &account.context(&no_credential), &message)?;
    Ok(message)
}

/// What a channel knows when it builds a send request.
#[derive(Clone, Copy, Debug)]
pub struct SendContext<'a> {
    /// `facebook.api_base` (Graph, with version), `whatsapp.api_base`, `viber.api_base`, `linkedin.api_base`.
    pub api_base: &'a str,
    /// Our account: Page id, phone_number_id, Viber bot name, LinkedIn organization URN.
    pub account_id: &'a str,
    /// The credential in use now (it may have been refreshed since start); empty while
    /// validating (`prepare_outbound`), and never judged by the builders.
    pub access_token: &'a Secret,
    /// Viber's required `sender.name` (`viber.bot_name`); unused elsewhere.
    pub sender_name: &'a str,
    /// LinkedIn's `LinkedIn-Version` (YYYYMM); unused elsewhere.
    pub api_version: &'a str,
}

/// Why a message cannot be sent as asked: the API answers 422 before anything is queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("a message needs text, an attachment or a template")]
    Empty,
    #[error("text is {length} characters; {platform} allows at most {max}")]
    TextTooLong { platform: Platform, length: usize, max: usize },
    #[error("{0}")]
    Unsupported(String),
    #[error("`{field}` is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// How a send attempt ended, from the platform's answer alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted; the platform's id for the new message.
    Sent { platform_message_id: String },
    /// A temporary failure (429, 5xx, throttling codes): retry after `after` if the platform said,
    /// else with back-off. `recipient_only` when only this recipient is throttled (WhatsApp 131056,
    /// Viber's per-user limit), so other conversations may go on.
    Retry { after: Option<std::time::Duration>, error: crate::model::MessageError, recipient_only: bool },
    /// Retrying cannot help (unknown recipient, outside the window, not subscribed, validation).
    Failed(crate::model::MessageError),
    /// The credential is expired or invalid: refresh once and retry, else mark the channel not ready.
    TokenRejected(crate::model::MessageError),
}

/// A token as introspected (Meta `debug_token`, LinkedIn `introspectToken`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenStatus {
    pub valid: bool,
    /// `None` when the token never expires.
    pub expires_at: Option<Timestamp>,
}

/// A token a platform issued (Meta long-lived exchange, LinkedIn refresh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub access_token: Secret,
    /// Seconds from issue; `None` when not given.
    pub expires_in: Option<u64>,
    /// LinkedIn issues a refresh token with each refresh (its expiry does not slide).
    pub refresh_token: Option<Secret>,
    pub refresh_token_expires_in: Option<u64>,
}

/// A token endpoint answered with something we cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token endpoint answered {status}: {message}")]
pub struct TokenError {
    pub status: u16,
    pub message: String,
}

/// Verifies a signature on behalf of whichever platform.
pub fn verify_signature(
    platform: Platform,
    secret: &Secret,
    request: &SignedRequest<'_>,
) -> Result<SignatureForm, VerifyError> {
    match platform {
        Platform::Facebook => facebook::verify_signature(secret, request),
        Platform::Whatsapp => whatsapp::verify_signature(secret, request),
        Platform::Viber => viber::verify_signature(secret, request),
        Platform::Linkedin => linkedin::verify_signature(secret, request),
    }
}

/// Answers a GET handshake on behalf of whichever platform.
pub fn verify_handshake(platform: Platform, secret: &Secret, query: &str) -> Result<HandshakeReply, VerifyError> {
    match platform {
        Platform::Facebook => facebook::verify_handshake(secret, query),
        Platform::Whatsapp => whatsapp::verify_handshake(secret, query),
        Platform::Viber => viber::verify_handshake(secret, query),
        Platform::Linkedin => linkedin::verify_handshake(secret, query),
    }
}

/// Parses a verified body on behalf of whichever platform.
pub fn parse_webhook(platform: Platform, body: &[u8], ctx: &ParseContext<'_>) -> Result<Vec<InboundEvent>, ParseError> {
    match platform {
        Platform::Facebook => facebook::parse_webhook(body, ctx),
        Platform::Whatsapp => whatsapp::parse_webhook(body, ctx),
        Platform::Viber => viber::parse_webhook(body, ctx),
        Platform::Linkedin => linkedin::parse_webhook(body, ctx),
    }
}

/// Builds the request that sends `message` on whichever platform; the same call validates a reply
/// before it is queued.
pub fn build_send_request(
    platform: Platform,
    ctx: &SendContext<'_>,
    message: &crate::model::OutboundMessage,
) -> Result<ApiRequest, BuildError> {
    match platform {
        Platform::Facebook => facebook::build_send_request(ctx, message),
        Platform::Whatsapp => whatsapp::build_send_request(ctx, message),
        Platform::Viber => viber::build_send_request(ctx, message),
        Platform::Linkedin => linkedin::build_send_request(ctx, message),
    }
}

/// Classifies a send answer on behalf of whichever platform.
pub fn classify_send_response(platform: Platform, response: &ApiResponse) -> SendOutcome {
    match platform {
        Platform::Facebook => facebook::classify_send_response(response),
        Platform::Whatsapp => whatsapp::classify_send_response(response),
        Platform::Viber => viber::classify_send_response(response),
        Platform::Linkedin => linkedin::classify_send_response(response),
    }
}

/// Checks a location to send: finite coordinates in range.
pub(crate) fn check_location(location: &crate::model::Location) -> Result<(), BuildError> {
    let in_range = |value: f64, limit: f64| value.is_finite() && value.abs() <= limit;
    if !in_range(location.latitude, 90.0) {
        return Err(BuildError::Invalid { field: "location.latitude", reason: "must be from -90 to 90".into() });
    }
    if !in_range(location.longitude, 180.0) {
        return Err(BuildError::Invalid { field: "location.longitude", reason: "must be from -180 to 180".into() });
    }
    Ok(())
}

/// Refuses what only WhatsApp (and Viber, for locations and a contact) can send, on a platform
/// named `platform` that cannot.
pub(crate) fn refuse_whatsapp_only(platform: &str, message: &crate::model::OutboundMessage) -> Result<(), BuildError> {
    if message.link_preview {
        return Err(BuildError::Unsupported(format!(
            "`link_preview` is WhatsApp's; {platform} shows link previews by itself"
        )));
    }
    if message.location.is_some() {
        return Err(BuildError::Unsupported(format!("{platform} cannot send a location pin")));
    }
    if !message.contacts.is_empty() {
        return Err(BuildError::Unsupported(format!("{platform} cannot send contact cards")));
    }
    Ok(())
}

/// The requests that carry an engagement action, in the order they must go (Messenger needs two
/// for "read and typing"); `Unsupported` where the platform cannot do it.
pub fn build_action_requests(
    platform: Platform,
    ctx: &SendContext<'_>,
    action: &crate::model::OutboundAction,
) -> Result<Vec<ApiRequest>, BuildError> {
    match platform {
        Platform::Facebook => facebook::build_action_requests(ctx, action),
        Platform::Whatsapp => whatsapp::build_action_requests(ctx, action),
        Platform::Viber => Err(BuildError::Unsupported(format!(
            "Viber bots cannot send `{}` (no read receipts, typing or reactions in the bot API)",
            action.kind.name()
        ))),
        Platform::Linkedin => {
            Err(BuildError::Unsupported(format!("LinkedIn comments have no `{}` in Parley's API", action.kind.name())))
        }
    }
}

/// How one request of an engagement action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOutcome {
    /// The platform took it.
    Done,
    /// A temporary failure: retry after `after` if the platform said, else with back-off.
    Retry { after: Option<std::time::Duration>, error: crate::model::MessageError },
    /// Retrying cannot help.
    Failed(crate::model::MessageError),
    /// The credential is expired or invalid.
    TokenRejected(crate::model::MessageError),
}

/// Tells an engagement action's answer apart, with the platform's send error table: a success
/// carries no message id (`{"success": true}`, `{"recipient_id": …}`), or a WhatsApp reaction's
/// wamid, which is not kept.
pub fn classify_action_response(platform: Platform, response: &ApiResponse) -> ActionOutcome {
    match classify_send_response(platform, response) {
        SendOutcome::Sent { .. } => ActionOutcome::Done,
        SendOutcome::Failed(error) if error.code == "no_message_id" => ActionOutcome::Done,
        SendOutcome::Failed(error) => ActionOutcome::Failed(error),
        SendOutcome::Retry { after, error, .. } => ActionOutcome::Retry { after, error },
        SendOutcome::TokenRejected(error) => ActionOutcome::TokenRejected(error),
    }
}

/// The longest text a message may carry on each platform, in characters.
pub fn max_text_chars(platform: Platform) -> usize {
    match platform {
        Platform::Facebook => facebook::MAX_TEXT_CHARS,
        Platform::Whatsapp => whatsapp::MAX_TEXT_CHARS,
        Platform::Viber => viber::MAX_TEXT_CHARS,
        Platform::Linkedin => linkedin::MAX_TEXT_CHARS,
    }
}

/// The header each platform signs with.
pub fn signature_header(platform: Platform) -> &'static str {
    match platform {
        Platform::Facebook => facebook::SIGNATURE_HEADER,
        Platform::Whatsapp => whatsapp::SIGNATURE_HEADER,
        Platform::Viber => viber::SIGNATURE_HEADER,
        Platform::Linkedin => linkedin::SIGNATURE_HEADER,
    }
}

/// The one signature header value of a request, from every value the header was sent with:
/// `None` when it is absent, [`VerifyError::AmbiguousSignature`] when it appears more than once
/// (judging a request by its first signature would let a second, unchecked one ride along; and
/// no platform sends two). Values that are not UTF-8 are kept lossily, so they fail as malformed.
pub fn single_signature_header<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Result<Option<String>, VerifyError> {
    let mut values = values.into_iter();
    let first = values.next().map(|v| String::from_utf8_lossy(v).into_owned());
    if values.next().is_some() {
        return Err(VerifyError::AmbiguousSignature);
    }
    Ok(first)
}

/// HMAC-SHA256 of the concatenation of `parts`, keyed by the UTF-8 bytes of `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Lower-case hex of HMAC-SHA256 over `parts`: what a platform would send (used by `simulate` and tests).
pub fn sign_hex(key: &[u8], parts: &[&[u8]]) -> String {
    encode_hex(&hmac_sha256(key, parts))
}

/// True when `expected_hex` (either case) is the HMAC-SHA256 of `parts` under `key`, compared in
/// constant time on the decoded bytes.
pub fn hmac_matches(key: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(expected).is_ok()
}

/// Decodes hex of either case; `None` for odd length or a non-hex character.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    bytes.chunks_exact(2).map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?)).collect()
}

/// Lower-case hex.
pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The first value of query parameter `name`, percent-decoded (`+` is a space). Invalid escapes are
/// kept as they are; invalid UTF-8 is replaced, so a hostile query never fails the parse.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query_params(query, name).next()
}

/// Every value of the query parameter `name`, percent-decoded, in order.
pub fn query_params<'q>(query: &'q str, name: &'q str) -> impl Iterator<Item = String> + 'q {
    query.split('&').filter_map(move |pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes[i] {
            b'%' => bytes.get(i + 1..i + 3).and_then(|pair| std::str::from_utf8(pair).ok()).and_then(decode_hex),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(decoded), _) => {
                out.push(decoded[0]);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, other) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A body of the real-world corpus (`PARLEY_REALWORLD_WEBHOOKS`, else `../shared/realworld-webhooks`
/// beside the repository; read at run time, never copied into the tree), or None, said on stderr,
/// when the corpus is not on this machine.
#[cfg(test)]
pub(crate) fn real_world_body(platform: &str, name: &str) -> Option<String> {
    let dir = std::env::var_os("PARLEY_REALWORLD_WEBHOOKS").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/realworld-webhooks"),
        std::path::PathBuf::from,
    );
    if !dir.is_dir() {
        eprintln!("the real-world webhook corpus is not here; skipped {platform}/{name}");
        return None;
    }
    let path = dir.join(platform).join(name);
    Some(std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{platform}/{name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_accepts_upper_case() {
        assert_eq!(decode_hex("00ffA0"), Some(vec![0, 255, 160]));
        assert_eq!(encode_hex(&[0, 255, 160]), "00ffa0");
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
    }

    #[test]
    fn a_signature_header_sent_twice_is_ambiguous() {
        let one: [&[u8]; 1] = [b"sha256=ab"];
        assert_eq!(single_signature_header(one), Ok(Some("sha256=ab".to_owned())));
        assert_eq!(single_signature_header(std::iter::empty()), Ok(None));
        let two: [&[u8]; 2] = [b"sha256=ab", b"sha256=cd"];
        assert_eq!(single_signature_header(two), Err(VerifyError::AmbiguousSignature));
        let same_twice: [&[u8]; 2] = [b"sha256=ab", b"sha256=ab"];
        assert_eq!(single_signature_header(same_twice), Err(VerifyError::AmbiguousSignature));
    }

    #[test]
    fn query_params_are_percent_decoded() {
        let q = "hub.mode=subscribe&hub.verify_token=a%2Bb+c&hub.challenge=0123&bad=%zz&tail=%4";
        assert_eq!(query_param(q, "hub.mode").as_deref(), Some("subscribe"));
        assert_eq!(query_param(q, "hub.verify_token").as_deref(), Some("a+b c"));
        assert_eq!(query_param(q, "hub.challenge").as_deref(), Some("0123"));
        assert_eq!(query_param(q, "bad").as_deref(), Some("%zz"));
        assert_eq!(query_param(q, "tail").as_deref(), Some("%4"));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param("%C3%A9=%F0%9F%98%80", "é").as_deref(), Some("😀"));
    }

    #[test]
    fn hmac_matches_known_vector() {
        // PLATFORMS.md 1.2 test vector.
        let sig = decode_hex("8dd0039448c33fbf53594013e01f923b96df82e87c37259962555eb49ffd4c62").unwrap();
        assert!(hmac_matches(b"app-secret-0123", &[br#"{"object":"page","entry":[]}"#], &sig));
        assert!(!hmac_matches(b"app-secret-0124", &[br#"{"object":"page","entry":[]}"#], &sig));
        assert_eq!(
            sign_hex(b"app-secret-0123", &[br#"{"object":"page","#, br#""entry":[]}"#]),
            "8dd0039448c33fbf53594013e01f923b96df82e87c37259962555eb49ffd4c62"
        );
    }
}
