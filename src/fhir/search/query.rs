//! A search's query string as typed clauses: each `name[:modifier]=v1,v2` becomes a `Clause`
//! (its values ORed; clauses ANDed), checked against the resource type's search parameters
//! so that a mistyped parameter, modifier or value is an error, not a silent "everything".

use super::date::DateRange;
use super::index::normalize;
use super::params::{ParamType, SearchParam, SearchParams};

/// A comparison prefix of date, number and quantity values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// One value a clause may match (the values of a clause are ORed).
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    /// Normalised text: prefix match, or `contains` anywhere; `exact` compares as written.
    String {
        value: String,
        exact: bool,
        contains: bool,
    },
    /// `code`, `system|code`, `|code` (no system) or `system|`.
    Token {
        system: SystemMatch,
        code: Option<String>,
    },
    /// `:text`: the normalised display or text starts a word with this.
    TokenText(String),
    Reference {
        target_type: Option<String>,
        id: Option<String>,
        url: Option<String>,
    },
    Date {
        prefix: Prefix,
        range: DateRange,
    },
    /// A number or quantity: the value, the range its precision implies, and for a quantity
    /// the system and code (or unit) asked for.
    Number {
        prefix: Prefix,
        value: f64,
        low: f64,
        high: f64,
        system: Option<String>,
        code: Option<String>,
    },
    Uri {
        value: String,
        kind: UriMatch,
    },
    /// A composite: a token, then the second part's predicate (and a three-part one's third,
    /// a number).
    Composite {
        first: Box<Predicate>,
        second: Box<Predicate>,
        third: Option<Box<Predicate>>,
    },
    /// A token whose codes come from terminology (`:in` or `:not-in` a value set, `:below` or
    /// `:above` a code in its system's hierarchy): whoever runs the search resolves it into
    /// `TokenIn` through the terminology service before the store sees it.
    Coded {
        op: CodedOp,
        value: String,
    },
    /// Any of these codes of `system` (what a `Coded` predicate resolves to).
    TokenIn {
        system: String,
        codes: Vec<String>,
    },
}

