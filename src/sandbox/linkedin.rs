//! The LinkedIn REST stand-in's rules for organization comments (PLATFORMS.md 4.6) and its error
//! envelope. Pure: the state lives in `core`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::faults::FaultKind;
use super::reply::Reply;

/// LinkedIn's error envelope: `{"status", "serviceErrorCode"?, "code"?, "message"}`.
pub fn error(status: u16, service_error_code: Option<u32>, code: Option<&str>, message: &str) -> Reply {
    let mut body = serde_json::Map::new();
    body.insert("status".into(), json!(status));
    if let Some(service) = service_error_code {
        body.insert("serviceErrorCode".into(), json!(service));
    }
    if let Some(code) = code {
        body.insert("code".into(), json!(code));
    }
    body.insert("message".into(), json!(message));
    Reply::json(status, &Value::Object(body))
}

/// The token is missing or unknown.
pub fn invalid_token() -> Reply {
    error(401, Some(65600), Some("INVALID_ACCESS_TOKEN"), "Invalid access token")
}

/// The member revoked the token (the `expired_token` fault).
pub fn revoked_token() -> Reply {
    error(401, Some(65601), Some("REVOKED_ACCESS_TOKEN"), "The token used in the request has been revoked by the user")
}

/// LinkedIn's throttle answer.
pub fn throttled() -> Reply {
    error(
        429,
        Some(101),
        Some("TOO_MANY_REQUESTS"),
        "Resource level throttle APPLICATION DAY limit for calls to this resource is reached.",
    )
}

/// The answer for a faulted send (all kinds but `slow` and `drop`).
pub fn fault(kind: FaultKind) -> Reply {
    match kind {
        FaultKind::RateLimit | FaultKind::Slow | FaultKind::Drop => throttled().with_header("retry-after", "1"),
        FaultKind::ServerError => error(500, None, None, "Internal Server Error"),
        FaultKind::ExpiredToken => revoked_token(),
        FaultKind::Permanent => error(
            403,
            Some(100),
            Some("ACCESS_DENIED"),
            "Not enough permissions to access: partnerApiSocialActions.CREATE.20250601",
        ),
    }
}

/// A valid comment request: where it goes and who posts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommentSend {
    /// The post (or comment) URN commented on.
    pub object: String,
    pub actor: String,
    pub text: String,
}

/// Checks the headers (minus the token, which `core` checks) and body of
/// `POST /rest/socialActions/{urn}/comments`. `path_urn` is the decoded URN from the path.
pub fn validate_comment(path_urn: &str, headers: &BTreeMap<String, String>, body: &[u8]) -> Result<CommentSend, Reply> {
    match headers.get("linkedin-version") {
        None => {
            return Err(error(
                400,
                None,
                Some("VERSION_MISSING"),
                "A version must be present. Please specify a version by adding the LinkedIn-Version header.",
            ));
        }
        Some(v) if v.len() == 6 && v.bytes().all(|b| b.is_ascii_digit()) => {}
        Some(v) => {
            return Err(error(426, None, Some("NONEXISTENT_VERSION"), &format!("Requested version {v} is not active")));
        }
    }
    if headers.get("x-restli-protocol-version").map(String::as_str) != Some("2.0.0") {
        return Err(error(400, None, None, "X-Restli-Protocol-Version 2.0.0 is required for this resource"));
    }
    if !path_urn.starts_with("urn:li:") {
        return Err(error(400, None, None, &format!("Invalid URN in the path: {path_urn}")));
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
        return Err(error(400, None, None, "Failed to parse the request body as JSON"));
    };
    let text_of = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned).filter(|s| !s.is_empty());
    let unprocessable = |message: &str| error(422, None, Some("UNPROCESSABLE_ENTITY"), message);
    let actor = text_of(body.get("actor")).ok_or_else(|| unprocessable("/actor :: field is required but not found"))?;
    if !(actor.starts_with("urn:li:organization:") || actor.starts_with("urn:li:person:")) {
        return Err(unprocessable(&format!("/actor :: {actor} is not an organization or person URN")));
    }
    let object =
        text_of(body.get("object")).ok_or_else(|| unprocessable("/object :: field is required but not found"))?;
    if object != path_urn {
        return Err(unprocessable(&format!("/object :: {object} does not match the URN in the path ({path_urn})")));
    }
    let text = text_of(body.get("message").and_then(|m| m.get("text")))
        .ok_or_else(|| unprocessable("/message/text :: field is required but not found"))?;
    if let Some(parent) = body.get("parentComment")
        && !parent.as_str().is_some_and(|p| p.starts_with("urn:li:comment:"))
    {
        return Err(unprocessable("/parentComment :: must be a comment URN"));
    }
    Ok(CommentSend { object, actor, text })
}

