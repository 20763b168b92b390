//! Lenient readers for platform JSON: ids and timestamps arrive as numbers or as strings, and a
//! 64-bit id must never pass through `f64` (PLATFORMS.md rules 0.6 and 0.7).

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::ParseError;
use crate::model::Timestamp;

/// The deepest nesting a webhook body may have (arrays and objects). Real bodies nest about 12
/// deep; serde_json refuses to read more than 128, and a stored event wraps the body's elements
/// in a few levels more, so a deeper body could be stored but never read back. Deeper bodies go
/// to quarantine, which keeps them as text.
pub const MAX_BODY_DEPTH: usize = 64;

/// Parses a webhook body: JSON, at most [`MAX_BODY_DEPTH`] deep.
pub fn parse_body(body: &[u8]) -> Result<Value, ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    // Containers only, with their depth: scalars cannot make a body deeper.
    let mut stack = vec![(&value, 1_usize)];
    while let Some((node, depth)) = stack.pop() {
        if depth > MAX_BODY_DEPTH {
            return Err(ParseError::TooDeep { max: MAX_BODY_DEPTH });
        }
        let is_container = |child: &&Value| child.is_array() || child.is_object();
        match node {
            Value::Array(items) => stack.extend(items.iter().filter(is_container).map(|child| (child, depth + 1))),
            Value::Object(fields) => {
                stack.extend(fields.values().filter(is_container).map(|child| (child, depth + 1)));
            }
            _ => {}
        }
    }
    Ok(value)
}

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

/// A platform's time for an event that arrived at `received_at`: an integer (JSON number or
/// decimal string) in seconds or milliseconds, told apart by size (PLATFORMS.md rule 0.7).
///
/// `None` when it is not an integer, or when it is not a time we can believe: before 2004 or
/// more than a day after the arrival ([`Timestamp::is_plausible_event_time`]): a placeholder,
/// microseconds taken for milliseconds, the year 10000. Callers then date the event by its
/// arrival (or, for a watermark, do without); the platform's raw value stays in the event's
/// `raw`. Every time a parser reads goes through here, so none can skip the check.
pub fn event_time(value: &Value, received_at: Timestamp) -> Option<Timestamp> {
    integer(value).map(Timestamp::from_secs_or_millis).filter(|at| at.is_plausible_event_time(received_at))
}

/// `value[key]` as an event time (see [`event_time`]).
pub fn event_time_field(value: &Value, key: &str, received_at: Timestamp) -> Option<Timestamp> {
    value.get(key).and_then(|time| event_time(time, received_at))
}

/// A latitude or longitude, as a number or a numeric string, within `±limit` degrees. Never NaN
/// or infinite (`"NaN"` and `"inf"` parse as `f64`): JSON cannot hold those, so a stored
/// message with one would not read back.
pub fn coordinate(value: &Value, limit: f64) -> Option<f64> {
    let degrees = match value {
        Value::Number(number) => number.as_f64()?,
        Value::String(text) => text.trim().parse().ok()?,
        _ => return None,
    };
    (degrees.is_finite() && degrees.abs() <= limit).then_some(degrees)
}

/// A stable key for an element that carries no id of its own: SHA-256 of its canonical JSON.
/// serde_json maps are sorted, so a redelivered body gives the same key.
pub fn content_key(value: &Value) -> String {
    let canonical = serde_json::to_vec(value).expect("a serde_json::Value always serialises");
    let digest = Sha256::digest(&canonical);
    super::encode_hex(&digest[..16])
}