/// How a `Coded` token names its codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodedOp {
    /// The codes of the value set whose canonical url is the value.
    In,
    /// `system|code` and every code below it.
    Below,
    /// `system|code` and every code above it.
    Above,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SystemMatch {
    Any,
    None,
    Is(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriMatch {
    Exact,
    Below,
    Above,
}

/// One `name[:modifier]=values` of the query.
#[derive(Debug, Clone)]
pub struct Clause {
    pub param: &'static SearchParam,
    /// `:not`: resources with no value matching any of the values.
    pub negate: bool,
    /// `:missing=true|false`: resources without (with) any value for the parameter.
    pub missing: Option<bool>,
    pub any_of: Vec<Predicate>,
    /// `:mdm` (the name HAPI's MDM gave it): the Patients named stand for their persons, and
    /// the clause is to match a reference to any record of each (see `patients_named`). The
    /// expansion needs the master patient index, so whoever runs the clause does it.
    pub through_identity: bool,
}

impl Clause {
    /// The Patient ids this clause's reference values name (for `:mdm`, to expand).
    pub fn patients_named(&self) -> Vec<String> {
        self.any_of
            .iter()
            .filter_map(|p| match p {
                Predicate::Reference {
                    target_type: Some(t),
                    id: Some(id),
                    ..
                } if t == "Patient" => Some(id.clone()),
                _ => None,
            })
            .collect()
    }

    /// This clause matching a reference to any of `patients` (a `:mdm` clause expanded):
    /// no longer through identity.
    pub fn naming_patients(&self, patients: &[String]) -> Clause {
        Clause {
            any_of: patients
                .iter()
                .map(|id| Predicate::Reference {
                    target_type: Some("Patient".into()),
                    id: Some(id.clone()),
                    url: None,
                })
                .collect(),
            through_identity: false,
            ..self.clone()
        }
    }
}

/// How many values one parameter may list (`code=a,b,c`, any one matches). Each is a term of
/// the SQL; a few hundred exceed the database's limits on one statement.
pub const MAX_VALUES: usize = 100;

/// Why a query is refused (400 with this text).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryError {
    pub message: String,
    /// The query asks past a bound on the work a search may do (not merely a parameter that
    /// does not apply somewhere): such an error ends the parse wherever it arises.
    pub over_bound: bool,
}

impl QueryError {
    pub fn new(message: impl Into<String>) -> QueryError {
        QueryError {
            message: message.into(),
            over_bound: false,
        }
    }
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, QueryError> {
    Err(QueryError::new(msg))
}

/// Parse one search parameter of `rtype`; `Ok(None)` means the name is not a search parameter
/// of this type (the caller decides whether that is an error).
pub fn parse_clause(rtype: &str, name: &str, value: &str) -> Result<Option<Clause>, QueryError> {
    let (code, modifier) = match name.split_once(':') {
        Some((c, m)) => (c, Some(m)),
        None => (name, None),
    };
    let Some(param) = SearchParams::get().find(rtype, code) else {
        return Ok(None);
    };
    if !param.is_supported() {
        return err(format!(
            "{name}: searching by this {} parameter is not supported",
            param.kind.as_str()
        ));
    }
    let mut clause = Clause {
        param,
        negate: false,
        missing: None,
        any_of: Vec::new(),
        through_identity: false,
    };
    if modifier == Some("missing") {
        clause.missing = Some(match value {
            "true" => true,
            "false" => false,
            _ => {
                return err(format!(
                    "{name}: :missing takes true or false, not '{value}'"
                ));
            }
        });
        return Ok(Some(clause));
    }
    if value.is_empty() {
        return err(format!("{name}: empty value"));
    }
    let kind = param.kind;
    let allowed: &[&str] = match kind {
        ParamType::String => &["exact", "contains"],
        ParamType::Token => &["not", "text", "of-type", "in", "not-in", "below", "above"],
        ParamType::Reference if param.target.iter().any(|t| t == "Patient") => &["mdm"],
        ParamType::Reference => &[],
        ParamType::Uri => &["below", "above"],
        _ => &[],
    };
    if let Some(m) = modifier {
        let is_type_modifier = kind == ParamType::Reference && param.target.iter().any(|t| t == m);
        if !allowed.contains(&m) && !is_type_modifier {
            let mut all: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
            all.push("missing".into());
            if kind == ParamType::Reference {
                all.extend(param.target.iter().cloned());
            }
            return err(format!(
                "{name}: modifier ':{m}' is not supported for {} parameter '{code}' (supported: {})",
                kind.as_str(),
                all.join(", ")
            ));
        }
    }
    clause.negate = matches!(modifier, Some("not") | Some("not-in"));
    clause.through_identity = modifier == Some("mdm");
    // a `:mdm` value is a Patient's reference or id
    let modifier = match modifier {
        Some("mdm") => Some("Patient"),
        m => m,
    };
    let values = split_unescaped(value, ',');
    if values.len() > MAX_VALUES {
        return err(format!(
            "{name}: {} values; a parameter takes at most {MAX_VALUES} (repeat the search for more)",
            values.len()
        ));
    }
    for v in values {
        let p = match kind {
            ParamType::String => Predicate::String {
                value: if modifier == Some("exact") {
                    unescape(&v)
                } else {
                    normalize(&unescape(&v))
                },
                exact: modifier == Some("exact"),
                contains: modifier == Some("contains"),
            },
            ParamType::Token => match modifier {
                Some("text") => Predicate::TokenText(normalize(&unescape(&v))),
                Some("of-type") => of_type(name, &v)?,
                Some("in") | Some("not-in") => Predicate::Coded {
                    op: CodedOp::In,
                    value: unescape(&v),
                },
                Some(m @ ("below" | "above")) => {
                    let parts = split_unescaped(&v, '|');
                    if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
                        return err(format!("{name}: :{m} takes system|code"));
                    }
                    Predicate::Coded {
                        op: if m == "below" {
                            CodedOp::Below
                        } else {
                            CodedOp::Above
                        },
                        value: unescape(&v),
                    }
                }
                _ => token(&v),
            },
            ParamType::Reference => reference(param, modifier, &v)?,
            ParamType::Date => date(name, &v)?,
            ParamType::Number => number(name, &v, false)?,
            ParamType::Quantity => number(name, &v, true)?,
            ParamType::Uri => Predicate::Uri {
                value: unescape(&v),
                kind: match modifier {
                    Some("below") => UriMatch::Below,
                    Some("above") => UriMatch::Above,
                    _ => UriMatch::Exact,
                },
            },
            ParamType::Composite => composite(param, name, &v)?,
            ParamType::Special => {
                return err(format!("{name}: special parameters are not supported"));
            }
        };
        clause.any_of.push(p);
    }
    Ok(Some(clause))
}

/// Split on `sep` where it is not escaped with `\`, and unescape `\,` `\|` `\$` `\\`.
pub fn split_unescaped(value: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ (',' | '|' | '$' | '\\')) if n != sep => {
                    parts.last_mut().unwrap().push('\\');
                    parts.last_mut().unwrap().push(n);
                }
                Some(n) => parts.last_mut().unwrap().push(n),
                None => parts.last_mut().unwrap().push('\\'),
            },
            c if c == sep => parts.push(String::new()),
            c => parts.last_mut().unwrap().push(c),
        }
    }
    parts
}

