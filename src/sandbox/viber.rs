//! The Viber REST API stand-in's rules (PLATFORMS.md 3.6): every answer is HTTP 200 and the JSON
//! `status` carries the result. Pure: the state lives in `core`.

use serde_json::Value;

use super::faults::FaultKind;
use super::reply::Reply;
use super::webhooks::VIBER_CHAT_HOSTNAME;

/// `sender.name` limit, in characters.
pub const SENDER_NAME_MAX: usize = 28;
/// Text limit, in characters.
pub const TEXT_MAX: usize = 7000;
/// `tracking_data` limit, in characters.
pub const TRACKING_DATA_MAX: usize = 4000;

/// A nonzero Viber status and its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViberStatus {
    pub status: u8,
    pub message: &'static str,
}

pub const INVALID_AUTH_TOKEN: ViberStatus = ViberStatus { status: 2, message: "invalidAuthToken" };
pub const BAD_DATA: ViberStatus = ViberStatus { status: 3, message: "badData" };
pub const MISSING_DATA: ViberStatus = ViberStatus { status: 4, message: "missingData" };
pub const RECEIVER_NOT_SUBSCRIBED: ViberStatus = ViberStatus { status: 6, message: "receiverNotSubscribed" };
pub const TOO_MANY_REQUESTS: ViberStatus = ViberStatus { status: 12, message: "Too many requests" };

impl ViberStatus {
    /// HTTP 200 with this status, as Viber answers failures.
    pub fn into_reply(self) -> Reply {
        Reply::raw_json(
            200,
            format!(
                r#"{{"status":{},"status_message":"{}","chat_hostname":"{VIBER_CHAT_HOSTNAME}"}}"#,
                self.status, self.message
            ),
        )
    }
}

/// A successful `send_message` answer: the token is written as a raw 64-bit JSON number.
pub fn sent(message_token: u64) -> Reply {
    Reply::raw_json(
        200,
        format!(
            r#"{{"status":0,"status_message":"ok","message_token":{message_token},"chat_hostname":"{VIBER_CHAT_HOSTNAME}"}}"#
        ),
    )
}

/// The answer for a faulted send (all kinds but `slow` and `drop`). Viber's gateway answers a
/// server error with a bare HTTP 500; everything else is a status inside HTTP 200.
pub fn fault(kind: FaultKind) -> Reply {
    match kind {
        FaultKind::ServerError => Reply::bytes(500, "text/plain; charset=utf-8", b"Internal Server Error".to_vec()),
        FaultKind::ExpiredToken => INVALID_AUTH_TOKEN.into_reply(),
        FaultKind::Permanent => RECEIVER_NOT_SUBSCRIBED.into_reply(),
        FaultKind::RateLimit | FaultKind::Slow | FaultKind::Drop => TOO_MANY_REQUESTS.into_reply(),
    }
}

/// The token a request carries: the `X-Viber-Auth-Token` header, or (old SDKs) `auth_token` in the body.
pub fn auth_token<'a>(header: Option<&'a str>, body: Option<&'a Value>) -> Option<&'a str> {
    header.or_else(|| body.and_then(|b| b.get("auth_token")).and_then(Value::as_str))
}

