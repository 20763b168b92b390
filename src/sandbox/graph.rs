//! The Graph API stand-in's rules for Messenger and WhatsApp sends (PLATFORMS.md 1.6, 2.6): what a
//! request must hold, and Graph's error bodies. Pure: the state (tokens, limits) lives in `core`.

use serde_json::{Value, json};

use super::faults::FaultKind;
use super::reply::Reply;
use crate::model::Platform;

/// Messenger's text limit, in characters.
pub const MESSENGER_TEXT_MAX: usize = 2000;
/// Messenger's `metadata` limit, in characters.
pub const MESSENGER_METADATA_MAX: usize = 1000;
/// WhatsApp's text body limit, in characters.
pub const WHATSAPP_TEXT_MAX: usize = 4096;

const MESSAGING_TYPES: &[&str] = &["RESPONSE", "UPDATE", "MESSAGE_TAG", "UTILITY"];
/// The tags Messenger still takes (2026: the others were retired in April).
const MESSAGE_TAGS: &[&str] = &["HUMAN_AGENT"];
const SENDER_ACTIONS: &[&str] = &["typing_on", "typing_off", "mark_seen", "react", "unreact"];
const MESSENGER_ATTACHMENTS: &[&str] = &["audio", "file", "image", "template", "video"];
const WHATSAPP_MEDIA: &[&str] = &["image", "video", "audio", "document", "sticker"];
const WHATSAPP_OTHER: &[&str] = &["text", "template", "reaction", "location", "contacts", "interactive"];

/// A Graph error, before it gets its `fbtrace_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphError {
    pub http_status: u16,
    pub code: u32,
    pub subcode: Option<u32>,
    pub message: String,
    /// WhatsApp errors carry `error_data.details`; Messenger's do not.
    pub details: Option<String>,
    pub is_transient: bool,
}

impl GraphError {
    /// A 400 error of `code` with `message`.
    pub fn new(code: u32, message: impl Into<String>) -> Self {
        GraphError {
            http_status: 400,
            code,
            subcode: None,
            message: message.into(),
            details: None,
            is_transient: false,
        }
    }

    /// Invalid parameter (code 100).
    pub fn param(message: impl Into<String>) -> Self {
        GraphError::new(100, message)
    }

    fn status(mut self, http_status: u16) -> Self {
        self.http_status = http_status;
        self
    }

    fn subcode(mut self, subcode: u32) -> Self {
        self.subcode = Some(subcode);
        self
    }

    fn details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    fn transient(mut self) -> Self {
        self.is_transient = true;
        self
    }

    /// The body Graph sends, with `fbtrace_id`.
    pub fn into_reply(self, fbtrace_id: &str) -> Reply {
        let mut error = serde_json::Map::new();
        error.insert("message".into(), json!(self.message));
        error.insert("type".into(), json!("OAuthException"));
        error.insert("code".into(), json!(self.code));
        if let Some(subcode) = self.subcode {
            error.insert("error_subcode".into(), json!(subcode));
        }
        if self.is_transient {
            error.insert("is_transient".into(), json!(true));
        }
        if let Some(details) = self.details {
            error.insert("error_data".into(), json!({ "messaging_product": "whatsapp", "details": details }));
        }
        error.insert("fbtrace_id".into(), json!(fbtrace_id));
        Reply::json(self.http_status, &json!({ "error": error }))
    }
}

/// `access_token` is missing altogether.
pub fn missing_token() -> GraphError {
    GraphError::new(104, "An access token is required to request this resource.")
}

/// The token is not one the sandbox knows for this object.
pub fn invalid_token() -> GraphError {
    GraphError::new(190, "Invalid OAuth access token.").status(401)
}

/// The token expired (the `expired_token` fault).
pub fn expired_token() -> GraphError {
    GraphError::new(190, "Error validating access token: Session has expired on Monday, 01-Jan-24 00:00:00 PST.")
        .status(401)
        .subcode(463)
}

/// The object in the path is neither the Page nor the phone number.
pub fn unknown_object(id: &str) -> GraphError {
    GraphError::param(format!(
        "Unsupported post request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."
    ))
    .subcode(33)
}

