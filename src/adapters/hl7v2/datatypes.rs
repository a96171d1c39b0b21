//! HL7v2 data types to FHIR data types, as the v2-to-FHIR IG's datatype maps have them:
//! CX -> Identifier, XPN -> HumanName, XAD -> Address, XTN -> ContactPoint, CWE/CE ->
//! CodeableConcept, DTM/DT -> dateTime/date, XCN -> a practitioner's identifier and name,
//! PL -> a location's name.

use super::identity::Systems;
use super::message::{Field, Rep};
use super::zone::Zone;
use serde_json::{Map, Value, json};

/// Insert `value` under `key` unless it is empty (FHIR has no empty strings, arrays or objects).
pub fn put(obj: &mut Map<String, Value>, key: &str, value: Value) {
    let empty = match &value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if !empty {
        obj.insert(key.to_string(), value);
    }
}

/// `more` added to the list `key` of `obj` (made when absent; nothing when `more` is empty).
pub fn append(obj: &mut Map<String, Value>, key: &str, more: impl IntoIterator<Item = Value>) {
    let more: Vec<Value> = more.into_iter().collect();
    if more.is_empty() {
        return;
    }
    let mut all = obj
        .remove(key)
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    all.extend(more);
    obj.insert(key.into(), Value::Array(all));
}

/// A field's text when it says something: not empty, not `""` (delete).
pub fn said(s: &str) -> Option<&str> {
    match s.trim() {
        "" | "\"\"" => None,
        t => Some(t),
    }
}

fn text(s: &str) -> Value {
    match s.trim() {
        "" | "\"\"" => Value::Null,
        t => Value::String(t.to_string()),
    }
}

/// CX -> Identifier; `None` without a value. The system comes from the assigning authority
/// (CX-4), else from the sending facility; CX-7 and CX-8 (effective, expiration) are its
/// period, in `zone` when they carry no offset.
pub fn identifier(cx: Rep, systems: &Systems, facility: &str, zone: Zone) -> Option<Value> {
    let value = cx.get(1).trim();
    if value.is_empty() {
        return None;
    }
    let system = systems.for_authority(cx.sub(4, 1), cx.sub(4, 2), cx.sub(4, 3), facility);
    let mut id = Map::new();
    put(&mut id, "system", Value::String(system));
    put(&mut id, "value", Value::String(value.to_string()));
    let ty = cx.get(5).trim();
    if !ty.is_empty() {
        id.insert(
            "type".into(),
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": ty}]}),
        );
    }
    put(&mut id, "period", period(cx.get(7), cx.get(8), zone));
    Some(Value::Object(id))
}

/// Two v2 times (from, to) -> Period, each at the precision it was sent; `Null` when neither
/// is there (or readable).
pub fn period(from: &str, to: &str, zone: Zone) -> Value {
    let mut p = Map::new();
    if let Some(s) = date_time(from, zone) {
        p.insert("start".into(), json!(s));
    }
    if let Some(e) = date_time(to, zone) {
        p.insert("end".into(), json!(e));
    }
    if p.is_empty() {
        Value::Null
    } else {
        Value::Object(p)
    }
}

/// XPN -> HumanName.
pub fn name(xpn: Rep, zone: Zone) -> Option<Value> {
    let mut n = Map::new();
    put(&mut n, "family", text(xpn.sub(1, 1)));
    let given: Vec<Value> = [xpn.get(2), xpn.get(3)]
        .iter()
        .map(|g| text(g))
        .filter(|g| !g.is_null())
        .collect();
    put(&mut n, "given", Value::Array(given));
    // suffix (XPN-4), degree (XPN-6, kept as v2.5 deprecates it) and professional suffix
    // (XPN-14, credentials: "MD", "RN")
    let suffixes: Vec<Value> = [xpn.get(4), xpn.get(6), xpn.get(14)]
        .iter()
        .map(|s| text(s))
        .filter(|s| !s.is_null())
        .collect();
    put(&mut n, "suffix", Value::Array(suffixes));
    put(
        &mut n,
        "prefix",
        text(xpn.get(5))
            .as_str()
            .map(|s| json!([s]))
            .unwrap_or_default(),
    );
    let use_ = match xpn.get(7) {
        "L" => "official",
        "D" => "usual",
        "M" | "B" => "maiden",
        "N" => "nickname",
        "A" | "S" => "anonymous",
        "T" => "temp",
        "C" => "old",
        _ => "",
    };
    // effective and expiration (XPN-12, XPN-13), else the older validity range (XPN-10)
    let validity = match (xpn.get(12), xpn.get(13)) {
        ("", "") => period(xpn.sub(10, 1), xpn.sub(10, 2), zone),
        (from, to) => period(from, to, zone),
    };
    put(&mut n, "period", validity);
    if n.is_empty() {
        return None;
    }
    put(&mut n, "use", text(use_));
    Some(Value::Object(n))
}

