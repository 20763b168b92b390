//! UTC instants as milliseconds since the Unix epoch, printed as RFC 3339.
//!
//! Platforms send seconds (WhatsApp, as strings) or milliseconds (Messenger, Viber, LinkedIn, as numbers);
//! each platform module converts its own unit with the constructors here and nowhere else.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant in UTC, millisecond precision, between [`Timestamp::MIN`] (0000-01-01) and
/// [`Timestamp::MAX`] (9999-12-31), the years RFC 3339's four digits can write.
///
/// Every constructor saturates into that range, so every value the type can hold prints as
/// RFC 3339 and parses back to itself: a stored record with a time in it always reads back.
/// (An unbounded `i64` once let a webhook dated in the year 10000 write a record that no later
/// read could decode.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Values below this are seconds, values at or above it milliseconds (PLATFORMS.md rule 0.7).
/// 10^11 seconds is the year 5138; 10^11 milliseconds is March 1973.
const SECONDS_MILLIS_BOUNDARY: i64 = 100_000_000_000;

/// 0000-01-01T00:00:00.000Z in milliseconds.
const MIN_MILLIS: i64 = -62_167_219_200_000;
/// 9999-12-31T23:59:59.999Z in milliseconds.
const MAX_MILLIS: i64 = 253_402_300_799_999;

/// Platform times before this are not believed (2004-01-01T00:00:00Z): none of the four
/// platforms sent webhooks then, so such a value is a placeholder (`0`, `1`) or a unit mistake.
pub const EARLIEST_EVENT_TIME: Timestamp = Timestamp(1_072_915_200_000);

/// How far after its arrival a platform may date an event: a day covers any clock skew; more
/// is a unit mistake (microseconds read as milliseconds) or garbage.
pub const MAX_EVENT_LEAD_MILLIS: i64 = 86_400_000;

impl Timestamp {
    /// The earliest instant the type holds: 0000-01-01T00:00:00.000Z.
    pub const MIN: Timestamp = Timestamp(MIN_MILLIS);

    /// The latest instant the type holds: 9999-12-31T23:59:59.999Z.
    pub const MAX: Timestamp = Timestamp(MAX_MILLIS);

    /// From milliseconds since the epoch, saturating into [`Timestamp::MIN`]..=[`Timestamp::MAX`].
    pub const fn from_millis(ms: i64) -> Self {
        if ms < MIN_MILLIS {
            Timestamp(MIN_MILLIS)
        } else if ms > MAX_MILLIS {
            Timestamp(MAX_MILLIS)
        } else {
            Timestamp(ms)
        }
    }

    /// From whole seconds since the epoch, saturating like [`Timestamp::from_millis`].
    pub const fn from_secs(secs: i64) -> Self {
        Self::from_millis(secs.saturating_mul(1000))
    }

    /// From a number whose unit is not certain: below 10^11 it is seconds, otherwise milliseconds.
    pub const fn from_secs_or_millis(value: i64) -> Self {
        if value < SECONDS_MILLIS_BOUNDARY { Self::from_secs(value) } else { Self::from_millis(value) }
    }

