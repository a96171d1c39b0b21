//! HL7v2 batch files (v2.5.1 chapter 2.10.3): messages one after another, optionally wrapped
//! in a file header and trailer (FHS, FTS) and batches (BHS, BTS), as systems without an MLLP
//! link drop them in a folder. `split` cuts a file into its messages, each then handled like
//! one off the wire (`ingest::handle`): the same archive, duplicate check, exception queue.
//!
//! Files come from outside: their size is bounded by the caller before they are read, the
//! number of messages and each message's size here. Segments are ended by CR, LF or CRLF
//! (files are often edited on other systems); empty lines are skipped.

/// What a batch file holds: its messages in order, and what its trailers say that does not
/// match what was found (a file cut short in transfer has fewer messages than its BTS says).
#[derive(Debug, Default)]
pub struct Batch {
    pub messages: Vec<Part>,
    pub warnings: Vec<String>,
}

/// One message of a batch: its bytes (segments ended by CR, as on the wire) and the line of
/// the file its MSH is on (1-based), for the file's report.
#[derive(Debug)]
pub struct Part {
    pub line: usize,
    pub bytes: Vec<u8>,
}

/// Bounds on one file's work.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_messages: usize,
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_messages: 100_000,
            max_message_bytes: 10 * 1024 * 1024,
        }
    }
}

/// A batch being read: the batch open now (its BHS line and the messages since).
struct Open {
    line: usize,
    messages: usize,
}

/// Cut `bytes` into messages; an error (with the line) when the file is not HL7v2 at all, or
/// is beyond `limits`: such a file is refused whole, nothing of it applied.
pub fn split(bytes: &[u8], limits: Limits) -> Result<Batch, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut out = Batch::default();
    let mut current: Option<Part> = None;
    let mut batch: Option<Open> = None;
    let (mut batches, mut file_trailer) = (0usize, None::<(usize, String)>);
    for (n, segment) in lines_of(bytes).enumerate() {
        let lines = n + 1;
        if segment.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let id = segment.get(..3).unwrap_or(segment);
        match id {
            b"MSH" => {
                finish(&mut out, current.take());
                if out.messages.len() >= limits.max_messages {
                    return Err(format!(
                        "more than {} messages in one file",
                        limits.max_messages
                    ));
                }
                if let Some(b) = batch.as_mut() {
                    b.messages += 1;
                }
                current = Some(Part {
                    line: lines,
                    bytes: Vec::new(),
                });
            }
            b"FHS" | b"BHS" | b"BTS" | b"FTS" => {
                finish(&mut out, current.take());
                let count = count_field(segment);
                match id {
                    b"BHS" => {
                        batches += 1;
                        batch = Some(Open {
                            line: lines,
                            messages: 0,
                        });
                    }
                    b"BTS" => {
                        let found = batch.take().map(|b| (b.line, b.messages));
                        check_trailer(&mut out, "BTS-1", "message", count, found, lines);
                    }
                    b"FTS" => file_trailer = Some((lines, count)),
                    _ => {}
                }
                continue;
            }
            _ if current.is_none() => {
                let shown = String::from_utf8_lossy(id);
                return Err(format!(
                    "line {lines}: a '{shown}' segment before any MSH: not an HL7v2 message or batch file"
                ));
            }
            _ => {}
        }
        let part = current.as_mut().expect("a segment inside a message");
        if part.bytes.len() + segment.len() + 1 > limits.max_message_bytes {
            return Err(format!(
                "the message at line {} is larger than {} bytes",
                part.line, limits.max_message_bytes
            ));
        }
        part.bytes.extend_from_slice(segment);
        part.bytes.push(b'\r');
    }
    finish(&mut out, current.take());
    if let Some(b) = batch {
        out.warnings.push(format!(
            "the batch opened at line {} has no BTS: the file may have been cut short",
            b.line
        ));
    }
    if let Some((line, count)) = file_trailer {
        let found = (batches > 0).then_some((0, batches));
        check_trailer(&mut out, "FTS-1", "batch", count, found, line);
    }
    if out.messages.is_empty() {
        return Err("no MSH segment: the file holds no message".into());
    }
    Ok(out)
}

/// The file's lines, each ended by CR, LF or CRLF (one break, not two).
fn lines_of(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(rest.len());
        let line = &rest[..end];
        let skip = match rest.get(end..end + 2) {
            Some(b"\r\n") => 2,
            _ => (end < rest.len()) as usize,
        };
        rest = &rest[end + skip..];
        Some(line)
    })
}

fn finish(out: &mut Batch, part: Option<Part>) {
    if let Some(p) = part {
        out.messages.push(p);
    }
}

/// The first field after the segment id (BTS-1, FTS-1: a count), as text.
fn count_field(segment: &[u8]) -> String {
    let Some(&sep) = segment.get(3) else {
        return String::new();
    };
    let field = segment[4..].split(|&b| b == sep).next().unwrap_or(b"");
    String::from_utf8_lossy(field).trim().to_string()
}

