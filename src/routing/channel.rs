//! How a target is reached: its channel (MLLP with optional TLS, a FHIR server, a REST-hook
//! endpoint) and the credentials it is sent, which never sit in the routes themselves.

use serde::{Deserialize, Serialize};

/// How a target is reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Channel {
    /// HL7v2 over MLLP: one connection, one message in flight, the next after its ACK.
    Mllp {
        /// host:port
        address: String,
        /// How long an ACK is waited for before the message is sent again (milliseconds).
        #[serde(default = "ack_timeout_ms")]
        ack_timeout_ms: u64,
        /// TLS to the target (without it, plain TCP).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tls: Option<MllpTls>,
    },
    /// A FHIR R4 server: each message a transaction Bundle POSTed to its base.
    Fhir {
        base: String,
        /// Without it, requests carry no token.
        #[serde(default)]
        oauth2: Option<OAuth2>,
        /// How long an answer is waited for before the message is sent again (milliseconds).
        #[serde(default = "ack_timeout_ms")]
        timeout_ms: u64,
    },
    /// A REST-hook endpoint, as a rest-hook Subscription's: each message a notification Bundle
    /// POSTed to it, the next only after a 2xx.
    RestHook {
        endpoint: String,
        /// Headers sent with every notification (an API key, say).
        #[serde(default)]
        headers: Vec<Header>,
        /// Without it, requests carry no bearer token.
        #[serde(default)]
        oauth2: Option<OAuth2>,
        /// How long an answer is waited for before the message is sent again (milliseconds).
        #[serde(default = "ack_timeout_ms")]
        timeout_ms: u64,
    },
}

/// A header a REST-hook target is sent. Its value is written in the routes only when it is no
/// secret (they are shown to the integration team and kept in change control); a credential
/// is read from a file or the environment when the sender starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// An environment variable holding the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_env: Option<String>,
    /// A file holding the value (its first line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_file: Option<std::path::PathBuf>,
}

impl Header {
    /// The name and value to send, or why there is none.
    pub fn resolve(&self) -> Result<(String, String), String> {
        let value = match (&self.value, &self.value_env, &self.value_file) {
            (Some(v), _, _) => v.clone(),
            (_, Some(var), _) => std::env::var(var)
                .map_err(|_| format!("header {}: ${var} is not set", self.name))?,
            (_, _, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("header {}: {}: {e}", self.name, path.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
            _ => return Err(format!("header {} has no value", self.name)),
        };
        if value.chars().any(char::is_control) {
            return Err(format!(
                "header {}: the value holds a control character",
                self.name
            ));
        }
        Ok((self.name.clone(), value))
    }

    /// What is wrong with it as written, if anything.
    pub(super) fn problem(&self) -> Option<String> {
        let token = !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        let sources = [
            self.value.is_some(),
            self.value_env.is_some(),
            self.value_file.is_some(),
        ];
        let secret = ["authorization", "proxy-authorization", "cookie"]
            .contains(&self.name.to_ascii_lowercase().as_str());
        if !token {
            Some(format!("header name '{}' is not an HTTP token", self.name))
        } else if sources.iter().filter(|s| **s).count() != 1 {
            Some(format!(
                "header {}: exactly one of value, value_env, value_file",
                self.name
            ))
        } else if secret && self.value.is_some() {
            Some(format!(
                "header {}: a credential is read from value_env or value_file, never written \
                 in the routes (every reader of them would see it)",
                self.name
            ))
        } else if self
            .value
            .as_deref()
            .is_some_and(|v| v.chars().any(char::is_control))
        {
            Some(format!(
                "header {}: the value holds a control character",
                self.name
            ))
        } else {
            None
        }
    }
}

fn ack_timeout_ms() -> u64 {
    10_000
}

/// How a FHIR target's token is got: OAuth2 client credentials, the secret read from a file
/// or the environment when a token is needed (never in the routes, which the integration team
/// reads and keeps in change control).
pub use crate::adapters::oauth2::Credentials as OAuth2;

/// TLS to an MLLP target: the CAs its certificate must chain to (PEM: a hospital's own CA, or
/// the system's bundle such as `/etc/ssl/certs/ca-certificates.crt`), the name it must carry
/// (default: the address's host), and our certificate and key for a target that asks for one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MllpTls {
    pub ca_file: std::path::PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<std::path::PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<std::path::PathBuf>,
}
