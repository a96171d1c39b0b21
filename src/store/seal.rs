//! Secrets kept in the database (the token-signing keys), sealed with AES-256-GCM under a key
//! the operator supplies and the database never holds: `--master-key-file` (a file holding 32
//! random bytes, base64) or `EMRSYNC_MASTER_KEY` (the same, in the environment; never a flag,
//! which any local user could read in the process list). A copy of the database, or a local
//! user who can read its files, then holds no key to forge tokens with. A sealed value is
//! stored as `sealed:v1:<base64 of nonce and ciphertext>`; what was stored before a master key
//! was given stays readable and is sealed at the next start that has one.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::path::Path;

const PREFIX: &str = "sealed:v1:";

/// The operator's master key.
pub struct Seal {
    key: LessSafeKey,
    /// Keys for other uses (the database file's) are derived from the master key rather than
    /// being it: one key never serves two ciphers.
    derive: hmac::Key,
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seal(..)")
    }
}

impl Seal {
    /// The key from its base64 text (32 bytes once decoded).
    pub fn from_base64(text: &str) -> Result<Seal, String> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| "the master key is not base64".to_string())?;
        if bytes.len() != 32 {
            return Err(format!(
                "the master key must be 32 bytes (base64 of 32 random bytes, e.g. `openssl rand -base64 32`), not {}",
                bytes.len()
            ));
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| "bad master key")?;
        Ok(Seal {
            key: LessSafeKey::new(key),
            derive: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        })
    }

    /// The key from `--master-key-file`, else `EMRSYNC_MASTER_KEY`; `None` when neither is set.
    pub fn from_operator(file: Option<&Path>) -> anyhow::Result<Option<Seal>> {
        Seal::from_file_or_env(file, "EMRSYNC_MASTER_KEY")
    }

    /// The key from `file`, else from the environment variable `var`.
    pub fn from_file_or_env(file: Option<&Path>, var: &str) -> anyhow::Result<Option<Seal>> {
        let text = match file {
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("cannot read the master key file {}: {e}", path.display())
            })?,
            None => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => v,
                _ => return Ok(None),
            },
        };
        Seal::from_base64(&text)
            .map(Some)
            .map_err(|e| anyhow::anyhow!(e))
    }

    /// `plain` sealed, for a column; `what` (the kind of secret) is bound to it, so that a
    /// sealed value copied into another kind's place does not open there.
    pub fn seal(&self, what: &str, plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("the system's random source works");
        let mut data = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(what.as_bytes()),
                &mut data,
            )
            .expect("AES-GCM seals any length we store");
        let mut out = nonce.to_vec();
        out.extend(data);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    /// Open a value `seal` made with this key for `what`.
    pub fn open(&self, what: &str, sealed: &str) -> Result<Vec<u8>, String> {
        let body = sealed.strip_prefix(PREFIX).ok_or("not a sealed value")?;
        let bytes = STANDARD
            .decode(body)
            .map_err(|_| "a sealed value is damaged")?;
        if bytes.len() < NONCE_LEN {
            return Err("a sealed value is damaged".into());
        }
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce")?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(what.as_bytes()), &mut data)
            .map_err(|_| {
                "a sealed value does not open with this master key (a wrong key, or a damaged value)"
            })?;
        Ok(plain.to_vec())
    }
}

impl Seal {
    /// A 256-bit key for `purpose`, derived from the master key (HMAC-SHA-256 of the purpose).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let tag = hmac::sign(&self.derive, purpose.as_bytes());
        tag.as_ref()
            .try_into()
            .expect("HMAC-SHA-256 gives 32 bytes")
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Seal {
        Seal::from_base64(&STANDARD.encode([byte; 32])).unwrap()
    }

    #[test]
    fn what_is_sealed_opens_with_its_key_and_kind_only() {
        let s = key(7);
        let sealed = s.seal("signing key", b"-----secret-----");
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("secret"));
        assert_eq!(s.open("signing key", &sealed).unwrap(), b"-----secret-----");
        // two seals of one value differ (a fresh nonce each)
        assert_ne!(sealed, s.seal("signing key", b"-----secret-----"));
        assert!(key(8).open("signing key", &sealed).is_err(), "another key");
        assert!(s.open("channel header", &sealed).is_err(), "another kind");
        let mut damaged = sealed.clone();
        damaged.replace_range(20..21, if &sealed[20..21] == "A" { "B" } else { "A" });
        assert!(s.open("signing key", &damaged).is_err(), "a changed byte");
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_master_key() {
        let a = key(7).derive("database file");
        assert_eq!(a, key(7).derive("database file"));
        assert_ne!(a, key(7).derive("something else"));
        assert_ne!(a, key(8).derive("database file"));
        assert_ne!(&a[..], &[7u8; 32][..], "never the master key itself");
    }

    #[test]
    fn a_master_key_must_be_32_bytes_of_base64() {
        assert!(Seal::from_base64("not base64!").is_err());
        assert!(Seal::from_base64(&STANDARD.encode([1u8; 16])).is_err());
        assert!(Seal::from_base64(&format!("{}\n", STANDARD.encode([1u8; 32]))).is_ok());
    }
}
