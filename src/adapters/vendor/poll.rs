//! Reading a source's API: each record type page by page, from where its cursor says, each
//! page applied (`page`) with the cursor that follows it, until the vendor has no more; then
//! again after the source's poll interval.
//!
//! The cursor says where the reading stands: the change value the current reading asks from
//! (`since`), the next page's token, number or link while a reading is under way (`next`),
//! and the newest change value seen in it (`newest`, the next reading's `since`); for a record
//! type read with ETags, the first page's ETag (`etag`, sent as `If-None-Match` when the next
//! reading starts: a 304 ends it there, nothing changed). It is written in each page's
//! transaction, so a process killed mid-reading resumes at the next page.
//!
//! The vendor is treated with care and with suspicion: at most `requestsPerSecond` requests,
//! one reading at a time per source; `Retry-After` obeyed on 429 and 503, other failures
//! (5xx, no answer) tried again after a back-off with jitter; a 401 fetches a new token once.
//! A page is read up to 32 MiB and 10,000 records; a next link must stay on the source's
//! origin (its credentials go with it).

use super::cursor::{Cursor, newer, next_page};
use super::page::{self, Page};
use super::source::{Auth, Paging, Source};
use crate::adapters::oauth2::Tokens;
use crate::ingest::Ingest;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A page's body is read up to this size.
const MAX_PAGE_BYTES: usize = 32 << 20;
/// Records a page may hold.
const MAX_RECORDS: usize = 10_000;
/// Tries of one request before the reading stops (its cursor kept) until the next poll.
const TRIES: u32 = 6;
/// The longest wait between tries, and the most a `Retry-After` is obeyed for.
const LONGEST_WAIT: Duration = Duration::from_secs(60);

/// A page as the vendor sent it: its body, its records, its ETag.
struct Fetched {
    body: Value,
    items: Vec<Value>,
    etag: Option<String>,
}

/// What one poll did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Polled {
    pub pages: usize,
    pub accepted: usize,
    pub refused: usize,
}

pub struct Poller {
    ingest: Ingest,
    source: Arc<Source>,
    http: reqwest::Client,
    tokens: Option<Tokens>,
    last_request: Option<Instant>,
    /// On a shared PostgreSQL: the source's lease (name, owner) and when it was last renewed;
    /// renewed between pages, so that a long reading keeps it and one that lost it stops.
    lease: Option<(String, String, Instant)>,
}

/// How often a reading renews its lease (its term is 15 s).
const RENEW_EVERY: Duration = Duration::from_secs(5);

impl Poller {
    pub fn new(ingest: Ingest, source: Arc<Source>) -> Poller {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client with timeouts builds");
        let tokens = match &source.definition.auth {
            Auth::Oauth2ClientCredentials { credentials } => Some(Tokens::new(credentials.clone())),
            _ => None,
        };
        Poller {
            ingest,
            source,
            http,
            tokens,
            last_request: None,
            lease: None,
        }
    }

