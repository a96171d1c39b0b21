//! Records a source pushes (`POST /adapters/<source>/webhook`) rather than waits to be asked
//! for. The vendor signs each delivery: `X-Webhook-Timestamp` (Unix seconds) and
//! `X-Webhook-Signature`, the hex HMAC-SHA256 of `<timestamp>.<body>` under a secret both
//! sides hold (`sha256=` before it is allowed). A delivery is taken only when its signature
//! verifies (in constant time), its timestamp is within the tolerance of now, and that
//! signature was not taken before: an old or replayed delivery is refused. What is taken is
//! applied as a page (`page`), its records mapped by the record type the delivery's event
//! names, and its signature kept in the page's transaction (`webhook_deliveries`, for twice
//! the tolerance): a delivery sent again to any process on the database is refused, and one
//! whose application failed is taken when the vendor sends it again.

use super::mapping::Context;
use super::page::{self, Applied, Page};
use super::source::Source;
use crate::ingest::Ingest;
use crate::store::schema::webhook_deliveries as wd;
use crate::store::{DbConnection, StoreError};
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::Value;
use serde_json_path::JsonPath;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A source's webhook, as its definition writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Webhook {
    /// A file holding the shared secret (its first line).
    pub secret_file: PathBuf,
    #[serde(default = "signature_header")]
    pub signature_header: String,
    #[serde(default = "timestamp_header")]
    pub timestamp_header: String,
    /// How far a delivery's timestamp may be from now, in seconds.
    #[serde(default = "tolerance")]
    pub tolerance_seconds: u64,
    /// Where the delivery names its event (JSONPath: `$.event`).
    pub event: String,
    /// The vendor's events and the record types their records are (`patient.updated` ->
    /// `patient`); an event not listed is acknowledged and ignored, and said.
    pub types: BTreeMap<String, String>,
    /// Where the records are (JSONPath to one record or an array of them).
    pub items: String,
}

fn signature_header() -> String {
    "x-webhook-signature".into()
}

fn timestamp_header() -> String {
    "x-webhook-timestamp".into()
}

fn tolerance() -> u64 {
    300
}

/// A webhook checked and ready: its paths parsed.
#[derive(Debug)]
pub struct Receiver {
    pub webhook: Webhook,
    event: JsonPath,
    items: JsonPath,
}

/// A delivery whose signature and time verified: its signature, as hex.
#[derive(Debug)]
pub struct Verified {
    signature: String,
    /// Unix seconds now.
    now: i64,
}

/// Why a delivery was not taken.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Unsigned(String),
    #[error("{0}")]
    Replayed(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Store(String),
}

/// What a delivery came to.
#[derive(Debug, Default)]
pub struct Taken {
    pub event: String,
    pub applied: Option<Applied>,
}

/// Deliveries are read up to this many records.
const MAX_RECORDS: usize = 10_000;

impl Receiver {
    pub fn of(webhook: Webhook, record_types: &[&str]) -> Result<Receiver, String> {
        let parse = |what: &str, p: &str| {
            JsonPath::parse(p).map_err(|e| format!("webhook.{what} {p}: {e}"))
        };
        for t in webhook.types.values() {
            if !record_types.contains(&t.as_str()) {
                return Err(format!("webhook.types: no record type {t}"));
            }
        }
        Ok(Receiver {
            event: parse("event", &webhook.event)?,
            items: parse("items", &webhook.items)?,
            webhook,
        })
    }

