//! Human units, parsed in one place for the config, the CLI, the API, the filter language and
//! the limits: byte sizes, durations and percentages.
//!
//! | what | accepted | meaning |
//! |---|---|---|
//! | size | `4096`, `512K`, `1.5G`, `2GiB`, `10MB`, `0` | `K M G T P` and `KiB MiB GiB TiB PiB` are 1024-based (systemd's meaning); `KB MB GB TB PB` are 1000-based; `B` or nothing is bytes; at most 9 decimals |
//! | duration | `250us`, `50ms`, `2s`, `5m`, `1h`, `1d`, `1h 30m`, `90` | [`humantime`]'s units (`m` is minutes); a bare number is seconds |
//! | percent | `50%`, `12.5%`, `250%` | hundredths of a percent, at most two decimals |
//!
//! Every parser is total: overflow (`99999999999999999999G`, `1e400s`), negative numbers,
//! lower-case size units (`512m` could mean milli) and unknown units are errors naming the
//! input, never panics or wraps. Numbers are exact (integer arithmetic, no floating point), so
//! `1.5G` is exactly 1610612736.
//!
//! Printing goes the other way with the same units: [`fmt_bytes`] (exact, for limits),
//! [`fmt_bytes_approx`] (for tables), [`fmt_duration`].
use std::{fmt, time::Duration};

/// A value that does not parse: the input, what is wrong, and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?}: {problem} (expected {expected})")]
pub struct UnitError {
    pub input: String,
    pub problem: String,
    pub expected: &'static str,
}

/// The accepted size forms, for messages.
pub const SIZE_FORMS: &str = "a size such as 4096, 512K, 1.5G or 2GiB (K/M/G/T are 1024-based, \
KB/MB/GB/TB 1000-based)";
/// The accepted duration forms, for messages.
pub const DURATION_FORMS: &str = "a duration such as 250ms, 2s, 5m, 1h or 1d";
/// The accepted percentage forms, for messages.
pub const PERCENT_FORMS: &str = "a percentage such as 50% or 12.5%";

/// Longest input any unit parser looks at; longer input is refused before parsing.
pub const MAX_INPUT: usize = 64;

fn err(input: &str, problem: impl Into<String>, expected: &'static str) -> UnitError {
    let mut shown: String = input.chars().take(MAX_INPUT).collect();
    if shown.len() < input.len() {
        shown.push('…');
    }
    UnitError {
        input: shown,
        problem: problem.into(),
        expected,
    }
}

/// An exact decimal: `12.5` is `Decimal { digits: 125, scale: 1 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    pub digits: u128,
    pub scale: u32,
}

impl Decimal {
    /// Parses plain decimal digits with at most one `.` and at most 9 decimals (no sign, no
    /// exponent). `None` when it is not such a number or does not fit.
    pub fn parse(s: &str) -> Option<Decimal> {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() || int.len() > 30 || frac.len() > 9 || s.ends_with('.') {
            return None;
        }
        if !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
            return None;
        }
        let mut digits: u128 = 0;
        for c in int.bytes().chain(frac.bytes()) {
            digits = digits.checked_mul(10)?.checked_add(u128::from(c - b'0'))?;
        }
        Some(Decimal {
            digits,
            scale: frac.len() as u32,
        })
    }

    /// `self * mult`, rounded down; `None` on overflow.
    pub fn times(self, mult: u128) -> Option<u128> {
        Some(self.digits.checked_mul(mult)? / 10u128.pow(self.scale))
    }

    pub fn as_f64(self) -> f64 {
        self.digits as f64 / 10f64.powi(self.scale as i32)
    }
}

/// Splits `"1.5G"` into `("1.5", "G")`: the leading number and the rest, trimmed.
fn split_number(s: &str) -> (&str, &str) {
    let at = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (&s[..at], s[at..].trim())
}

