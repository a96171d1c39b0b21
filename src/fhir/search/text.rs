//! Full-text search: `_text` finds words in a resource's narrative (`text.div`), `_content` in
//! all of its text (the narrative and every string element). A resource's text is kept as
//! words ([`TextEntry`]): lower case, accents removed, split at every character that is not a
//! letter or a digit, the way both backends' full-text indexes (SQLite FTS5, PostgreSQL
//! `tsvector`) then read it, so that the two find the same resources.
//!
//! The query syntax is the simple one the spec suggests and search engines use: words are all
//! required, `"quoted words"` are a phrase, `OR` between terms offers alternatives, `-word`
//! excludes, `word*` is a prefix; commas separate alternatives as in any FHIR parameter.

use super::index::normalize;
use super::query::{QueryError, split_unescaped};
use serde_json::Value;

/// Words kept of one resource's narrative, and of the rest of its text: a bound on the index
/// a large document (a long report, a pasted note) may add, far above what a search needs.
const MAX_CHARS: usize = 64 * 1024;

/// Bounds on one `_text`/`_content` value: its length and the terms it tests.
const MAX_QUERY_CHARS: usize = 512;
const MAX_QUERY_TERMS: usize = 16;

/// String elements that are not text a person would search for: identifiers of code systems,
/// extensions and profiles, attachments' base64, and what `meta` says about the record.
const NOT_TEXT: &[&str] = &["system", "url", "data", "meta", "div", "resourceType", "id"];

/// The words of a resource kept by the full-text index, each a space-separated list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextEntry {
    /// The narrative's words (`text.div`, tags removed).
    pub narrative: String,
    /// The words of every other string element, in document order.
    pub content: String,
}

impl TextEntry {
    pub fn is_empty(&self) -> bool {
        self.narrative.is_empty() && self.content.is_empty()
    }
}

/// The words of `text`: normalised (lower case, no accents), split at whatever is not a letter
/// or a digit.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        // (lower-casing may add a mark back: "İ" is "i" and a combining dot)
        .map(|w| {
            normalize(w)
                .chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
        })
        // a letter whose decomposition is only marks leaves nothing
        .filter(|w| !w.is_empty())
}

/// The text of `resource` the full-text index keeps.
pub fn entry(resource: &Value) -> TextEntry {
    let narrative = resource
        .pointer("/text/div")
        .and_then(Value::as_str)
        .map(|div| joined(words(&xhtml_text(div))))
        .unwrap_or_default();
    let mut content = String::new();
    // depth-first in document order, without recursion (the depth was bounded on the way in,
    // but nothing here needs the stack)
    // (the narrative's own elements are not content: its status says how it was written)
    let mut stack: Vec<&Value> = match resource {
        Value::Object(fields) => fields
            .iter()
            .rev()
            .filter(|(k, _)| k.as_str() != "text" && !NOT_TEXT.contains(&k.as_str()))
            .map(|(_, v)| v)
            .collect(),
        _ => Vec::new(),
    };
    while let Some(v) = stack.pop() {
        if content.len() >= MAX_CHARS {
            break;
        }
        match v {
            Value::String(s) => {
                for w in words(s) {
                    if !content.is_empty() {
                        content.push(' ');
                    }
                    content.push_str(&w);
                }
            }
            Value::Array(items) => stack.extend(items.iter().rev()),
            Value::Object(fields) => stack.extend(
                fields
                    .iter()
                    .rev()
                    .filter(|(k, _)| !NOT_TEXT.contains(&k.as_str()))
                    .map(|(_, v)| v),
            ),
            _ => {}
        }
    }
    TextEntry {
        narrative,
        content: cut(content),
    }
}

fn joined(words: impl Iterator<Item = String>) -> String {
    let mut out = String::new();
    for w in words {
        if out.len() >= MAX_CHARS {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&w);
    }
    out
}

/// `s` cut at the last word boundary within [`MAX_CHARS`].
fn cut(mut s: String) -> String {
    if s.len() > MAX_CHARS {
        let end = s[..MAX_CHARS].rfind(' ').unwrap_or(0);
        s.truncate(end);
    }
    s
}