/// Checks a `send_message` body; returns the receiver.
pub fn validate_send(body: Option<&Value>) -> Result<String, ViberStatus> {
    let Some(Value::Object(body)) = body else { return Err(BAD_DATA) };
    let receiver = match body.get("receiver") {
        None => return Err(MISSING_DATA),
        Some(Value::String(r)) if !r.is_empty() => r.clone(),
        Some(_) => return Err(BAD_DATA),
    };
    match body.get("sender").and_then(|s| s.get("name")) {
        None => return Err(MISSING_DATA),
        Some(Value::String(name)) if !name.is_empty() && name.chars().count() <= SENDER_NAME_MAX => {}
        Some(_) => return Err(MISSING_DATA),
    }
    if let Some(tracking) = body.get("tracking_data") {
        // The Node SDK's lesson: null is refused, a string of at most 4000 characters is fine.
        if tracking.as_str().is_none_or(|t| t.chars().count() > TRACKING_DATA_MAX) {
            return Err(BAD_DATA);
        }
    }
    let field = |name: &str| body.get(name);
    let has_text = |name: &str| field(name).and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    let ok = match field("type").and_then(Value::as_str) {
        None => return Err(MISSING_DATA),
        Some("text") => {
            if !has_text("text") {
                return Err(MISSING_DATA);
            }
            field("text").and_then(Value::as_str).is_some_and(|t| t.chars().count() <= TEXT_MAX)
        }
        Some("picture") | Some("url") => has_text("media"),
        Some("video") => has_text("media") && field("size").is_some_and(Value::is_number),
        Some("file") => has_text("media") && field("size").is_some_and(Value::is_number) && has_text("file_name"),
        Some("sticker") => field("sticker_id").is_some_and(Value::is_number),
        Some("location") => field("location").is_some_and(|l| l.get("lat").is_some() && l.get("lon").is_some()),
        Some("contact") => field("contact").is_some_and(|c| c.get("name").is_some() && c.get("phone_number").is_some()),
        Some("rich_media") => field("rich_media").is_some_and(Value::is_object),
        Some(_) => return Err(BAD_DATA),
    };
    if ok { Ok(receiver) } else { Err(BAD_DATA) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn send(body: Value) -> Result<String, u8> {
        validate_send(Some(&body)).map_err(|s| s.status)
    }

    #[test]
    fn a_documented_send_is_accepted() {
        let body = json!({"receiver":"pttm25kSGUo1919sBORWyA==","min_api_version":1,"sender":{"name":"Acme Support","avatar":"https://x/a.jpg"},"tracking_data":"conv-1","type":"text","text":"Your parcel leaves today."});
        assert_eq!(send(body), Ok("pttm25kSGUo1919sBORWyA==".into()));
        assert!(
            send(json!({"receiver":"u","sender":{"name":"A"},"type":"picture","media":"https://x/p.jpg","text":"c"}))
                .is_ok()
        );
        assert!(send(json!({"receiver":"u","sender":{"name":"A"},"type":"file","media":"https://x/f.pdf","size":10,"file_name":"f.pdf"})).is_ok());
    }

    #[test]
    fn missing_and_bad_fields_get_statuses_4_and_3() {
        assert_eq!(send(json!({"receiver":"u","type":"text","text":"no sender"})), Err(4));
        assert_eq!(send(json!({"receiver":"u","sender":{},"type":"text","text":"x"})), Err(4));
        assert_eq!(send(json!({"receiver":"u","sender":{"name":"x".repeat(29)},"type":"text","text":"x"})), Err(4));
        assert_eq!(send(json!({"sender":{"name":"A"},"type":"text","text":"no receiver"})), Err(4));
        assert_eq!(send(json!({"receiver":"u","sender":{"name":"A"},"text":"no type"})), Err(4));
        assert_eq!(send(json!({"receiver":"u","sender":{"name":"A"},"type":"text"})), Err(4));
        assert_eq!(send(json!({"receiver":"u","sender":{"name":"A"},"type":"hologram"})), Err(3));
        assert_eq!(
            send(json!({"receiver":"u","sender":{"name":"A"},"type":"text","text":"x","tracking_data":null})),
            Err(3)
        );
        assert_eq!(send(json!({"receiver":"u","sender":{"name":"A"},"type":"video","media":"m"})), Err(3));
        assert_eq!(validate_send(None).map_err(|s| s.status), Err(3));
    }

    #[test]
    fn answers_keep_the_token_exact_and_errors_are_http_200() {
        let reply = sent(5_741_311_803_571_721_087);
        assert_eq!(reply.status, 200);
        let text = String::from_utf8(reply.body).unwrap();
        assert!(text.contains(r#""message_token":5741311803571721087,"#), "{text}");
        let error = INVALID_AUTH_TOKEN.into_reply();
        assert_eq!((error.status, error.json_body()["status"].as_u64()), (200, Some(2)));
        assert_eq!(fault(FaultKind::RateLimit).json_body()["status"], 12);
        assert_eq!(fault(FaultKind::Permanent).json_body()["status"], 6);
        assert_eq!(fault(FaultKind::ServerError).status, 500);
    }

    #[test]
    fn the_token_may_come_in_the_body_for_old_sdks() {
        let body = json!({"auth_token":"b"});
        assert_eq!(auth_token(Some("h"), Some(&body)), Some("h"));
        assert_eq!(auth_token(None, Some(&body)), Some("b"));
        assert_eq!(auth_token(None, None), None);
    }
}