/// The multiplier of a size unit.
fn size_unit(unit: &str) -> Result<u128, String> {
    Ok(match unit {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "P" | "PiB" => 1 << 50,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "PB" => 1_000_000_000_000_000,
        "k" | "m" | "g" | "t" | "p" | "kiB" | "miB" | "giB" | "tiB" | "kib" | "mib" | "gib"
        | "tib" | "mb" | "gb" | "tb" => {
            return Err(format!(
                "unit {unit:?} must be written in upper case ({})",
                unit[..1].to_uppercase() + if unit.len() > 1 { &unit[1..2] } else { "" }
            ))
        }
        _ => return Err(format!("unknown unit {unit:?}")),
    })
}

/// Parses a size in bytes: `4096`, `512K`, `1.5G`, `2GiB`, `10MB`.
pub fn parse_bytes(s: &str) -> Result<u64, UnitError> {
    let t = s.trim();
    if t.len() > MAX_INPUT {
        return Err(err(s, "too long", SIZE_FORMS));
    }
    if t.starts_with('-') {
        return Err(err(s, "a size cannot be negative", SIZE_FORMS));
    }
    let (num, unit) = split_number(t);
    let d = Decimal::parse(num).ok_or_else(|| {
        err(
            s,
            if num.is_empty() {
                "not a number"
            } else {
                "not a number, or too large"
            },
            SIZE_FORMS,
        )
    })?;
    let mult = size_unit(unit).map_err(|p| err(s, p, SIZE_FORMS))?;
    d.times(mult)
        .and_then(|b| u64::try_from(b).ok())
        .ok_or_else(|| err(s, "too large (more than 16 EiB)", SIZE_FORMS))
}

/// Parses a duration: `250us`, `50ms`, `2s`, `5m`, `1h`, `1d`, `1h 30m`; a bare number is
/// seconds. Durations above 100 years are refused (nothing in procman waits that long, and it
/// keeps every later addition to an `Instant` from overflowing).
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    const MAX: Duration = Duration::from_secs(100 * 365 * 86_400);
    let t = s.trim();
    if t.len() > MAX_INPUT {
        return Err(err(s, "too long", DURATION_FORMS));
    }
    if t.starts_with('-') {
        return Err(err(s, "a duration cannot be negative", DURATION_FORMS));
    }
    let d = if !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()) {
        t.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| err(s, "too large", DURATION_FORMS))?
    } else {
        humantime::parse_duration(t).map_err(|e| err(s, e.to_string(), DURATION_FORMS))?
    };
    if d > MAX {
        return Err(err(s, "too large (at most 100 years)", DURATION_FORMS));
    }
    Ok(d)
}

/// A percentage with two decimals, in hundredths of a percent (`12.5%` is `Percent(1250)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Percent(pub u32);

impl Percent {
    /// 100%.
    pub const HUNDRED: Percent = Percent(10_000);

    /// Parses `50%`, `12.5%`, `250%` (the `%` is required).
    pub fn parse(s: &str) -> Result<Percent, UnitError> {
        let t = s.trim();
        let num = t
            .strip_suffix('%')
            .ok_or_else(|| err(s, "not a percentage (add %)", PERCENT_FORMS))?
            .trim_end();
        Self::parse_number(s, num)
    }

    /// Parses a percentage whose `%` is optional (`80` is 80%).
    pub fn parse_optional_sign(s: &str) -> Result<Percent, UnitError> {
        let t = s.trim();
        Self::parse_number(s, t.strip_suffix('%').unwrap_or(t).trim_end())
    }

    fn parse_number(s: &str, num: &str) -> Result<Percent, UnitError> {
        if s.len() > MAX_INPUT {
            return Err(err(s, "too long", PERCENT_FORMS));
        }
        if num.starts_with('-') {
            return Err(err(s, "a percentage cannot be negative", PERCENT_FORMS));
        }
        let d = Decimal::parse(num).ok_or_else(|| err(s, "not a number", PERCENT_FORMS))?;
        if d.scale > 2 {
            return Err(err(
                s,
                "at most two decimals are allowed in a percentage",
                PERCENT_FORMS,
            ));
        }
        d.times(100)
            .and_then(|c| u32::try_from(c).ok())
            .map(Percent)
            .ok_or_else(|| err(s, "the percentage is too large", PERCENT_FORMS))
    }

