//! MLLP: each message framed as 0x0B ... 0x1C 0x0D on a TCP connection. The framer survives
//! what real links send: a frame split across reads or several in one, bytes outside any frame
//! (skipped and counted), a frame restarted before it ended, and frames larger than allowed
//! (discarded to their end and answered with an AR). Each connection is served in order: the
//! next message is read once the previous one's ACK has been written, as senders expect.
//! The port speaks TLS when given a certificate (rustls), plain TCP otherwise. Who may connect
//! and what a connection may hold is `peers`' to say; a frame must also arrive whole within the
//! idle timeout of its first byte, so a peer trickling a byte now and then holds nothing long.

use super::ack::{AckCode, Problem, ack};
use super::ingest::Inbound;
use super::message::{Delimiters, Header};
use super::peers::{PeerLimits, Peers, Slot};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub const START: u8 = 0x0B;
pub const END: u8 = 0x1C;
pub const CR: u8 = 0x0D;

/// What the framer found in the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole message.
    Message(Vec<u8>),
    /// A frame longer than allowed, dropped.
    TooLarge(usize),
}

/// Splits a byte stream into frames.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    in_frame: bool,
    /// Past the size limit: bytes are dropped until the frame ends.
    dropping: usize,
    max: usize,
    /// Bytes seen outside any frame (other than line ends between frames).
    pub garbage: usize,
}

impl Framer {
    pub fn new(max: usize) -> Framer {
        Framer {
            buf: Vec::new(),
            in_frame: false,
            dropping: 0,
            max,
            garbage: 0,
        }
    }

    /// Feed bytes; returns the frames they completed.
    pub fn push(&mut self, data: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        for &b in data {
            if !self.in_frame {
                match b {
                    START => self.in_frame = true,
                    // the CR after an end marker, or line ends a sender puts between frames
                    CR | b'\n' => {}
                    _ => self.garbage += 1,
                }
                continue;
            }
            match b {
                END => {
                    self.in_frame = false;
                    if self.dropping > 0 {
                        out.push(Frame::TooLarge(self.dropping));
                        self.dropping = 0;
                    } else {
                        out.push(Frame::Message(std::mem::take(&mut self.buf)));
                    }
                }
                // a new start before the end: the sender gave up on the last one
                START => {
                    self.garbage += self.buf.len() + self.dropping;
                    self.buf.clear();
                    self.dropping = 0;
                }
                _ if self.dropping > 0 => self.dropping += 1,
                _ => {
                    self.buf.push(b);
                    if self.buf.len() > self.max {
                        self.dropping = self.buf.len();
                        self.buf = Vec::new();
                    }
                }
            }
        }
        out
    }

    /// Bytes of an unfinished frame held.
    pub fn pending(&self) -> usize {
        self.buf.len() + self.dropping
    }
}

/// Frame a message for sending.
pub fn frame(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(START);
    out.extend_from_slice(message.as_bytes());
    out.push(END);
    out.push(CR);
    out
}

#[derive(Clone)]
pub struct MllpSettings {
    /// Largest message accepted, in bytes.
    pub max_message_bytes: usize,
    /// A connection silent this long is closed.
    pub idle_timeout: Duration,
    /// Answer every message with one original-mode ACK, whatever its MSH-15 and MSH-16 ask
    /// (for senders that fill them but wait for one ACK all the same).
    pub original_acks_only: bool,
    /// TLS, when the port is to speak it (`--mllp-tls-cert`, `--mllp-tls-key`).
    pub tls: Option<TlsAcceptor>,
    /// Who may connect, how many at once, and the bytes their unfinished frames may hold.
    pub peers: PeerLimits,
}

impl Default for MllpSettings {
    fn default() -> Self {
        MllpSettings {
            max_message_bytes: 10 * 1024 * 1024,
            idle_timeout: Duration::from_secs(300),
            original_acks_only: false,
            tls: None,
            peers: PeerLimits::default(),
        }
    }
}