    /// Poll for ever, every `pollSeconds`; a failed reading is said and tried at the next.
    /// Processes sharing a PostgreSQL database read a source one at a time: the one holding
    /// its lease (`source:<name>`, as `owner`).
    pub async fn run(mut self, owner: String) {
        let every = Duration::from_secs(self.source.definition.poll_seconds.max(1));
        let name = self.source.definition.name.clone();
        let lease = format!("source:{name}");
        let shared = crate::store::lease::shared(&self.ingest.store)
            .await
            .unwrap_or(true);
        loop {
            if shared {
                match crate::store::lease::hold(&self.ingest.store, &lease, &owner).await {
                    Ok(true) => self.lease = Some((lease.clone(), owner.clone(), Instant::now())),
                    Ok(false) => {
                        tokio::time::sleep(crate::store::lease::RETRY).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(source = %name, error = %e, "the source's lease cannot be read");
                        tokio::time::sleep(crate::store::lease::RETRY).await;
                        continue;
                    }
                }
            }
            match self.poll().await {
                Ok(p) => {
                    tracing::debug!(source = %name, pages = p.pages, accepted = p.accepted, refused = p.refused, "polled");
                    if p.refused > 0 {
                        tracing::warn!(source = %name, refused = p.refused, "records went to the vendor exception queue");
                    }
                }
                Err(e) => {
                    metrics::counter!("emrsync_vendor_poll_failures_total", "source" => name.clone()).increment(1);
                    tracing::warn!(source = %name, error = %e, "the vendor source could not be read; next poll");
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Read every record type from where its cursor stands to the vendor's last page.
    pub async fn poll(&mut self) -> Result<Polled, String> {
        let mut polled = Polled::default();
        let types: Vec<String> = self
            .source
            .definition
            .polled()
            .map(|(k, _)| k.clone())
            .collect();
        for record_type in types {
            self.read(&record_type, &mut polled).await?;
        }
        Ok(polled)
    }

    async fn read(&mut self, record_type: &str, polled: &mut Polled) -> Result<(), String> {
        let source = self.source.clone();
        let records = &source.definition.records[record_type];
        let paths = &source.paths[record_type];
        let mut cursor = self.stored(record_type).await?;
        // the page being written while the next is fetched and mapped (one write at a time,
        // in order: each carries the cursor after it)
        let mut writing: Option<Writing> = None;
        let outcome = loop {
            if let Err(e) = self.keep_lease().await {
                break Err(e);
            }
            // a reading starts: has anything changed since the last one's first page?
            let starts = cursor.next.is_none();
            let asked = match records.etag && starts {
                true => cursor.etag.clone(),
                false => None,
            };
            let Fetched { body, items, etag } =
                match self.page(record_type, &cursor, asked.as_deref()).await {
                    Ok(Some(page)) => page,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                };
            if records.etag && starts {
                cursor.fresh = etag;
            }
            if let Some(changed) = &paths.changed {
                for r in &items {
                    let value = changed.query(r).at_most_one().ok().flatten();
                    let value = match value {
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(Value::Number(n)) => Some(n.to_string()),
                        _ => None,
                    };
                    if let Some(v) = value
                        && cursor.newest.as_ref().is_none_or(|n| newer(&v, n))
                    {
                        cursor.newest = Some(v);
                    }
                }
            }
            cursor.next = next_page(
                &records.paging,
                paths.next.as_ref(),
                &body,
                &cursor,
                items.len(),
            );
            let after = match &cursor.next {
                Some(_) => cursor.clone(),
                // the reading is over: the next asks from the newest change seen
                None => Cursor {
                    since: cursor.newest.clone().or(cursor.since.clone()),
                    next: None,
                    newest: None,
                    etag: cursor.fresh.clone(),
                    fresh: None,
                },
            };
            let prepared = match self.prepare(record_type, items).await {
                Ok(p) => p,
                Err(e) => break Err(e),
            };
            settle(writing.take(), polled).await?;
            writing = Some(self.write(record_type, prepared, &after)?);
            cursor = after;
            if cursor.next.is_none() {
                break Ok(());
            }
        };
        // what was handed to the store is written whatever came after (a blocking write is
        // not cancelled): counted before the reading's outcome is said
        settle(writing, polled).await?;
        outcome
    }

    /// The page `cursor` is at; `None` when asked `if_none_match` and the vendor answered 304.
    async fn page(
        &mut self,
        record_type: &str,
        cursor: &Cursor,
        if_none_match: Option<&str>,
    ) -> Result<Option<Fetched>, String> {
        let source = self.source.clone();
        let records = &source.definition.records[record_type];
        let url = self.url(records, cursor)?;
        let Some((body, etag)) = self.fetch(url, if_none_match).await? else {
            return Ok(None);
        };
        let items = source.paths[record_type]
            .items
            .query(&body)
            .at_most_one()
            .map_err(|_| format!("{record_type}: items finds several values in the page"))?
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        let Value::Array(items) = items else {
            return Err(format!("{record_type}: items finds no array in the page"));
        };
        if items.len() > MAX_RECORDS {
            return Err(format!(
                "{record_type}: a page of {} records (at most {MAX_RECORDS})",
                items.len()
            ));
        }
        Ok(Some(Fetched { body, items, etag }))
    }

    /// The records of the page the next reading of `record_type` starts with, as the vendor
    /// sends them: nothing applied, the cursor left where it is (`emrsync source test`).
    pub async fn first_page(&mut self, record_type: &str) -> Result<Vec<Value>, String> {
        match self.source.definition.records.get(record_type) {
            None => return Err(format!("the source has no record type {record_type}")),
            Some(r) if r.endpoint.is_none() => {
                return Err(format!(
                    "{record_type} is not read from an API (no endpoint)"
                ));
            }
            Some(_) => {}
        }
        let cursor = self.stored(record_type).await?;
        let page = self.page(record_type, &cursor, None).await?;
        Ok(page.map(|p| p.items).unwrap_or_default())
    }

    async fn stored(&self, record_type: &str) -> Result<Cursor, String> {
        let (store, name) = (
            self.ingest.store.clone(),
            self.source.definition.name.clone(),
        );
        let rt = record_type.to_string();
        let stored =
            tokio::task::spawn_blocking(move || store.read(|c| page::cursor(c, &name, &rt)))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        Ok(match stored {
            Some(text) => serde_json::from_str(&text).unwrap_or_default(),
            None => Cursor::default(),
        })
    }

    /// Map and accept a page's records, on a blocking thread.
    async fn prepare(
        &self,
        record_type: &str,
        items: Vec<Value>,
    ) -> Result<(Vec<Value>, page::Prepared), String> {
        let (ingest, source) = (self.ingest.clone(), self.source.clone());
        let record_type = record_type.to_string();
        tokio::task::spawn_blocking(move || {
            let prepared = page::in_context(&ingest.store, source.zone, |cx| {
                let name = &source.definition.name;
                page::prepare(&ingest, name, &source.maps, cx, (&record_type, &items))
            })
            .map_err(|e| e.to_string())?;
            Ok((items, prepared))
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Start writing a prepared page with the cursor after it, on a blocking thread.
    fn write(
        &self,
        record_type: &str,
        (items, prepared): (Vec<Value>, page::Prepared),
        cursor: &Cursor,
    ) -> Result<Writing, String> {
        let (ingest, source) = (self.ingest.clone(), self.source.clone());
        let record_type = record_type.to_string();
        let cursor = serde_json::to_string(cursor).map_err(|e| e.to_string())?;
        Ok(tokio::task::spawn_blocking(move || {
            let page = Page {
                record_type: &record_type,
                records: &items,
                cursor: Some(cursor),
                also: None,
            };
            let name = &source.definition.name;
            page::write(&ingest, (name, &source.maps), &page, prepared).map_err(|e| e.to_string())
        }))
    }

    /// The URL of the page `cursor` is at.
    fn url(&self, records: &super::source::Records, cursor: &Cursor) -> Result<url::Url, String> {
        let (Some(base), Some(endpoint)) = (&self.source.definition.base_url, &records.endpoint)
        else {
            return Err("a record type without an endpoint is not read from an API".into());
        };
        let base = url::Url::parse(base).map_err(|e| e.to_string())?;
        if let (Paging::Link { .. }, Some(next)) = (&records.paging, &cursor.next) {
            let url = base
                .join(next)
                .map_err(|e| format!("the next link {next}: {e}"))?;
            if url.origin() != base.origin() {
                return Err(format!(
                    "the next link {url} leaves the source's origin {}",
                    base.origin().ascii_serialization()
                ));
            }
            return Ok(url);
        }
        let joined = format!(
            "{}/{}",
            base.as_str().trim_end_matches('/'),
            endpoint.trim_start_matches('/')
        );
        let mut url = url::Url::parse(&joined).map_err(|e| format!("{joined}: {e}"))?;
        {
            let mut q = url.query_pairs_mut();
            if let (Some(changes), Some(since)) = (&records.changes, &cursor.since) {
                q.append_pair(&changes.param, since);
            }
            match &records.paging {
                Paging::Page {
                    param,
                    size_param,
                    size,
                    first,
                } => {
                    let n = cursor.next.clone().unwrap_or_else(|| first.to_string());
                    q.append_pair(param, &n);
                    if let Some(p) = size_param {
                        q.append_pair(p, &size.to_string());
                    }
                }
                Paging::Cursor { param, .. } => {
                    if let Some(token) = &cursor.next {
                        q.append_pair(param, token);
                    }
                }
                Paging::None | Paging::Link { .. } => {}
            }
        }
        Ok(url)
    }

    /// GET `url` as the source's client, within its rate, trying again what may pass later:
    /// the body and its ETag, or `None` when asked `if_none_match` and the vendor said 304.
    async fn fetch(
        &mut self,
        url: url::Url,
        if_none_match: Option<&str>,
    ) -> Result<Option<(Value, Option<String>)>, String> {
        let mut last = String::new();
        let mut refreshed = false;
        for attempt in 0..TRIES {
            self.pace().await;
            let mut req = self.authorised(self.http.get(url.clone())).await?;
            if let Some(tag) = if_none_match {
                req = req.header("if-none-match", tag);
            }
            let wait = match req.header("accept", "application/json").send().await {
                Err(e) => {
                    last = format!("{url}: {e}");
                    backoff(attempt)
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match status {
                        304 if if_none_match.is_some() => return Ok(None),
                        200..=299 => {
                            let etag = resp
                                .headers()
                                .get("etag")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string);
                            return Ok(Some((read_json(resp).await?, etag)));
                        }
                        401 if self.tokens.is_some() && !refreshed => {
                            // revoked or expired early: a new token, once
                            refreshed = true;
                            if let Some(t) = &mut self.tokens {
                                t.forget();
                            }
                            continue;
                        }
                        429 | 503 => {
                            last = format!("{url} answered {status}");
                            retry_after(&resp).unwrap_or_else(|| backoff(attempt))
                        }
                        408 | 500..=599 => {
                            last = format!("{url} answered {status}");
                            backoff(attempt)
                        }
                        _ => {
                            let text = resp.text().await.unwrap_or_default();
                            let excerpt: String = text.chars().take(300).collect();
                            return Err(format!("{url} answered {status}: {excerpt}"));
                        }
                    }
                }
            };
            tracing::debug!(%url, attempt, wait = ?wait, error = %last, "the vendor will be asked again");
            tokio::time::sleep(wait).await;
        }
        Err(format!("{last} ({TRIES} tries)"))
    }

    /// Renew the lease when it is due; an error when another process holds it now.
    async fn keep_lease(&mut self) -> Result<(), String> {
        let Some((name, owner, at)) = &self.lease else {
            return Ok(());
        };
        if at.elapsed() < RENEW_EVERY {
            return Ok(());
        }
        let held = crate::store::lease::hold(&self.ingest.store, name, owner)
            .await
            .map_err(|e| e.to_string())?;
        match held {
            true => {
                self.lease = Some((name.clone(), owner.clone(), Instant::now()));
                Ok(())
            }
            false => {
                self.lease = None;
                Err("another process reads this source now".into())
            }
        }
    }

    /// Wait until a request is within the source's rate.
    async fn pace(&mut self) {
        let gap = Duration::from_secs_f64(1.0 / self.source.definition.requests_per_second);
        if let Some(at) = self.last_request {
            let due = at + gap;
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        self.last_request = Some(Instant::now());
    }

    async fn authorised(
        &mut self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, String> {
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path)
                .map(|s| s.lines().next().unwrap_or("").trim().to_string())
                .map_err(|e| format!("{}: {e}", path.display()))
        };
        Ok(match &self.source.definition.auth {
            Auth::None => req,
            Auth::Oauth2ClientCredentials { .. } => {
                let tokens = self.tokens.as_mut().expect("made with the source");
                let token = tokens.get(&self.http).await.map_err(|e| e.to_string())?;
                req.bearer_auth(token)
            }
            Auth::ApiKey { header, key_file } => req.header(header.as_str(), read(key_file)?),
            Auth::Basic {
                user,
                password_file,
            } => req.basic_auth(user, Some(read(password_file)?)),
        })
    }
}

/// Half a second doubled each try, to at most a minute, with up to half of it added at random
/// (several emrsync sources behind one vendor gateway do not come back in step).
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500)
        .saturating_mul(1 << attempt.min(10))
        .min(LONGEST_WAIT);
    base + base.mul_f64(fastrand::f64() * 0.5)
}

/// A `Retry-After` of seconds (an HTTP date is taken as a minute), at most a minute.
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let value = resp.headers().get("retry-after")?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => LONGEST_WAIT,
    };
    Some(wait.min(LONGEST_WAIT))
}

/// A page's write in progress.
type Writing = tokio::task::JoinHandle<Result<page::Applied, String>>;

/// Wait for the page being written, if any, and count what it came to.
async fn settle(writing: Option<Writing>, polled: &mut Polled) -> Result<(), String> {
    let Some(w) = writing else {
        return Ok(());
    };
    let applied = w.await.map_err(|e| e.to_string())??;
    polled.pages += 1;
    polled.accepted += applied.accepted;
    polled.refused += applied.refused;
    Ok(())
}

/// The body as JSON, read up to `MAX_PAGE_BYTES`.
async fn read_json(mut resp: reqwest::Response) -> Result<Value, String> {
    let url = resp.url().to_string();
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_PAGE_BYTES as u64)
    {
        return Err(format!("{url}: a page larger than {MAX_PAGE_BYTES} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {e}"))? {
        if body.len() + chunk.len() > MAX_PAGE_BYTES {
            return Err(format!("{url}: a page larger than {MAX_PAGE_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url}: the page is not JSON: {e}"))
}
