//! An HL7v2 message read into segments, fields, repetitions, components and subcomponents,
//! with the delimiters its own MSH declares (MSH-1 and MSH-2), escape sequences undone, any
//! segment terminator (`\r`, `\n`, `\r\n`) and the character set of MSH-18. Segments the
//! parser does not know (Z-segments included) are kept like any other.

use std::fmt;

/// What is wrong with a message that cannot be read at all (it gets an AR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Where: `MSH-2`, say.
    pub location: String,
    /// HL7 table 0357 code (100 segment sequence, 101 required field missing, 102 data type,
    /// 200 unsupported message type, 203 unsupported version...).
    pub code: &'static str,
    pub text: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.text)
    }
}

fn error(location: &str, code: &'static str, text: impl Into<String>) -> ParseError {
    ParseError {
        location: location.into(),
        code,
        text: text.into(),
    }
}

/// The delimiters of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: Option<char>,
    pub subcomponent: char,
}

impl Default for Delimiters {
    fn default() -> Self {
        Delimiters {
            field: '|',
            component: '^',
            repetition: '~',
            escape: Some('\\'),
            subcomponent: '&',
        }
    }
}

impl Delimiters {
    /// MSH-2 as it should be written back (`^~\&`).
    /// The delimiters a target wants, as MSH-1 and MSH-2 write them (`|^~\&`).
    pub fn from_encoding(text: &str) -> Result<Delimiters, String> {
        let field = text.chars().next().unwrap_or('|');
        delimiters(&format!("MSH{text}{field}")).map_err(|e| e.text)
    }

    pub fn encoding_characters(&self) -> String {
        let mut s = String::new();
        s.push(self.component);
        s.push(self.repetition);
        if let Some(e) = self.escape {
            s.push(e);
        }
        s.push(self.subcomponent);
        s
    }

    /// Text as it must appear inside a field: delimiters and the escape character escaped, line
    /// breaks as `\.br\` and other control characters (MLLP's frame bytes among them) as
    /// `\Xhh\`, so that nothing a sender wrote can end a field, a segment or a frame in what
    /// we send back. Without an escape character, such characters become spaces.
    pub fn escape_text(&self, text: &str) -> String {
        let Some(esc) = self.escape else {
            let is_delimiter = |c: char| {
                [
                    self.field,
                    self.component,
                    self.subcomponent,
                    self.repetition,
                ]
                .contains(&c)
            };
            return text
                .chars()
                .map(|c| {
                    if is_delimiter(c) || c.is_control() {
                        ' '
                    } else {
                        c
                    }
                })
                .collect();
        };
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            let code = match c {
                c if c == self.field => Some('F'),
                c if c == self.component => Some('S'),
                c if c == self.subcomponent => Some('T'),
                c if c == self.repetition => Some('R'),
                c if c == esc => Some('E'),
                _ => None,
            };
            match (code, c) {
                (Some(code), _) => {
                    out.push(esc);
                    out.push(code);
                    out.push(esc);
                }
                (None, '\r' | '\n') => {
                    out.push(esc);
                    out.push_str(".br");
                    out.push(esc);
                }
                (None, c) if c.is_ascii_control() => {
                    out.push(esc);
                    out.push_str(&format!("X{:02X}", c as u32));
                    out.push(esc);
                }
                (None, c) => out.push(c),
            }
        }
        out
    }
}

/// A field: its repetitions, each a list of components, each a list of subcomponents (all
/// unescaped). An empty field has no repetitions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Field(pub Vec<Vec<Vec<String>>>);

impl Field {
    pub fn is_empty(&self) -> bool {
        self.0
            .iter()
            .all(|r| r.iter().all(|c| c.iter().all(String::is_empty)))
    }