/// Remove the `\` of escaped characters.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

fn token(v: &str) -> Predicate {
    let parts = split_unescaped(v, '|');
    match parts.as_slice() {
        [code] => Predicate::Token {
            system: SystemMatch::Any,
            code: Some(unescape(code)),
        },
        [system, code, ..] => Predicate::Token {
            system: if system.is_empty() {
                SystemMatch::None
            } else {
                SystemMatch::Is(unescape(system))
            },
            code: (!code.is_empty()).then(|| unescape(code)),
        },
        [] => Predicate::Token {
            system: SystemMatch::Any,
            code: None,
        },
    }
}

/// `identifier:of-type=type-system|type-code|value`, stored as the index writes it.
fn of_type(name: &str, v: &str) -> Result<Predicate, QueryError> {
    match split_unescaped(v, '|').as_slice() {
        [system, code, value] if !code.is_empty() && !value.is_empty() => Ok(Predicate::Token {
            system: SystemMatch::Is(format!("of-type|{}", unescape(system))),
            code: Some(format!("{}|{}", unescape(code), unescape(value))),
        }),
        _ => err(format!(
            "{name}: :of-type takes type-system|type-code|value"
        )),
    }
}

fn reference(
    param: &SearchParam,
    modifier: Option<&str>,
    v: &str,
) -> Result<Predicate, QueryError> {
    let v = unescape(v);
    let defs = crate::fhir::definitions::Definitions::get();
    let absolute = v.contains("://") || v.starts_with("urn:");
    let parts: Vec<&str> = v.split('/').collect();
    let typed = match parts.as_slice() {
        [.., t, id] if defs.is_resource_type(t) && !id.is_empty() => {
            Some((t.to_string(), id.to_string()))
        }
        _ => None,
    };
    if absolute {
        // a URL: found as written, or by its Type/id tail when it is one of ours
        return Ok(Predicate::Reference {
            target_type: None,
            id: None,
            url: Some(v.clone()),
        });
    }
    let (target_type, id) = match (typed, modifier) {
        (Some((t, id)), _) => (Some(t), id),
        (None, Some(t)) => (Some(t.to_string()), v.clone()),
        (None, None) if param.target.len() == 1 => (Some(param.target[0].clone()), v.clone()),
        (None, None) => (None, v.clone()),
    };
    if let (Some(t), Some(m)) = (&target_type, modifier)
        && t != m
    {
        return err(format!("{}:{m}={v}: the value names a {t}", param.code));
    }
    Ok(Predicate::Reference {
        target_type,
        id: Some(id),
        url: None,
    })
}

