//! An MLLP sender for the tests: a real TCP connection, framed messages, and the ACK read back
//! whole (however the server's bytes arrive).

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Mllp {
    stream: TcpStream,
    pending: Vec<u8>,
}

/// An ACK as received: its MSA-1 code, MSA-2 control id, and its segments by line.
#[derive(Debug, Clone)]
pub struct Ack {
    pub text: String,
}

impl Ack {
    /// Field `n` of the first segment `id` (MSH counted as other segments: MSH-3 is `field("MSH", 3)`).
    pub fn field(&self, id: &str, n: usize) -> String {
        let Some(line) = self.text.split('\r').find(|l| l.starts_with(id)) else {
            return String::new();
        };
        let parts: Vec<&str> = line.split('|').collect();
        let i = if id == "MSH" { n - 1 } else { n };
        parts.get(i).map(|s| s.to_string()).unwrap_or_default()
    }

    pub fn code(&self) -> String {
        self.field("MSA", 1)
    }

    /// The error's code (HL7 table 0357): ERR-3, or before v2.5 ERR-1's fourth component.
    pub fn error_code(&self) -> String {
        let f = self.field("ERR", 3);
        match f.split('^').next().unwrap_or("") {
            "" => {
                let eld = self.field("ERR", 1);
                let code = eld.split('^').nth(3).unwrap_or("");
                code.split('&').next().unwrap_or("").to_string()
            }
            code => code.to_string(),
        }
    }

    /// ERR-2's segment and field, e.g. "PID-3".
    pub fn error_location(&self) -> String {
        let f = self.field("ERR", 2);
        let p: Vec<&str> = f.split('^').collect();
        match (p.first(), p.get(2)) {
            (Some(s), Some(f)) if !f.is_empty() => format!("{s}-{f}"),
            (Some(s), _) => s.to_string(),
            _ => String::new(),
        }
    }
}

impl Mllp {
    pub async fn connect(port: u16) -> Mllp {
        Mllp {
            stream: TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("the MLLP listener accepts"),
            pending: Vec::new(),
        }
    }

    /// The connection itself (to see it closed).
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Send raw bytes as they are (no framing added).
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Send one message, framed, and wait for its ACK.
    pub async fn send(&mut self, message: &str) -> Ack {
        self.write_raw(&frame(message.as_bytes())).await;
        self.ack().await
    }

    /// The next ACK (panics after 30 s: a hang is a failure).
    pub async fn ack(&mut self) -> Ack {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == 0x1C) {
                let start = self.pending.iter().position(|&b| b == 0x0B).unwrap_or(0);
                let body = self.pending[start + 1..end].to_vec();
                let mut rest = end + 1;
                if self.pending.get(rest) == Some(&0x0D) {
                    rest += 1;
                }
                self.pending.drain(..rest);
                return Ack {
                    text: String::from_utf8(body).expect("ACKs are UTF-8"),
                };
            }
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut buf))
                .await
                .expect("an ACK within 30 s")
                .unwrap();
            assert!(n > 0, "the server closed the connection without an ACK");
            self.pending.extend_from_slice(&buf[..n]);
        }
    }
}

pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0x0B];
    out.extend_from_slice(message);
    out.extend_from_slice(&[0x1C, 0x0D]);
    out
}