/// Graph's throttle answer for a platform: Messenger code 613, WhatsApp 130429; HTTP 429.
pub fn throttled(platform: Platform) -> GraphError {
    match platform {
        Platform::Whatsapp => GraphError::new(130429, "(#130429) Rate limit hit")
            .status(429)
            .details("Cloud API message throughput has been reached."),
        _ => GraphError::new(613, "(#613) Calls to this api have exceeded the rate limit.").status(429),
    }
}

/// The answer for a faulted send (all kinds but `slow` and `drop`, which the core handles).
pub fn fault(platform: Platform, kind: FaultKind) -> GraphError {
    let whatsapp = platform == Platform::Whatsapp;
    match kind {
        FaultKind::RateLimit | FaultKind::Slow | FaultKind::Drop => throttled(platform),
        FaultKind::ServerError if whatsapp => GraphError::new(2, "(#2) Service temporarily unavailable")
            .status(500)
            .transient()
            .details("Service temporarily unavailable. Please retry your request later."),
        FaultKind::ServerError => GraphError::new(2, "(#2) Service temporarily unavailable").status(500).transient(),
        FaultKind::ExpiredToken => expired_token(),
        FaultKind::Permanent if whatsapp => GraphError::new(131047, "(#131047) Re-engagement message").details(
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        ),
        FaultKind::Permanent => {
            GraphError::new(10, "(#10) This message is sent outside of allowed window.").status(400).subcode(2018278)
        }
    }
}

/// What a valid Messenger request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessengerSend {
    /// A message to `recipient` (a PSID): answered with a `message_id`, followed by receipts.
    Message { recipient: String },
    /// A sender action: answered with `recipient_id` only.
    SenderAction { recipient: String },
}

/// Checks a Messenger Send API body.
pub fn validate_messenger(body: &[u8]) -> Result<MessengerSend, GraphError> {
    let root = parse_object(body)?;
    let recipient = match root.get("recipient") {
        Some(r) => r.get("id").and_then(id_text).filter(|id| !id.is_empty()),
        None => None,
    }
    .ok_or_else(|| GraphError::param("(#100) The parameter recipient is required"))?;
    let message = root.get("message");
    if let Some(action) = root.get("sender_action") {
        if message.is_some() {
            return Err(GraphError::param("(#100) sender_action cannot be sent with message"));
        }
        let payload = root.get("payload");
        let payload_text =
            |field: &str| payload.and_then(|p| p.get(field)).and_then(Value::as_str).filter(|t| !t.is_empty());
        return match action.as_str() {
            Some("react") if payload_text("message_id").is_none() || payload_text("reaction").is_none() => {
                Err(GraphError::param("(#100) react needs payload.message_id and payload.reaction"))
            }
            Some("unreact") if payload_text("message_id").is_none() => {
                Err(GraphError::param("(#100) unreact needs payload.message_id"))
            }
            Some("typing_on" | "typing_off" | "mark_seen") if payload.is_some() => {
                Err(GraphError::param("(#100) param payload is not allowed with this sender_action"))
            }
            Some(a) if SENDER_ACTIONS.contains(&a) => Ok(MessengerSend::SenderAction { recipient }),
            _ => Err(GraphError::param(format!(
                "(#100) param sender_action must be one of {{{}}}",
                SENDER_ACTIONS.join(", ")
            ))),
        };
    }
    let Some(message) = message.and_then(Value::as_object) else {
        return Err(GraphError::param("(#100) Must send either message or sender_action"));
    };
    match root.get("messaging_type").and_then(Value::as_str) {
        Some("MESSAGE_TAG") => match root.get("tag").and_then(Value::as_str) {
            Some(tag) if MESSAGE_TAGS.contains(&tag) => {}
            Some(_) => {
                return Err(GraphError::param(format!(
                    "(#100) param tag must be one of {{{}}}",
                    MESSAGE_TAGS.join(", ")
                )));
            }
            None => return Err(GraphError::param("(#100) Tag is required for MESSAGE_TAG messaging type.")),
        },
        Some(t) if MESSAGING_TYPES.contains(&t) => {}
        _ => {
            return Err(GraphError::param(format!(
                "(#100) param messaging_type must be one of {{{}}}",
                MESSAGING_TYPES.join(", ")
            )));
        }
    }
    let text = message.get("text");
    let attachment = message.get("attachment");
    match (text, attachment) {
        (Some(_), Some(_)) => return Err(GraphError::param("(#100) Only one of text or attachment may be set")),
        (None, None) => return Err(GraphError::param("(#100) Either text or attachment must be provided")),
        (Some(text), None) => {
            let text = text.as_str().ok_or_else(|| GraphError::param("(#100) param message[text] must be a string"))?;
            if text.is_empty() {
                return Err(GraphError::param("(#100) param message[text] must be non-empty."));
            }
            if text.chars().count() > MESSENGER_TEXT_MAX {
                return Err(GraphError::param(format!(
                    "(#100) Length of param message[text] must be less than or equal to {MESSENGER_TEXT_MAX}"
                )));
            }
        }
        (None, Some(attachment)) => validate_messenger_attachment(attachment)?,
    }
    if let Some(metadata) = message.get("metadata") {
        let ok = metadata.as_str().is_some_and(|m| m.chars().count() <= MESSENGER_METADATA_MAX);
        if !ok {
            return Err(GraphError::param(format!(
                "(#100) param message[metadata] must be a string of at most {MESSENGER_METADATA_MAX} characters"
            )));
        }
    }
    Ok(MessengerSend::Message { recipient })
}

