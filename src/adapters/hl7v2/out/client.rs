//! The MLLP client of one target: one connection, one message in flight. A message is sent
//! and its ACK awaited; the answer is read as MSA-1 (AA or CA: taken; AE, AR, CE, CR:
//! refused, with the target's words from ERR or MSA-3). An ACK that names another control id
//! is stale (the answer to a try that timed out), and is skipped. No answer in time, a closed
//! connection or an unreadable answer are errors of the link: the caller tries again later,
//! on a new connection. Over TLS when the target asks for it (`Tls`).

use super::super::message::{decode, parse};
use super::super::mllp::{Frame, Framer, frame};
use rustls::pki_types::ServerName;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The largest ACK read (an ACK is a few hundred bytes; a target that sends megabytes back is
/// not answering).
const MAX_ACK_BYTES: usize = 64 * 1024;

/// The target's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// MSA-1.
    pub code: String,
    /// Why, when refused: ERR-8 (user message) or ERR-3's text, else MSA-3.
    pub error: Option<String>,
}

impl Ack {
    /// Whether the target took the message.
    pub fn accepted(&self) -> bool {
        matches!(self.code.as_str(), "AA" | "CA")
    }
}

/// A link failure: nothing is known of what the target did with the message.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS to {0}: {1}")]
    Tls(String, String),
    #[error("the connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("no ACK within {0:?}")]
    Timeout(Duration),
    #[error("the target closed the connection")]
    Closed,
    #[error("the answer is not an ACK: {0}")]
    Garbled(String),
}

/// TLS to a target: the CAs its certificate must chain to, the name it must carry, and our
/// certificate when it asks for one; made once per target, used for every connection.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl Tls {
    /// From PEM files: `ca`, and `identity` (certificate chain, key); `name` as the target's
    /// certificate must say it (a host name or an IP address).
    pub fn new(ca: &Path, name: &str, identity: Option<(&Path, &Path)>) -> Result<Tls, String> {
        let config = crate::tls::client_config(ca, identity).map_err(|e| e.to_string())?;
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| format!("'{name}' is not a server name: {e}"))?;
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }
}

/// A connection's byte stream: plain TCP or TLS over it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One open connection to a target.
pub struct Link {
    stream: Box<dyn Io>,
    framer: Framer,
}

impl Link {
    /// Connect to `address` within `timeout` (the TLS handshake included, with `tls`).
    pub async fn connect(
        address: &str,
        timeout: Duration,
        tls: Option<&Tls>,
    ) -> Result<Link, LinkError> {
        let timed_out = || LinkError::Connect(address.into(), std::io::ErrorKind::TimedOut.into());
        let deadline = tokio::time::Instant::now() + timeout;
        let tcp = tokio::time::timeout_at(deadline, TcpStream::connect(address))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| LinkError::Connect(address.into(), e))?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Io> = match tls {
            None => Box::new(tcp),
            Some(t) => Box::new(
                tokio::time::timeout_at(deadline, t.connector.connect(t.name.clone(), tcp))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(|e| LinkError::Tls(address.into(), e.to_string()))?,
            ),
        };
        Ok(Link {
            stream,
            framer: Framer::new(MAX_ACK_BYTES),
        })
    }

    /// Send `message` (whose MSH-10 is `control_id`) and wait up to `timeout` for its ACK.
    pub async fn exchange(
        &mut self,
        message: &str,
        control_id: &str,
        timeout: Duration,
    ) -> Result<Ack, LinkError> {
        self.stream.write_all(&frame(message)).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut buf))
                .await
                .map_err(|_| LinkError::Timeout(timeout))??;
            if n == 0 {
                return Err(LinkError::Closed);
            }
            for f in self.framer.push(&buf[..n]) {
                let Frame::Message(bytes) = f else {
                    return Err(LinkError::Garbled("an answer larger than 64 KiB".into()));
                };
                let ack = read_ack(&decode(&bytes))?;
                if ack.0 == control_id {
                    return Ok(ack.1);
                }
                tracing::debug!(expected = control_id, got = %ack.0, "stale ACK skipped");
            }
        }
    }
}

/// An ACK's (MSA-2, answer).
pub fn read_ack(text: &str) -> Result<(String, Ack), LinkError> {
    let m = parse(text).map_err(|e| LinkError::Garbled(e.to_string()))?;
    let msa = m
        .first("MSA")
        .ok_or_else(|| LinkError::Garbled("no MSA segment".into()))?;
    let code = msa.value(1).trim().to_string();
    if !matches!(code.as_str(), "AA" | "AE" | "AR" | "CA" | "CE" | "CR") {
        return Err(LinkError::Garbled(format!("MSA-1 is '{code}'")));
    }
    let error = m
        .all("ERR")
        .map(|e| {
            let words = [e.value(8), e.get(3, 2), e.get(1, 4)];
            let location = e.field(2).first();
            let place = match location.get(1) {
                "" => String::new(),
                seg => format!("{seg}-{} ", location.get(3)),
            };
            let why = words.into_iter().find(|w| !w.is_empty()).unwrap_or("");
            format!("{place}{why}").trim().to_string()
        })
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let error = match (error.is_empty(), msa.value(3)) {
        (false, _) => Some(error),
        (true, "") => None,
        (true, text) => Some(text.to_string()),
    };
    Ok((msa.value(2).to_string(), Ack { code, error }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_ack_says_where_and_why() {
        let text = "MSH|^~\\&|LEGACY|HOSP|EMRSYNC|HUB|20261206||ACK^A01|A1|P|2.5.1\r\
                    MSA|AE|ES7\r\
                    ERR||PID^1^3|101^Required field missing^HL70357|E||||MRN is required";
        let (id, ack) = read_ack(text).unwrap();
        assert_eq!(id, "ES7");
        assert!(!ack.accepted());
        assert_eq!(ack.error.as_deref(), Some("PID-3 MRN is required"));
        let ok = "MSH|^~\\&|L|H|E|H|20261206||ACK|A2|P|2.3\rMSA|AA|ES8";
        assert_eq!(
            read_ack(ok).unwrap().1,
            Ack {
                code: "AA".into(),
                error: None
            }
        );
        let old = "MSH|^~\\&|L|H|E|H|20261206||ACK|A2|P|2.3\rMSA|AR|ES9|unknown trigger";
        assert_eq!(
            read_ack(old).unwrap().1.error.as_deref(),
            Some("unknown trigger")
        );
        assert!(read_ack("MSH|^~\\&|L|H|E|H|20261206||ACK|A2|P|2.3\rMSA|OK|ES9").is_err());
        assert!(read_ack("garbage").is_err());
    }
}