    /// The repetitions of the field.
    pub fn repetitions(&self) -> impl Iterator<Item = Rep<'_>> {
        self.0.iter().map(|r| Rep(r))
    }

    /// The first repetition (empty when there is none).
    pub fn first(&self) -> Rep<'_> {
        static EMPTY: Vec<Vec<String>> = Vec::new();
        Rep(self.0.first().unwrap_or(&EMPTY))
    }

    /// The first repetition's first component: the value of a simple field.
    pub fn value(&self) -> &str {
        self.first().get(1)
    }
}

/// One repetition of a field.
#[derive(Debug, Clone, Copy)]
pub struct Rep<'a>(&'a [Vec<String>]);

impl<'a> Rep<'a> {
    /// A repetition made of `components` (each a list of subcomponents): one datatype read as
    /// another, such as an NDL's CNN as an XCN.
    pub fn of(components: &'a [Vec<String>]) -> Self {
        Rep(components)
    }

    /// Component `n` (1-based), its first subcomponent; "" when absent.
    pub fn get(&self, n: usize) -> &'a str {
        self.sub(n, 1)
    }

    /// Subcomponent `s` of component `n` (both 1-based).
    pub fn sub(&self, n: usize, s: usize) -> &'a str {
        n.checked_sub(1)
            .and_then(|i| self.0.get(i))
            .and_then(|c| s.checked_sub(1).and_then(|j| c.get(j)))
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|c| c.iter().all(String::is_empty))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub id: String,
    /// Field 1 onwards, at index 0 (for MSH: MSH-1 is the field separator, MSH-2 the encoding
    /// characters, as single-value fields).
    fields: Vec<Field>,
}

impl Segment {
    /// Field `n` (1-based); an empty field when absent.
    pub fn field(&self, n: usize) -> &Field {
        static EMPTY: Field = Field(Vec::new());
        n.checked_sub(1)
            .and_then(|i| self.fields.get(i))
            .unwrap_or(&EMPTY)
    }

    /// Shorthand: component `c` of the first repetition of field `n`.
    pub fn get(&self, n: usize, c: usize) -> &str {
        self.field(n).first().get(c)
    }

    pub fn value(&self, n: usize) -> &str {
        self.field(n).value()
    }
}

#[derive(Debug, Clone)]
pub struct Message {
    pub delimiters: Delimiters,
    pub segments: Vec<Segment>,
}

/// MSH facts the ACK, the archive and the router need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    pub message_type: String,
    pub trigger: String,
    pub control_id: String,
    pub processing_id: String,
    pub version: String,
    pub accept_ack: String,
    pub application_ack: String,
}

impl Message {
    pub fn msh(&self) -> &Segment {
        &self.segments[0]
    }

    pub fn header(&self) -> Header {
        let msh = self.msh();
        // an HD is namespace^universal id^type; the namespace names it, else the universal id
        let hd = |n: usize| {
            let r = msh.field(n).first();
            match r.get(1) {
                "" => r.get(2).to_string(),
                ns => ns.to_string(),
            }
        };
        Header {
            sending_application: hd(3),
            sending_facility: hd(4),
            receiving_application: hd(5),
            receiving_facility: hd(6),
            message_type: msh.get(9, 1).to_string(),
            trigger: msh.get(9, 2).to_string(),
            control_id: msh.value(10).to_string(),
            processing_id: msh.value(11).to_string(),
            version: msh.get(12, 1).to_string(),
            accept_ack: msh.value(15).to_string(),
            application_ack: msh.value(16).to_string(),
        }
    }

    /// Every segment with this id, in order.
    pub fn all<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Segment> + 'a {
        self.segments.iter().filter(move |s| s.id == id)
    }

    /// The first segment with this id.
    pub fn first(&self, id: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }

    /// Which of the message's segments with its id `seg` is (1 for the first): ERR-2's
    /// sequence.
    pub fn occurrence(&self, seg: &Segment) -> usize {
        self.segments
            .iter()
            .filter(|s| s.id == seg.id)
            .position(|s| std::ptr::eq(s, seg))
            .map_or(1, |n| n + 1)
    }
}

