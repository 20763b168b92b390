//! The stand-in for Messenger's User Profile API, `GET /{version}/{psid}?fields=…` with the Page
//! token: a deterministic name for a PSID-looking id, Graph's errors otherwise. Pure; the core
//! routes, records, checks the token and applies faults (`"endpoint": "profile"`).

use serde_json::{Map, Value, json};

use super::faults::FaultKind;
use super::graph::GraphError;

const FIRST_NAMES: &[&str] = &["Ana", "Peter", "Mei", "Olu", "Ivan", "Sofia", "Tariq", "Lena", "Kofi", "Yuki", "Zoë"];
const LAST_NAMES: &[&str] =
    &["Souza", "Chang", "Petrenko", "Okafor", "Haddad", "Novak", "Silva", "Kim", "Müller", "Rossi", "Ndiaye"];

/// True for what a PSID looks like: 5 to 20 ASCII digits (real ones have 16 or 17).
pub fn is_psid(id: &str) -> bool {
    (5..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit())
}

/// The first and last name the sandbox gives `psid`: the same for the same PSID, every run, so a
/// test can say what a conversation will be called.
pub fn profile_name(psid: &str) -> (&'static str, &'static str) {
    // FNV-1a: stable across runs and builds, unlike the standard library's hasher.
    let hash = psid.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let first = FIRST_NAMES[(hash % FIRST_NAMES.len() as u64) as usize];
    let last = LAST_NAMES[((hash >> 32) % LAST_NAMES.len() as u64) as usize];
    (first, last)
}

/// The name the daemon should show for `psid`: `"first last"`.
pub fn display_name(psid: &str) -> String {
    let (first, last) = profile_name(psid);
    format!("{first} {last}")
}

/// True when a `GET /{v}/{id}` asks for User fields, so is a profile lookup rather than a Page,
/// phone number or media read.
pub fn asks_for_profile(fields: Option<&str>) -> bool {
    fields
        .is_some_and(|fields| fields.split(',').any(|f| matches!(f.trim(), "first_name" | "last_name" | "profile_pic")))
}

/// The answer to a lookup of `psid` for `fields` (comma-separated, as Graph takes them); only the
/// fields asked for, plus `id`, as Graph does.
pub fn lookup(psid: &str, fields: &str) -> Result<Value, GraphError> {
    if !is_psid(psid) {
        return Err(no_such_object(psid));
    }
    let mut answer = Map::new();
    let (first, last) = profile_name(psid);
    for field in fields.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let value = match field {
            "first_name" => json!(first),
            "last_name" => json!(last),
            "name" => json!(format!("{first} {last}")),
            "profile_pic" => json!(format!("https://platform-lookaside.fbsbx.com/platform/profilepic/?psid={psid}")),
            "locale" => json!("en_US"),
            "timezone" => json!(0),
            // Not given to Pages any more; `id` is always added.
            "gender" | "id" => continue,
            other => {
                return Err(GraphError::param(format!(
                    "(#100) Tried accessing nonexisting field ({other}) on node type (User)"
                )));
            }
        };
        answer.insert(field.to_owned(), value);
    }
    answer.insert("id".into(), json!(psid));
    Ok(Value::Object(answer))
}

/// Graph's answer for an id that is no user the Page can see.
fn no_such_object(id: &str) -> GraphError {
    GraphError {
        subcode: Some(33),
        ..GraphError::param(format!(
            "Unsupported get request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."
        ))
    }
}

/// The answer for a faulted lookup (all kinds but `slow` and `drop`, which the core handles).
pub fn fault(kind: FaultKind) -> GraphError {
    match kind {
        FaultKind::RateLimit | FaultKind::Slow | FaultKind::Drop => GraphError {
            http_status: 429,
            ..GraphError::new(613, "(#613) Calls to this api have exceeded the rate limit.")
        },
        FaultKind::ServerError => GraphError {
            http_status: 500,
            is_transient: true,
            ..GraphError::new(2, "(#2) Service temporarily unavailable")
        },
        FaultKind::ExpiredToken => super::graph::expired_token(),
        // What Graph answers when the person's profile is not available to the Page.
        FaultKind::Permanent => GraphError {
            subcode: Some(2_018_218),
            ..GraphError::new(100, "(#100) No profile available for this user.")
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_psid_gets_the_same_name_every_time_and_only_the_fields_asked_for() {
        let psid = "7212345678901234";
        assert_eq!(profile_name(psid), profile_name(psid));
        let answer = lookup(psid, "first_name,last_name").unwrap();
        let (first, last) = profile_name(psid);
        assert_eq!(answer, json!({ "first_name": first, "last_name": last, "id": psid }));
        assert_eq!(display_name(psid), format!("{first} {last}"));
        assert!(lookup(psid, "first_name,last_name,profile_pic").unwrap()["profile_pic"].is_string());
        let names: std::collections::HashSet<_> =
            (0..50).map(|i| profile_name(&format!("72123456789{i:05}"))).collect();
        assert!(names.len() > 10, "PSIDs get different names");
    }

    #[test]
    fn other_ids_and_fields_get_graph_errors() {
        assert_eq!(lookup("not-a-psid", "first_name").unwrap_err().subcode, Some(33));
        assert_eq!(lookup("7212345678901234", "first_name,email").unwrap_err().code, 100);
        assert!(asks_for_profile(Some("first_name,last_name")));
        assert!(!asks_for_profile(Some("access_token")));
        assert!(!asks_for_profile(None));
        assert_eq!(fault(FaultKind::Permanent).subcode, Some(2_018_218));
        assert_eq!(fault(FaultKind::ServerError).http_status, 500);
    }
}
