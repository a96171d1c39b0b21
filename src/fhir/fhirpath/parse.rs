//! FHIRPath text to an expression tree: the subset the R4 SearchParameters use (paths, `|`,
//! `where`, `as`/`is`/`ofType`, `resolve()`, `exists()`, `extension('url')`, indexers, `=`,
//! `!=`, `and`, `or`, string, number and boolean literals), with the spec's precedence:
//! path and indexer, then `is`/`as`, then `|`, then `=`/`!=`, then `and`, then `or`.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// The input collection (`$this`).
    This,
    /// A name at the start of a path: the input itself when it names its type (`Patient` on a
    /// Patient), else a member of the input.
    Root(String),
    Member(Box<Expr>, String),
    Index(Box<Expr>, usize),
    /// A function applied to a collection: `where`, `exists`, `resolve`, `as`, ...
    Call(Box<Expr>, String, Vec<Expr>),
    Is(Box<Expr>, String),
    As(Box<Expr>, String),
    Union(Box<Expr>, Box<Expr>),
    Equals(Box<Expr>, Box<Expr>),
    NotEquals(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Str(String),
    Bool(bool),
    Number(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FHIRPath: {}", self.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Number(String),
    Symbol(&'static str),
}

fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '\'' => {
                let mut s = String::new();
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    s.push(chars[i]);
                    i += 1;
                }
                if i == chars.len() {
                    return Err(ParseError(format!("unterminated string in '{text}'")));
                }
                i += 1;
                out.push(Token::Str(s));
            }
            '`' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or_else(|| ParseError(format!("unterminated `name` in '{text}'")))?;
                out.push(Token::Ident(chars[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
            }
            c if c.is_ascii_digit() => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                out.push(Token::Number(chars[start..i].iter().collect()));
            }
            c if c.is_alphabetic() || c == '_' || c == '$' || c == '%' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(Token::Ident(chars[start..i].iter().collect()));
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push(Token::Symbol("!="));
                i += 2;
            }
            '.' | '(' | ')' | '[' | ']' | '|' | '=' | ',' => {
                let sym = match c {
                    '.' => ".",
                    '(' => "(",
                    ')' => ")",
                    '[' => "[",
                    ']' => "]",
                    '|' => "|",
                    '=' => "=",
                    _ => ",",
                };
                out.push(Token::Symbol(sym));
                i += 1;
            }
            other => {
                return Err(ParseError(format!("unexpected '{other}' in '{text}'")));
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        tokens: tokenize(text)?,
        pos: 0,
    };
    let e = p.or()?;
    match p.peek() {
        None => Ok(e),
        Some(t) => Err(ParseError(format!("unexpected {t:?} in '{text}'"))),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn eat_symbol(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Token::Symbol(x)) if *x == s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Token::Ident(i)) if i == w) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, s: &str) -> Result<(), ParseError> {
        if self.eat_symbol(s) {
            Ok(())
        } else {
            Err(ParseError(format!(
                "expected '{s}', found {:?}",
                self.peek()
            )))
        }
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.eat_word("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.equality()?;
        while self.eat_word("and") {
            left = Expr::And(Box::new(left), Box::new(self.equality()?));
        }
        Ok(left)
    }

    fn equality(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.union()?;
        loop {
            if self.eat_symbol("=") {
                left = Expr::Equals(Box::new(left), Box::new(self.union()?));
            } else if self.eat_symbol("!=") {
                left = Expr::NotEquals(Box::new(left), Box::new(self.union()?));
            } else {
                return Ok(left);
            }
        }
    }

    fn union(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.type_op()?;
        while self.eat_symbol("|") {
            left = Expr::Union(Box::new(left), Box::new(self.type_op()?));
        }
        Ok(left)
    }

    fn type_op(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.path()?;
        loop {
            if self.eat_word("is") {
                left = Expr::Is(Box::new(left), self.type_name()?);
            } else if self.eat_word("as") {
                left = Expr::As(Box::new(left), self.type_name()?);
            } else {
                return Ok(left);
            }
        }
    }

    /// `FHIR.Quantity` and `Quantity` name the same type.
    fn type_name(&mut self) -> Result<String, ParseError> {
        let mut name = match self.next() {
            Some(Token::Ident(n)) => n,
            other => return Err(ParseError(format!("expected a type name, found {other:?}"))),
        };
        while self.eat_symbol(".") {
            match self.next() {
                Some(Token::Ident(n)) => name = n,
                other => return Err(ParseError(format!("expected a type name, found {other:?}"))),
            }
        }
        Ok(name)
    }

    fn path(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.term()?;
        loop {
            if self.eat_symbol(".") {
                let name = match self.next() {
                    Some(Token::Ident(n)) => n,
                    other => {
                        return Err(ParseError(format!(
                            "expected a name after '.', found {other:?}"
                        )));
                    }
                };
                e = if self.eat_symbol("(") {
                    let args = self.args()?;
                    Expr::Call(Box::new(e), name, args)
                } else {
                    Expr::Member(Box::new(e), name)
                };
            } else if self.eat_symbol("[") {
                let n = match self.next() {
                    Some(Token::Number(n)) => n
                        .parse()
                        .map_err(|_| ParseError(format!("bad index '{n}'")))?,
                    other => return Err(ParseError(format!("expected an index, found {other:?}"))),
                };
                self.expect("]")?;
                e = Expr::Index(Box::new(e), n);
            } else {
                return Ok(e);
            }
        }
    }

    fn args(&mut self) -> Result<Vec<Expr>, ParseError> {
        let mut args = Vec::new();
        if self.eat_symbol(")") {
            return Ok(args);
        }
        loop {
            args.push(self.or()?);
            if self.eat_symbol(")") {
                return Ok(args);
            }
            self.expect(",")?;
        }
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        match self.next() {
            Some(Token::Symbol("(")) => {
                let e = self.or()?;
                self.expect(")")?;
                Ok(e)
            }
            Some(Token::Str(s)) => Ok(Expr::Str(s)),
            Some(Token::Number(n)) => Ok(Expr::Number(n)),
            Some(Token::Ident(i)) if i == "true" || i == "false" => Ok(Expr::Bool(i == "true")),
            Some(Token::Ident(i)) if i == "$this" => Ok(Expr::This),
            Some(Token::Ident(name)) => {
                if self.eat_symbol("(") {
                    let args = self.args()?;
                    Ok(Expr::Call(Box::new(Expr::This), name, args))
                } else {
                    Ok(Expr::Root(name))
                }
            }
            other => Err(ParseError(format!("unexpected {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_search_parameter_shapes() {
        let e = parse("Observation.subject.where(resolve() is Patient)").unwrap();
        let Expr::Call(target, name, args) = e else {
            panic!("{e:?}")
        };
        assert_eq!(name, "where");
        assert_eq!(
            *target,
            Expr::Member(Box::new(Expr::Root("Observation".into())), "subject".into())
        );
        assert!(matches!(&args[0], Expr::Is(_, t) if t == "Patient"));
        assert!(matches!(
            parse("(Observation.value as Quantity) | (Observation.value as SampledData)").unwrap(),
            Expr::Union(..)
        ));
        assert!(matches!(
            parse("Patient.deceased.exists() and Patient.deceased != false").unwrap(),
            Expr::And(..)
        ));
        assert!(matches!(
            parse("Bundle.entry[0].resource").unwrap(),
            Expr::Member(..)
        ));
        assert!(parse("Patient.name.where(").is_err());
        assert!(parse("Patient.name 'x'").is_err());
    }
}