/// Decode the bytes of one message: UTF-8 unless MSH-18 names ISO 8859-1 (or the bytes are not
/// UTF-8 at all, which legacy senders that leave MSH-18 empty often mean). A UTF-8 byte-order
/// mark is dropped.
pub fn decode(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let latin1 = |b: &[u8]| b.iter().map(|&c| c as char).collect::<String>();
    if charset_is_latin1(bytes) {
        return latin1(bytes);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => latin1(bytes),
    }
}

/// MSH-18 read from the raw bytes of the first segment (it is ASCII whatever follows).
fn charset_is_latin1(bytes: &[u8]) -> bool {
    if bytes.len() < 4 || !bytes.starts_with(b"MSH") {
        return false;
    }
    let sep = bytes[3];
    let end = bytes
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(bytes.len());
    // MSH-1 is the separator itself, so MSH-18 is the 17th piece after splitting
    let msh18 = bytes[..end].split(|&b| b == sep).nth(17).unwrap_or(b"");
    let first = msh18.split(|&b| b == b'~').next().unwrap_or(b"");
    matches!(first, b"8859/1" | b"ISO IR100" | b"ISO-8859-1")
}

/// Read a message (already decoded to text).
pub fn parse(text: &str) -> Result<Message, ParseError> {
    let text = text.trim_start_matches('\u{feff}');
    let lines: Vec<&str> = text
        .split(['\r', '\n'])
        .map(|l| l.trim_end_matches(['\u{0}', ' ']))
        .filter(|l| !l.trim().is_empty())
        .collect();
    let Some(first) = lines.first() else {
        return Err(error("MSH", "100", "the message is empty"));
    };
    if !first.starts_with("MSH") {
        return Err(error(
            "MSH",
            "100",
            format!(
                "a message must start with an MSH segment, not '{}'",
                first.chars().take(3).collect::<String>()
            ),
        ));
    }
    let delimiters = delimiters(first)?;
    let mut segments = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        // two messages in one frame: refused whole rather than the second one lost in silence
        if i > 0
            && line
                .strip_prefix("MSH")
                .is_some_and(|r| r.starts_with(delimiters.field))
        {
            return Err(error(
                "MSH",
                "100",
                format!(
                    "segment {} starts a second message: a frame carries one message; send each in a frame of its own",
                    i + 1
                ),
            ));
        }
        segments.push(segment(line, &delimiters, i == 0)?);
    }
    let msg = Message {
        delimiters,
        segments,
    };
    let h = msg.header();
    if h.message_type.is_empty() {
        return Err(error("MSH-9", "101", "MSH-9 (message type) is empty"));
    }
    if h.control_id.is_empty() {
        return Err(error(
            "MSH-10",
            "101",
            "MSH-10 (message control id) is empty",
        ));
    }
    if h.version.is_empty() {
        return Err(error("MSH-12", "101", "MSH-12 (version id) is empty"));
    }
    Ok(msg)
}

fn delimiters(msh: &str) -> Result<Delimiters, ParseError> {
    let mut chars = msh.chars().skip(3);
    let Some(field) = chars.next() else {
        return Err(error("MSH-1", "101", "MSH-1 (field separator) is missing"));
    };
    if field.is_alphanumeric() || field.is_whitespace() {
        return Err(error(
            "MSH-1",
            "102",
            format!("'{field}' cannot be the field separator"),
        ));
    }
    let mut enc: Vec<char> = chars.take_while(|&c| c != field).collect();
    // `^~\\&`: the escape character doubled, as a copy through a Java or C string literal
    // writes it (some senders' samples do); read as `^~\&`
    if enc.len() == 5 && enc[2] == enc[3] && enc[2] == '\\' {
        enc.remove(3);
    }
    // ^~\& , or with a fifth (v2.7 truncation) character, which we read as data
    if enc.len() < 4 || enc.len() > 5 {
        return Err(error(
            "MSH-2",
            "102",
            format!(
                "MSH-2 must hold the 4 encoding characters (component, repetition, escape, subcomponent), not '{}'",
                enc.iter().collect::<String>()
            ),
        ));
    }
    let mut seen = vec![field];
    for &c in &enc[..4] {
        if seen.contains(&c) || c.is_alphanumeric() || c.is_whitespace() {
            return Err(error(
                "MSH-2",
                "102",
                format!(
                    "MSH-2 '{}' repeats a delimiter or uses a letter, digit or space",
                    enc.iter().collect::<String>()
                ),
            ));
        }
        seen.push(c);
    }
    Ok(Delimiters {
        field,
        component: enc[0],
        repetition: enc[1],
        escape: Some(enc[2]),
        subcomponent: enc[3],
    })
}