/// XAD -> Address.
pub fn address(xad: Rep) -> Option<Value> {
    let mut a = Map::new();
    let lines: Vec<Value> = [xad.sub(1, 1), xad.get(2)]
        .iter()
        .map(|l| text(l))
        .filter(|l| !l.is_null())
        .collect();
    put(&mut a, "line", Value::Array(lines));
    put(&mut a, "city", text(xad.get(3)));
    put(&mut a, "state", text(xad.get(4)));
    put(&mut a, "postalCode", text(xad.get(5)));
    put(&mut a, "country", text(xad.get(6)));
    if a.is_empty() {
        return None;
    }
    let (use_, kind) = match xad.get(7) {
        "H" | "P" => ("home", ""),
        "B" | "O" => ("work", ""),
        "C" => ("temp", ""),
        "BA" => ("old", ""),
        "M" => ("", "postal"),
        "SH" => ("", "physical"),
        _ => ("", ""),
    };
    put(&mut a, "use", text(use_));
    put(&mut a, "type", text(kind));
    Some(Value::Object(a))
}

/// XTN -> ContactPoint; `use_` is the default use (home for PID-13, work for PID-14).
pub fn telecom(xtn: Rep, use_: &str) -> Option<Value> {
    let equipment = xtn.get(3);
    let value = match (xtn.get(1), xtn.get(4), xtn.get(12)) {
        (_, email, _) if equipment == "Internet" || equipment == "X.400" => email.to_string(),
        (_, _, unformatted) if !unformatted.is_empty() => unformatted.to_string(),
        (formatted, _, _) if !formatted.is_empty() => formatted.to_string(),
        _ => {
            let country = match xtn.get(5).trim() {
                "" => String::new(),
                c => format!("+{}", c.trim_start_matches('+')),
            };
            let parts = [country.as_str(), xtn.get(6), xtn.get(7)];
            let number: Vec<&str> = parts.into_iter().filter(|p| !p.is_empty()).collect();
            let mut n = number.join(" ");
            if !xtn.get(8).is_empty() && !n.is_empty() {
                n.push_str(&format!(" ext. {}", xtn.get(8)));
            }
            n
        }
    };
    if value.trim().is_empty() {
        return None;
    }
    let system = match equipment {
        "Internet" | "X.400" => "email",
        "FX" => "fax",
        "BP" => "pager",
        _ => "phone",
    };
    let use_ = match (xtn.get(2), equipment) {
        (_, "CP") => "mobile",
        ("PRN" | "ORN" | "VHN", _) => "home",
        ("WPN", _) => "work",
        _ => use_,
    };
    let mut t = json!({"system": system, "value": value.trim()});
    if !use_.is_empty() {
        t["use"] = json!(use_);
    }
    Some(t)
}

/// CQ (a number, and its unit as a CWE in subcomponents) -> Quantity, UCUM when the unit's
/// system says so; `None` without a number.
pub fn cq_quantity(cq: Rep) -> Option<Value> {
    let n = cq.get(1).trim().parse::<serde_json::Number>().ok()?;
    let mut q = json!({"value": n});
    let unit = cq.sub(2, 1).trim();
    if !unit.is_empty() {
        q["unit"] = json!(unit);
        if cq.sub(2, 3).trim() == "UCUM" {
            q["system"] = json!("http://unitsofmeasure.org");
            q["code"] = json!(unit);
        }
    }
    Some(q)
}

