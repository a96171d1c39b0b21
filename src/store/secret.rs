//! A value that must never be printed: a database URL with its password, a user's password, a
//! client's shared secret. Its `Debug` says only that it is there; the value is reached with
//! `expose`, so each use is one a reader can find.

/// See the module.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    /// The value itself (never to be logged).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<String> for Secret<String> {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret<String> {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

/// For flags: `#[arg(value_parser = secret)]`.
pub fn parse(s: &str) -> Result<Secret<String>, std::convert::Infallible> {
    Ok(Secret(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_not_printed() {
        let s = Secret::new("postgres://u:hunter22@h/db".to_string());
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "postgres://u:hunter22@h/db");
    }
}