/// The character data of an XHTML fragment, entities decoded; what is not well-formed is read
/// as text with the tags dropped (the narrative was checked on the way in; this never fails).
fn xhtml_text(div: &str) -> String {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(div);
    reader.check_end_names(false);
    let mut out = String::new();
    loop {
        match reader.read_event() {
            Ok(Event::Text(t)) => match t.unescape() {
                Ok(text) => out.push_str(&text),
                Err(_) => out.push_str(&String::from_utf8_lossy(&t)),
            },
            Ok(Event::CData(t)) => out.push_str(&String::from_utf8_lossy(&t)),
            // tags separate words: `<td>a</td><td>b</td>` is "a b", not "ab"
            Ok(Event::Start(_) | Event::End(_) | Event::Empty(_)) => out.push(' '),
            Ok(Event::Eof) => return out,
            Err(_) => return without_tags(div),
            Ok(_) => {}
        }
        if out.len() > MAX_CHARS * 2 {
            return out;
        }
    }
}

fn without_tags(div: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in div.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Which text a query searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    /// `_text`: the narrative.
    Narrative,
    /// `_content`: all of the resource's text.
    Content,
}

/// A term: one word or a phrase, perhaps ending in a prefix, perhaps excluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub words: Vec<String>,
    /// The last word is a prefix (`diab*`).
    pub prefix: bool,
    /// `-term`: resources with it are left out.
    pub negate: bool,
}

/// A full-text query: any one of the alternatives, each all of its terms (at least one of
/// which is not excluded: "everything except" is not a text search).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextQuery {
    pub field: TextField,
    pub any_of: Vec<Vec<Term>>,
}

impl TextQuery {
    /// Parse the value of `_text` or `_content` (`name`, for the messages).
    pub fn parse(name: &str, field: TextField, value: &str) -> Result<TextQuery, QueryError> {
        let err = |m: String| Err(QueryError::new(format!("{name}: {m}")));
        if value.chars().count() > MAX_QUERY_CHARS {
            return err(format!("at most {MAX_QUERY_CHARS} characters are accepted"));
        }
        if value.contains(['(', ')']) {
            return err(
                "parentheses are not supported: write alternatives with OR (or commas) and \
                 words all required side by side"
                    .into(),
            );
        }
        let mut any_of: Vec<Vec<Term>> = Vec::new();
        for alternative in split_unescaped(value, ',') {
            let mut group: Vec<Term> = Vec::new();
            for piece in pieces(&alternative) {
                match piece {
                    Piece::Or => {
                        if !group.is_empty() {
                            any_of.push(std::mem::take(&mut group));
                        }
                    }
                    Piece::Term(t) => group.push(t),
                }
            }
            if !group.is_empty() {
                any_of.push(group);
            }
        }
        if any_of.is_empty() {
            return err(format!("'{value}' has no word to search for"));
        }
        if any_of.iter().any(|g| g.iter().all(|t| t.negate)) {
            return err(format!(
                "'{value}': each alternative needs a word to find, not only words to exclude"
            ));
        }
        let terms: usize = any_of.iter().map(Vec::len).sum();
        if terms > MAX_QUERY_TERMS {
            return err(format!(
                "'{value}' tests {terms} terms; at most {MAX_QUERY_TERMS} are accepted"
            ));
        }
        Ok(TextQuery { field, any_of })
    }

    /// Whether `entry` matches: the syntax's meaning, as a model for the tests of the parser
    /// (the store's FTS5 and `tsquery` renderings answer searches; the API tests hold them to
    /// the same answers).
    #[cfg(test)]
    pub fn matches(&self, entry: &TextEntry) -> bool {
        let narrative: Vec<&str> = entry.narrative.split(' ').collect();
        let content: Vec<&str> = entry.content.split(' ').collect();
        let found = |t: &Term| match self.field {
            TextField::Narrative => has(&narrative, t),
            TextField::Content => has(&narrative, t) || has(&content, t),
        };
        self.any_of
            .iter()
            .any(|group| group.iter().all(|t| found(t) != t.negate))
    }
}

/// Whether the words `text` hold the term's words in a row (the last as a prefix if it is one).
#[cfg(test)]
fn has(text: &[&str], term: &Term) -> bool {
    let n = term.words.len();
    if n == 0 || text.len() < n {
        return false;
    }
    text.windows(n).any(|w| {
        w.iter()
            .zip(&term.words)
            .enumerate()
            .all(|(i, (got, want))| {
                if term.prefix && i == n - 1 {
                    got.starts_with(want.as_str())
                } else {
                    got == want
                }
            })
    })
}

