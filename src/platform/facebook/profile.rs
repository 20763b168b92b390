//! Messenger's User Profile API: the name of the person behind a PSID.
//!
//! A Messenger webhook names its sender by Page-scoped id only, so the inbox would show digits.
//! `GET {api_base}/{psid}?fields=first_name,last_name` with the Page token answers
//! `{"first_name": "Peter", "last_name": "Chang", "id": "<psid>"}`; either name may be missing
//! (the person did not grant it, the app lacks the permission), and a refusal is the usual Graph
//! error body. Pure: the channel actor paces and executes the request.

use std::time::Duration;

use serde_json::Value;

use super::super::json::str_field;
use super::super::{ApiRequest, ApiResponse, SendContext};
use super::{GraphError, graph_get, is_success, percent_encode};

/// The fields asked for: only what the inbox shows (no picture: it is not stored, and its URL
/// expires).
pub const PROFILE_FIELDS: &str = "first_name,last_name";

/// The longest name kept, in characters; Graph's are far shorter, this only bounds what a
/// misbehaving answer can put into the store.
pub const MAX_NAME_CHARS: usize = 256;

/// Why a profile lookup gave no name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// The request cannot be built: the PSID is empty.
    #[error("the contact has no PSID to look up")]
    NoPsid,
    /// Graph refused, and asking again will not change that: no permission (230, 100/2018218),
    /// an unknown or deleted user (100/33), a token Graph does not take (190).
    #[error("Graph refused the profile lookup (code {code}): {message}")]
    Refused { code: String, message: String },
    /// A temporary failure (throttling, Graph unavailable, a 5xx): one later try may succeed.
    #[error("the profile lookup failed for now (code {code}): {message}")]
    Temporary { code: String, message: String, retry_after: Option<Duration> },
    /// A 2xx answer that is not a profile object.
    #[error("the profile answer (HTTP {status}) is not a JSON object")]
    Malformed { status: u16 },
}

impl ProfileError {
    /// True when one more try later could succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(self, ProfileError::Temporary { .. })
    }

    /// A short code for logs and counters: Graph's `code/subcode`, `http_<status>`, or a word.
    pub fn code(&self) -> &str {
        match self {
            ProfileError::NoPsid => "no_psid",
            ProfileError::Refused { code, .. } | ProfileError::Temporary { code, .. } => code,
            ProfileError::Malformed { .. } => "malformed",
        }
    }
}

/// Builds `GET {api_base}/{psid}?fields=first_name,last_name` with the Page token as
/// `Authorization: Bearer` (Graph takes it there as well as in `access_token`), so that the token
/// is in no URL anything might print. `ctx.api_base` carries the Graph version.
pub fn build_profile_request(ctx: &SendContext<'_>, psid: &str) -> Result<ApiRequest, ProfileError> {
    if psid.trim().is_empty() {
        return Err(ProfileError::NoPsid);
    }
    let mut request = graph_get(ctx.api_base, &percent_encode(psid), &[("fields", PROFILE_FIELDS)]);
    request.headers.push(("Authorization", format!("Bearer {}", ctx.access_token.expose())));
    Ok(request)
}