fn segment(line: &str, d: &Delimiters, is_msh: bool) -> Result<Segment, ParseError> {
    let mut parts = line.split(d.field);
    let id = parts.next().unwrap_or_default().trim().to_string();
    let valid_id = id.len() == 3
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if !valid_id {
        return Err(error(
            &id,
            "100",
            format!(
                "'{}' is not a segment (a segment starts with a 3-character id)",
                line.chars().take(20).collect::<String>()
            ),
        ));
    }
    let mut fields = Vec::new();
    if is_msh {
        let enc = parts.next().unwrap_or_default();
        fields.push(Field(vec![vec![vec![d.field.to_string()]]]));
        fields.push(Field(vec![vec![vec![enc.to_string()]]]));
    }
    for raw in parts {
        fields.push(field(raw, d));
    }
    Ok(Segment { id, fields })
}

fn field(raw: &str, d: &Delimiters) -> Field {
    if raw.is_empty() {
        return Field::default();
    }
    Field(
        raw.split(d.repetition)
            .map(|rep| {
                rep.split(d.component)
                    .map(|comp| comp.split(d.subcomponent).map(|s| unescape(s, d)).collect())
                    .collect()
            })
            .collect(),
    )
}

/// Undo escape sequences in one subcomponent: delimiters (`\F\ \S\ \T\ \R\ \E\`), hex data
/// (`\Xhh..\`), line breaks (`\.br\`, `\.sp\`); highlighting and character-set switches are
/// dropped. An escape character without its closing one is kept as text.
pub fn unescape(s: &str, d: &Delimiters) -> String {
    let Some(esc) = d.escape else {
        return s.to_string();
    };
    if !s.contains(esc) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find(esc) {
        out.push_str(&rest[..start]);
        let after = &rest[start + esc.len_utf8()..];
        let Some(end) = after.find(esc) else {
            out.push_str(&rest[start..]);
            return out;
        };
        let seq = &after[..end];
        match seq {
            "F" => out.push(d.field),
            "S" => out.push(d.component),
            "T" => out.push(d.subcomponent),
            "R" => out.push(d.repetition),
            "E" => out.push(esc),
            ".br" | ".sp" => out.push('\n'),
            "H" | "N" => {}
            _ if seq.starts_with('X') && seq.len() > 1 => {
                let hex = &seq[1..];
                let bytes: Option<Vec<u8>> = (0..hex.len())
                    .step_by(2)
                    .map(|i| {
                        hex.get(i..i + 2)
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                    })
                    .collect();
                match bytes {
                    Some(b) => out.push_str(&decode(&b)),
                    None => {
                        out.push(esc);
                        out.push_str(seq);
                        out.push(esc);
                    }
                }
            }
            // character set switches (\C..\, \M..\), \Z..\ and formatting (\.in\ ...):
            // nothing to show
            _ if seq.starts_with(['C', 'M', 'Z', '.']) => {}
            _ => {
                out.push(esc);
                out.push_str(seq);
                out.push(esc);
            }
        }
        rest = &after[end + esc.len_utf8()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