    /// `total * self / 100%`, rounded down.
    pub fn of(self, total: u64) -> u64 {
        ((u128::from(total) * u128::from(self.0)) / 10_000) as u64
    }

    /// As a plain number of percent (`12.5`).
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 100.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (i, frac) = (self.0 / 100, self.0 % 100);
        match frac {
            0 => write!(f, "{i}%"),
            x if x % 10 == 0 => write!(f, "{i}.{}%", x / 10),
            x => write!(f, "{i}.{x:02}%"),
        }
    }
}

/// Bytes in the largest exact 1024-based unit: 536870912 is `512M`, 1000 is `1000`. What
/// [`parse_bytes`] reads back to the same number.
pub fn fmt_bytes(b: u64) -> String {
    for (shift, unit) in [(50, "P"), (40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if b != 0 && b.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", b >> shift);
        }
    }
    b.to_string()
}

/// Bytes rounded for a table column, 1024-based: `512B`, `3.0M`, `40G`.
pub fn fmt_bytes_approx(b: u64) -> String {
    const U: [&str; 6] = ["B", "K", "M", "G", "T", "P"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else if v < 10.0 {
        format!("{v:.1}{}", U[i])
    } else {
        format!("{v:.0}{}", U[i])
    }
}

/// A duration for a table column, two units at most: `45s`, `5m03s`, `2h10m`, `3d04h`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

/// A byte size read from a config or a request: a string in any [`parse_bytes`] form, or a
/// plain integer. Serializes back as [`fmt_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

/// A duration read from a config or a request: a string in any [`parse_duration`] form, or a
/// plain integer of seconds. Serializes back as humantime prints it (`1h 30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl std::str::FromStr for ByteSize {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        parse_bytes(s).map(ByteSize)
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        parse_duration(s).map(HumanDuration)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&fmt_bytes(self.0))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// Deserializes a string with `FromStr`, or an unsigned integer through `from_int`.
struct StrOrInt<T>(fn(u64) -> T, &'static str);

impl<'de, T> serde::de::Visitor<'de> for StrOrInt<T>
where
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
        Ok((self.0)(v))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
        u64::try_from(v)
            .map(self.0)
            .map_err(|_| E::custom(format!("{v}: cannot be negative (expected {})", self.1)))
    }
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrOrInt(ByteSize, SIZE_FORMS))
    }
}

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrOrInt(
            |s| HumanDuration(Duration::from_secs(s)),
            DURATION_FORMS,
        ))
    }
}

impl serde::Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl serde::Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A point in wall-clock time on the wire: ISO 8601 / RFC 3339 in UTC with milliseconds
/// (`2025-12-11T10:30:45.123Z`), the form seed 004's clients read. Parses any RFC 3339 time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub std::time::SystemTime);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp(std::time::SystemTime::now())
    }

    /// From seconds since the Unix epoch, rounded to the microsecond (so `.123` stays
    /// `.123`, not the `.122999…` of its binary fraction).
    pub fn from_unix(secs: f64) -> Timestamp {
        let micros = (secs.max(0.0) * 1e6).round();
        let d = if micros.is_finite() && micros < u64::MAX as f64 {
            Duration::from_micros(micros as u64)
        } else {
            Duration::ZERO
        };
        Timestamp(std::time::UNIX_EPOCH + d)
    }

    /// Seconds since the Unix epoch (0 before it).
    pub fn unix(self) -> f64 {
        self.0
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }
}

impl Default for Timestamp {
    fn default() -> Timestamp {
        Timestamp(std::time::UNIX_EPOCH)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_millis(self.0))
    }
}

impl std::str::FromStr for Timestamp {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        const FORMS: &str = "an ISO 8601 time such as 2025-12-11T10:30:45.123Z";
        if s.len() > MAX_INPUT {
            return Err(err(s, "too long", FORMS));
        }
        humantime::parse_rfc3339(s)
            .map(Timestamp)
            .map_err(|e| err(s, e.to_string(), FORMS))
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// OpenAPI schemas of the types above that serialize as strings (`openapi` feature): what a
/// client reads, not the Rust layout.
#[cfg(feature = "openapi")]
pub(crate) mod openapi {
    use utoipa::openapi::{
        schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type},
        RefOr,
    };