enum Piece {
    Or,
    Term(Term),
}

/// The terms of one alternative: quoted phrases and bare words, `OR` between them.
fn pieces(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let negate = rest.starts_with('-');
        if negate {
            rest = &rest[1..];
        }
        let (raw, quoted, after) = if let Some(inner) = rest.strip_prefix('"') {
            let end = inner.find('"').unwrap_or(inner.len());
            let after = inner.get(end + 1..).unwrap_or("");
            (&inner[..end], true, after)
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            (&rest[..end], false, &rest[end..])
        };
        // `"diabetes mel"*` and `diab*` are prefixes
        let (prefix, after) = match after.strip_prefix('*') {
            Some(a) if quoted => (true, a),
            _ => (!quoted && raw.ends_with('*'), after),
        };
        rest = after.trim_start();
        if !quoted && !negate && raw == "OR" {
            out.push(Piece::Or);
            continue;
        }
        let words: Vec<String> = words(raw).collect();
        if !words.is_empty() {
            out.push(Piece::Term(Term {
                words,
                prefix,
                negate,
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(value: &str) -> TextQuery {
        TextQuery::parse("_content", TextField::Content, value).unwrap()
    }

    fn entry_of(narrative: &str, content: &str) -> TextEntry {
        TextEntry {
            narrative: joined(words(narrative)),
            content: joined(words(content)),
        }
    }

    #[test]
    fn a_resource_s_text_is_its_narrative_and_its_strings() {
        let patient = json!({
            "resourceType": "Patient", "id": "p1",
            "meta": {"versionId": "3", "profile": ["http://example.org/StructureDefinition/x"]},
            "text": {"status": "generated",
                     "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Peter &amp; Éva<b>Chalmers</b></p><td>a</td><td>b</td></div>"},
            "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
            "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
            "gender": "male",
            "photo": [{"data": "iVBORw0KGgo="}]
        });
        let e = entry(&patient);
        assert_eq!(e.narrative, "peter eva chalmers a b");
        assert_eq!(e.content, "12345 chalmers peter james male");
    }

    #[test]
    fn words_are_required_phrases_kept_in_order_alternatives_offered() {
        let e = entry_of(
            "",
            "Chronic kidney disease stage 3, diabetes mellitus type 2",
        );
        assert!(q("kidney diabetes").matches(&e));
        assert!(q("\"kidney disease\"").matches(&e));
        assert!(!q("\"disease kidney\"").matches(&e));
        assert!(q("asthma OR diabetes").matches(&e));
        assert!(q("asthma,diabetes").matches(&e));
        assert!(!q("asthma copd").matches(&e));
        assert!(q("diab*").matches(&e));
        assert!(q("\"diabetes mell\"*").matches(&e));
        assert!(!q("diab").matches(&e));
        assert!(!q("kidney -diabetes").matches(&e));
        assert!(q("kidney -asthma").matches(&e));
        assert!(q("KIDNEY Diséase").matches(&e));
        assert_eq!(words("İstanbul").collect::<Vec<_>>(), ["istanbul"]);
    }

    #[test]
    fn text_searches_the_narrative_only_content_both() {
        let e = entry_of("seen for a cough", "Observation final");
        let text = |v| TextQuery::parse("_text", TextField::Narrative, v).unwrap();
        assert!(text("cough").matches(&e));
        assert!(!text("final").matches(&e));
        assert!(q("cough").matches(&e) && q("final").matches(&e));
    }

    #[test]
    fn queries_without_a_word_to_find_are_refused() {
        for bad in ["", "  ", "-asthma", "***", "a OR -b", "(a OR b) c"] {
            assert!(
                TextQuery::parse("_text", TextField::Narrative, bad).is_err(),
                "{bad}"
            );
        }
        let long = "word ".repeat(17);
        assert!(TextQuery::parse("_text", TextField::Narrative, &long).is_err());
    }

    #[test]
    fn malformed_narrative_still_gives_its_words() {
        assert_eq!(words(&xhtml_text("<div><p>open <b>bold</div>")).count(), 2);
        assert_eq!(without_tags("<div>x<y</div>").trim(), "x");
    }
}
