//! Acknowledgements. Original mode: `AA` once the message's data is committed, `AE` for a
//! message understood but not applied (it waits in the exception queue), `AR` for one refused
//! outright (unreadable header, unsupported type). Enhanced mode, when the sender fills MSH-15
//! or MSH-16: an accept ACK (`CA` the message is safely kept, `CR` refused) and the application
//! ACK (`AA`/`AE`/`AR`), each sent only in the conditions MSH-15 and MSH-16 ask for (`AL`
//! always, `NE` never, `ER` on error, `SU` on success). The MSA echoes the control id; an ERR
//! segment says where and why, with a code of HL7 table 0357.

use super::message::{Delimiters, Header};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    Accept,
    Error,
    Reject,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::Accept => "AA",
            AckCode::Error => "AE",
            AckCode::Reject => "AR",
        }
    }

    /// The accept (commit) code of enhanced mode: a message answered AE is kept (in the
    /// exception queue), so it was accepted for keeping; only a refused one is not.
    pub fn commit_str(self) -> &'static str {
        match self {
            AckCode::Accept | AckCode::Error => "CA",
            AckCode::Reject => "CR",
        }
    }
}

/// Whether MSH-15 or MSH-16 holds a condition of HL7 table 0155 at all: a sender asks for
/// enhanced mode only with one (anything else is read as an empty field).
pub fn is_condition(field: &str) -> bool {
    matches!(field.trim(), "AL" | "NE" | "ER" | "SU")
}

/// Whether an acknowledgement is wanted under MSH-15 or MSH-16's condition (HL7 table 0155),
/// given whether it reports success.
pub fn wanted(condition: &str, success: bool) -> bool {
    match condition.trim() {
        "AL" => true,
        "ER" => !success,
        "SU" => success,
        // NE, and an empty field in enhanced mode
        _ => false,
    }
}

/// Why a message was not accepted: where (`PID-3`), a table 0357 code, and words for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub location: String,
    pub code: &'static str,
    pub text: String,
}

/// The ACK message for `header` (as much of it as could be read); `code` is MSA-1 (AA, AE,
/// AR, or in enhanced mode's accept ACK CA, CR). `problem` is why it was not applied (an ERR of
/// severity E); each of `warnings` is something applied without what the sender said there
/// (an ERR of severity W).
pub fn ack(
    d: &Delimiters,
    header: &Header,
    code: &str,
    problem: Option<&Problem>,
    warnings: &[Problem],
    control_id: &str,
) -> String {
    let f = d.field;
    let c = d.component;
    let e = |t: &str| d.escape_text(t);
    let now = chrono::Utc::now().format("%Y%m%d%H%M%S%z");
    // everything of the sender's that is echoed is escaped: a decoded `\X0D\` in MSH-11 would
    // otherwise start a segment of the sender's choosing (a forged `MSA|AA`) in our answer
    let version = if header.version.is_empty() {
        "2.5.1".to_string()
    } else {
        e(&header.version)
    };
    let version = version.as_str();
    let mut out = String::new();
    // sender and receiver swap places
    out.push_str(&format!(
        "MSH{f}{enc}{f}{ra}{f}{rf}{f}{sa}{f}{sf}{f}{now}{f}{f}ACK{c}{trigger}{c}ACK{f}{control_id}{f}{pid}{f}{version}\r",
        enc = d.encoding_characters(),
        ra = e(&header.receiving_application),
        rf = e(&header.receiving_facility),
        sa = e(&header.sending_application),
        sf = e(&header.sending_facility),
        trigger = e(&header.trigger),
        pid = if header.processing_id.is_empty() { "P".to_string() } else { e(&header.processing_id) },
    ));
    out.push_str(&format!("MSA{f}{}{f}{}", code, e(&header.control_id)));
    if let Some(p) = problem {
        // MSA-3 (text) is deprecated but still what many engines show
        out.push_str(&format!("{f}{}", e(&p.text)));
    }
    out.push('\r');
    if let Some(p) = problem {
        out.push_str(&err_segment(d, version, p, "E"));
    }
    for w in warnings {
        out.push_str(&err_segment(d, version, w, "W"));
    }
    out
}

/// ERR: before v2.5, ERR-1 (segment^sequence^field^code); from v2.5, ERR-2 (location),
/// ERR-3 (code), ERR-4 (severity) and ERR-8 (user message).
fn err_segment(d: &Delimiters, version: &str, p: &Problem, severity: &str) -> String {
    let (f, c) = (d.field, d.component);
    let (segment, seq, field) = split_location(&p.location);
    let name = code_name(p.code);
    let code = format!("{}{c}{}{c}HL70357", p.code, d.escape_text(name));
    let text = d.escape_text(&p.text);
    if version_before(version, "2.5") {
        // ELD: the code is its 4th component, so its own parts are subcomponents
        let s = d.subcomponent;
        let code = format!("{}{s}{}{s}HL70357", p.code, d.escape_text(name));
        format!("ERR{f}{segment}{c}{seq}{c}{field}{c}{code}\r")
    } else {
        format!("ERR{f}{f}{segment}{c}{seq}{c}{field}{f}{code}{f}{severity}{f}{f}{f}{f}{text}\r")
    }
}