/// The TLS side of the MLLP port: its certificate chain and key (PEM), and with `client_ca`
/// the CA whose certificates senders must present.
pub fn tls(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<TlsAcceptor> {
    let config = crate::tls::server_config(cert, key, client_ca)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accept connections until `stop` turns true; then close the listening socket (new senders
/// are refused by the operating system) and return once every connection has finished the
/// message in hand and sent its ACK.
pub async fn serve(
    listener: TcpListener,
    inbound: Inbound,
    settings: MllpSettings,
    mut stop: watch::Receiver<bool>,
) {
    let peers = Peers::new(settings.peers.clone());
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
            // finished connections are reaped as they end (their results are logged inside)
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        match accepted {
            Ok((stream, peer)) => {
                let slot = match peers.admit(peer.ip()) {
                    Ok(slot) => slot,
                    Err(why) => {
                        tracing::warn!(%peer, ?why, "MLLP connection refused");
                        continue; // dropped: closed at once
                    }
                };
                let (inbound, settings, stop) = (inbound.clone(), settings.clone(), stop.clone());
                connections.spawn(async move {
                    tracing::debug!(%peer, "MLLP connection");
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::info!(%peer, error = %e, "MLLP connection lost at once");
                        return;
                    }
                    let ended = match settings.tls.clone() {
                        None => connection(stream, slot, inbound, settings, stop).await,
                        // a client that never finishes its handshake is dropped like an idle one
                        Some(tls) => {
                            match tokio::time::timeout(settings.idle_timeout, tls.accept(stream))
                                .await
                            {
                                Ok(Ok(stream)) => {
                                    connection(stream, slot, inbound, settings, stop).await
                                }
                                Ok(Err(e)) => Err(e),
                                Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
                            }
                        }
                    };
                    if let Err(e) = ended {
                        tracing::info!(%peer, error = %e, "MLLP connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "MLLP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    let open = connections.len();
    if open > 0 {
        tracing::info!(
            open,
            "MLLP listener closed; connections finish the message in hand"
        );
    }
    while connections.join_next().await.is_some() {}
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    mut slot: Slot,
    inbound: Inbound,
    settings: MllpSettings,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut framer = Framer::new(settings.max_message_bytes);
    let mut buf = vec![0u8; 64 * 1024];
    // when the unfinished frame began: it must end within the idle timeout of that
    let mut frame_began: Option<tokio::time::Instant> = None;
    loop {
        let wait = match frame_began {
            Some(t) => settings.idle_timeout.saturating_sub(t.elapsed()),
            None => settings.idle_timeout,
        };
        // at shutdown a connection between messages closes; one in the middle of a message
        // reads it to its end, applies it and sends its ACK first
        let read = tokio::select! {
            read = tokio::time::timeout(wait, stream.read(&mut buf)) => read,
            _ = stop.wait_for(|s| *s), if framer.pending() == 0 => {
                tracing::info!("MLLP connection closed for shutdown");
                return Ok(());
            }
        };
        let n = match read {
            Ok(r) => r?,
            Err(_) => {
                tracing::info!(
                    unfinished = framer.pending(),
                    "MLLP connection idle, or a frame unfinished, too long; closing it"
                );
                return Ok(());
            }
        };
        if n == 0 {
            if framer.pending() > 0 {
                tracing::warn!(
                    bytes = framer.pending(),
                    "MLLP connection closed in the middle of a message"
                );
            }
            return Ok(());
        }
        let garbage_before = framer.garbage;
        for got in framer.push(&buf[..n]) {
            let reply = match got {
                Frame::Message(bytes) => {
                    slot.pace().await;
                    let inbound = inbound.clone();
                    let outcome = tokio::task::spawn_blocking(move || {
                        super::ingest::handle(&inbound, &bytes)
                    })
                    .await
                    .map_err(std::io::Error::other)?;
                    for reply in outcome.replies(settings.original_acks_only) {
                        stream.write_all(&frame(reply)).await?;
                    }
                    continue;
                }
                Frame::TooLarge(size) => {
                    tracing::warn!(
                        size,
                        max = settings.max_message_bytes,
                        "MLLP message too large; refused"
                    );
                    let p = Problem {
                        location: String::new(),
                        code: "207",
                        text: format!(
                            "message of {size} bytes or more refused: at most {} bytes are accepted",
                            settings.max_message_bytes
                        ),
                    };
                    ack(
                        &Delimiters::default(),
                        &Header::default(),
                        AckCode::Reject.as_str(),
                        Some(&p),
                        &[],
                        "TOOLARGE",
                    )
                }
            };
            stream.write_all(&frame(&reply)).await?;
        }
        frame_began = match framer.pending() {
            0 => None,
            _ => frame_began.or_else(|| Some(tokio::time::Instant::now())),
        };
        if !slot.hold(framer.pending()) {
            tracing::warn!(
                unfinished = framer.pending(),
                "MLLP peer holds more unfinished data than its share; closing it"
            );
            let p = Problem {
                location: String::new(),
                code: "207",
                text: "the server holds too much unfinished data from this peer (or from all); \
                       the message was not read: send it again"
                    .into(),
            };
            let reply = ack(
                &Delimiters::default(),
                &Header::default(),
                AckCode::Reject.as_str(),
                Some(&p),
                &[],
                "BUSY",
            );
            stream.write_all(&frame(&reply)).await?;
            return Ok(());
        }
        if framer.garbage > garbage_before {
            tracing::warn!(
                bytes = framer.garbage - garbage_before,
                "bytes outside any MLLP frame skipped"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_reads_and_several_in_one() {
        let mut f = Framer::new(1000);
        let mut all = frame("MSH|one");
        all.extend(frame("MSH|two"));
        // one byte at a time
        let mut got = Vec::new();
        for b in &all {
            got.extend(f.push(std::slice::from_ref(b)));
        }
        assert_eq!(
            got,
            [
                Frame::Message(b"MSH|one".to_vec()),
                Frame::Message(b"MSH|two".to_vec())
            ]
        );
        // all at once
        let mut f = Framer::new(1000);
        assert_eq!(f.push(&all).len(), 2);
        assert_eq!(f.garbage, 0);
    }

    #[test]
    fn garbage_restarts_and_oversized_frames() {
        let mut f = Framer::new(10);
        let mut bytes = b"noise".to_vec();
        bytes.extend([START]);
        bytes.extend(b"abandoned");
        bytes.extend(frame("MSH|ok"));
        bytes.extend(frame("MSH|far too long for the limit"));
        bytes.extend(frame("MSH|after"));
        let got = f.push(&bytes);
        assert_eq!(
            got,
            [
                Frame::Message(b"MSH|ok".to_vec()),
                Frame::TooLarge(30),
                Frame::Message(b"MSH|after".to_vec())
            ]
        );
        assert_eq!(f.garbage, 5 + 9);
    }
}