/// CWE/CE -> CodeableConcept (the primary and the alternate coding).
pub fn codeable(cwe: Rep) -> Option<Value> {
    let mut codings = Vec::new();
    for (code, display, sys) in [(1, 2, 3), (4, 5, 6)] {
        // no code, or `""` (delete: the field's element is cleared, see `nulls`)
        if text(cwe.get(code)).is_null() {
            continue;
        }
        let mut c = Map::new();
        put(&mut c, "system", text(&coding_system(cwe.get(sys))));
        put(&mut c, "code", text(cwe.get(code)));
        put(&mut c, "display", text(cwe.get(display)));
        codings.push(Value::Object(c));
    }
    let mut cc = Map::new();
    put(&mut cc, "coding", Value::Array(codings));
    put(&mut cc, "text", text(cwe.get(9)).or(text(cwe.get(2))));
    (!cc.is_empty()).then_some(Value::Object(cc))
}

trait OrNull {
    fn or(self, other: Value) -> Value;
}

impl OrNull for Value {
    fn or(self, other: Value) -> Value {
        if self.is_null() { other } else { self }
    }
}

/// A v2 coding system name (HL7 table 0396) as a FHIR system URI.
pub fn coding_system(name: &str) -> String {
    match name {
        "LN" => "http://loinc.org".into(),
        "SCT" | "SNM" | "SNOMED" => "http://snomed.info/sct".into(),
        "RXNORM" | "RXN" => "http://www.nlm.nih.gov/research/umls/rxnorm".into(),
        "I10" | "ICD10" => "http://hl7.org/fhir/sid/icd-10".into(),
        "I10C" | "ICD10CM" => "http://hl7.org/fhir/sid/icd-10-cm".into(),
        "I9" | "I9C" => "http://hl7.org/fhir/sid/icd-9-cm".into(),
        "UCUM" => "http://unitsofmeasure.org".into(),
        "CVX" => "http://hl7.org/fhir/sid/cvx".into(),
        "NDC" => "http://hl7.org/fhir/sid/ndc".into(),
        "" => String::new(),
        t if t.starts_with("HL7") && t.len() == 7 => {
            format!("http://terminology.hl7.org/CodeSystem/v2-{}", &t[3..])
        }
        t if t.starts_with("99") || t.starts_with('L') => {
            format!("http://emrsync.org/hl7v2/local-code-system/{}", uri_part(t))
        }
        t => format!("http://emrsync.org/hl7v2/code-system/{}", uri_part(t)),
    }
}

/// A FHIR system URI as the v2 coding system name (HL7 table 0396) it came from: the reverse
/// of `coding_system` (the first name of each), empty for a system v2 has no name for.
pub fn coding_system_name(uri: &str) -> String {
    match uri {
        "http://loinc.org" => "LN".into(),
        "http://snomed.info/sct" => "SCT".into(),
        "http://www.nlm.nih.gov/research/umls/rxnorm" => "RXNORM".into(),
        "http://hl7.org/fhir/sid/icd-10" => "I10".into(),
        "http://hl7.org/fhir/sid/icd-10-cm" => "I10C".into(),
        "http://hl7.org/fhir/sid/icd-9-cm" => "I9".into(),
        "http://unitsofmeasure.org" => "UCUM".into(),
        "http://hl7.org/fhir/sid/cvx" => "CVX".into(),
        "http://hl7.org/fhir/sid/ndc" => "NDC".into(),
        u => {
            for prefix in [
                "http://emrsync.org/hl7v2/local-code-system/",
                "http://emrsync.org/hl7v2/code-system/",
            ] {
                if let Some(name) = u.strip_prefix(prefix) {
                    return name.to_string();
                }
            }
            match u.strip_prefix("http://terminology.hl7.org/CodeSystem/v2-") {
                Some(table) => format!("HL7{table}"),
                None => String::new(),
            }
        }
    }
}