/// The 201 answer: the new comment's URN in `x-restli-id` and in the body.
pub fn created(comment: &CommentSend, comment_id: u64, at_ms: i64) -> Reply {
    let urn = format!("urn:li:comment:({},{comment_id})", comment.object);
    let body = json!({
        "id": urn,
        "commentUrn": urn,
        "actor": comment.actor,
        "object": comment.object,
        "message": { "text": comment.text },
        "created": { "actor": comment.actor, "time": at_ms },
        "lastModified": { "actor": comment.actor, "time": at_ms },
    });
    Reply::json(201, &body).with_header("x-restli-id", urn)
}

/// An OAuth error (`/oauth/v2/...` answers in OAuth's shape, not the REST envelope).
pub fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    Reply::json(status, &json!({ "error": error, "error_description": description }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POST: &str = "urn:li:activity:7190000000000000001";

    fn headers() -> BTreeMap<String, String> {
        [("linkedin-version", "202506"), ("x-restli-protocol-version", "2.0.0")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn body(value: Value) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    #[test]
    fn a_documented_comment_is_accepted_and_answered_201() {
        let request = body(json!({"actor":"urn:li:organization:2414183","object":POST,
            "parentComment":"urn:li:comment:(urn:li:activity:7190000000000000001,7190000000000000099)",
            "message":{"text":"Yes, we ship to Portugal."}}));
        let send = validate_comment(POST, &headers(), &request).unwrap();
        let reply = created(&send, 7_190_000_000_000_000_123, 1);
        assert_eq!(reply.status, 201);
        let urn = "urn:li:comment:(urn:li:activity:7190000000000000001,7190000000000000123)";
        assert_eq!(reply.header("x-restli-id"), Some(urn));
        assert_eq!(reply.json_body()["id"], urn);
    }

    #[test]
    fn headers_and_body_are_checked() {
        let good = body(json!({"actor":"urn:li:organization:1","object":POST,"message":{"text":"x"}}));
        let mut no_version = headers();
        no_version.remove("linkedin-version");
        assert_eq!(validate_comment(POST, &no_version, &good).unwrap_err().status, 400);
        let mut old = headers();
        old.insert("linkedin-version".into(), "2020".into());
        assert_eq!(validate_comment(POST, &old, &good).unwrap_err().status, 426);
        let mut no_restli = headers();
        no_restli.remove("x-restli-protocol-version");
        assert_eq!(validate_comment(POST, &no_restli, &good).unwrap_err().status, 400);
        for bad in [
            json!({"object":POST,"message":{"text":"x"}}),
            json!({"actor":"urn:li:organization:1","message":{"text":"x"}}),
            json!({"actor":"urn:li:organization:1","object":"urn:li:activity:2","message":{"text":"x"}}),
            json!({"actor":"urn:li:organization:1","object":POST,"message":{}}),
            json!({"actor":"someone","object":POST,"message":{"text":"x"}}),
        ] {
            assert_eq!(validate_comment(POST, &headers(), &body(bad.clone())).unwrap_err().status, 422, "{bad}");
        }
        assert_eq!(validate_comment(POST, &headers(), b"{").unwrap_err().status, 400);
    }

    #[test]
    fn fault_answers_use_the_error_envelope() {
        let revoked = fault(FaultKind::ExpiredToken).json_body();
        assert_eq!((revoked["status"].as_u64(), revoked["serviceErrorCode"].as_u64()), (Some(401), Some(65601)));
        assert_eq!(revoked["code"], "REVOKED_ACCESS_TOKEN");
        assert_eq!(fault(FaultKind::Permanent).status, 403);
        let limited = fault(FaultKind::RateLimit);
        assert_eq!((limited.status, limited.header("retry-after")), (429, Some("1")));
    }
}
