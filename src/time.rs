//! UTC instants as milliseconds since the Unix epoch, printed as RFC 3339.
//!
//! Platforms send seconds (WhatsApp, as strings) or milliseconds (Messenger, Viber, LinkedIn, as numbers);
//! each platform module converts its own unit with the constructors here and nowhere else.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant in UTC, millisecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Values below this are seconds, values at or above it milliseconds (PLATFORMS.md rule 0.7).
/// 10^11 seconds is the year 5138; 10^11 milliseconds is March 1973.
const SECONDS_MILLIS_BOUNDARY: i64 = 100_000_000_000;

impl Timestamp {
    /// From milliseconds since the epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// From whole seconds since the epoch.
    pub const fn from_secs(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(1000))
    }

    /// From a number whose unit is not certain: below 10^11 it is seconds, otherwise milliseconds.
    pub const fn from_secs_or_millis(value: i64) -> Self {
        if value < SECONDS_MILLIS_BOUNDARY { Self::from_secs(value) } else { Self::from_millis(value) }
    }

    /// The current time from the system clock.
    pub fn now() -> Self {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2024-06-10T06:13:20.045Z`.
    pub fn to_rfc3339(self) -> String {
        let ms = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
    }

    /// Parses the form [`Timestamp::to_rfc3339`] writes (and the same without fractions).
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let rest = &text[19..];
        let (millis, zone) = match rest.strip_prefix('.') {
            Some(frac) => {
                let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
                let mut ms = frac[..digits.min(3)].parse::<i64>().ok()?;
                for _ in digits.min(3)..3 {
                    ms *= 10;
                }
                (ms, &frac[digits..])
            }
            None => (0, rest),
        };
        if zone != "Z"
            || !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Some(Timestamp(((days * 86_400 + hour * 3600 + minute * 60 + second) * 1000) + millis))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not an RFC 3339 UTC time")))
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) to days since 1970-01-01, the inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(Timestamp::from_millis(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp::from_millis(1_718_000_000_045).to_rfc3339(), "2024-06-10T06:13:20.045Z");
        assert_eq!(Timestamp::from_secs(951_782_400).to_rfc3339(), "2000-02-29T00:00:00.000Z");
        assert_eq!(Timestamp::from_millis(-1).to_rfc3339(), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn seconds_and_milliseconds_are_told_apart() {
        assert_eq!(Timestamp::from_secs_or_millis(1_718_000_000), Timestamp::from_millis(1_718_000_000_000));
        assert_eq!(Timestamp::from_secs_or_millis(1_718_000_000_123), Timestamp::from_millis(1_718_000_000_123));
    }

    #[test]
    fn rfc3339_round_trips() {
        for ms in [0, 1, 951_782_400_000, 1_718_000_000_045, 4_102_444_799_999] {
            let t = Timestamp::from_millis(ms);
            assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
        }
        assert_eq!(Timestamp::parse_rfc3339("2024-06-10T06:13:20Z"), Some(Timestamp::from_millis(1_718_000_000_000)));
        assert_eq!(Timestamp::parse_rfc3339("2024-06-10 06:13:20Z"), None);
        assert_eq!(Timestamp::parse_rfc3339("2024-13-10T06:13:20Z"), None);
        assert_eq!(Timestamp::parse_rfc3339("2024-06-10T06:13:20+02:00"), None);
    }
}
