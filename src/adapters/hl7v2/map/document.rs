//! MDM (medical documents), T01-T11 -> the DocumentReference TXA describes, for the patient
//! of PID, with the document itself as its attachment: an OBX of type ED (encapsulated data,
//! a PDF say) as it is, or the lines of OBX of type TX/FT/ST as UTF-8 text. A notification
//! without content (T01, T03, ...) states the document's metadata only.
//! IG: MDM_T02, TXA[DocumentReference], OBX[DocumentReference].
//!
//! Identity: the unique document number (TXA-12), which every message about a document
//! carries, so that its addendum, edit or cancellation updates one DocumentReference.

use super::super::codes;
use super::super::datatypes::{codeable, instant, put};
use super::super::message::{Rep, Segment};
use super::order::add_once;
use super::{Context, Resource, Unmapped, adt, failed, unsupported};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

const TRIGGERS: [&str; 11] = [
    "T01", "T02", "T03", "T04", "T05", "T06", "T07", "T08", "T09", "T10", "T11",
];

pub fn map(cx: &Context, trigger: &str) -> Result<Vec<Resource>, Unmapped> {
    if !TRIGGERS.contains(&trigger) {
        return Err(unsupported(
            "201",
            format!("MDM trigger event '{trigger}' is not one this server takes (T01-T11)"),
        ));
    }
    let txa = cx
        .msg
        .first("TXA")
        .ok_or_else(|| failed("TXA", "100", "an MDM message needs a TXA segment"))?;
    let (patient, mut out) = super::patient::with_allergies(cx)?;
    let number = txa.field(12).first();
    if number.get(1).trim().is_empty() {
        return Err(failed(
            "TXA-12",
            "101",
            "TXA-12 (unique document number) is empty: the document cannot be identified",
        ));
    }
    let system = doc_system(cx, number);
    let id = cx.stable_id("DocumentReference", &[&system, number.get(1).trim()]);
    let mut d = Map::new();
    d.insert("resourceType".into(), json!("DocumentReference"));
    d.insert("id".into(), json!(id));
    d.insert(
        "masterIdentifier".into(),
        json!({"system": system, "value": number.get(1).trim()}),
    );
    d.insert("status".into(), json!(status(txa, trigger)));
    if let Some(s) = doc_status(txa.value(17)) {
        d.insert("docStatus".into(), json!(s));
    }
    if let Some(t) = doc_type(txa.field(2).first()) {
        d.insert("type".into(), t);
    }
    d.insert("subject".into(), json!({"reference": patient.reference()}));
    if let Some(at) = cx
        .date_time(txa.value(4), "TXA-4")
        .or_else(|| cx.date_time(txa.value(6), "TXA-6"))
    {
        d.insert("date".into(), json!(instant(&at)));
    }
    // the originator (TXA-9), else the provider of the activity (TXA-5)
    let author = [9, 5]
        .into_iter()
        .find_map(|f| adt::practitioner(cx, txa.field(f).first()));
    if let Some(pr) = author {
        d.insert("author".into(), json!([{"reference": pr.reference()}]));
        add_once(&mut out, pr);
    }
    // the assigned authenticator (TXA-10), else the one who authenticated it (TXA-22)
    let authenticator = [10, 22]
        .into_iter()
        .find_map(|f| adt::practitioner(cx, txa.field(f).first()));
    if let Some(pr) = authenticator {
        d.insert("authenticator".into(), json!({"reference": pr.reference()}));
        add_once(&mut out, pr);
    }
    // the sender's file name (TXA-16) is an identifier of the document too
    let file = txa.value(16).trim();
    if !file.is_empty() && file != "\"\"" {
        d.insert(
            "identifier".into(),
            json!([{"system": format!("{system}/file"), "value": file}]),
        );
    }
    // confidentiality (TXA-18, table 0272) as a security label, with the IG's coding
    if let Some(label) = codeable(txa.field(18).first()) {
        d.insert(
            "securityLabel".into(),
            json!([codes::standardise("DocumentConfidentialityStatus", label)]),
        );
    }
    let description = txa.value(25).trim();
    if !description.is_empty() && description != "\"\"" {
        d.insert("description".into(), json!(description));
    }
    // an addendum appends to its parent document (TXA-13), a replacement replaces it
    let parent = txa.field(13).first();
    let relation = match trigger {
        "T05" | "T06" => Some("appends"),
        "T09" | "T10" => Some("replaces"),
        _ => None,
    };
    if let Some(code) = relation.filter(|_| !parent.get(1).trim().is_empty()) {
        let target = cx.stable_id(
            "DocumentReference",
            &[&doc_system(cx, parent), parent.get(1).trim()],
        );
        d.insert(
            "relatesTo".into(),
            json!([{"code": code, "target": {"reference": format!("DocumentReference/{target}")}}]),
        );
    }
    let title = txa.get(2, 2).trim();
    let content: Vec<Value> = attachments(cx, title)?
        .into_iter()
        .map(|a| json!({"attachment": a}))
        .collect();
    d.insert("content".into(), Value::Array(content));
    out.push(Resource {
        rtype: "DocumentReference",
        id,
        body: Value::Object(d),
    });
    Ok(out)
}

fn doc_system(cx: &Context, ei: Rep) -> String {
    cx.systems
        .for_authority(ei.get(2), ei.get(3), ei.get(4), &cx.header.sending_facility)
}