/// Times no parser may believe (for the platform modules' tests): far future, microseconds, the
/// edges of the integer types, before 2004, negative, fractional, placeholders, wrong types.
#[cfg(test)]
pub(crate) fn implausible_times() -> Vec<Value> {
    serde_json::json!([
        253_402_300_800_000_i64,
        "253402300800000",
        "1000000000000000",
        1_000_000_000_000_000_i64,
        99_999_999_999_i64,
        i64::MAX,
        u64::MAX,
        i64::MIN,
        -1,
        0,
        1,
        "1e15",
        1e15,
        1.7976931348623157e308,
        1_718_000_000.5,
        "99999999999999999999999999999999999999",
        "TIMESTAMP",
        "",
        null,
        [1_718_000_000],
        { "seconds": 1_718_000_000 }
    ])
    .as_array()
    .expect("an array")
    .clone()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::time::MAX_EVENT_LEAD_MILLIS as MAX_LEAD;

    #[test]
    fn ids_keep_every_digit() {
        let v: Value =
            serde_json::from_str(r#"{"t": 5741311803571721087, "s": "5741311803571721087", "f": 1.5}"#).unwrap();
        assert_eq!(id_field(&v, "t").as_deref(), Some("5741311803571721087"));
        assert_eq!(id_field(&v, "s").as_deref(), Some("5741311803571721087"));
        assert_eq!(id_field(&v, "f"), None);
        assert_eq!(id_field(&v, "missing"), None);
    }

    const ARRIVAL: Timestamp = Timestamp::from_millis(1_718_000_100_000);

    #[test]
    fn timestamps_in_either_unit_and_form() {
        let expected = Some(Timestamp::from_millis(1_718_000_000_000));
        let time = |value: Value| event_time(&value, ARRIVAL);
        assert_eq!(time(json!(1_718_000_000)), expected);
        assert_eq!(time(json!("1718000000")), expected);
        assert_eq!(time(json!(" 1718000000 ")), expected);
        assert_eq!(time(json!(1_718_000_000_000_i64)), expected);
        assert_eq!(time(json!("1718000000000")), expected);
        assert_eq!(time(json!(1.718e12)), expected, "a whole float");
        assert_eq!(time(json!(1_718_000_000_u64)), expected);
        assert_eq!(time(json!("soon")), None);
        assert_eq!(time(json!(0)), None);
    }

    #[test]
    fn implausible_times_are_refused_so_the_caller_falls_back_to_the_arrival() {
        let time = |value: Value| event_time(&value, ARRIVAL);
        // Far future: the year 10000 in ms, microseconds read as ms, seconds of the year 5138.
        assert_eq!(time(json!(253_402_300_800_000_i64)), None);
        assert_eq!(time(json!("1000000000000000")), None);
        assert_eq!(time(json!(99_999_999_999_i64)), None);
        assert_eq!(time(json!(i64::MAX)), None);
        assert_eq!(time(json!(u64::MAX)), None);
        assert_eq!(time(json!("99999999999999999999999999")), None);
        assert_eq!(time(json!("1e15")), None);
        assert_eq!(time(json!(1e15)), None);
        assert_eq!(time(json!(1.7e300)), None);
        // More than a day after the arrival; a day is still believed (clocks differ).
        assert_eq!(time(json!(ARRIVAL.as_millis() + MAX_LEAD + 1)), None);
        let a_day_ahead = ARRIVAL.as_millis() + MAX_LEAD;
        assert_eq!(time(json!(a_day_ahead)), Some(Timestamp::from_millis(a_day_ahead)));
        // Before 2004, negative, placeholders, fractions, wrong types.
        assert_eq!(time(json!(1_072_915_199)), None);
        assert_eq!(time(json!(1_072_915_200)), Some(Timestamp::from_secs(1_072_915_200)));
        assert_eq!(time(json!(100_000_000_000_i64)), None, "10^11 ms is 1973");
        assert_eq!(time(json!(99_999_999_999_i64 - 96_000_000_000)), None);
        for value in [
            json!(-1),
            json!(-1_718_000_000),
            json!(i64::MIN),
            json!(1),
            json!("TIMESTAMP"),
            json!(""),
            json!(1_718_000_000.5),
            json!(null),
            json!(true),
            json!([1_718_000_000]),
            json!({"t": 1_718_000_000}),
        ] {
            assert_eq!(time(value.clone()), None, "{value}");
        }
    }

    #[test]
    fn bodies_nested_deeper_than_the_limit_are_refused() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(parse_body(nested(MAX_BODY_DEPTH).as_bytes()).is_ok());
        assert_eq!(parse_body(nested(MAX_BODY_DEPTH + 1).as_bytes()), Err(ParseError::TooDeep { max: MAX_BODY_DEPTH }));
        let objects = format!("{}1{}", r#"{"a":"#.repeat(MAX_BODY_DEPTH + 1), "}".repeat(MAX_BODY_DEPTH + 1));
        assert_eq!(parse_body(objects.as_bytes()), Err(ParseError::TooDeep { max: MAX_BODY_DEPTH }));
        assert!(matches!(parse_body(nested(200).as_bytes()), Err(ParseError::NotJson(_))), "serde_json's own limit");
        assert!(parse_body(b"{}").is_ok() && parse_body(b"7").is_ok());
    }

    #[test]
    fn content_key_ignores_key_order() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":[1,2]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":[1,2],"a":1}"#).unwrap();
        assert_eq!(content_key(&a), content_key(&b));
        assert_ne!(content_key(&a), content_key(&json!({"a": 2})));
    }
}
