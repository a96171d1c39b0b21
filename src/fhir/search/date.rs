//! Dates as search sees them: every FHIR date, dateTime or instant stands for a range of time
//! as wide as its precision ("2020" is the whole year). Ranges are inclusive, in microseconds
//! since the Unix epoch; a value without time zone is taken as UTC.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// An inclusive range of instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub low: i64,
    pub high: i64,
}

impl DateRange {
    /// The range a FHIR date, dateTime or instant stands for.
    pub fn parse(text: &str) -> Option<DateRange> {
        let text = text.trim();
        match text.len() {
            4 => {
                let year: i32 = text.parse().ok()?;
                let start = NaiveDate::from_ymd_opt(year, 1, 1)?;
                let end = NaiveDate::from_ymd_opt(year + 1, 1, 1)?;
                Some(Self::days(start, end))
            }
            7 => {
                let start = NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").ok()?;
                let end = if start.month() == 12 {
                    NaiveDate::from_ymd_opt(start.year() + 1, 1, 1)?
                } else {
                    NaiveDate::from_ymd_opt(start.year(), start.month() + 1, 1)?
                };
                Some(Self::days(start, end))
            }
            10 => {
                let start = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
                Some(Self::days(start, start.succ_opt()?))
            }
            _ => Self::date_time(text),
        }
    }

    fn days(start: NaiveDate, end: NaiveDate) -> DateRange {
        let micros = |d: NaiveDate| {
            Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"))
                .timestamp_micros()
        };
        DateRange {
            low: micros(start),
            high: micros(end) - 1,
        }
    }

    /// `2020-01-01T10:00[:00[.123]][Z|+01:00]`: as wide as its last given unit.
    fn date_time(text: &str) -> Option<DateRange> {
        let (local, zone) = split_zone(text);
        let (padded, width) = match local.len() {
            16 => (format!("{local}:00"), Duration::minutes(1)), // hh:mm, as queries write it
            19 => (local.to_string(), Duration::seconds(1)),
            n if n > 20 => {
                let digits = n as u32 - 20;
                let width = Duration::microseconds(10_i64.pow(6u32.saturating_sub(digits)));
                (local.to_string(), width.max(Duration::microseconds(1)))
            }
            _ => return None,
        };
        let naive = NaiveDateTime::parse_from_str(&padded, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
        let start = match zone {
            None | Some("Z") => Utc.from_utc_datetime(&naive),
            Some(z) => {
                let with_zone = format!("{padded}{z}");
                DateTime::parse_from_str(&with_zone, "%Y-%m-%dT%H:%M:%S%.f%:z")
                    .ok()?
                    .with_timezone(&Utc)
            }
        };
        let low = start.timestamp_micros();
        Some(DateRange {
            low,
            high: low + width.num_microseconds()? - 1,
        })
    }

    /// The smallest range holding both.
    pub fn span(a: Option<DateRange>, b: Option<DateRange>) -> Option<DateRange> {
        match (a, b) {
            (Some(a), Some(b)) => Some(DateRange {
                low: a.low.min(b.low),
                high: a.high.max(b.high),
            }),
            (a, b) => a.or(b),
        }
    }
}

/// Split `...T10:00:00+01:00` into the local part and the zone (`Z`, `+01:00` or none).
fn split_zone(text: &str) -> (&str, Option<&str>) {
    if let Some(local) = text.strip_suffix('Z') {
        return (local, Some("Z"));
    }
    let time_start = text.find('T').unwrap_or(text.len());
    match text[time_start..].rfind(['+', '-']) {
        Some(at) => (&text[..time_start + at], Some(&text[time_start + at..])),
        None => (text, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros()
    }

    #[test]
    fn partial_dates_cover_their_precision() {
        let y = DateRange::parse("2020").unwrap();
        assert_eq!(y.low, at("2020-01-01T00:00:00Z"));
        assert_eq!(y.high, at("2021-01-01T00:00:00Z") - 1);
        let m = DateRange::parse("2020-02").unwrap();
        assert_eq!(m.high, at("2020-03-01T00:00:00Z") - 1);
        let dec = DateRange::parse("2020-12").unwrap();
        assert_eq!(dec.high, at("2021-01-01T00:00:00Z") - 1);
        let d = DateRange::parse("2020-02-29").unwrap();
        assert_eq!(d.low, at("2020-02-29T00:00:00Z"));
        let s = DateRange::parse("2020-02-29T10:00:00+01:00").unwrap();
        assert_eq!(
            (s.low, s.high),
            (at("2020-02-29T09:00:00Z"), at("2020-02-29T09:00:01Z") - 1)
        );
        let ms = DateRange::parse("2020-02-29T10:00:00.123Z").unwrap();
        assert_eq!(ms.high - ms.low, 999);
        let minute = DateRange::parse("2020-02-29T10:00Z").unwrap();
        assert_eq!(minute.high - minute.low, 60_000_000 - 1);
        assert!(DateRange::parse("yesterday").is_none());
        assert!(DateRange::parse("2020-13").is_none());
    }
}