/// Text made safe for a URI path segment.
pub fn uri_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._~".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// DTM (YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]) -> FHIR dateTime at the precision given; a
/// time without an offset is in `zone`, the sender's (see `zone`); `None` if unreadable.
pub fn date_time(dtm: &str, zone: Zone) -> Option<String> {
    let dtm = dtm.trim();
    let (body, zone_given) = match dtm.find(['+', '-']) {
        Some(i) if i >= 4 => (&dtm[..i], Some(&dtm[i..])),
        _ => (dtm, None),
    };
    let (digits, fraction) = body.split_once('.').unwrap_or((body, ""));
    if digits.len() < 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let part = |a: usize, b: usize| digits.get(a..b);
    let y = part(0, 4)?;
    let Some(m) = part(4, 6) else {
        return Some(y.to_string());
    };
    if !(1..=12).contains(&m.parse::<u32>().ok()?) {
        return None;
    }
    let Some(d) = part(6, 8) else {
        return Some(format!("{y}-{m}"));
    };
    chrono::NaiveDate::parse_from_str(&format!("{y}-{m}-{d}"), "%Y-%m-%d").ok()?;
    let Some(hh) = part(8, 10) else {
        return Some(format!("{y}-{m}-{d}"));
    };
    let mm = part(10, 12).unwrap_or("00");
    let ss = part(12, 14).unwrap_or("00");
    let frac = if fraction.is_empty() {
        String::new()
    } else {
        format!(".{fraction}")
    };
    let tz = match zone_given {
        Some(z) if z.len() == 5 => format!("{}:{}", &z[..3], &z[3..]),
        _ => {
            let local = format!("{y}-{m}-{d}T{hh}:{mm}:{ss}");
            let local = chrono::NaiveDateTime::parse_from_str(&local, "%Y-%m-%dT%H:%M:%S").ok()?;
            offset_text(zone.offset_at(local))
        }
    };
    let s = format!("{y}-{m}-{d}T{hh}:{mm}:{ss}{frac}{tz}");
    chrono::DateTime::parse_from_rfc3339(&s).ok().map(|_| s)
}

/// A whole number of minutes from an amount and its units (minutes when none are given); `None`
/// for a unit of no fixed length, or an amount that is not a positive finite number.
pub fn minutes(amount: &str, units: &str) -> Option<i64> {
    let n: f64 = amount.trim().parse().ok()?;
    let per = match units.trim().to_ascii_lowercase().as_str() {
        "" | "min" | "m" | "minutes" | "minute" => 1.0,
        "s" | "sec" | "seconds" => 1.0 / 60.0,
        "h" | "hr" | "hour" | "hours" => 60.0,
        "d" | "day" | "days" => 1440.0,
        "wk" | "w" | "week" | "weeks" => 10080.0,
        _ => return None,
    };
    let m = (n * per).round();
    // finite and within what an i64 holds (`as` would saturate infinity silently)
    (m.is_finite() && m > 0.0 && m < i64::MAX as f64).then_some(m as i64)
}