    /// Check a delivery's signature and time; `now` in Unix seconds. Whether it was taken
    /// before is `take`'s to say (the database knows).
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<Verified, Refusal> {
        let (Some(ts), Some(sig)) = (timestamp, signature) else {
            return Err(Refusal::Unsigned(format!(
                "a delivery needs {} and {}",
                self.webhook.timestamp_header, self.webhook.signature_header
            )));
        };
        let at: i64 = ts
            .trim()
            .parse()
            .map_err(|_| Refusal::Unsigned("the timestamp is not Unix seconds".into()))?;
        let tag = unhex(sig.trim().trim_start_matches("sha256="))
            .ok_or_else(|| Refusal::Unsigned("the signature is not hex".into()))?;
        let secret = std::fs::read_to_string(&self.webhook.secret_file)
            .map_err(|e| Refusal::Store(format!("the webhook's secret file: {e}")))?;
        let key = aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            secret.lines().next().unwrap_or("").trim().as_bytes(),
        );
        let mut signed = Vec::with_capacity(ts.len() + 1 + body.len());
        signed.extend_from_slice(ts.trim().as_bytes());
        signed.push(b'.');
        signed.extend_from_slice(body);
        aws_lc_rs::hmac::verify(&key, &signed, &tag)
            .map_err(|_| Refusal::Unsigned("the signature does not verify".into()))?;
        // only a signed timestamp is trusted: checked after the signature
        if (now - at).unsigned_abs() > self.webhook.tolerance_seconds {
            return Err(Refusal::Replayed(format!(
                "the delivery was signed at {at}, more than {} s from now",
                self.webhook.tolerance_seconds
            )));
        }
        // known by the signature itself, however it was written (case, `sha256=`)
        Ok(Verified {
            signature: hex::encode(&tag),
            now,
        })
    }

    /// How long a taken delivery's signature is kept: past it, its timestamp is refused anyway.
    fn window(&self) -> i64 {
        (self.webhook.tolerance_seconds.max(1) * 2) as i64
    }

    /// Apply a verified delivery of `source`, unless it was taken before.
    pub fn take(
        &self,
        ingest: &Ingest,
        source: &Source,
        cx: &Context<'_>,
        (verified, body): (&Verified, &[u8]),
    ) -> Result<Taken, Refusal> {
        let name = source.definition.name.as_str();
        let taken_before = ingest
            .store
            .read(|c| taken(c, name, &verified.signature))
            .map_err(|e| Refusal::Store(e.to_string()))?;
        if taken_before {
            return Err(Refusal::Replayed(
                "this delivery was taken before (its signature is known)".into(),
            ));
        }
        let body: Value = serde_json::from_slice(body)
            .map_err(|e| Refusal::Invalid(format!("the delivery is not JSON: {e}")))?;
        let event = match self.event.query(&body).at_most_one() {
            Ok(Some(Value::String(s))) => s.clone(),
            _ => {
                return Err(Refusal::Invalid(format!(
                    "no event at {}",
                    self.webhook.event
                )));
            }
        };
        let Some(record_type) = self.webhook.types.get(&event) else {
            tracing::info!(source = %source.definition.name, %event, "a webhook event no record type takes: acknowledged, ignored");
            return Ok(Taken {
                event,
                applied: None,
            });
        };
        let records = match self.items.query(&body).at_most_one() {
            Ok(Some(Value::Array(a))) => a.clone(),
            Ok(Some(v @ Value::Object(_))) => vec![v.clone()],
            _ => {
                return Err(Refusal::Invalid(format!(
                    "no record at {}",
                    self.webhook.items
                )));
            }
        };
        if records.len() > MAX_RECORDS {
            return Err(Refusal::Invalid(format!(
                "a delivery of {} records (at most {MAX_RECORDS})",
                records.len()
            )));
        }
        // the signature kept with what the delivery wrote (a second process taking the same
        // delivery at the same moment fails on its key, and nothing of it is written)
        let keep = |c: &mut DbConnection, _: &Applied| keep(c, name, verified, self.window());
        let page = Page {
            record_type,
            records: &records,
            cursor: None,
            also: Some(&keep),
        };
        let applied = page::apply(ingest, &source.definition.name, &source.maps, cx, &page)
            .map_err(|e| Refusal::Store(e.to_string()))?;
        Ok(Taken {
            event,
            applied: Some(applied),
        })
    }
}

/// Whether `source` took the delivery signed `signature` (within the window it is kept for).
fn taken(conn: &mut DbConnection, source: &str, signature: &str) -> Result<bool, StoreError> {
    Ok(diesel::select(diesel::dsl::exists(
        wd::table
            .filter(wd::source.eq(source))
            .filter(wd::signature.eq(signature)),
    ))
    .get_result(conn)?)
}

/// Keep the delivery's signature, and forget those of `source` older than the window.
fn keep(
    conn: &mut DbConnection,
    source: &str,
    verified: &Verified,
    window: i64,
) -> Result<(), StoreError> {
    diesel::delete(
        wd::table
            .filter(wd::source.eq(source))
            .filter(wd::taken_at.lt(verified.now - window)),
    )
    .execute(conn)?;
    diesel::insert_into(wd::table)
        .values((
            wd::source.eq(source),
            wd::signature.eq(&verified.signature),
            wd::taken_at.eq(verified.now),
        ))
        .execute(conn)?;
    Ok(())
}

/// A signature's bytes from its hex, at most 64 of them.
fn unhex(text: &str) -> Option<Vec<u8>> {
    (text.len() <= 128)
        .then(|| hex::decode(text).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn receiver(dir: &std::path::Path) -> Receiver {
        std::fs::write(dir.join("secret"), "whsec-1\n").unwrap();
        let webhook: Webhook = serde_json::from_value(json!({
            "secretFile": dir.join("secret"), "event": "$.event",
            "types": {"patient.updated": "patient"}, "items": "$.data"}))
        .unwrap();
        Receiver::of(webhook, &["patient"]).unwrap()
    }

    fn sign(ts: &str, body: &[u8]) -> String {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"whsec-1");
        let mut m = ts.as_bytes().to_vec();
        m.push(b'.');
        m.extend_from_slice(body);
        hex::encode(aws_lc_rs::hmac::sign(&key, &m))
    }

    #[test]
    fn only_a_fresh_delivery_signed_with_the_secret_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let r = receiver(dir.path());
        let body = br#"{"event":"patient.updated","data":{"id":1}}"#;
        let now = 1_800_000_000;
        let ts = now.to_string();
        let sig = sign(&ts, body);
        let verified = r.verify(Some(&ts), Some(&format!("sha256={sig}")), body, now);
        // known by its signature, however written
        let again = r.verify(Some(&ts), Some(&sig.to_uppercase()), body, now + 1);
        assert_eq!(verified.unwrap().signature, again.unwrap().signature);
        // another body under that signature, a wrong secret, no signature
        let other = br#"{"event":"patient.updated","data":{"id":2}}"#;
        assert!(matches!(
            r.verify(
                Some(&ts),
                Some(&sign(&(now + 5).to_string(), other)),
                other,
                now
            ),
            Err(Refusal::Unsigned(_))
        ));
        assert!(matches!(
            r.verify(Some(&ts), None, body, now),
            Err(Refusal::Unsigned(_))
        ));
        assert!(matches!(
            r.verify(Some(&ts), Some("zz"), body, now),
            Err(Refusal::Unsigned(_))
        ));
        // an old delivery, well signed
        let old = (now - 3600).to_string();
        assert!(matches!(
            r.verify(Some(&old), Some(&sign(&old, other)), other, now),
            Err(Refusal::Replayed(_))
        ));
    }
}
