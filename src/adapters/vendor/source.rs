//! A source definition, as its file writes it (`capability/sources/*.json` ships examples):
//! where the vendor's API is, how emrsync proves who it is, and for each record type the
//! endpoint, where the records are in a page, how to get the next page, how to ask only for
//! what changed, and the map (`mapping`) of what each record becomes.

use super::mapping::{Maps, RecordMap};
use crate::adapters::hl7v2::zone::Zone;
use crate::adapters::oauth2::Credentials;
use serde::Deserialize;
use serde_json_path::JsonPath;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Definition {
    /// The source's name: its writes' sender (`vendor <name>` to source-of-truth rules and
    /// routes), its cursors' and exceptions' key.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The API's base URL; endpoints are relative to it. A source that only drops files or
    /// pushes webhooks has none.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub auth: Auth,
    /// Seconds between polls.
    #[serde(default = "poll_seconds")]
    pub poll_seconds: u64,
    /// The zone of the vendor's times that carry no offset (UTC unless given).
    #[serde(default)]
    pub zone: Option<String>,
    /// At most this many requests a second to the vendor's API (token requests apart).
    #[serde(default = "requests_per_second")]
    pub requests_per_second: f64,
    /// Record types, polled in the order of their names.
    pub records: BTreeMap<String, Records>,
    /// Records the vendor pushes, signed (`POST /adapters/<name>/webhook`).
    #[serde(default)]
    pub webhook: Option<super::webhook::Webhook>,
    /// A folder the source drops files in (CSV exports, HL7v2 batch files).
    #[serde(default, rename = "drop")]
    pub drop_folder: Option<super::folder::Folder>,
}

impl Definition {
    /// The record types read from the API (those with an endpoint), in the order of their names.
    pub fn polled(&self) -> impl Iterator<Item = (&String, &Records)> {
        self.records.iter().filter(|(_, r)| r.endpoint.is_some())
    }
}

fn poll_seconds() -> u64 {
    60
}

fn requests_per_second() -> f64 {
    5.0
}

/// How emrsync proves who it is to the vendor. Secrets are read from files (or, for OAuth2,
/// the environment), never written in the definition.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Auth {
    #[default]
    None,
    /// OAuth2 client credentials: a token kept until shortly before it expires.
    Oauth2ClientCredentials {
        #[serde(flatten)]
        credentials: Credentials,
    },
    /// A key sent in a header of every request.
    #[serde(rename_all = "camelCase")]
    ApiKey { header: String, key_file: PathBuf },
    /// HTTP Basic.
    #[serde(rename_all = "camelCase")]
    Basic {
        user: String,
        password_file: PathBuf,
    },
}

/// One record type: where and how its records are read.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Records {
    /// The endpoint, relative to the base URL (`/v1/patients`); none for a record type that
    /// only arrives in dropped files or webhooks.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Where the records are in a page (JSONPath to an array; `$` for a page that is one).
    #[serde(default = "whole")]
    pub items: String,
    #[serde(default)]
    pub paging: Paging,
    /// How to ask only for what changed since the last poll.
    #[serde(default)]
    pub changes: Option<Changes>,
    /// Ask for each reading's first page with the ETag the vendor gave it the last time
    /// (`If-None-Match`): a 304 says nothing changed, and the reading ends there.
    #[serde(default)]
    pub etag: bool,
    pub map: RecordMap,
}

fn whole() -> String {
    "$".into()
}

/// How the next page is asked for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Paging {
    /// One page holds everything.
    #[default]
    None,
    /// `?page=N` (from `first`), `size` records a page (`sizeParam` says so when given); a
    /// page with fewer records is the last.
    #[serde(rename_all = "camelCase")]
    Page {
        param: String,
        #[serde(default)]
        size_param: Option<String>,
        size: u32,
        #[serde(default = "one")]
        first: u64,
    },
    /// `?cursor=TOKEN`, the token of the next page found in each page (JSONPath); none or
    /// empty: the last page.
    Cursor { param: String, next: String },
    /// The next page's URL found in each page (JSONPath); none: the last page.
    Link { next: String },
}