/// A dateTime with a time of day (from `date_time`) moved by `minutes`, in its own offset;
/// `None` for a date alone, or when the result falls outside FHIR's years (1 to 9999): a
/// sender's absurd duration is no reason to write a date no reader takes.
pub fn shifted(at: &str, minutes: i64) -> Option<String> {
    let start = chrono::DateTime::parse_from_rfc3339(at).ok()?;
    let moved = start.checked_add_signed(chrono::TimeDelta::try_minutes(minutes)?)?;
    let year = chrono::Datelike::year(&moved);
    (1..=9999)
        .contains(&year)
        .then(|| moved.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// A dateTime from `date_time` as an instant (which needs seconds and a zone): a date alone
/// is taken as its first moment, UTC.
pub fn instant(at: &str) -> String {
    match at.len() {
        4 => format!("{at}-01-01T00:00:00Z"),
        7 => format!("{at}-01T00:00:00Z"),
        10 => format!("{at}T00:00:00Z"),
        _ => at.to_string(),
    }
}

/// An offset as FHIR writes it: `Z` for UTC, else `+HH:MM`.
fn offset_text(o: chrono::FixedOffset) -> String {
    let secs = o.local_minus_utc();
    if secs == 0 {
        return "Z".into();
    }
    let sign = if secs < 0 { '-' } else { '+' };
    let m = secs.abs() / 60;
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

/// DT (or the date of a DTM) -> FHIR date.
pub fn date(dt: &str) -> Option<String> {
    let full = date_time(dt, Zone::default())?;
    Some(full.get(..10).unwrap_or(&full).to_string())
}

/// PL -> a location's display name (point of care, room, bed; facility last).
pub fn location_name(pl: Rep) -> Option<String> {
    let parts: Vec<&str> = [pl.sub(1, 1), pl.sub(2, 1), pl.sub(3, 1), pl.sub(4, 1)]
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty() && *p != "\"\"")
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// Each repetition of a CWE field as words: its text, else its code (the empty ones left out).
pub fn cwe_texts(field: &Field) -> Vec<&str> {
    field
        .repetitions()
        .map(|r| match r.get(2).trim() {
            "" => r.get(1).trim(),
            text => text,
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// All repetitions of a field through `f`, the empty ones left out.
pub fn each(field: &Field, f: impl Fn(Rep) -> Option<Value>) -> Value {
    Value::Array(field.repetitions().filter_map(f).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_times_keep_their_precision_and_zone() {
        let date_time = |s| date_time(s, Zone::default());
        assert_eq!(date_time("2026").as_deref(), Some("2026"));
        assert_eq!(date_time("202603").as_deref(), Some("2026-03"));
        assert_eq!(date_time("20260314").as_deref(), Some("2026-03-14"));
        assert_eq!(
            date_time("202603141530").as_deref(),
            Some("2026-03-14T15:30:00Z")
        );
        assert_eq!(
            date_time("20260314153012.25+0215").as_deref(),
            Some("2026-03-14T15:30:12.25+02:15")
        );
        assert_eq!(date_time("20261399"), None);
        assert_eq!(date_time("20260230"), None);
        assert_eq!(date_time("2026131412"), None);
        assert_eq!(date_time("soon"), None);
        assert_eq!(date("198808181126+0215").as_deref(), Some("1988-08-18"));
    }

    #[test]
    fn a_time_without_an_offset_is_in_the_sender_s_zone() {
        let chicago = Zone::parse("America/Chicago").unwrap();
        assert_eq!(
            date_time("202601151030", chicago).as_deref(),
            Some("2026-01-15T10:30:00-06:00")
        );
        assert_eq!(
            date_time("202607151030", chicago).as_deref(),
            Some("2026-07-15T10:30:00-05:00")
        );
        // an offset the value gives wins; a date stays a date
        assert_eq!(
            date_time("202607151030+0100", chicago).as_deref(),
            Some("2026-07-15T10:30:00+01:00")
        );
        assert_eq!(
            date_time("20260715", chicago).as_deref(),
            Some("2026-07-15")
        );
        let paris = Zone::parse("+01:00").unwrap();
        assert_eq!(
            date_time("20260115103012.5", paris).as_deref(),
            Some("2026-01-15T10:30:12.5+01:00")
        );
    }

    #[test]
    fn coding_systems() {
        assert_eq!(coding_system("LN"), "http://loinc.org");
        for name in [
            "LN", "SCT", "RXNORM", "I10", "UCUM", "CVX", "HL70078", "99LAB", "L", "ACME",
        ] {
            assert_eq!(coding_system_name(&coding_system(name)), name);
        }
        assert_eq!(
            coding_system("HL70005"),
            "http://terminology.hl7.org/CodeSystem/v2-0005"
        );
        assert!(coding_system("99ZZZ").ends_with("/local-code-system/99ZZZ"));
    }
}