/// Split a leading comparison prefix off a date, number or quantity value.
fn prefix(v: &str) -> (Prefix, &str) {
    let table = [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("gt", Prefix::Gt),
        ("lt", Prefix::Lt),
        ("ge", Prefix::Ge),
        ("le", Prefix::Le),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
        ("ap", Prefix::Ap),
    ];
    for (p, prefix) in table {
        if let Some(rest) = v.strip_prefix(p) {
            return (prefix, rest);
        }
    }
    (Prefix::Eq, v)
}

fn date(name: &str, v: &str) -> Result<Predicate, QueryError> {
    let (prefix, text) = prefix(v);
    match DateRange::parse(text) {
        Some(range) => Ok(Predicate::Date { prefix, range }),
        None => err(format!(
            "{name}: '{v}' is not a date (yyyy, yyyy-mm, yyyy-mm-dd or a dateTime, after an optional prefix such as ge)"
        )),
    }
}

/// A number (or quantity `value|system|code`) and the range its precision implies:
/// "100" is [99.5, 100.5), "100.0" is [99.95, 100.05), "1e2" is [50, 150).
fn number(name: &str, v: &str, quantity: bool) -> Result<Predicate, QueryError> {
    let (prefix, rest) = prefix(v);
    let parts = split_unescaped(rest, '|');
    let text = parts[0].as_str();
    if !quantity && parts.len() > 1 {
        return err(format!("{name}: '{v}' is not a number"));
    }
    let value: f64 = text
        .parse()
        .ok()
        .filter(|x: &f64| x.is_finite())
        .ok_or_else(|| QueryError::new(format!("{name}: '{v}' does not start with a number")))?;
    let half_step = {
        let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
        let exponent: i32 = text
            .split(['e', 'E'])
            .nth(1)
            .and_then(|e| e.parse().ok())
            .unwrap_or(0);
        let decimals = mantissa.split('.').nth(1).map(str::len).unwrap_or(0) as i32;
        0.5 * 10f64.powi(exponent - decimals)
    };
    let (system, code) = match parts.as_slice() {
        [_, s, c, ..] => (
            (!s.is_empty()).then(|| unescape(s)),
            (!c.is_empty()).then(|| unescape(c)),
        ),
        [_, s] if !s.is_empty() => return err(format!("{name}: '{v}' must be value|system|code")),
        _ => (None, None),
    };
    Ok(Predicate::Number {
        prefix,
        value,
        low: value - half_step,
        high: value + half_step,
        system,
        code,
    })
}