/// A trailer's count (`field`, of `what`s) against what was found: a warning when they differ.
fn check_trailer(
    out: &mut Batch,
    field: &str,
    what: &str,
    count: String,
    found: Option<(usize, usize)>,
    line: usize,
) {
    if count.is_empty() {
        return;
    }
    let found = found.map(|(_, n)| n).unwrap_or(0);
    match count.parse::<usize>() {
        Ok(said) if said == found => {}
        Ok(said) => out.warnings.push(format!(
            "line {line}: {field} says {said} {what}(s), the file holds {found}"
        )),
        Err(_) => out
            .warnings
            .push(format!("line {line}: {field} '{count}' is not a count")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msh(id: &str) -> String {
        format!(
            "MSH|^~\\&|LAB|HOSP|HUB|HOSP|20261207101500||ADT^A04|{id}|P|2.5.1\rPID|1||{id}^^^HOSP^MR||Doe^Jane\r"
        )
    }

    #[test]
    fn wrapped_batches_split_into_their_messages_with_counts_checked() {
        let file = format!(
            "FHS|^~\\&|LAB\nBHS|^~\\&|LAB\n{}{}BTS|2\nBHS|^~\\&\n{}BTS|1\nFTS|2\n",
            msh("A1"),
            msh("A2"),
            msh("A3")
        );
        let b = split(file.as_bytes(), Limits::default()).unwrap();
        assert_eq!(b.messages.len(), 3);
        assert!(b.warnings.is_empty(), "{:?}", b.warnings);
        assert!(b.messages[0].bytes.starts_with(b"MSH|"));
        assert!(String::from_utf8_lossy(&b.messages[2].bytes).contains("|A3|"));
        // each message is its own segments, ended by CR as on the wire
        assert_eq!(
            b.messages[1].bytes.iter().filter(|&&c| c == b'\r').count(),
            2
        );
        assert_eq!(b.messages[0].line, 3);
    }

    #[test]
    fn a_batch_cut_short_is_said() {
        let file = format!("BHS|^~\\&\r{}{}BTS|3\r", msh("A1"), msh("A2"));
        let b = split(file.as_bytes(), Limits::default()).unwrap();
        assert_eq!(b.messages.len(), 2);
        assert_eq!(b.warnings.len(), 1);
        assert!(b.warnings[0].contains("says 3"), "{:?}", b.warnings);
        let open = format!("BHS|^~\\&\r{}", msh("A1"));
        let b = split(open.as_bytes(), Limits::default()).unwrap();
        assert!(b.warnings[0].contains("no BTS"), "{:?}", b.warnings);
    }

    #[test]
    fn crlf_lines_and_bare_messages_are_read() {
        let file = msh("A1").replace('\r', "\r\n") + "\r\n\r\n" + &msh("A2").replace('\r', "\n");
        let b = split(file.as_bytes(), Limits::default()).unwrap();
        assert_eq!(b.messages.len(), 2);
        assert!(!b.messages[0].bytes.contains(&b'\n'));
    }

    #[test]
    fn what_is_not_hl7v2_or_too_much_is_refused_whole() {
        let e = split(b"id,name\n1,Jane\n", Limits::default()).unwrap_err();
        assert!(e.contains("line 1") && e.contains("'id,'"), "{e}");
        assert!(split(b"FHS|^~\\&\rFTS|0\r", Limits::default()).is_err());
        let many = msh("A1").repeat(4);
        let limits = Limits {
            max_messages: 3,
            ..Limits::default()
        };
        assert!(
            split(many.as_bytes(), limits)
                .unwrap_err()
                .contains("more than 3")
        );
        let limits = Limits {
            max_message_bytes: 40,
            ..Limits::default()
        };
        assert!(
            split(many.as_bytes(), limits)
                .unwrap_err()
                .contains("larger than 40")
        );
    }

    proptest! {
        // any bytes: messages or a reason, never a panic; never more than the limits allow
        #[test]
        fn hostile_bytes_are_split_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let limits = Limits { max_messages: 5, max_message_bytes: 256 };
            if let Ok(b) = split(&bytes, limits) {
                prop_assert!(!b.messages.is_empty() && b.messages.len() <= 5);
                prop_assert!(b.messages.iter().all(|m| m.bytes.len() <= 256 && m.bytes.starts_with(b"MSH")));
            }
        }

        // messages written as a batch come back as they were, however its lines end
        #[test]
        fn a_batch_of_messages_comes_back_whole(n in 1usize..20, crlf in any::<bool>(), wrap in any::<bool>()) {
            let messages: Vec<String> = (0..n).map(|i| msh(&format!("M{i}"))).collect();
            let mut file = messages.concat();
            if wrap {
                file = format!("FHS|^~\\&\rBHS|^~\\&\r{file}BTS|{n}\rFTS|1\r");
            }
            if crlf {
                file = file.replace('\r', "\r\n");
            }
            let b = split(file.as_bytes(), Limits::default()).unwrap();
            prop_assert!(b.warnings.is_empty());
            let back: Vec<String> = b.messages.iter().map(|m| String::from_utf8(m.bytes.clone()).unwrap()).collect();
            prop_assert_eq!(back, messages);
        }
    }
}
