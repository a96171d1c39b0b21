//! Secrets at rest: client secrets and user passwords are kept as argon2id hashes (PHC strings
//! with their own random salt), never in clear; checking one is constant-time inside argon2.

use crate::store::secret::Secret;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// The PHC string of `secret`.
pub fn hash(secret: &str) -> Result<String, String> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "no randomness for a salt".to_string())?;
    let salt = SaltString::encode_b64(&bytes).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the secret: {e}"))
}

/// Whether `secret` is the one `hash` was made from.
pub fn matches(hash: &str, secret: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A fresh random token of 32 bytes, base64url: authorization codes and the like.
pub fn random_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system has randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// base64url(SHA-256(`text`)): PKCE's S256, and how codes are stored.
pub fn sha256_b64url(text: &str) -> String {
    use base64::Engine;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// A password or client secret given by an operator, never on the command line (which every
/// local user can read in the process list): from `file` (its first line), else the
/// environment variable `env`, else typed at a prompt without echo.
pub fn from_operator(
    what: &str,
    file: Option<&std::path::Path>,
    env: &str,
) -> anyhow::Result<Secret<String>> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the {what} file {}: {e}", path.display()))?;
        return Ok(text.lines().next().unwrap_or("").into());
    }
    if let Ok(v) = std::env::var(env)
        && !v.is_empty()
    {
        return Ok(v.into());
    }
    let typed = rpassword::prompt_password(format!("{what}: ")).map_err(|e| {
        anyhow::anyhow!(
            "no terminal to type the {what} at ({e}): give it in a file (--{}-file) or in {env}",
            what.replace(' ', "-")
        )
    })?;
    Ok(typed.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            sha256_b64url("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn a_hash_matches_its_secret_only() {
        let h = hash("correct horse battery staple").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(matches(&h, "correct horse battery staple"));
        assert!(!matches(&h, "correct horse battery stapler"));
    }
}