/// Reads a profile answer: the name to show (`"first last"`, trimmed; whichever part is there),
/// `None` when Graph answered but gave neither, or why there is no answer to use.
///
/// As for sends, a Graph error body decides over the HTTP status. Temporary: the codes Messenger
/// documents as such (1200, 2, 4, 613, 32), 1 (unknown, "retry later"), 17 (user request limit),
/// and, without a Graph body, 429 and 5xx. Everything else, a dead token (190) included, is
/// `Refused`: a name is not worth retrying for, and the channel's own sends and token checks deal
/// with the token.
pub fn parse_profile(response: &ApiResponse) -> Result<Option<String>, ProfileError> {
    let body: Option<Value> = serde_json::from_slice(&response.body).ok();
    if let Some(error) = body.as_ref().and_then(GraphError::from_body) {
        let message = error.message.clone().unwrap_or_else(|| "Graph error without a message".into());
        let code = error.code_string();
        return Err(match error.code {
            1 | 2 | 4 | 17 | 32 | 613 | 1200 => {
                ProfileError::Temporary { code, message, retry_after: response.retry_after() }
            }
            _ => ProfileError::Refused { code, message },
        });
    }
    if !is_success(response.status) {
        let code = format!("http_{}", response.status);
        let message = format!("Graph answered HTTP {} without a Graph error body", response.status);
        return Err(match response.status {
            429 | 500..=599 => ProfileError::Temporary { code, message, retry_after: response.retry_after() },
            _ => ProfileError::Refused { code, message },
        });
    }
    match body {
        Some(profile @ Value::Object(_)) => Ok(display_name(&profile)),
        _ => Err(ProfileError::Malformed { status: response.status }),
    }
}