    /// The current time from the system clock.
    pub fn now() -> Self {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self::from_millis(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// This instant moved by `ms` milliseconds (either way), saturating at the type's range.
    pub const fn saturating_add_millis(self, ms: i64) -> Self {
        Self::from_millis(self.0.saturating_add(ms))
    }

    /// True when a time a platform gave for an event that arrived at `received_at` can be
    /// believed: not before [`EARLIEST_EVENT_TIME`] and at most [`MAX_EVENT_LEAD_MILLIS`] after
    /// the arrival. Platform modules fall back to the arrival time otherwise.
    pub const fn is_plausible_event_time(self, received_at: Timestamp) -> bool {
        self.0 >= EARLIEST_EVENT_TIME.0 && self.0 <= received_at.0.saturating_add(MAX_EVENT_LEAD_MILLIS)
    }

    /// Parses an HTTP date in the form RFC 9110 requires senders to use (IMF-fixdate,
    /// `Sun, 06 Nov 1994 08:49:37 GMT`), as `Retry-After` may carry it. The obsolete RFC 850 and
    /// asctime forms are not read (None), nor is a weekday that does not match the date.
    pub fn parse_http_date(text: &str) -> Option<Self> {
        const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let b = text.trim().as_bytes();
        if b.len() != 29 || &b[3..5] != b", " || b[7] != b' ' || b[11] != b' ' || b[16] != b' ' || &b[25..] != b" GMT" {
            return None;
        }
        let number = |range: std::ops::Range<usize>| -> Option<i64> {
            let digits = &b[range];
            digits.iter().all(u8::is_ascii_digit).then(|| digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
        };
        let (day, year) = (number(5..7)?, number(12..16)?);
        let month = MONTHS.iter().position(|m| m.as_bytes() == &b[8..11])? as i64 + 1;
        if b[19] != b':' || b[22] != b':' {
            return None;
        }
        let (hour, minute, second) = (number(17..19)?, number(20..22)?, number(23..25)?);
        let days_in_month =
            days_from_civil(year + i64::from(month == 12), month % 12 + 1, 1) - days_from_civil(year, month, 1);
        if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let days = days_from_civil(year, month, day);
        if WEEKDAYS[days.rem_euclid(7) as usize].as_bytes() != &b[..3] {
            return None;
        }
        Some(Self::from_secs(days * 86_400 + hour * 3600 + minute * 60 + second.min(59)))
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2024-06-10T06:13:20.045Z`. Always a
    /// four-digit year: the type holds nothing outside 0000..=9999.
    pub fn to_rfc3339(self) -> String {
        format_millis(self.0)
    }

    /// Parses the form [`Timestamp::to_rfc3339`] writes (and the same without fractions, or
    /// with more than three fraction digits, which are cut): a four-digit year and `Z`.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let year_digits = text.bytes().take_while(u8::is_ascii_digit).count();
        if year_digits != 4 {
            return None;
        }
        parse_after_year(text[..4].parse().ok()?, &text[4..])
    }

    /// Parses what any Parley build ever stored: RFC 3339 as [`Timestamp::parse_rfc3339`] reads
    /// it, and also the years of more than four digits, or negative, that builds before the
    /// range was enforced wrote (`56919797-11-24T23:32:43.000Z`). Out-of-range instants are
    /// clamped to [`Timestamp::MIN`] or [`Timestamp::MAX`], so an old record reads back.
    pub fn parse_stored(text: &str) -> Option<Self> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let year_digits = unsigned.bytes().take_while(u8::is_ascii_digit).count();
        if year_digits == 0 {
            return None;
        }
        let tail = &unsigned[year_digits..];
        // Past a billion years the instant is far outside the range anyway: clamp without
        // computing it (and without overflowing the day arithmetic).
        if year_digits > 9 {
            // Still insist on a well-formed rest, so that garbage is not read as a time.
            parse_after_year(0, tail)?;
            return Some(if negative { Timestamp::MIN } else { Timestamp::MAX });
        }
        let magnitude: i64 = unsigned[..year_digits].parse().ok()?;
        parse_after_year(if negative { -magnitude } else { magnitude }, tail)
    }
}

/// `ms` as `YYYY-MM-DDTHH:MM:SS.fffZ`; a year outside 0..=9999 gets more digits or a sign, which is
/// why only [`Timestamp::to_rfc3339`], on a value in range, may call it.
fn format_millis(ms: i64) -> String {
    let mut buffer = [0; RFC3339_LEN];
    match rfc3339_into(ms, &mut buffer) {
        Some(text) => text.to_owned(),
        None => format_wide(ms),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.fffZ`.
const RFC3339_LEN: usize = 24;

/// The RFC 3339 form of `ms` written into `buffer` without allocating (it is on every stored
/// record and every event); None for a year outside 0..=9999, which a `Timestamp` never holds.
fn rfc3339_into(ms: i64, buffer: &mut [u8; RFC3339_LEN]) -> Option<&str> {
    let millis = ms.rem_euclid(1000);
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut put = |at: usize, value: i64, digits: u32| {
        for i in 0..digits as usize {
            let place = 10_i64.pow(digits - 1 - i as u32);
            buffer[at + i] = b'0' + ((value / place) % 10) as u8;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, rem / 3600, 2);
    put(14, (rem % 3600) / 60, 2);
    put(17, rem % 60, 2);
    put(20, millis, 3);
    for (at, separator) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (23, b'Z')] {
        buffer[at] = separator;
    }
    std::str::from_utf8(buffer).ok()
}

/// The general form, for any year (only reachable from out-of-range values in tests).
fn format_wide(ms: i64) -> String {
    let millis = ms.rem_euclid(1000);
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// The instant of `year` and the rest of an RFC 3339 UTC time: `-MM-DDTHH:MM:SS[.fff]Z`.
/// `year` may lie outside 0..=9999 (old records); the result is clamped into the type's range.
fn parse_after_year(year: i64, tail: &str) -> Option<Timestamp> {
    let b = tail.as_bytes();
    if b.len() < 16 || b[0] != b'-' || b[3] != b'-' || b[6] != b'T' || b[9] != b':' || b[12] != b':' {
        return None;
    }
    let two_digits = |at: usize| -> Option<i64> {
        let pair = b.get(at..at + 2)?;
        pair.iter().all(u8::is_ascii_digit).then(|| i64::from(pair[0] - b'0') * 10 + i64::from(pair[1] - b'0'))
    };
    let (month, day) = (two_digits(1)?, two_digits(4)?);
    let (hour, minute, second) = (two_digits(7)?, two_digits(10)?, two_digits(13)?);
    // Byte 15 onwards; bytes 0..15 are ASCII (checked above), so this is a character boundary.
    let rest = &tail[15..];
    let (millis, zone) = match rest.strip_prefix('.') {
        Some(frac) => {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            let mut ms = 0;
            for (i, digit) in frac.bytes().take(3).take_while(u8::is_ascii_digit).enumerate() {
                ms += i64::from(digit - b'0') * [100, 10, 1][i];
            }
            (ms, &frac[digits..])
        }
        None => (0, rest),
    };
    if zone != "Z" || !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60
    {
        return None;
    }
    let days = i128::from(days_from_civil(year, month, day));
    let ms = (days * 86_400 + i128::from(hour * 3600 + minute * 60 + second)) * 1000 + i128::from(millis);
    let clamped = ms.clamp(i128::from(MIN_MILLIS), i128::from(MAX_MILLIS));
    Some(Timestamp(i64::try_from(clamped).expect("clamped into the i64 range")))
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buffer = [0; RFC3339_LEN];
        match rfc3339_into(self.0, &mut buffer) {
            Some(text) => f.write_str(text),
            None => f.write_str(&format_wide(self.0)),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buffer = [0; RFC3339_LEN];
        match rfc3339_into(self.0, &mut buffer) {
            Some(text) => serializer.serialize_str(text),
            None => serializer.serialize_str(&format_wide(self.0)),
        }
    }
}

/// Reads what [`Timestamp::parse_stored`] reads: records written by older builds included.
impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse_stored(&text)
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
    fn http_dates_in_the_imf_fixdate_form_are_read_and_others_are_not() {
        // RFC 9110's own example.
        assert_eq!(
            Timestamp::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Timestamp::from_secs(784_111_777))
        );
        assert_eq!(
            Timestamp::parse_http_date(" Wed, 21 Oct 2015 07:28:00 GMT "),
            Some(Timestamp::from_secs(1_445_412_480))
        );
        assert_eq!(
            Timestamp::parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT"),
            Some(Timestamp::from_secs(1_709_164_800))
        );
        for text in [
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Mon, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Thu, 30 Feb 2023 00:00:00 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "120",
            "",
            "Sun, 06 Nov 1994 08:49:37 GMT\u{e9}",
        ] {
            assert_eq!(Timestamp::parse_http_date(text), None, "{text}");
        }
    }

    #[test]
    fn the_fast_form_is_the_general_form_for_every_year_a_timestamp_holds() {
        let mut ms = MIN_MILLIS;
        // A stride that is prime to every calendar period walks all fields through their values.
        while ms <= MAX_MILLIS {
            let mut buffer = [0; RFC3339_LEN];
            assert_eq!(rfc3339_into(ms, &mut buffer), Some(format_wide(ms).as_str()), "{ms}");
            ms += 1_000_000_007_919;
        }
        for ms in [MIN_MILLIS, MAX_MILLIS, 0, -1, 951_782_400_000, 1_718_000_000_045] {
            let mut buffer = [0; RFC3339_LEN];
            assert_eq!(rfc3339_into(ms, &mut buffer), Some(format_wide(ms).as_str()), "{ms}");
        }
        assert_eq!(rfc3339_into(MAX_MILLIS + 1, &mut [0; RFC3339_LEN]), None);
        assert_eq!(rfc3339_into(MIN_MILLIS - 1, &mut [0; RFC3339_LEN]), None);
        assert_eq!(
            serde_json::to_string(&Timestamp::from_millis(1_718_000_000_045)).unwrap(),
            r#""2024-06-10T06:13:20.045Z""#
        );
    }

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
        assert_eq!(Timestamp::parse_rfc3339("56919797-11-24T23:32:43.000Z"), None, "not RFC 3339");
        assert_eq!(Timestamp::parse_rfc3339("2024-06-10T06:13:20.Z"), None);
        assert_eq!(Timestamp::parse_rfc3339("2024-06-10T06:13:2é.000Z"), None);
        assert_eq!(
            Timestamp::parse_rfc3339("2024-06-10T06:13:20.04567Z"),
            Some(Timestamp::from_millis(1_718_000_000_045))
        );
    }

    #[test]
    fn constructors_saturate_into_the_four_digit_years() {
        assert_eq!(Timestamp::MIN.to_rfc3339(), "0000-01-01T00:00:00.000Z");
        assert_eq!(Timestamp::MAX.to_rfc3339(), "9999-12-31T23:59:59.999Z");
        assert_eq!(Timestamp::from_millis(i64::MAX), Timestamp::MAX);
        assert_eq!(Timestamp::from_millis(i64::MIN), Timestamp::MIN);
        assert_eq!(Timestamp::from_millis(253_402_300_800_000), Timestamp::MAX, "the year 10000");
        assert_eq!(Timestamp::from_secs(i64::MAX), Timestamp::MAX);
        assert_eq!(Timestamp::from_secs(i64::MIN), Timestamp::MIN);
        assert_eq!(Timestamp::from_secs_or_millis(1_000_000_000_000_000), Timestamp::MAX, "microseconds");
        assert!(Timestamp::from_secs_or_millis(99_999_999_999).to_rfc3339().starts_with("5138-11-16T"));
        assert_eq!(Timestamp::MAX.saturating_add_millis(1), Timestamp::MAX);
        assert_eq!(Timestamp::MIN.saturating_add_millis(i64::MIN), Timestamp::MIN);
        assert_eq!(Timestamp::from_millis(-0), Timestamp::from_millis(0));
    }

    #[test]
    fn every_extreme_value_prints_as_rfc3339_and_parses_back() {
        let edges = [
            i64::MIN,
            i64::MIN + 1,
            MIN_MILLIS - 1,
            MIN_MILLIS,
            MIN_MILLIS + 1,
            -86_400_001,
            -1001,
            -1000,
            -999,
            -1,
            0,
            1,
            999,
            1000,
            951_782_400_000,
            SECONDS_MILLIS_BOUNDARY - 1,
            SECONDS_MILLIS_BOUNDARY,
            MAX_MILLIS - 1,
            MAX_MILLIS,
            MAX_MILLIS + 1,
            253_402_300_800_000,
            i64::MAX - 1,
            i64::MAX,
        ];
        for ms in edges {
            for t in [Timestamp::from_millis(ms), Timestamp::from_secs(ms), Timestamp::from_secs_or_millis(ms)] {
                assert_round_trip(t);
            }
        }
    }

    #[test]
    fn random_instants_round_trip() {
        use rand::{Rng, SeedableRng};
        let seed = rand::random::<u64>();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for _ in 0..200_000 {
            let ms = match rng.random_range(0..3) {
                0 => rng.random::<i64>(),
                1 => rng.random_range(MIN_MILLIS..=MAX_MILLIS),
                _ => rng.random_range(-100_000_000_000_i64..5_000_000_000_000),
            };
            let t = Timestamp::from_millis(ms);
            assert!((Timestamp::MIN..=Timestamp::MAX).contains(&t), "seed {seed}: {ms}");
            assert_round_trip(t);
        }
    }

    fn assert_round_trip(t: Timestamp) {
        let text = t.to_rfc3339();
        assert_eq!(text.len(), 24, "{text}");
        assert_eq!(Timestamp::parse_rfc3339(&text), Some(t), "{text}");
        assert_eq!(Timestamp::parse_stored(&text), Some(t), "{text}");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t, "{json}");
    }

    #[test]
    fn what_older_builds_wrote_reads_back_clamped() {
        // 1000000000000000 ms, as an older build printed it.
        assert_eq!(Timestamp::parse_stored("33658-09-27T01:46:40.000Z"), Some(Timestamp::MAX));
        assert_eq!(Timestamp::parse_stored("56919797-11-24T23:32:43.000Z"), Some(Timestamp::MAX));
        assert_eq!(Timestamp::parse_stored("10000-01-01T00:00:00.000Z"), Some(Timestamp::MAX));
        // i64::MAX and i64::MIN milliseconds, as an older build printed them.
        assert_eq!(Timestamp::parse_stored("292278994-08-17T07:12:55.807Z"), Some(Timestamp::MAX));
        assert_eq!(Timestamp::parse_stored("-292275055-05-16T16:47:04.192Z"), Some(Timestamp::MIN));
        assert_eq!(Timestamp::parse_stored("-001-12-31T23:59:59.999Z"), Some(Timestamp::MIN));
        assert_eq!(Timestamp::parse_stored("99999999999999999999-01-01T00:00:00.000Z"), Some(Timestamp::MAX));
        assert_eq!(
            Timestamp::parse_stored("2024-06-10T06:13:20.045Z"),
            Some(Timestamp::from_millis(1_718_000_000_045))
        );
        for garbage in ["", "-", "--01-01T00:00:00Z", "99999999999999999999", "12345-13-01T00:00:00Z", "2024-06-10"] {
            assert_eq!(Timestamp::parse_stored(garbage), None, "{garbage}");
        }
        // Exactly what the older builds printed for out-of-range values (the same formatting,
        // without the range), over the whole i64 range.
        use rand::{Rng, SeedableRng};
        let seed = rand::random::<u64>();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for _ in 0..100_000 {
            let ms = rng.random::<i64>();
            let printed = format_millis(ms);
            assert_eq!(Timestamp::parse_stored(&printed), Some(Timestamp::from_millis(ms)), "seed {seed}: {printed}");
        }
        assert_eq!(format_millis(1_000_000_000_000_000), "33658-09-27T01:46:40.000Z");
        let old = r#""56919797-11-24T23:32:43.000Z""#;
        assert_eq!(serde_json::from_str::<Timestamp>(old).unwrap(), Timestamp::MAX);
    }

    #[test]
    fn plausible_event_times_lie_between_2004_and_a_day_after_arrival() {
        let arrival = Timestamp::from_millis(1_718_000_000_000);
        assert!(Timestamp::from_millis(1_718_000_000_000).is_plausible_event_time(arrival));
        assert!(EARLIEST_EVENT_TIME.is_plausible_event_time(arrival));
        assert!(!EARLIEST_EVENT_TIME.saturating_add_millis(-1).is_plausible_event_time(arrival));
        let a_day_later = arrival.saturating_add_millis(MAX_EVENT_LEAD_MILLIS);
        assert!(a_day_later.is_plausible_event_time(arrival));
        assert!(!a_day_later.saturating_add_millis(1).is_plausible_event_time(arrival));
        assert!(!Timestamp::from_millis(0).is_plausible_event_time(arrival));
        assert!(!Timestamp::MIN.is_plausible_event_time(arrival));
        assert!(!Timestamp::MAX.is_plausible_event_time(arrival));
    }
}