fn validate_messenger_attachment(attachment: &Value) -> Result<(), GraphError> {
    let kind = attachment.get("type").and_then(Value::as_str).unwrap_or_default();
    if !MESSENGER_ATTACHMENTS.contains(&kind) {
        return Err(GraphError::param(format!(
            "(#100) param message[attachment][type] must be one of {{{}}}",
            MESSENGER_ATTACHMENTS.join(", ")
        )));
    }
    let payload = attachment
        .get("payload")
        .and_then(Value::as_object)
        .ok_or_else(|| GraphError::param("(#100) param message[attachment][payload] is required"))?;
    let has_source = ["url", "attachment_id"].iter().any(|k| payload.get(*k).is_some_and(|v| id_text(v).is_some()));
    if kind != "template" && !has_source {
        return Err(GraphError::param("(#100) Attachment payload must have a url or an attachment_id"));
    }
    Ok(())
}

/// What a valid WhatsApp request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WhatsappSend {
    /// A message to `to`: answered with a wamid, followed by statuses.
    Message { to: String },
    /// Mark an inbound message read: answered `{"success": true}`.
    MarkRead,
}

/// Checks a Cloud API `/messages` body.
pub fn validate_whatsapp(body: &[u8]) -> Result<WhatsappSend, GraphError> {
    let root = parse_object(body)?;
    let param = |message: String| GraphError::param(format!("(#100) {message}")).details(message);
    match root.get("messaging_product").and_then(Value::as_str) {
        Some("whatsapp") => {}
        Some(_) => return Err(param("Param messaging_product must be 'whatsapp'".into())),
        None => return Err(param("The parameter messaging_product is required.".into())),
    }
    if let Some(status) = root.get("status") {
        if status.as_str() != Some("read") {
            return Err(param("Param status must be 'read'".into()));
        }
        if root.get("message_id").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(param("The parameter message_id is required.".into()));
        }
        if let Some(indicator) = root.get("typing_indicator")
            && indicator.get("type").and_then(Value::as_str) != Some("text")
        {
            return Err(param("Param typing_indicator['type'] must be 'text'".into()));
        }
        return Ok(WhatsappSend::MarkRead);
    }
    // `to` (a number) or `recipient` (a business-scoped user id); with both, the number wins.
    let to = root.get("to").and_then(id_text).filter(|to| !to.is_empty());
    let recipient = root.get("recipient").and_then(Value::as_str).filter(|r| !r.is_empty());
    let to = match (to, recipient) {
        (Some(to), _) => {
            if !to.trim_start_matches('+').chars().all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '(' | ')')) {
                return Err(param(format!("Param to is not a valid phone number: {to}")));
            }
            to
        }
        (None, Some(recipient)) => {
            if !crate::platform::whatsapp::is_business_scoped_user_id(recipient) {
                return Err(param(format!("Param recipient is not a valid business-scoped user ID: {recipient}")));
            }
            recipient.to_owned()
        }
        (None, None) => return Err(param("The parameter to is required.".into())),
    };
    if let Some(recipient_type) = root.get("recipient_type")
        && recipient_type.as_str() != Some("individual")
    {
        return Err(param("Param recipient_type must be 'individual'".into()));
    }
    // The Cloud API takes a missing `type` as text.
    let kind = match root.get("type") {
        None => "text",
        Some(t) => t.as_str().ok_or_else(|| param("Param type must be a string".into()))?,
    };
    let object = root.get(kind);
    let field = |name: &str| object.and_then(|o| o.get(name));
    let non_empty = |value: Option<&Value>| value.and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    match kind {
        "text" => {
            let body = field("body").and_then(Value::as_str).unwrap_or_default();
            if body.is_empty() {
                return Err(param("The parameter text['body'] is required.".into()));
            }
            if body.chars().count() > WHATSAPP_TEXT_MAX {
                return Err(param(format!("Param text['body'] must be at most {WHATSAPP_TEXT_MAX} characters long.")));
            }
        }
        "template" => {
            if !non_empty(field("name")) {
                return Err(param("The parameter template['name'] is required.".into()));
            }
            if !non_empty(field("language").and_then(|l| l.get("code"))) {
                return Err(param("The parameter template['language']['code'] is required.".into()));
            }
            if let Some(components) = field("components")
                && !components.is_array()
            {
                return Err(param("Param template['components'] must be an array.".into()));
            }
        }
        "reaction" => {
            if !non_empty(field("message_id")) {
                return Err(param("The parameter reaction['message_id'] is required.".into()));
            }
        }
        "location" => {
            if !field("latitude").is_some_and(Value::is_number) || !field("longitude").is_some_and(Value::is_number) {
                return Err(param(
                    "The parameters location['latitude'] and location['longitude'] are required.".into(),
                ));
            }
        }
        "contacts" => {
            let cards = object.and_then(Value::as_array).filter(|cards| !cards.is_empty());
            let named = |card: &Value| non_empty(card.get("name").and_then(|n| n.get("formatted_name")));
            if !cards.is_some_and(|cards| cards.iter().all(named)) {
                return Err(param("The parameter contacts[i]['name']['formatted_name'] is required.".into()));
            }
        }
        media if WHATSAPP_MEDIA.contains(&media) => {
            let link = field("link").and_then(Value::as_str).is_some_and(|l| !l.is_empty());
            let id = field("id").and_then(id_text).is_some_and(|i| !i.is_empty());
            if link == id {
                return Err(param(format!("Exactly one of {media}['link'] or {media}['id'] must be provided.")));
            }
        }
        other if WHATSAPP_OTHER.contains(&other) => {
            if object.is_none() {
                return Err(param(format!("The parameter {other} is required.")));
            }
        }
        other => {
            let all: Vec<&str> = WHATSAPP_OTHER.iter().chain(WHATSAPP_MEDIA).copied().collect();
            return Err(param(format!("Param type `{other}` must be one of {{{}}}", all.join(", "))));
        }
    }
    Ok(WhatsappSend::Message { to })
}

