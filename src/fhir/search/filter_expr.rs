//! The `_filter` parameter (R4 search_filter.html): an expression of the type's own search
//! parameters, `name co "pet" and (birthdate ge 2014-10-10 or not (gender eq male))`. Each
//! comparison becomes the plain search it means (`name:contains=pet`, `birthdate=ge2014-10-10`)
//! and is parsed by `filter::parse_filter`, so that `_filter` finds exactly what the
//! equivalent query string finds, and `and`, `or` and `not` become `Filter::And`, `Or`, `Not`.
//!
//! Operators: `eq`, `ne` (strings compared as written, `:exact`), `co` (contains), `sw` (starts
//! with), `gt`, `lt`, `ge`, `le`, `sa`, `eb`, `ap` (dates, numbers, quantities), `pr` (present:
//! `:missing`), `in` and `ni` (a value set), `sb` and `ss` (below or above a code, or a URL),
//! `re` (a reference). `ew` and `po` have no plain search to become, and sub-filters in
//! brackets (`related[type eq has-component].target`) are not offered: each is refused by name.

use super::filter::{Filter, parse_filter};
use super::params::{ParamType, SearchParams};
use super::query::QueryError;

/// Bounds on one `_filter` expression: its length, comparisons and nesting.
const MAX_CHARS: usize = 4096;
const MAX_COMPARISONS: usize = 64;
const MAX_DEPTH: usize = 16;

/// Parse the `_filter` expression `text` of a search of `rtype`.
pub fn parse_filter_expression(rtype: &str, text: &str) -> Result<Filter, QueryError> {
    if text.chars().count() > MAX_CHARS {
        return Err(err(format!("at most {MAX_CHARS} characters are accepted")));
    }
    let tokens = tokens(text)?;
    let mut p = Parser {
        rtype,
        tokens,
        at: 0,
        comparisons: 0,
    };
    let f = p.or(0)?;
    if let Some(t) = p.tokens.get(p.at) {
        return Err(err(format!(
            "unexpected '{}' after a complete expression",
            t.text()
        )));
    }
    Ok(f)
}

fn err(m: String) -> QueryError {
    QueryError::new(format!("_filter: {m}"))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Word(String),
    /// A `"quoted string"`, escapes resolved.
    Quoted(String),
}

impl Token {
    fn text(&self) -> String {
        match self {
            Token::Open => "(".into(),
            Token::Close => ")".into(),
            Token::Word(w) => w.clone(),
            Token::Quoted(q) => format!("\"{q}\""),
        }
    }

    fn is_keyword(&self, k: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(k))
    }
}