fn composite(param: &SearchParam, name: &str, v: &str) -> Result<Predicate, QueryError> {
    let parts = split_unescaped(v, '$');
    let (first, second, third) = match (parts.as_slice(), param.components.as_slice()) {
        ([first, second], [c1, c2]) => ((first, c1), (second, c2), None),
        ([first, second, third], [c1, c2, c3]) => ((first, c1), (second, c2), Some((third, c3))),
        (_, components) => {
            let shape = vec!["value"; components.len()].join("$");
            return err(format!(
                "{name}: a value of this composite is {shape}, not '{v}'"
            ));
        }
    };
    if first.1.kind != ParamType::Token {
        return err(format!(
            "{name}: composites starting with a {} are not supported",
            first.1.kind.as_str()
        ));
    }
    let part = |(value, c): (&String, &super::params::Component)| -> Result<Predicate, QueryError> {
        Ok(match c.kind {
            ParamType::Token => token(value),
            ParamType::Quantity => number(name, value, true)?,
            ParamType::Number => number(name, value, false)?,
            ParamType::Date => date(name, value)?,
            ParamType::String => Predicate::String {
                value: normalize(value),
                exact: false,
                contains: false,
            },
            other => {
                return err(format!(
                    "{name}: composites with a {} part are not supported",
                    other.as_str()
                ));
            }
        })
    };
    let third = match third {
        Some((value, c)) if c.kind == ParamType::Number => Some(Box::new(part((value, c))?)),
        Some(_) => {
            return err(format!(
                "{name}: this composite's last part is not a number"
            ));
        }
        None => None,
    };
    Ok(Predicate::Composite {
        first: Box::new(token(first.0)),
        second: Box::new(part(second)?),
        third,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(rtype: &str, name: &str, value: &str) -> Predicate {
        let c = parse_clause(rtype, name, value).unwrap().unwrap();
        assert_eq!(c.any_of.len(), 1);
        c.any_of[0].clone()
    }

    #[test]
    fn tokens_references_and_escapes() {
        assert_eq!(
            one("Patient", "identifier", "http://mrn|12\\|3"),
            Predicate::Token {
                system: SystemMatch::Is("http://mrn".into()),
                code: Some("12|3".into())
            }
        );
        assert_eq!(
            one("Patient", "gender", "|male"),
            Predicate::Token {
                system: SystemMatch::None,
                code: Some("male".into())
            }
        );
        let c = parse_clause("Patient", "gender", "male,female")
            .unwrap()
            .unwrap();
        assert_eq!(c.any_of.len(), 2);
        assert_eq!(
            one("Observation", "subject", "Patient/p1"),
            Predicate::Reference {
                target_type: Some("Patient".into()),
                id: Some("p1".into()),
                url: None
            }
        );
        assert_eq!(
            one("Observation", "subject:Patient", "p1"),
            Predicate::Reference {
                target_type: Some("Patient".into()),
                id: Some("p1".into()),
                url: None
            }
        );
        assert!(parse_clause("Observation", "subject:Spaceship", "p1").is_err());
        assert!(parse_clause("Patient", "family:below", "x").is_err());
        assert!(parse_clause("Patient", "nonsense", "x").unwrap().is_none());
        assert_eq!(
            parse_clause("Patient", "family:missing", "true")
                .unwrap()
                .unwrap()
                .missing,
            Some(true)
        );
    }

    #[test]
    fn numbers_carry_their_precision() {
        let Predicate::Number {
            low, high, prefix, ..
        } = one("RiskAssessment", "probability", "gt0.8")
        else {
            panic!()
        };
        assert_eq!(prefix, Prefix::Gt);
        assert!((low - 0.75).abs() < 1e-9 && (high - 0.85).abs() < 1e-9);
        let Predicate::Number {
            low,
            high,
            system,
            code,
            ..
        } = one(
            "Observation",
            "value-quantity",
            "5.4|http://unitsofmeasure.org|mg",
        )
        else {
            panic!()
        };
        assert!((low - 5.35).abs() < 1e-9 && (high - 5.45).abs() < 1e-9);
        assert_eq!(
            (system.as_deref(), code.as_deref()),
            (Some("http://unitsofmeasure.org"), Some("mg"))
        );
        assert!(parse_clause("Observation", "value-quantity", "lots").is_err());
        assert!(parse_clause("Observation", "date", "ge2020-13").is_err());
    }

    #[test]
    fn composites_pair_a_token_with_a_value() {
        let p = one(
            "Observation",
            "code-value-quantity",
            "http://loinc.org|8480-6$gt100",
        );
        let Predicate::Composite { first, second, .. } = p else {
            panic!()
        };
        assert!(matches!(*first, Predicate::Token { .. }));
        assert!(matches!(
            *second,
            Predicate::Number {
                prefix: Prefix::Gt,
                ..
            }
        ));
    }
}
