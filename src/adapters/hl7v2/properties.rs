//! Property tests of what faces the network: whatever bytes arrive, the framer, the decoder,
//! the parser and the maps return (an answer or an error) and never panic; framing and
//! escaping give back exactly what was put in.

use super::map;
use super::message::{Delimiters, decode, parse, unescape};
use super::mllp::{END, Frame, Framer, START, frame};
use proptest::prelude::*;

/// Text that looks enough like HL7v2 to get past the header: an MSH with varied delimiters,
/// then segments of fields drawn from delimiter-heavy alphabets.
fn hl7ish() -> impl Strategy<Value = String> {
    let field = || proptest::string::string_regex("[A-Z0-9^~&|\\\\ .+-]{0,12}").unwrap();
    let segment = (
        prop::sample::select(vec![
            "PID", "PV1", "OBR", "OBX", "ORC", "RXA", "RXE", "RXR", "SCH", "TQ1", "AIS", "AIL",
            "AIP", "TXA", "MRG", "AL1", "DG1", "NK1", "NTE", "ZZZ",
        ]),
        prop::collection::vec(field(), 0..30),
    )
        .prop_map(|(id, fields)| format!("{id}|{}", fields.join("|")));
    let msh9 = prop::sample::select(vec![
        "ADT^A01", "ADT^A08", "ADT^A40", "ORU^R01", "ORM^O01", "OML^O21", "RDE^O11", "RAS^O17",
        "VXU^V04", "SIU^S12", "SIU^S15", "MDM^T02", "XYZ^Q01", "",
    ]);
    let terminator = prop::sample::select(vec!["\r", "\n", "\r\n"]);
    (
        msh9,
        prop::collection::vec(segment, 0..12),
        terminator,
        field(),
    )
        .prop_map(
            |(msh9, segments, t, control): (&str, Vec<String>, &str, String)| {
                let mut text = format!("MSH|^~\\&|A|F|R|RF|20240101||{msh9}|{control}|P|2.5{t}");
                for s in segments {
                    text.push_str(&s);
                    text.push_str(t);
                }
                text
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let text = decode(&bytes);
        if let Ok(msg) = parse(&text) {
            let _ = map::map(&msg, b"secret", Default::default());
        }
        let mut framer = Framer::new(256);
        let _ = framer.push(&bytes);
    }

    #[test]
    fn hl7_like_messages_never_panic_the_parser_or_the_maps(text in hl7ish()) {
        if let Ok(msg) = parse(&text) {
            let _ = msg.header();
            let _ = map::map(&msg, b"secret", Default::default());
        }
    }

    #[test]
    fn a_framed_message_comes_out_whole_however_the_bytes_are_split(
        body in "[ -~\r]{1,300}",
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let bytes = frame(&body);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len())).collect();
        points.sort_unstable();
        let mut framer = Framer::new(1024);
        let mut got = Vec::new();
        let mut from = 0;
        for p in points.into_iter().chain([bytes.len()]) {
            got.extend(framer.push(&bytes[from..p]));
            from = p;
        }
        prop_assert_eq!(got, vec![Frame::Message(body.into_bytes())]);
        prop_assert_eq!(framer.pending(), 0);
        prop_assert_eq!((bytes[0], bytes[bytes.len() - 2]), (START, END));
    }

    #[test]
    fn escaped_text_unescapes_to_itself(text in "[ -~]{0,80}") {
        let d = Delimiters::default();
        prop_assert_eq!(unescape(&d.escape_text(&text), &d), text);
    }
}