/// `"first last"` from a profile object, each part trimmed, control characters dropped, at most
/// [`MAX_NAME_CHARS`]; `None` when neither part has anything left.
fn display_name(profile: &Value) -> Option<String> {
    let part = |key| str_field(profile, key).map(|text| text.chars().filter(|c| !c.is_control()).collect::<String>());
    let parts: Vec<String> =
        [part("first_name"), part("last_name")].into_iter().flatten().map(|p| p.trim().to_owned()).collect();
    let name = parts.iter().filter(|p| !p.is_empty()).map(String::as_str).collect::<Vec<_>>().join(" ");
    let name: String = name.chars().take(MAX_NAME_CHARS).collect();
    let name = name.trim_end().to_owned();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::ApiMethod;
    use crate::secret::Secret;

    const PSID: &str = "7212345678901234";

    fn response(status: u16, body: &str) -> ApiResponse {
        ApiResponse { status, headers: Vec::new(), body: body.as_bytes().to_vec() }
    }

    fn request_for(psid: &str) -> Result<ApiRequest, ProfileError> {
        let token = Secret::new("EAAG-page-token+/=".to_owned());
        let ctx = SendContext {
            api_base: "https://graph.facebook.com/v23.0/",
            account_id: "104857600123456",
            access_token: &token,
            sender_name: "",
            api_version: "",
        };
        build_profile_request(&ctx, psid)
    }

    #[test]
    fn the_request_asks_graph_for_the_names_with_the_token_in_a_header_only() {
        let request = request_for(PSID).expect("a PSID");
        assert_eq!(request.method, ApiMethod::Get);
        assert_eq!(request.url, format!("https://graph.facebook.com/v23.0/{PSID}?fields=first_name%2Clast_name"));
        assert_eq!(request.headers, vec![("Authorization", "Bearer EAAG-page-token+/=".to_owned())]);
        assert!(!format!("{request:?}").contains("EAAG"), "Debug never shows the token");
    }

    #[test]
    fn a_psid_is_one_path_segment_whatever_it_holds() {
        let request = request_for("12/../debug_token?x").expect("not empty");
        assert!(request.url.starts_with("https://graph.facebook.com/v23.0/12%2F..%2Fdebug_token%3Fx?fields="));
        assert_eq!(request_for("  "), Err(ProfileError::NoPsid));
    }

    #[test]
    fn a_full_profile_gives_first_and_last_name() {
        let body = r#"{"first_name":"Peter","last_name":"Chang","profile_pic":"https://platform-lookaside.fbsbx.com/platform/profilepic/?psid=7212345678901234&width=1024&ext=1718999999&hash=AbC","id":"7212345678901234"}"#;
        assert_eq!(parse_profile(&response(200, body)), Ok(Some("Peter Chang".to_owned())));
    }

    #[test]
    fn a_missing_part_leaves_the_other_and_neither_leaves_no_name() {
        assert_eq!(parse_profile(&response(200, r#"{"first_name":"Peter","id":"1"}"#)), Ok(Some("Peter".into())));
        assert_eq!(parse_profile(&response(200, r#"{"last_name":" Chang ","id":"1"}"#)), Ok(Some("Chang".into())));
        assert_eq!(parse_profile(&response(200, r#"{"id":"7212345678901234"}"#)), Ok(None));
        assert_eq!(parse_profile(&response(200, r#"{"first_name":"  ","last_name":"","id":"1"}"#)), Ok(None));
        assert_eq!(parse_profile(&response(200, r#"{"first_name":12,"last_name":null}"#)), Ok(None));
    }

    #[test]
    fn names_keep_their_script_lose_control_characters_and_are_bounded() {
        let body = r#"{"first_name":"سلمى\u0000","last_name":"\tכהן 🌙\n"}"#;
        assert_eq!(parse_profile(&response(200, body)), Ok(Some("سلمى כהן 🌙".into())));
        let long = format!(r#"{{"first_name":"{}","last_name":"Z"}}"#, "é".repeat(1000));
        let name = parse_profile(&response(200, &long)).expect("a profile").expect("a name");
        assert_eq!(name.chars().count(), MAX_NAME_CHARS);
    }

    #[test]
    fn permission_and_unknown_user_errors_are_refusals() {
        let no_permission = r#"{"error":{"message":"(#230) Requires pages_messaging permission to manage the object","type":"OAuthException","code":230,"fbtrace_id":"AbCdEf"}}"#;
        let error = parse_profile(&response(400, no_permission)).unwrap_err();
        assert!(!error.is_temporary());
        assert_eq!(error.code(), "230");
        let no_profile = r#"{"error":{"message":"(#100) No profile available for this user.","type":"OAuthException","code":100,"error_subcode":2018218,"fbtrace_id":"AbCdEf"}}"#;
        assert_eq!(parse_profile(&response(400, no_profile)).unwrap_err().code(), "100/2018218");
        let dead_token = r#"{"error":{"message":"Error validating access token: Session has expired","type":"OAuthException","code":190,"error_subcode":463,"fbtrace_id":"x"}}"#;
        assert!(!parse_profile(&response(401, dead_token)).unwrap_err().is_temporary());
        // A Graph error in a 200 still is an error.
        let in_200 = r#"{"error":{"message":"Unsupported get request.","type":"GraphMethodException","code":"100","error_subcode":"33"}}"#;
        assert_eq!(parse_profile(&response(200, in_200)).unwrap_err().code(), "100/33");
    }

    #[test]
    fn throttling_and_outages_are_temporary_with_retry_after() {
        let throttled = r#"{"error":{"message":"(#613) Calls to this api have exceeded the rate limit.","type":"OAuthException","code":613,"fbtrace_id":"x"}}"#;
        let mut answer = response(400, throttled);
        answer.headers.push(("retry-after".into(), "7".into()));
        match parse_profile(&answer) {
            Err(ProfileError::Temporary { code, retry_after, .. }) => {
                assert_eq!(code, "613");
                assert_eq!(retry_after, Some(Duration::from_secs(7)));
            }
            other => panic!("expected a temporary error, got {other:?}"),
        }
        let unavailable = r#"{"error":{"message":"An unexpected error has occurred. Please retry your request later.","type":"OAuthException","is_transient":true,"code":2,"fbtrace_id":"x"}}"#;
        assert!(parse_profile(&response(500, unavailable)).unwrap_err().is_temporary());
        assert!(parse_profile(&response(502, "<html>Bad Gateway</html>")).unwrap_err().is_temporary());
        assert!(parse_profile(&response(429, "")).unwrap_err().is_temporary());
        assert_eq!(parse_profile(&response(404, "")).unwrap_err().code(), "http_404");
    }

    #[test]
    fn a_success_that_is_not_an_object_is_malformed() {
        for body in ["", "[]", "\"Peter\"", "{", "null"] {
            assert_eq!(parse_profile(&response(200, body)), Err(ProfileError::Malformed { status: 200 }), "{body:?}");
        }
    }
}