/// The bytes the sandbox serves for WhatsApp media `id` (a stand-in image).
pub fn media_bytes(id: &str) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.extend_from_slice(format!("parley sandbox media {id}").as_bytes());
    bytes.extend_from_slice(&[0xFF, 0xD9]);
    bytes
}

/// The `sha256` Meta reports for media `id`: the hex SHA-256 of [`media_bytes`].
pub fn media_sha256(id: &str) -> String {
    use sha2::Digest as _;
    crate::platform::encode_hex(&sha2::Sha256::digest(media_bytes(id)))
}

/// The canonical WhatsApp id of a number as written in `to`: its digits.
pub fn wa_id(to: &str) -> String {
    if crate::platform::whatsapp::is_business_scoped_user_id(to) {
        return to.to_owned();
    }
    to.chars().filter(char::is_ascii_digit).collect()
}

fn parse_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, GraphError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(GraphError::param("(#100) The request body must be a JSON object")),
        Err(_) => Err(GraphError::param("(#100) The request body could not be parsed as JSON")),
    }
}

/// An id given as a string or a number, as text.
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// True for a Graph version segment such as `v23.0`.
pub fn is_version(segment: &str) -> bool {
    let Some(rest) = segment.strip_prefix('v') else { return false };
    let mut parts = rest.split('.');
    let digits = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    digits(parts.next()) && digits(parts.next()) && parts.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messenger(body: Value) -> Result<MessengerSend, u32> {
        validate_messenger(body.to_string().as_bytes()).map_err(|e| e.code)
    }

    fn whatsapp(body: Value) -> Result<WhatsappSend, GraphError> {
        validate_whatsapp(body.to_string().as_bytes())
    }

    #[test]
    fn messenger_accepts_text_attachments_tags_and_sender_actions() {
        let text =
            json!({"recipient":{"id":"72"},"messaging_type":"RESPONSE","message":{"text":"hi","metadata":"parley:1"}});
        assert_eq!(messenger(text), Ok(MessengerSend::Message { recipient: "72".into() }));
        let tagged = json!({"recipient":{"id":72},"messaging_type":"MESSAGE_TAG","tag":"HUMAN_AGENT","message":{"text":"later"}});
        assert!(messenger(tagged).is_ok());
        let image = json!({"recipient":{"id":"72"},"messaging_type":"UPDATE","message":{"attachment":{"type":"image","payload":{"url":"https://x/y.png","is_reusable":true}}}});
        assert!(messenger(image).is_ok());
        let typing = json!({"recipient":{"id":"72"},"sender_action":"typing_on"});
        assert_eq!(messenger(typing), Ok(MessengerSend::SenderAction { recipient: "72".into() }));
        let react =
            json!({"recipient":{"id":"72"},"sender_action":"react","payload":{"message_id":"m_1","reaction":"😊"}});
        assert!(messenger(react).is_ok());
        let unreact = json!({"recipient":{"id":"72"},"sender_action":"unreact","payload":{"message_id":"m_1"}});
        assert!(messenger(unreact).is_ok());
    }

    #[test]
    fn messenger_refuses_what_the_send_api_refuses() {
        let cases = [
            json!({"messaging_type":"RESPONSE","message":{"text":"no recipient"}}),
            json!({"recipient":{"id":"72"},"message":{"text":"no messaging_type"}}),
            json!({"recipient":{"id":"72"},"messaging_type":"PROMO","message":{"text":"bad type"}}),
            json!({"recipient":{"id":"72"},"messaging_type":"MESSAGE_TAG","message":{"text":"no tag"}}),
            json!({"recipient":{"id":"72"},"messaging_type":"RESPONSE","message":{}}),
            json!({"recipient":{"id":"72"},"messaging_type":"RESPONSE","message":{"text":"a","attachment":{"type":"image","payload":{"url":"u"}}}}),
            json!({"recipient":{"id":"72"},"messaging_type":"RESPONSE","message":{"text":"x".repeat(MESSENGER_TEXT_MAX + 1)}}),
            json!({"recipient":{"id":"72"},"messaging_type":"RESPONSE","message":{"attachment":{"type":"gif","payload":{"url":"u"}}}}),
            json!({"recipient":{"id":"72"},"sender_action":"dance"}),
            json!({"recipient":{"id":"72"},"sender_action":"react","payload":{"message_id":"m_1"}}),
            json!({"recipient":{"id":"72"},"sender_action":"unreact"}),
            json!({"recipient":{"id":"72"},"sender_action":"typing_on","payload":{"message_id":"m_1"}}),
            json!(["not an object"]),
        ];
        for case in cases {
            assert_eq!(messenger(case.clone()), Err(100), "{case}");
        }
        // Exactly 2000 characters (not bytes) is fine.
        let limit = json!({"recipient":{"id":"72"},"messaging_type":"RESPONSE","message":{"text":"é".repeat(MESSENGER_TEXT_MAX)}});
        assert!(messenger(limit).is_ok());
    }

    #[test]
    fn whatsapp_accepts_every_documented_type_and_mark_read() {
        let ok = [
            json!({"messaging_product":"whatsapp","recipient_type":"individual","to":"5511987654321","type":"text","text":{"preview_url":false,"body":"hi"}}),
            json!({"messaging_product":"whatsapp","to":"5511987654321","text":{"body":"type defaults to text"}}),
            json!({"messaging_product":"whatsapp","to":"+55 11 98765-4321","type":"template","template":{"name":"order_update","language":{"code":"pt_BR"},"components":[]}}),
            json!({"messaging_product":"whatsapp","to":"1","type":"document","document":{"link":"https://x/i.pdf","filename":"i.pdf"}}),
            json!({"messaging_product":"whatsapp","to":"1","type":"image","image":{"id":"1479537139650973"}}),
            json!({"messaging_product":"whatsapp","to":"1","type":"reaction","reaction":{"message_id":"wamid.X","emoji":"👍"}}),
            json!({"messaging_product":"whatsapp","to":"1","type":"location","location":{"latitude":-23.5,"longitude":-46.6}}),
            json!({"messaging_product":"whatsapp","to":"1","type":"contacts","contacts":[{"name":{"formatted_name":"Rui Costa","first_name":"Rui"}}]}),
        ];
        for case in ok {
            assert!(matches!(whatsapp(case.clone()), Ok(WhatsappSend::Message { .. })), "{case}");
        }
        let read = json!({"messaging_product":"whatsapp","status":"read","message_id":"wamid.IN"});
        assert_eq!(whatsapp(read).unwrap(), WhatsappSend::MarkRead);
        let typing = json!({"messaging_product":"whatsapp","status":"read","message_id":"wamid.IN","typing_indicator":{"type":"text"}});
        assert_eq!(whatsapp(typing).unwrap(), WhatsappSend::MarkRead);
        assert_eq!(wa_id("+55 11 98765-4321"), "5511987654321");
    }

    #[test]
    fn whatsapp_errors_are_code_100_with_details() {
        let missing_product = json!({"to":"1","type":"text","text":{"body":"hi"}});
        let error = whatsapp(missing_product).unwrap_err();
        assert_eq!((error.code, error.http_status), (100, 400));
        assert!(error.details.is_some());
        let reply = error.into_reply("Az8or2yhqkZfEZ").json_body();
        assert_eq!(reply["error"]["error_data"]["messaging_product"], "whatsapp");
        assert_eq!(reply["error"]["fbtrace_id"], "Az8or2yhqkZfEZ");
        let bad = [
            json!({"messaging_product":"sms","to":"1","text":{"body":"hi"}}),
            json!({"messaging_product":"whatsapp","type":"text","text":{"body":"no to"}}),
            json!({"messaging_product":"whatsapp","to":"1","type":"text","text":{}}),
            json!({"messaging_product":"whatsapp","to":"1","type":"template","template":{"name":"t"}}),
            json!({"messaging_product":"whatsapp","to":"1","type":"image","image":{}}),
            json!({"messaging_product":"whatsapp","to":"1","type":"image","image":{"id":"1","link":"https://x"}}),
            json!({"messaging_product":"whatsapp","to":"1","type":"hologram"}),
            json!({"messaging_product":"whatsapp","to":"not-a-number","text":{"body":"x"}}),
            json!({"messaging_product":"whatsapp","status":"read"}),
            json!({"messaging_product":"whatsapp","status":"read","message_id":"wamid.IN","typing_indicator":{"type":"dots"}}),
            json!({"messaging_product":"whatsapp","to":"1","type":"location","location":{"latitude":"1"}}),
            json!({"messaging_product":"whatsapp","to":"1","type":"contacts","contacts":[{"phones":[]}]}),
        ];
        for case in bad {
            assert_eq!(whatsapp(case.clone()).map_err(|e| e.code).unwrap_err(), 100, "{case}");
        }
    }

    #[test]
    fn fault_answers_are_the_documented_codes() {
        let code = |p, k| {
            let e = fault(p, k);
            (e.http_status, e.code, e.subcode)
        };
        assert_eq!(code(Platform::Facebook, FaultKind::RateLimit), (429, 613, None));
        assert_eq!(code(Platform::Whatsapp, FaultKind::RateLimit), (429, 130429, None));
        assert_eq!(code(Platform::Facebook, FaultKind::ServerError), (500, 2, None));
        assert_eq!(code(Platform::Whatsapp, FaultKind::ExpiredToken), (401, 190, Some(463)));
        assert_eq!(code(Platform::Facebook, FaultKind::Permanent), (400, 10, Some(2018278)));
        assert_eq!(code(Platform::Whatsapp, FaultKind::Permanent), (400, 131047, None));
    }

    #[test]
    fn versions_look_like_v23_0() {
        assert!(is_version("v23.0"));
        assert!(!is_version("v23"));
        assert!(!is_version("23.0"));
        assert!(!is_version("v2x.0"));
    }
}
