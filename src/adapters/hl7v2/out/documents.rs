//! FHIR to HL7v2 documents: a DocumentReference's change written as MDM (T02 a new document
//! with its content, T08 an edit, T06 an addendum, T10 a replacement, T11 a cancellation),
//! the inbound map (`map::document`) turned round: TXA with the type, time, author and
//! authenticator, the unique document number (the master identifier), its parent, completion
//! and availability status, confidentiality and title; the content as OBX: text line by line
//! (TX), anything else as encapsulated data in Base64 (ED).
//! IG: MDM_T02, TXA[DocumentReference], OBX[DocumentReference].

use super::adt::{Envelope, dtm, items, msh, pid, pv1, text, xcn};
use super::oru::cwe;
use super::write::{Seg, message, rep};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// The MDM event a DocumentReference's change is, from its `previous` version (`None`:
/// created): with content unless it is cancelled.
pub fn trigger(previous: Option<&Value>, current: &Value) -> &'static str {
    let relation = text(current, &["relatesTo", "0", "code"]);
    match (previous, text(current, &["status"]), relation) {
        (_, "entered-in-error", _) => "T11",
        (None, _, "appends") => "T06",
        (None, _, "replaces") => "T10",
        (None, _, _) => "T02",
        (Some(_), _, _) => "T08",
    }
}

/// TXA-17 (table 0271) from docStatus.
fn completion(doc_status: &str) -> &'static str {
    match doc_status {
        "final" | "amended" => "AU",
        "preliminary" => "IP",
        _ => "",
    }
}

/// TXA-19 (table 0273) from status.
fn availability(status: &str) -> &'static str {
    match status {
        "current" => "AV",
        "superseded" => "OB",
        "entered-in-error" => "CA",
        _ => "",
    }
}

/// A MIME type as ED-2 and ED-3 (table 0191's type, the subtype).
fn ed_type(mime: &str) -> (&'static str, String) {
    let (kind, subtype) = mime
        .split(';')
        .next()
        .unwrap_or("")
        .split_once('/')
        .unwrap_or(("", ""));
    let kind = match kind.trim() {
        "text" => "TEXT",
        "image" => "IM",
        "audio" => "AU",
        _ => "AP",
    };
    (kind, subtype.trim().to_ascii_uppercase())
}

/// An MDM message of `trigger` for `document`, of `patient` (and `encounter`), by `author`
/// and `authenticator` (their Practitioners); `parent`: the document it appends or replaces.
pub fn mdm(
    env: &Envelope,
    trigger: &str,
    (patient, encounter): (&Value, Option<&Value>),
    (document, parent): (&Value, Option<&Value>),
    (author, authenticator): (Option<&Value>, Option<&Value>),
) -> String {
    let d = document;
    let number = text(d, &["masterIdentifier", "value"]);
    let file = items(&d["identifier"])
        .iter()
        .find(|i| text(i, &["system"]).ends_with("/file"))
        .map(|i| text(i, &["value"]))
        .unwrap_or("");
    let parts: Vec<&Value> = items(&d["content"])
        .iter()
        .map(|c| &c["attachment"])
        .collect();
    let title = parts
        .iter()
        .map(|a| text(a, &["title"]))
        .find(|t| !t.is_empty())
        .unwrap_or("");
    let kind = &d["type"];
    let mut doc_type = cwe(kind);
    if doc_type.len() > 1 && doc_type[1][0].is_empty() {
        doc_type[1] = vec![title.to_string()];
    }
    let mut segments = vec![
        msh(
            env,
            &[
                "MDM",
                trigger,
                if trigger == "T02" {
                    "MDM_T02"
                } else {
                    "MDM_T01"
                },
            ],
        ),
        Seg::new("EVN").text(1, trigger).text(2, &dtm(&env.at)),
        pid(patient),
        match encounter {
            Some(e) => pv1(e),
            None => Seg::new("PV1").text(1, "1").text(2, "N"),
        },
        Seg::new("TXA")
            .text(1, "1")
            .reps(2, vec![doc_type])
            .text(
                3,
                if parts
                    .iter()
                    .all(|a| text(a, &["contentType"]).starts_with("text/"))
                {
                    "TX"
                } else {
                    "AP"
                },
            )
            .text(4, &dtm(text(d, &["date"])))
            .reps(9, author.map(xcn).into_iter().collect())
            .reps(10, authenticator.map(xcn).into_iter().collect())
            .comps(12, &[number])
            .comps(
                13,
                &[parent
                    .map(|p| text(p, &["masterIdentifier", "value"]))
                    .unwrap_or("")],
            )
            .text(16, file)
            .text(17, completion(text(d, &["docStatus"])))
            .reps(
                18,
                items(&d["securityLabel"]).iter().take(1).map(cwe).collect(),
            )
            .text(19, availability(text(d, &["status"])))
            .text(25, text(d, &["description"])),
    ];
    if trigger != "T11" {
        let mut n = 0;
        let mut obx = |kind: &str, value: Vec<Vec<String>>| {
            n += 1;
            Seg::new("OBX")
                .text(1, &n.to_string())
                .text(2, kind)
                .reps(5, vec![value])
                .text(11, "F")
        };
        for a in parts {
            let mime = text(a, &["contentType"]);
            let data = text(a, &["data"]);
            if data.is_empty() {
                continue;
            }
            let bytes = STANDARD.decode(data).unwrap_or_default();
            match (mime.starts_with("text/"), String::from_utf8(bytes)) {
                (true, Ok(body)) => {
                    for line in body.lines() {
                        segments.push(obx("TX", rep(&[line])));
                    }
                }
                _ => {
                    let (kind, subtype) = ed_type(mime);
                    segments.push(obx("ED", rep(&["", kind, &subtype, "Base64", data])));
                }
            }
        }
    }
    message(&segments, &env.delimiters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_documents_change_is_told_as_its_mdm_event() {
        let new = json!({"status": "current"});
        assert_eq!(trigger(None, &new), "T02");
        assert_eq!(trigger(Some(&new), &new), "T08");
        assert_eq!(
            trigger(
                None,
                &json!({"status": "current", "relatesTo": [{"code": "appends"}]})
            ),
            "T06"
        );
        assert_eq!(
            trigger(Some(&new), &json!({"status": "entered-in-error"})),
            "T11"
        );
        assert_eq!(ed_type("application/pdf"), ("AP", "PDF".to_string()));
        assert_eq!(
            ed_type("text/plain; charset=utf-8"),
            ("TEXT", "PLAIN".to_string())
        );
    }
}
