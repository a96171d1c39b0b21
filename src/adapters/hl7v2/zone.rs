//! The time zone of a v2 time that carries no offset. HL7 v2 says such a time is in the
//! sender's local time; FHIR needs an offset on every time. The zone of a message is MSH-7's
//! offset when the sender gave one, else the zone configured for its sending facility, else
//! the server's configured zone (UTC unless set). A named zone (`America/Chicago`) gives each
//! time the offset in force at that time, summer or winter; a fixed one (`-05:00`) the same
//! offset always.

use chrono::{FixedOffset, NaiveDateTime, Offset, TimeZone};

/// A zone as configured or as a message gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Fixed(FixedOffset),
    Named(chrono_tz::Tz),
}

impl Default for Zone {
    fn default() -> Self {
        Zone::Fixed(FixedOffset::east_opt(0).expect("zero is an offset"))
    }
}

impl Zone {
    /// `UTC`, `Z`, `+01:00`, `-0500` or an IANA name such as `Europe/Paris`.
    pub fn parse(text: &str) -> Result<Zone, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("utc") || t == "Z" {
            return Ok(Zone::default());
        }
        if let Some(offset) = offset(t) {
            return Ok(Zone::Fixed(offset));
        }
        t.parse::<chrono_tz::Tz>().map(Zone::Named).map_err(|_| {
            format!("'{text}' is not a time zone: give an offset such as -05:00 or a name such as America/Chicago")
        })
    }

    /// The offset this zone has at the local time `local`. A local time that a change of
    /// clocks skips (in spring) or repeats (in autumn) takes the offset in force before it.
    pub fn offset_at(&self, local: NaiveDateTime) -> FixedOffset {
        match self {
            Zone::Fixed(o) => *o,
            Zone::Named(tz) => {
                let found = tz.offset_from_local_datetime(&local);
                match found.earliest() {
                    Some(o) => o.fix(),
                    // in a gap: the offset of an hour before it
                    None => tz
                        .offset_from_utc_datetime(&(local - chrono::Duration::hours(1)))
                        .fix(),
                }
            }
        }
    }
}

/// `+HHMM`, `-HH:MM`: an offset of at most 14 hours.
fn offset(text: &str) -> Option<FixedOffset> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (h, m): (i32, i32) = (digits[..2].parse().ok()?, digits[2..].parse().ok()?);
    if h > 14 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// The zones the server knows: its own, and those of sending facilities.
#[derive(Debug, Clone, Default)]
pub struct Zones {
    pub default: Zone,
    /// (sending facility as MSH-4 names it, its zone).
    pub facilities: Vec<(String, Zone)>,
}

impl Zones {
    /// The zone of a message from `facility` whose MSH-7 is `msh7`.
    pub fn of_message(&self, msh7: &str, facility: &str) -> Zone {
        let msh7 = msh7.trim();
        if let Some(i) = msh7.rfind(['+', '-']).filter(|&i| i >= 4)
            && let Some(o) = offset(&msh7[i..])
        {
            return Zone::Fixed(o);
        }
        self.facilities
            .iter()
            .find(|(f, _)| f == facility)
            .map(|(_, z)| *z)
            .unwrap_or(self.default)
    }
}

/// `FACILITY=ZONE`, as `--hl7v2-facility-time-zone` takes it.
pub fn facility_zone(text: &str) -> Result<(String, Zone), String> {
    let (facility, zone) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not FACILITY=ZONE"))?;
    Ok((facility.trim().to_string(), Zone::parse(zone)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn a_named_zone_follows_summer_time() {
        let chicago = Zone::parse("America/Chicago").unwrap();
        assert_eq!(
            chicago
                .offset_at(local("2026-01-15 10:00"))
                .local_minus_utc(),
            -6 * 3600
        );
        assert_eq!(
            chicago
                .offset_at(local("2026-07-15 10:00"))
                .local_minus_utc(),
            -5 * 3600
        );
        // 02:30 on 8 March 2026 does not exist in Chicago: the offset before the change
        assert_eq!(
            chicago
                .offset_at(local("2026-03-08 02:30"))
                .local_minus_utc(),
            -6 * 3600
        );
    }

    #[test]
    fn the_zone_of_a_message() {
        let zones = Zones {
            default: Zone::parse("+01:00").unwrap(),
            facilities: vec![facility_zone("NYLAB=America/New_York").unwrap()],
        };
        let of = |msh7, fac| {
            zones
                .of_message(msh7, fac)
                .offset_at(local("2026-01-15 10:00"))
                .local_minus_utc()
                / 60
        };
        assert_eq!(
            of("20260115100000-0300", "NYLAB"),
            -180,
            "MSH-7's offset first"
        );
        assert_eq!(of("20260115100000", "NYLAB"), -300, "then the facility's");
        assert_eq!(of("20260115100000", "OTHER"), 60, "then the server's");
        assert!(Zone::parse("Mars/Olympus").is_err());
        assert!(Zone::parse("+25:00").is_err());
    }
}