/// `OBX[3]-5` -> (`OBX`, 3, `5`); `PID-3` -> (`PID`, 1, `3`).
fn split_location(location: &str) -> (String, usize, String) {
    let (segment, field) = location.split_once('-').unwrap_or((location, ""));
    let (segment, seq) = match segment.split_once('[') {
        Some((s, n)) => (s, n.trim_end_matches(']').parse().unwrap_or(1)),
        None => (segment, 1),
    };
    (segment.to_string(), seq, field.to_string())
}

fn version_before(version: &str, than: &str) -> bool {
    let parts = |v: &str| -> Vec<u32> { v.split('.').filter_map(|p| p.parse().ok()).collect() };
    parts(version) < parts(than)
}

/// HL7 table 0357 (message error condition codes).
fn code_name(code: &str) -> &'static str {
    match code {
        "100" => "Segment sequence error",
        "101" => "Required field missing",
        "102" => "Data type error",
        "103" => "Table value not found",
        "200" => "Unsupported message type",
        "201" => "Unsupported event code",
        "202" => "Unsupported processing id",
        "203" => "Unsupported version id",
        "204" => "Unknown key identifier",
        "205" => "Duplicate key identifier",
        "206" => "Application record locked",
        _ => "Application internal error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::hl7v2::message::parse;

    fn header() -> Header {
        parse("MSH|^~\\&|LAB|GH|EMRSYNC|HUB|2026||ORU^R01^ORU_R01|C42|P|2.5.1\r")
            .unwrap()
            .header()
    }

    #[test]
    fn an_accept_echoes_the_control_id_and_swaps_the_parties() {
        let a = ack(
            &Delimiters::default(),
            &header(),
            AckCode::Accept.as_str(),
            None,
            &[],
            "A1",
        );
        let m = parse(&a).unwrap();
        let h = m.header();
        assert_eq!(
            (
                h.sending_application.as_str(),
                h.receiving_application.as_str()
            ),
            ("EMRSYNC", "LAB")
        );
        assert_eq!(h.message_type, "ACK");
        assert_eq!(h.trigger, "R01");
        assert_eq!(h.control_id, "A1");
        let msa = m.first("MSA").unwrap();
        assert_eq!((msa.value(1), msa.value(2)), ("AA", "C42"));
        assert!(m.first("ERR").is_none());
    }

    #[test]
    fn an_error_says_where_and_why() {
        let p = Problem {
            location: "PID-3".into(),
            code: "101",
            text: "PID-3 has no identifier | none".into(),
        };
        let a = ack(
            &Delimiters::default(),
            &header(),
            AckCode::Error.as_str(),
            Some(&p),
            &[],
            "A2",
        );
        let m = parse(&a).unwrap();
        assert_eq!(m.first("MSA").unwrap().value(1), "AE");
        let err = m.first("ERR").unwrap();
        assert_eq!(err.get(2, 1), "PID");
        assert_eq!(err.get(2, 3), "3");
        assert_eq!(err.get(3, 1), "101");
        assert_eq!(err.value(4), "E");
        // the text's own delimiters were escaped and come back whole
        assert_eq!(err.value(8), "PID-3 has no identifier | none");
        // before 2.5, ERR-1 carries it
        let mut old = header();
        old.version = "2.3".into();
        let m = parse(&ack(
            &Delimiters::default(),
            &old,
            AckCode::Reject.as_str(),
            Some(&p),
            &[],
            "A3",
        ))
        .unwrap();
        assert_eq!(m.first("ERR").unwrap().get(1, 4), "101");
    }

    #[test]
    fn nothing_echoed_can_forge_a_segment() {
        // MSH-11 and MSH-12 decode to a segment break and a forged acceptance
        let forged = "\\X0D\\MSA\\F\\AA\\F\\C42\\X1C\\\\X0B\\";
        let text =
            format!("MSH|^~\\&|LAB|GH|EMRSYNC|HUB|2026||ADT^A01|C42|P{forged}|2.5{forged}\r");
        let h = parse(&text).unwrap().header();
        assert!(
            h.processing_id.contains("\rMSA|AA|C42"),
            "{:?}",
            h.processing_id
        );
        let p = Problem {
            location: "PID-3".into(),
            code: "101",
            text: "refused".into(),
        };
        let a = ack(&Delimiters::default(), &h, "AR", Some(&p), &[], "A4");
        assert!(!a.contains(['\x0b', '\x1c']), "no MLLP frame byte: {a:?}");
        let m = parse(&a).unwrap();
        let msas: Vec<_> = m.segments.iter().filter(|s| s.id == "MSA").collect();
        assert_eq!(msas.len(), 1, "{a:?}");
        assert_eq!(msas[0].value(1), "AR");
        // and the sender's text comes back as it sent it (its break as a line break)
        assert_eq!(
            m.header().processing_id,
            h.processing_id.replace('\r', "\n")
        );
    }

    #[test]
    fn enhanced_mode_conditions() {
        assert!(wanted("AL", true) && wanted("AL", false));
        assert!(!wanted("NE", true) && !wanted("NE", false));
        assert!(wanted("ER", false) && !wanted("ER", true));
        assert!(wanted("SU", true) && !wanted("SU", false));
        assert!(!wanted("", true));
        assert_eq!(AckCode::Error.commit_str(), "CA");
        assert_eq!(AckCode::Reject.commit_str(), "CR");
    }
}
