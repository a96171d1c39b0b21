//! `emrsync send`: HL7v2 messages from files to an MLLP listener, each framed as it is (any
//! delimiters, any line ending, several messages per file), with each ACK printed. For trying
//! a server with a sender's own files, and for the README's first steps (`examples/hl7v2/`).

use crate::adapters::hl7v2::mllp::{Frame, Framer, frame};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(clap::Args)]
pub struct SendArgs {
    /// Files of HL7v2 messages (each message starts with an MSH segment).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The MLLP listener, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:2575")]
    pub mllp: String,
    /// Seconds to wait for each ACK.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// The messages of a file's text: each from an `MSH` at the start of a line to the next.
pub fn messages(text: &str) -> Vec<&str> {
    let text = text.trim_start_matches('\u{feff}');
    let mut starts: Vec<usize> = text
        .match_indices("MSH")
        .map(|(i, _)| i)
        .filter(|&i| i == 0 || matches!(text.as_bytes()[i - 1], b'\r' | b'\n'))
        .collect();
    starts.push(text.len());
    starts
        .windows(2)
        .map(|w| text[w[0]..w[1]].trim_end_matches(['\r', '\n']))
        .filter(|m| !m.is_empty())
        .collect()
}

/// Field `n` of the first segment `id` of an ACK (MSH counted as the standard counts it).
fn field(ack: &str, id: &str, n: usize) -> String {
    let Some(line) = ack.split(['\r', '\n']).find(|l| l.starts_with(id)) else {
        return String::new();
    };
    let sep = line.get(3..4).unwrap_or("|");
    let i = if id == "MSH" { n - 1 } else { n };
    line.split(sep).nth(i).unwrap_or_default().to_string()
}

/// Send every message; true when each was accepted (AA, or CA then AA).
pub async fn send(args: SendArgs) -> anyhow::Result<bool> {
    let mut stream = TcpStream::connect(&args.mllp)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the MLLP listener at {}: {e}", args.mllp))?;
    let wait = Duration::from_secs(args.timeout.max(1));
    let (mut sent, mut accepted) = (0, 0);
    // the server's own frame reader: ACKs split across reads, or several in one
    let mut framer = Framer::new(1024 * 1024);
    let mut acks: VecDeque<String> = VecDeque::new();
    for file in &args.files {
        let bytes = std::fs::read(file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        let text = String::from_utf8_lossy(&bytes);
        for (n, message) in messages(&text).into_iter().enumerate() {
            stream.write_all(&frame(message)).await?;
            sent += 1;
            // an enhanced-mode sender may get an accept ACK first: read until an application
            // ACK (or an accept ACK that refuses)
            loop {
                let ack = next_ack(&mut stream, &mut framer, &mut acks, wait).await?;
                let code = field(&ack, "MSA", 1);
                let why = [field(&ack, "ERR", 8), field(&ack, "MSA", 3)]
                    .into_iter()
                    .find(|t| !t.is_empty())
                    .map(|t| format!(" {t}"))
                    .unwrap_or_default();
                println!(
                    "{}#{} {} {code}{why}",
                    file.display(),
                    n + 1,
                    field(message, "MSH", 10)
                );
                match code.as_str() {
                    "CA" => continue,
                    "AA" => accepted += 1,
                    _ => {}
                }
                break;
            }
        }
    }
    println!("{sent} sent, {accepted} accepted");
    Ok(sent == accepted)
}

/// The next framed ACK from the listener.
async fn next_ack(
    stream: &mut TcpStream,
    framer: &mut Framer,
    acks: &mut VecDeque<String>,
    wait: Duration,
) -> anyhow::Result<String> {
    loop {
        if let Some(ack) = acks.pop_front() {
            return Ok(ack);
        }
        let mut buf = [0u8; 8192];
        let n = tokio::time::timeout(wait, stream.read(&mut buf))
            .await
            .map_err(|_| anyhow::anyhow!("no ACK within {wait:?}"))??;
        anyhow::ensure!(n > 0, "the listener closed the connection without an ACK");
        for got in framer.push(&buf[..n]) {
            match got {
                Frame::Message(bytes) => {
                    acks.push_back(String::from_utf8_lossy(&bytes).into_owned())
                }
                Frame::TooLarge(size) => {
                    anyhow::bail!("an ACK of {size} bytes or more: not an ACK")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_s_messages_with_any_line_ending_and_delimiters() {
        let text = "\u{feff}MSH|^~\\&|A|B|||1||ADT^A01|1|P|2.5\nPID|1||X\n\nMSH#^~\\&#A#B###2##ADT^A08#2#P#2.5\r\nPID#1##Y\r\n";
        let found = messages(text);
        assert_eq!(found.len(), 2);
        assert!(found[0].ends_with("PID|1||X"));
        assert!(found[1].starts_with("MSH#"));
        assert_eq!(field(found[1], "MSH", 10), "2");
        assert!(messages("no message here").is_empty());
    }
}