fn tokens(text: &str) -> Result<Vec<Token>, QueryError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Token::Open);
            }
            ')' => {
                chars.next();
                out.push(Token::Close);
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(e) => s.push(e),
                            None => return Err(err("a string ends in '\\'".into())),
                        },
                        Some(c) => s.push(c),
                        None => return Err(err("a string is not closed with '\"'".into())),
                    }
                }
                out.push(Token::Quoted(s));
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == '(' || c == ')' || c == '"' {
                        break;
                    }
                    w.push(c);
                    chars.next();
                }
                out.push(Token::Word(w));
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    rtype: &'a str,
    tokens: Vec<Token>,
    at: usize,
    comparisons: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self, what: &str) -> Result<Token, QueryError> {
        let t = self
            .tokens
            .get(self.at)
            .cloned()
            .ok_or_else(|| err(format!("the expression ends where {what} was expected")))?;
        self.at += 1;
        Ok(t)
    }

    /// `and`-groups joined by `or` (`and` binds tighter, as in SQL).
    fn or(&mut self, depth: usize) -> Result<Filter, QueryError> {
        if depth > MAX_DEPTH {
            return Err(err(format!(
                "parentheses and not nest at most {MAX_DEPTH} levels deep"
            )));
        }
        self.joined(depth, "or", Self::and, Filter::Or)
    }

    fn and(&mut self, depth: usize) -> Result<Filter, QueryError> {
        self.joined(depth, "and", Self::unary, Filter::And)
    }

    /// `part (keyword part)*`: one part as it is, several wrapped together.
    fn joined(
        &mut self,
        depth: usize,
        keyword: &str,
        part: fn(&mut Self, usize) -> Result<Filter, QueryError>,
        wrap: fn(Vec<Filter>) -> Filter,
    ) -> Result<Filter, QueryError> {
        let mut parts = vec![part(self, depth)?];
        while self.peek().is_some_and(|t| t.is_keyword(keyword)) {
            self.at += 1;
            parts.push(part(self, depth)?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one")
        } else {
            wrap(parts)
        })
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, QueryError> {
        let negate = self.peek().is_some_and(|t| t.is_keyword("not"))
            && self.tokens.get(self.at + 1) == Some(&Token::Open);
        if negate {
            self.at += 1;
        }
        let f = if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let inner = self.or(depth + 1)?;
            match self.next("')'")? {
                Token::Close => inner,
                other => return Err(err(format!("expected ')', found '{}'", other.text()))),
            }
        } else {
            self.comparison()?
        };
        Ok(if negate { Filter::Not(Box::new(f)) } else { f })
    }

    fn comparison(&mut self) -> Result<Filter, QueryError> {
        self.comparisons += 1;
        if self.comparisons > MAX_COMPARISONS {
            return Err(err(format!(
                "at most {MAX_COMPARISONS} comparisons are accepted"
            )));
        }
        let path = match self.next("a search parameter")? {
            Token::Word(w) => w,
            other => {
                return Err(err(format!(
                    "expected a search parameter, found '{}'",
                    other.text()
                )));
            }
        };
        let op = match self.next(&format!("an operator after '{path}'"))? {
            Token::Word(w) => w.to_ascii_lowercase(),
            other => {
                return Err(err(format!(
                    "expected an operator after '{path}', found '{}'",
                    other.text()
                )));
            }
        };
        let value = match self.next(&format!("a value after '{path} {op}'"))? {
            Token::Word(w) | Token::Quoted(w) => w,
            other => {
                return Err(err(format!(
                    "expected a value after '{path} {op}', found '{}'",
                    other.text()
                )));
            }
        };
        comparison(self.rtype, &path, &op, &value)
    }
}

/// `path op value` as the search it means.
fn comparison(rtype: &str, path: &str, op: &str, value: &str) -> Result<Filter, QueryError> {
    if path.contains('[') {
        return Err(err(format!(
            "'{path}': sub-filters in brackets are not supported; chain with '.' instead"
        )));
    }
    let kind = kind_of(rtype, path)?;
    let v = escape(value);
    use ParamType::*;
    let (modifier, v, negate): (&str, std::string::String, bool) = match (op, kind) {
        ("eq", String) => (":exact", v, false),
        ("ne", String) => (":exact", v, true),
        ("co", String | Uri) => (":contains", v, false),
        ("sw", String) => ("", v, false),
        ("eq" | "re", Token | Reference | Uri | Composite) => ("", v, false),
        ("ne", Token | Reference | Uri | Composite) => ("", v, true),
        (
            "eq" | "ne" | "gt" | "lt" | "ge" | "le" | "sa" | "eb" | "ap",
            Date | Number | Quantity,
        ) => ("", format!("{op}{v}"), false),
        ("pr", _) => match value {
            "true" => (":missing", "false".into(), false),
            "false" => (":missing", "true".into(), false),
            _ => {
                return Err(err(format!("'{path} pr {value}': pr takes true or false")));
            }
        },
        ("in", Token) => (":in", v, false),
        ("ni", Token) => (":not-in", v, false),
        ("sb", Token | Uri) => (":below", v, false),
        ("ss", Token | Uri) => (":above", v, false),
        ("ew" | "po", _) => {
            return Err(err(format!(
                "'{path} {op}': the operator {op} is not supported"
            )));
        }
        (op, kind) => {
            return Err(err(format!(
                "'{path} {op} {value}': {op} does not apply to {} parameters (or is no operator)",
                kind.as_str()
            )));
        }
    };
    let name = format!("{path}{modifier}");
    let f = parse_filter(rtype, &name, &v)
        .map_err(|e| err(e.message))?
        .ok_or_else(|| err(format!("'{path}' is not a search parameter of {rtype}")))?;
    Ok(if negate { Filter::Not(Box::new(f)) } else { f })
}

