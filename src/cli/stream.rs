//! `emrsync stream tail`: print the event stream's events, from a stream sequence, a time or
//! the last few, on all subjects or one pattern; then stop, or follow as events arrive. The
//! integration team's look at what consumers see, through an ordered consumer that leaves
//! nothing behind on the broker.

use crate::stream::config::BrokerArgs;
use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures_util::StreamExt;
use serde_json::Value;
use std::io::Write;
use std::time::Duration;

#[derive(clap::Args)]
pub struct StreamCliArgs {
    #[command(subcommand)]
    pub command: StreamCommand,
}

#[derive(clap::Subcommand)]
pub enum StreamCommand {
    /// Print events: the last ten by default, or from `--from-seq` or `--since`.
    Tail(TailArgs),
}

#[derive(clap::Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub stream: BrokerArgs,

    /// Only events on subjects matching this pattern (`emrsync.Observation.*`, `emrsync.*.7`).
    #[arg(long)]
    pub subject: Option<String>,

    /// From this stream sequence on.
    #[arg(long, conflicts_with_all = ["since", "last"])]
    pub from_seq: Option<u64>,

    /// From this time on: an RFC 3339 instant (`2026-12-07T03:00:00Z`) or a span before now
    /// (`15m`, `2h`, `1day`).
    #[arg(long, conflicts_with = "last")]
    pub since: Option<String>,

    /// The last N events of the stream (before the subject filter).
    #[arg(long, default_value_t = 10)]
    pub last: u64,

    /// Keep printing events as they arrive (until interrupted).
    #[arg(long, short = 'f')]
    pub follow: bool,

    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<u64>,

    /// One JSON object per line (`seq`, `subject`, `event`) instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn tail(args: TailArgs) -> anyhow::Result<()> {
    let Some(url) = args.stream.url.clone() else {
        anyhow::bail!("which broker? give --stream nats://host:4222 (or EMRSYNC_STREAM)");
    };
    let client = args
        .stream
        .connect(&url)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", crate::store::db::redacted(&url)))?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(&args.stream.name)
        .await
        .map_err(|e| anyhow::anyhow!("the stream {}: {e}", args.stream.name))?;
    let state = stream.info().await?.state.clone();
    let deliver_policy = match (&args.from_seq, &args.since) {
        (Some(seq), _) => DeliverPolicy::ByStartSequence {
            start_sequence: (*seq).max(1),
        },
        (None, Some(since)) => DeliverPolicy::ByStartTime {
            start_time: instant(since)?,
        },
        (None, None) => DeliverPolicy::ByStartSequence {
            start_sequence: state
                .last_sequence
                .saturating_sub(args.last)
                .saturating_add(1)
                .max(state.first_sequence),
        },
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: args.subject.clone().unwrap_or_default(),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("reading the stream {}: {e}", args.stream.name))?;
    // without --follow: up to what the stream held when the command started
    let end = state.last_sequence;
    if !args.follow && (state.messages == 0 || past_end(&deliver_policy, end)) {
        return Ok(());
    }
    let mut messages = consumer.messages().await?;
    let mut printed = 0u64;
    let mut out = std::io::stdout().lock();
    loop {
        if args.count.is_some_and(|c| printed >= c) {
            break;
        }
        // a filter may match nothing more before the end: a quiet second ends a bounded tail
        let next = match args.follow {
            true => messages.next().await,
            false => match tokio::time::timeout(Duration::from_secs(1), messages.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
        };
        let Some(message) = next else { break };
        let message = message.map_err(|e| anyhow::anyhow!("reading the stream: {e}"))?;
        let (seq, pending) = {
            let info = message
                .info()
                .map_err(|e| anyhow::anyhow!("a message without its position: {e}"))?;
            (info.stream_sequence, info.pending)
        };
        if !args.follow && seq > end {
            break;
        }
        let event: Value = serde_json::from_slice(&message.payload).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&message.payload).into_owned())
        });
        let line = match args.json {
            true => {
                serde_json::json!({"seq": seq, "subject": message.subject.as_str(), "event": event})
                    .to_string()
            }
            false => text(seq, &event),
        };
        writeln!(out, "{line}")?;
        out.flush()?;
        printed += 1;
        if !args.follow && (seq >= end || pending == 0) {
            break;
        }
    }
    Ok(())
}

/// Whether a start position lies beyond the last sequence `end`.
fn past_end(policy: &DeliverPolicy, end: u64) -> bool {
    matches!(policy, DeliverPolicy::ByStartSequence { start_sequence } if *start_sequence > end)
}

/// One event as a line: position, commit time, action, the version, the patient.
fn text(seq: u64, e: &Value) -> String {
    let s = |k: &str| e[k].as_str().unwrap_or("-").to_string();
    format!(
        "{seq:>8}  {}  {:<6}  {}  {}",
        s("time"),
        s("action"),
        s("subject"),
        s("patient")
    )
}

/// `--since`: an RFC 3339 instant or a span before now.
fn instant(since: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(since) {
        return Ok(at.with_timezone(&chrono::Utc));
    }
    let span = humantime::parse_duration(since).map_err(|_| {
        anyhow::anyhow!("--since {since}: neither an RFC 3339 instant nor a span such as 15m")
    })?;
    // a span past the calendar's start is refused, not a panic
    chrono::Duration::from_std(span)
        .ok()
        .and_then(|d| chrono::Utc::now().checked_sub_signed(d))
        .ok_or_else(|| anyhow::anyhow!("--since {since}: too long ago"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_an_instant_or_a_span_before_now() {
        let at = instant("2026-12-07T03:00:00+01:00").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-12-07T02:00:00+00:00");
        let ago = chrono::Utc::now() - instant("15m").unwrap();
        assert!((ago.num_seconds() - 900).abs() < 5, "{ago}");
        assert!(instant("yesterday-ish").is_err());
        assert!(instant("1000000years").is_err());
    }
}
