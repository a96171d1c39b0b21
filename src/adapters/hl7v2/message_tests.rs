use super::*;

const ADT: &str = "MSH|^~\\&|REG|GOOD HEALTH^1.2.3^ISO|EMRSYNC|HUB|20260101120000||ADT^A01^ADT_A01|MSG1|P|2.5.1\r\
PID|1||12345^^^GH&1.2.3&ISO^MR~999-99-9999^^^SSA^SS||Everyman^Adam^A~Adam^^^^^^N||19800101|M\r\
ZXY|custom|data\r";

#[test]
fn reads_segments_fields_repetitions_components_and_subcomponents() {
    let m = parse(ADT).unwrap();
    let h = m.header();
    assert_eq!(
        (h.message_type.as_str(), h.trigger.as_str()),
        ("ADT", "A01")
    );
    assert_eq!(h.control_id, "MSG1");
    assert_eq!(h.sending_facility, "GOOD HEALTH");
    assert_eq!(h.version, "2.5.1");
    let pid = m.first("PID").unwrap();
    let ids: Vec<Rep> = pid.field(3).repetitions().collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0].get(1), "12345");
    assert_eq!(ids[0].sub(4, 1), "GH");
    assert_eq!(ids[0].sub(4, 2), "1.2.3");
    assert_eq!(ids[1].get(5), "SS");
    assert_eq!(pid.get(5, 2), "Adam");
    assert_eq!(pid.value(7), "19800101");
    // an absent field, component or subcomponent is empty, never a panic
    assert_eq!(pid.get(40, 3), "");
    assert_eq!(ids[0].sub(9, 9), "");
    // Z-segments are kept
    assert_eq!(m.first("ZXY").unwrap().value(2), "data");
    // MSH-1 and MSH-2 are what the sender declared
    assert_eq!(m.msh().value(1), "|");
    assert_eq!(m.msh().value(2), "^~\\&");
}

#[test]
fn any_segment_terminator_and_a_byte_order_mark() {
    for sep in ["\r", "\n", "\r\n"] {
        let text = format!("\u{feff}{}", ADT.replace('\r', sep));
        let m = parse(&text).unwrap();
        assert_eq!(m.segments.len(), 3, "terminator {sep:?}");
        assert_eq!(m.first("PID").unwrap().value(8), "M");
    }
}

#[test]
fn the_messages_own_delimiters() {
    let text = "MSH*:!$@*APP*FAC*R*RF*2026**ADT:A08*X9*P*2.4\rPID*1**77:::AUTH:MR!88:::AUTH:PI**Doe@Jr:John\r";
    let m = parse(text).unwrap();
    assert_eq!(m.delimiters.field, '*');
    assert_eq!(m.header().trigger, "A08");
    let pid = m.first("PID").unwrap();
    let ids: Vec<Rep> = pid.field(3).repetitions().collect();
    assert_eq!(ids[1].get(1), "88");
    assert_eq!(pid.field(5).first().sub(1, 2), "Jr");
}

#[test]
fn escape_sequences() {
    let d = Delimiters::default();
    assert_eq!(unescape(r"A\T\E", &d), "A&E");
    assert_eq!(unescape(r"a\F\b\S\c\R\d\E\e", &d), r"a|b^c~d\e");
    assert_eq!(unescape(r"line1\.br\line2", &d), "line1\nline2");
    assert_eq!(unescape(r"caf\XC3A9\", &d), "café");
    assert_eq!(unescape(r"\H\bold\N\", &d), "bold");
    // an escape character never closed stays as it was
    assert_eq!(unescape(r"C:\temp", &d), r"C:\temp");
    // and back: text with delimiters in it survives a round trip
    let text = "a|b^c~d\\e&f";
    assert_eq!(unescape(&d.escape_text(text), &d), text);
}

#[test]
fn latin1_by_msh18_or_when_not_utf8() {
    let mut bytes = b"MSH|^~\\&|A|B|C|D|2026||ADT^A08|1|P|2.5|||||||8859/1\rPID|1||1||M".to_vec();
    bytes.extend_from_slice(b"\xfcller\r");
    let m = parse(&decode(&bytes)).unwrap();
    assert_eq!(m.first("PID").unwrap().value(5), "M\u{fc}ller");
    // UTF-8 is the default
    let m = parse(&decode(
        "MSH|^~\\&|A|B|C|D|2026||ADT^A08|1|P|2.5\rPID|1||1||Sebastián\r".as_bytes(),
    ))
    .unwrap();
    assert_eq!(m.first("PID").unwrap().value(5), "Sebastián");
}

#[test]
fn malformed_headers_are_refused_with_the_place() {
    let cases = [
        ("", "MSH"),
        ("PID|1||1\r", "MSH"),
        ("MSH|\r", "MSH-2"),
        ("MSH|@%\\&$?!|A|B\r", "MSH-2"),
        ("MSH|^&&^|A|B|C|D|2026||ADT^A01|1|P|2.5\r", "MSH-2"),
        ("MSH|^~\\&|A|B|C|D|2026|||1|P|2.5\r", "MSH-9"),
        ("MSH|^~\\&|A|B|C|D|2026||ADT^A01||P|2.5\r", "MSH-10"),
        ("MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P\r", "MSH-12"),
        (
            "MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5\rthis is not a segment\r",
            "th",
        ),
    ];
    for (text, location) in cases {
        let e = parse(text).unwrap_err();
        assert!(
            e.location.starts_with(location),
            "{text:?}: {e:?} (expected {location})"
        );
    }
}

#[test]
fn a_doubled_escape_character_is_read_as_one() {
    let m = parse("MSH|^~\\\\&|A|B|C|D|2026||ADT^A01|1|P|2.5\rPID|1||1||A\\T\\B\r").unwrap();
    assert_eq!(m.delimiters.escape, Some('\\'));
    assert_eq!(m.first("PID").unwrap().value(5), "A&B");
}