/// The kind of the parameter a path ends at: `name`, or through references
/// `subject:Patient.organization.name`.
fn kind_of(rtype: &str, path: &str) -> Result<ParamType, QueryError> {
    let unknown = || err(format!("'{path}' is not a search parameter of {rtype}"));
    let segments: Vec<&str> = path.split('.').collect();
    let mut types: Vec<String> = vec![rtype.to_string()];
    for (i, segment) in segments.iter().enumerate() {
        let (code, type_modifier) = match segment.split_once(':') {
            Some((c, t)) => (c, Some(t)),
            None => (*segment, None),
        };
        let param = types
            .iter()
            .find_map(|t| SearchParams::get().find(t, code))
            .ok_or_else(unknown)?;
        if i + 1 == segments.len() {
            return Ok(param.kind);
        }
        if param.kind != ParamType::Reference {
            return Err(err(format!(
                "'{path}': {code} is a {} parameter; only references chain",
                param.kind.as_str()
            )));
        }
        types = match type_modifier {
            Some(t) => vec![t.to_string()],
            None => param.target.clone(),
        };
    }
    Err(unknown())
}

/// A value as one value of a query string: its commas and backslashes escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace(',', "\\,")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(rtype: &str, text: &str) -> Result<Filter, QueryError> {
        parse_filter_expression(rtype, text)
    }

    #[test]
    fn comparisons_become_the_searches_they_mean() {
        let Filter::Clause(c) = parse("Patient", "name co \"pet\"").unwrap() else {
            panic!("a clause")
        };
        assert_eq!(c.param.code, "name");
        let Filter::And(parts) =
            parse("Patient", "given eq \"peter\" and birthdate ge 2014-10-10").unwrap()
        else {
            panic!("and")
        };
        assert_eq!(parts.len(), 2);
        assert!(matches!(
            parse("Observation", "code eq http://loinc.org|1234-5").unwrap(),
            Filter::Clause(_)
        ));
        assert!(matches!(
            parse("Observation", "subject.name co \"pet\"").unwrap(),
            Filter::Chain { .. }
        ));
        assert!(matches!(
            parse("Patient", "not (gender eq male)").unwrap(),
            Filter::Not(_)
        ));
        assert!(matches!(
            parse("Patient", "gender eq male or gender eq female and active eq true").unwrap(),
            Filter::Or(ref any) if matches!(any[1], Filter::And(_))
        ));
        assert!(matches!(
            parse("Patient", "((gender pr true))").unwrap(),
            Filter::Clause(_)
        ));
    }

    #[test]
    fn what_has_no_plain_search_is_refused_by_name() {
        for (text, says) in [
            ("name ew \"son\"", "ew"),
            (
                "related[type eq has-component].target pr true",
                "sub-filters",
            ),
            ("nonsense eq 1", "nonsense"),
            ("gender co \"ma\"", "co does not apply to token"),
            ("birthdate eq", "ends"),
            ("(gender eq male", "')'"),
            ("gender eq male)", "unexpected"),
            ("name eq \"open", "not closed"),
            ("gender pr maybe", "true or false"),
            ("gender.name eq x", "only references chain"),
        ] {
            let e = parse("Patient", text).unwrap_err();
            assert!(e.message.contains(says), "{text}: {}", e.message);
        }
        let deep = format!("{}gender eq male{}", "(".repeat(40), ")".repeat(40));
        assert!(
            parse("Patient", &deep)
                .unwrap_err()
                .message
                .contains("nest")
        );
        let many = vec!["gender eq male"; 65].join(" or ");
        assert!(
            parse("Patient", &many)
                .unwrap_err()
                .message
                .contains("comparisons")
        );
    }

    #[test]
    fn values_keep_their_commas() {
        let Filter::Clause(c) = parse("Patient", "family eq \"Smith, Jr\"").unwrap() else {
            panic!("a clause")
        };
        assert_eq!(c.any_of.len(), 1, "{:?}", c.any_of);
    }
}
