//! Lenient readers for platform JSON: ids and timestamps arrive as numbers or as strings, and a
//! 64-bit id must never pass through `f64` (PLATFORMS.md rules 0.6 and 0.7).

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::Timestamp;

/// An id as a string, whether the JSON holds a string or an integer. Integers are read exactly
/// (serde_json keeps them as u64/i64); a float or anything else is `None`.
pub fn id_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

/// `value[key]` as an id string (see [`id_string`]).
pub fn id_field(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(id_string)
}

/// `value[key]` as a non-empty string.
pub fn str_field(value: &Value, key: &str) -> Option<String> {
    match value.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// An integer from a JSON number or a decimal string.
pub fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64))
        }
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A timestamp from a number or string, in seconds or milliseconds (told apart by size).
pub fn timestamp(value: &Value) -> Option<Timestamp> {
    integer(value).filter(|v| *v > 0).map(Timestamp::from_secs_or_millis)
}

/// `value[key]` as a timestamp (see [`timestamp`]).
pub fn timestamp_field(value: &Value, key: &str) -> Option<Timestamp> {
    value.get(key).and_then(timestamp)
}

/// A stable key for an element that carries no id of its own: SHA-256 of its canonical JSON.
/// serde_json maps are sorted, so a redelivered body gives the same key.
pub fn content_key(value: &Value) -> String {
    let canonical = serde_json::to_vec(value).expect("a serde_json::Value always serialises");
    let digest = Sha256::digest(&canonical);
    super::encode_hex(&digest[..16])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ids_keep_every_digit() {
        let v: Value =
            serde_json::from_str(r#"{"t": 5741311803571721087, "s": "5741311803571721087", "f": 1.5}"#).unwrap();
        assert_eq!(id_field(&v, "t").as_deref(), Some("5741311803571721087"));
        assert_eq!(id_field(&v, "s").as_deref(), Some("5741311803571721087"));
        assert_eq!(id_field(&v, "f"), None);
        assert_eq!(id_field(&v, "missing"), None);
    }

    #[test]
    fn timestamps_in_either_unit_and_form() {
        let expected = Some(Timestamp::from_millis(1_718_000_000_000));
        assert_eq!(timestamp(&json!(1_718_000_000)), expected);
        assert_eq!(timestamp(&json!("1718000000")), expected);
        assert_eq!(timestamp(&json!(1_718_000_000_000_i64)), expected);
        assert_eq!(timestamp(&json!("1718000000000")), expected);
        assert_eq!(timestamp(&json!("soon")), None);
        assert_eq!(timestamp(&json!(0)), None);
    }

    #[test]
    fn content_key_ignores_key_order() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":[1,2]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":[1,2],"a":1}"#).unwrap();
        assert_eq!(content_key(&a), content_key(&b));
        assert_ne!(content_key(&a), content_key(&json!({"a": 2})));
    }
}
