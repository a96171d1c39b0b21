//! How deeply a resource may nest, checked before any recursive code walks it.
//!
//! fhirbolt's (de)serialisers, the validator and serde_json all recurse once per level of a
//! document. A request of a few KB can nest thousands of levels (`<extension>` in
//! `<extension>` ...) and, unchecked, overflows the thread's stack: the process aborts, taking
//! the HTTP API, the HL7v2 feed and deliveries with it. So every document from outside is
//! measured first, without recursion, and refused past [`MAX_DEPTH`]; the recursive work on a
//! document within the bound runs with stack to spare ([`with_stack`]), whatever thread it is on.

use serde_json::Value;

/// The deepest nesting a stored resource (or a Bundle of them) may have, in JSON levels: every
/// object and array counts one, the resource itself is level 1. Real resources stay far below
/// (a QuestionnaireResponse with ten levels of nested items inside a transaction Bundle is
/// about 45), and serde_json, which reads every stored resource back, refuses 128.
pub const MAX_DEPTH: usize = 100;

/// A request body may nest a little deeper than one resource: a Bundle holds its resources
/// three levels down (`entry`, its item, `resource`), and each resource in it is held to
/// [`MAX_DEPTH`] when it is validated. Still below serde_json's 128, so every body we accept
/// can be read back.
pub const MAX_BODY_DEPTH: usize = MAX_DEPTH + 10;

/// XML elements may nest as deep as a body's JSON levels: an element is at least one JSON level
/// (arrays add more), so an XML document within this bound can still turn out too deep as
/// JSON, which [`check_body`] then refuses.
pub const MAX_XML_DEPTH: usize = MAX_BODY_DEPTH;

/// Stack that one level of recursive work takes at most, measured on fhirbolt (its XML reader
/// and writer and its typed JSON round trip are the deepest frames): about 19 KB per JSON level
/// in a debug build and 1.5 KB in release. Rounded up with room for the callers' own frames.
const STACK_PER_LEVEL: usize = if cfg!(debug_assertions) { 32 } else { 4 } * 1024;

/// The nesting depth of a JSON value (a scalar is 0, `{}` is 1), measured without recursion.
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 1)];
    while let Some((v, level)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Object(map) => Box::new(map.values()),
            Value::Array(items) => Box::new(items.iter()),
            _ => continue,
        };
        deepest = deepest.max(level);
        stack.extend(children.map(|c| (c, level + 1)));
    }
    deepest
}

/// Refuse a resource deeper than [`MAX_DEPTH`]; else give its depth.
pub fn check(value: &Value) -> Result<usize, String> {
    within(value, MAX_DEPTH, "resource")
}

/// Refuse a request body deeper than [`MAX_BODY_DEPTH`]; else give its depth.
pub fn check_body(value: &Value) -> Result<usize, String> {
    within(value, MAX_BODY_DEPTH, "document")
}

fn within(value: &Value, max: usize, what: &str) -> Result<usize, String> {
    let d = depth(value);
    if d > max {
        return Err(format!(
            "the {what} nests {d} levels deep; at most {max} are accepted"
        ));
    }
    Ok(d)
}

/// The element depth of an XML document, read as a stream of tags (no recursion, nothing
/// built), stopping at the first level past [`MAX_XML_DEPTH`]. Malformed XML is left for the
/// real parser to report: this only measures.
pub fn check_xml(bytes: &[u8]) -> Result<usize, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(bytes);
    reader.check_end_names(false);
    let (mut level, mut deepest) = (0usize, 0usize);
    loop {
        match reader.read_event() {
            Ok(Event::Start(_)) => {
                level += 1;
                if level > MAX_XML_DEPTH {
                    return Err(format!(
                        "the XML document nests elements more than {MAX_XML_DEPTH} levels deep"
                    ));
                }
                deepest = deepest.max(level);
            }
            Ok(Event::Empty(_)) => deepest = deepest.max(level + 1),
            Ok(Event::End(_)) => level = level.saturating_sub(1),
            Ok(Event::Eof) | Err(_) => return Ok(deepest.min(MAX_XML_DEPTH)),
            Ok(_) => {}
        }
    }
}

/// Run `f`, recursive work over a document `depth` levels deep, with enough stack for it: on
/// the current stack when it has room (the usual case: resources nest about ten levels), else
/// on a fresh segment (stacker, as rustc does for deep expressions). Actix's workers and the
/// blocking pools run on 2 MiB stacks, which a debug build's fhirbolt exhausts at about 100
/// levels.
pub fn with_stack<R>(depth: usize, f: impl FnOnce() -> R) -> R {
    let need = (depth + 8) * STACK_PER_LEVEL;
    stacker::maybe_grow(need, need * 2, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `n` extensions, each inside the one before: the shape of the reported crash.
    pub fn nested_extensions(n: usize) -> Value {
        let mut v = json!({"url": "http://example.org/x", "valueString": "x"});
        for _ in 1..n {
            v = json!({"url": "http://example.org/x", "extension": [v]});
        }
        json!({"resourceType": "Patient", "extension": [v]})
    }

    #[test]
    fn depth_counts_objects_and_arrays() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({})), 1);
        assert_eq!(depth(&json!({"a": [1]})), 2);
        assert_eq!(depth(&json!({"a": [{"b": {}}], "c": 1})), 4);
        // Patient (1), extension array (2), extension (3), then 2 for each one inside
        assert_eq!(depth(&nested_extensions(1)), 3);
        assert_eq!(depth(&nested_extensions(10)), 21);
    }

    #[test]
    fn check_refuses_past_the_limit() {
        let n = (MAX_DEPTH - 1) / 2; // depth 2n+1 <= MAX_DEPTH
        assert_eq!(check(&nested_extensions(n)), Ok(2 * n + 1));
        let err = check(&nested_extensions(n + 1)).unwrap_err();
        assert!(err.contains("at most 100"), "{err}");
    }

    #[test]
    fn xml_depth_is_measured_without_building_anything() {
        let xml = |n: usize| {
            let mut s = String::from(r#"<Patient xmlns="http://hl7.org/fhir">"#);
            s.push_str(&r#"<extension url="u">"#.repeat(n));
            s.push_str(r#"<valueString value="x"/>"#);
            s.push_str(&"</extension>".repeat(n));
            s + "</Patient>"
        };
        assert_eq!(check_xml(xml(3).as_bytes()), Ok(5));
        assert!(check_xml(xml(MAX_XML_DEPTH - 2).as_bytes()).is_ok());
        assert!(check_xml(xml(MAX_XML_DEPTH).as_bytes()).is_err());
        // 100,000 levels: refused at the 101st, long before the end
        assert!(check_xml(xml(100_000).as_bytes()).is_err());
        // unclosed or garbled XML is measured, not judged
        assert_eq!(check_xml(b"<a><b>"), Ok(2));
    }

    #[test]
    fn deep_work_gets_a_stack_of_its_own() {
        // A document at the limit, through every recursive walk, on a 256 KiB thread: without
        // `with_stack` fhirbolt overflows it in debug and release builds alike.
        use crate::fhir::{model, validate};
        let n = (MAX_DEPTH - 1) / 2;
        let doc = nested_extensions(n);
        let back = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let mut v = doc.clone();
                assert!(validate::validate_resource(&mut v, false).is_valid());
                let xml = model::json_to_xml(model::canonical_json(doc).unwrap()).unwrap();
                assert_eq!(xml.matches("<extension").count(), n);
                model::xml_to_json(xml.as_bytes()).unwrap()
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert_eq!(back, nested_extensions(n));
    }
}