/// The document's parts, each an attachment: every OBX of type ED (a PDF, an image), and the
/// text of the TX/FT/ST lines as one more; a notification without either, a title only. An
/// ED part that cannot be read is left out with a warning (the AA says so) when another part
/// could be; only a document with nothing readable is refused.
fn attachments(cx: &Context, title: &str) -> Result<Vec<Value>, Unmapped> {
    let obx: Vec<&Segment> = cx.msg.all("OBX").collect();
    let mut parts = Vec::new();
    let mut unreadable = Vec::new();
    for ed in obx.iter().filter(|o| o.value(2) == "ED") {
        let mut a = Map::new();
        put(&mut a, "title", json!(title));
        match encapsulated(&mut a, ed.field(5).first()) {
            Ok(()) => parts.push(Value::Object(a)),
            Err(e) => unreadable.push(super::in_occurrence(e, cx.msg.occurrence(ed))),
        }
    }
    let mut a = Map::new();
    put(&mut a, "title", json!(title));
    let lines: Vec<String> = obx
        .iter()
        .filter(|o| matches!(o.value(2), "TX" | "FT" | "ST"))
        .flat_map(|o| o.field(5).repetitions().map(|r| r.get(1).to_string()))
        .collect();
    if !lines.is_empty() {
        let text = lines.join("\n");
        a.insert("contentType".into(), json!("text/plain; charset=utf-8"));
        a.insert("data".into(), json!(STANDARD.encode(text.as_bytes())));
        a.insert("size".into(), json!(text.len()));
        parts.push(Value::Object(a));
    }
    if parts.is_empty() {
        // nothing readable: the first unreadable part is the reason; else a notification
        if let Some(e) = unreadable.into_iter().next() {
            return Err(e);
        }
        let title = if title.is_empty() { "document" } else { title };
        return Ok(vec![json!({"title": title})]);
    }
    for e in unreadable {
        let (Unmapped::Failed(p) | Unmapped::Unsupported(p)) = e;
        let why = format!("{}; that part of the document was left out", p.text);
        cx.not_carried(&p.location, why);
    }
    Ok(parts)
}

/// An OBX-5 of type ED (encapsulated data) into attachment `a`: its MIME type, and its data
/// (Base64 as it is, Hex or text encoded) with its size.
pub(super) fn encapsulated(a: &mut Map<String, Value>, value: Rep) -> Result<(), Unmapped> {
    put(
        a,
        "contentType",
        json!(content_type(value.get(2), value.get(3))),
    );
    let data = value.get(5);
    if data.trim().is_empty() {
        return Ok(());
    }
    let bytes = match value.get(4).trim().to_ascii_lowercase().as_str() {
        "base64" => {
            let clean: String = data.chars().filter(|c| !c.is_whitespace()).collect();
            STANDARD
                .decode(clean)
                .map_err(|e| failed("OBX-5", "102", format!("OBX-5 says Base64 but is not: {e}")))?
        }
        "hex" => unhex(data)
            .ok_or_else(|| failed("OBX-5", "102", "OBX-5 says Hex but is not hexadecimal"))?,
        _ => data.as_bytes().to_vec(),
    };
    a.insert("data".into(), json!(STANDARD.encode(&bytes)));
    a.insert("size".into(), json!(bytes.len()));
    Ok(())
}

/// ED-2 and ED-3 as a MIME type: as they are when they are one (application/pdf), else by
/// HL7 table 0191's types.
fn content_type(kind: &str, subtype: &str) -> String {
    let (kind, subtype) = (kind.trim(), subtype.trim());
    match kind.to_ascii_uppercase().as_str() {
        "TEXT" | "TX" => "text/plain".into(),
        "IM" | "IMAGE" if !subtype.is_empty() => format!("image/{}", subtype.to_ascii_lowercase()),
        "AP" | "APPLICATION" if !subtype.is_empty() => {
            format!("application/{}", subtype.to_ascii_lowercase())
        }
        "AU" | "AUDIO" if !subtype.is_empty() => format!("audio/{}", subtype.to_ascii_lowercase()),
        _ => "application/octet-stream".into(),
    }
}

/// Hex data, white space between the digits allowed.
fn unhex(s: &str) -> Option<Vec<u8>> {
    let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    hex::decode(s).ok()
}

/// TXA-19 (availability, table 0273) and the trigger -> DocumentReference.status.
fn status(txa: &Segment, trigger: &str) -> &'static str {
    match (txa.value(19), trigger) {
        (_, "T11") | ("CA", _) => "entered-in-error",
        ("OB", _) => "superseded",
        _ => "current",
    }
}

/// TXA-17 (completion status, table 0271) -> docStatus.
fn doc_status(code: &str) -> Option<&'static str> {
    match code {
        "AU" | "LA" => Some("final"),
        "DI" | "DO" | "IN" | "IP" | "PA" => Some("preliminary"),
        _ => None,
    }
}

/// TXA-2 (document type, table 0270): a coded type, or a bare code of table 0270.
fn doc_type(t: Rep) -> Option<Value> {
    let code = t.get(1).trim();
    if code.is_empty() {
        return None;
    }
    if t.get(3).trim().is_empty() {
        let mut c = Map::new();
        c.insert(
            "system".into(),
            json!("http://terminology.hl7.org/CodeSystem/v2-0270"),
        );
        c.insert("code".into(), json!(code));
        put(&mut c, "display", json!(t.get(2).trim()));
        return Some(json!({"coding": [c]}));
    }
    codeable(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed_types_become_mime_types() {
        assert_eq!(content_type("application", "pdf"), "application/pdf");
        assert_eq!(content_type("AP", "PDF"), "application/pdf");
        assert_eq!(content_type("IM", "JPEG"), "image/jpeg");
        assert_eq!(content_type("TEXT", ""), "text/plain");
        assert_eq!(content_type("", ""), "application/octet-stream");
        assert_eq!(unhex("4869"), Some(b"Hi".to_vec()));
        assert_eq!(unhex("486"), None);
    }
}