    /// A plain string schema with a description.
    pub(crate) fn string(description: &str) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
            .into()
    }

    impl utoipa::PartialSchema for super::Timestamp {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .description(Some(
                    "A point in time: ISO 8601 / RFC 3339 in UTC with milliseconds.",
                ))
                .examples(["2025-12-11T10:30:45.123Z"])
                .into()
        }
    }
    impl utoipa::ToSchema for super::Timestamp {}

    impl utoipa::PartialSchema for super::ByteSize {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "A byte size as procman prints it (`512M`, `1G`, or bytes: `1536`); \
                     requests may also give a plain number of bytes.",
                ))
                .examples(["512M"])
                .into()
        }
    }
    impl utoipa::ToSchema for super::ByteSize {}

    impl utoipa::PartialSchema for super::HumanDuration {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "A duration as humantime prints it (`1h 30m`); requests may also give a \
                     plain number of seconds.",
                ))
                .examples(["1h 30m"])
                .into()
        }
    }
    impl utoipa::ToSchema for super::HumanDuration {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso_8601_utc_with_milliseconds() {
        let t = Timestamp::from_unix(1_765_449_045.123);
        assert_eq!(t.to_string(), "2025-12-11T10:30:45.123Z");
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2025-12-11T10:30:45.123Z\""
        );
        let back: Timestamp = serde_json::from_str("\"2025-12-11T10:30:45.123Z\"").unwrap();
        assert_eq!(back, t);
        assert!((back.unix() - 1_765_449_045.123).abs() < 1e-6);
        assert!("2025-12-11T08:00:00Z".parse::<Timestamp>().is_ok());
        for bad in ["", "yesterday", "2025-13-11T08:00:00Z", &"9".repeat(100)] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes() {
        let ok = [
            ("0", 0),
            ("4096", 4096),
            ("4096B", 4096),
            ("512K", 512 << 10),
            ("512 KiB", 512 << 10),
            ("8M", 8 << 20),
            ("8MiB", 8 << 20),
            ("1.5G", 3 << 29),
            ("2GiB", 2 << 30),
            ("1T", 1 << 40),
            ("1P", 1 << 50),
            ("10MB", 10_000_000),
            ("2kB", 2000),
            ("2KB", 2000),
            ("1.5KB", 1500),
            (" 64K ", 65536),
            ("0.5K", 512),
            ("16383P", 16383 << 50),
        ];
        for (s, want) in ok {
            assert_eq!(parse_bytes(s), Ok(want), "{s}");
        }
        let bad = [
            ("", "not a number"),
            ("K", "not a number"),
            ("-1", "negative"),
            ("-5M", "negative"),
            ("99999999999999999999G", "too large"),
            ("18446744073709551616", "too large"),
            ("16384P", "too large"),
            ("1e400", "unknown unit"),
            ("1.2.3M", "not a number"),
            ("1.", "not a number"),
            ("512m", "upper case"),
            ("1gib", "upper case"),
            ("5X", "unknown unit"),
            ("0x10", "unknown unit"),
            ("1.0000000001G", "not a number"),
            ("NaN", "not a number"),
            ("inf", "not a number"),
        ];
        for (s, problem) in bad {
            let e = parse_bytes(s).unwrap_err();
            assert!(e.problem.contains(problem), "{s}: {e}");
            assert!(e.to_string().contains("1024-based"), "{e}");
        }
        assert!(parse_bytes(&"9".repeat(100))
            .unwrap_err()
            .problem
            .contains("too long"));
    }

    #[test]
    fn serde_forms() {
        #[derive(serde::Deserialize)]
        struct C {
            size: ByteSize,
            every: HumanDuration,
        }
        let c: C = serde_json::from_str(r#"{"size": "8MiB", "every": "2s"}"#).unwrap();
        assert_eq!(
            (c.size, c.every),
            (ByteSize(8 << 20), HumanDuration(Duration::from_secs(2)))
        );
        let c: C = serde_json::from_str(r#"{"size": 4096, "every": 5}"#).unwrap();
        assert_eq!((c.size.0, c.every.0), (4096, Duration::from_secs(5)));
        let e = serde_json::from_str::<C>(r#"{"size": "8XB", "every": "2s"}"#)
            .err()
            .unwrap();
        assert!(e.to_string().contains("8XB"), "{e}");
        let e = serde_json::from_str::<C>(r#"{"size": -1, "every": "2s"}"#)
            .err()
            .unwrap();
        assert!(e.to_string().contains("negative"), "{e}");
        assert_eq!(
            serde_json::to_string(&ByteSize(8 << 20)).unwrap(),
            r#""8M""#
        );
        assert_eq!(
            serde_json::to_string(&HumanDuration(Duration::from_secs(5400))).unwrap(),
            r#""1h 30m""#
        );
    }

    #[test]
    fn durations() {
        let ok = [
            ("250us", Duration::from_micros(250)),
            ("50ms", Duration::from_millis(50)),
            ("2s", Duration::from_secs(2)),
            ("90", Duration::from_secs(90)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("1d", Duration::from_secs(86400)),
            ("1h 30m", Duration::from_secs(5400)),
            (" 2s ", Duration::from_secs(2)),
        ];
        for (s, want) in ok {
            assert_eq!(parse_duration(s), Ok(want), "{s}");
        }
        for s in [
            "",
            "1e400s",
            "-1s",
            "5 parsecs",
            "s",
            "99999999999999999999",
            "99999999999999999999s",
            "18446744073709551615h",
            "101years",
            "1.5.2s",
        ] {
            let e = parse_duration(s).unwrap_err();
            assert!(e.to_string().contains("duration such as"), "{s}: {e}");
        }
    }

    #[test]
    fn percents() {
        assert_eq!(Percent::parse("50%"), Ok(Percent(5000)));
        assert_eq!(Percent::parse("12.5%"), Ok(Percent(1250)));
        assert_eq!(Percent::parse("250 %"), Ok(Percent(25000)));
        assert_eq!(Percent::parse_optional_sign("80"), Ok(Percent(8000)));
        for s in ["50", "-5%", "1.234%", "%", "x%", "99999999999999%", "1e3%"] {
            assert!(Percent::parse(s).is_err(), "{s}");
        }
        assert_eq!(Percent(1250).to_string(), "12.5%");
        assert_eq!(Percent(1234).to_string(), "12.34%");
        assert_eq!(Percent(5000).of(1000), 500);
        assert_eq!(
            Percent(u32::MAX).of(u64::MAX),
            (u64::MAX as u128 * u32::MAX as u128 / 10_000) as u64
        );
    }

    #[test]
    fn printing_reads_back() {
        for b in [0, 1, 1000, 4096, 512 << 20, 3 << 29, 1 << 40, u64::MAX] {
            assert_eq!(parse_bytes(&fmt_bytes(b)), Ok(b), "{b}");
        }
        assert_eq!(fmt_bytes(512 << 20), "512M");
        assert_eq!(fmt_bytes_approx(512), "512B");
        assert_eq!(fmt_bytes_approx(3 << 20), "3.0M");
        assert_eq!(fmt_bytes_approx(40 << 30), "40G");
        assert_eq!(fmt_duration(Duration::from_secs(303)), "5m03s");
        for p in [Percent(1), Percent(1250), Percent(25000)] {
            assert_eq!(Percent::parse(&p.to_string()), Ok(p));
        }
    }

    /// Random and hostile input never panics, and what parses stays in range.
    #[test]
    fn arbitrary_input_never_panics() {
        let alphabet: Vec<char> = "0123456789.% KMGTPBikmsuhdy-e+x\u{00e9}\u{2028}"
            .chars()
            .collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            let s: String = (0..len)
                .map(|i| alphabet[((seed >> (i % 8 * 8)) as usize + i) % alphabet.len()])
                .collect();
            let _ = parse_bytes(&s);
            let _ = parse_duration(&s);
            let _ = Percent::parse(&s);
            let _ = Percent::parse_optional_sign(&s);
        }
    }
}