fn one() -> u64 {
    1
}

/// Asking for changes only: `param` given the newest value of the records' `field` seen so
/// far (their last-updated time, say, as ISO 8601 times in one zone, which sort as text; or
/// a sequence number, compared as a number). The vendor is asked with that value again, so a record changed at that very
/// moment is not missed; the one already applied is found unchanged and not written again.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Changes {
    pub param: String,
    pub field: String,
}

/// A definition loaded and checked: its maps compiled, its paths parsed, its zone known.
#[derive(Debug)]
pub struct Source {
    pub definition: Definition,
    pub maps: Maps,
    pub zone: Zone,
    /// Per record type: where its records are, its paging's path, its change field's path.
    pub paths: BTreeMap<String, Paths>,
    /// The webhook, when the source pushes.
    pub receiver: Option<super::webhook::Receiver>,
}

#[derive(Debug)]
pub struct Paths {
    pub items: JsonPath,
    pub next: Option<JsonPath>,
    pub changed: Option<JsonPath>,
}

/// A source definition file is read whole up to this size.
const MAX_DEFINITION_BYTES: u64 = 4 << 20;

impl Source {
    /// Read and check the definition in `path`.
    pub fn load(path: &std::path::Path) -> Result<Source, String> {
        let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let size = std::fs::metadata(path).map_err(|e| at(&e))?.len();
        if size > MAX_DEFINITION_BYTES {
            return Err(at(&format!("larger than {MAX_DEFINITION_BYTES} bytes")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| at(&e))?;
        let definition: Definition = serde_json::from_str(&text).map_err(|e| at(&e))?;
        Source::of(definition).map_err(|e| at(&e))
    }

    pub fn of(definition: Definition) -> Result<Source, String> {
        let name = &definition.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "the source's name '{name}' must be letters, digits, - and _"
            ));
        }
        match (&definition.base_url, definition.polled().next()) {
            (Some(base), _) => {
                url::Url::parse(base).map_err(|e| format!("baseUrl {base}: {e}"))?;
            }
            (None, Some((record_type, _))) => {
                return Err(format!(
                    "{record_type} has an endpoint but the source has no baseUrl"
                ));
            }
            (None, None) => {}
        }
        let rate = definition.requests_per_second;
        if !rate.is_finite() || rate <= 0.0 {
            return Err("requestsPerSecond must be above 0".into());
        }
        let zone = match &definition.zone {
            Some(z) => Zone::parse(z)?,
            None => Zone::default(),
        };
        let parse =
            |what: &str, p: &str| JsonPath::parse(p).map_err(|e| format!("{what} {p}: {e}"));
        let mut paths = BTreeMap::new();
        for (record_type, r) in &definition.records {
            let next = match &r.paging {
                Paging::Cursor { next, .. } | Paging::Link { next } => {
                    Some(parse(&format!("{record_type}: paging.next"), next)?)
                }
                Paging::Page { size, .. } if *size == 0 => {
                    return Err(format!("{record_type}: paging.size must be above 0"));
                }
                _ => None,
            };
            let changed = match &r.changes {
                Some(c) => Some(parse(&format!("{record_type}: changes.field"), &c.field)?),
                None => None,
            };
            paths.insert(
                record_type.clone(),
                Paths {
                    items: parse(&format!("{record_type}: items"), &r.items)?,
                    next,
                    changed,
                },
            );
        }
        let maps = Maps::compile(
            name,
            definition
                .records
                .iter()
                .map(|(k, r)| (k.clone(), r.map.clone()))
                .collect(),
        )?;
        let types: Vec<&str> = definition.records.keys().map(String::as_str).collect();
        let receiver = match &definition.webhook {
            Some(w) => Some(super::webhook::Receiver::of(w.clone(), &types)?),
            None => None,
        };
        if let Some(folder) = &definition.drop_folder {
            folder.check(&types)?;
        }
        Ok(Source {
            definition,
            maps,
            zone,
            paths,
            receiver,
        })
    }
}
