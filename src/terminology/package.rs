//! FHIR packages loaded into the store: the CodeSystems, ValueSets and ConceptMaps of a
//! package `.tgz` as published on the npm registry (or of a folder of JSON files), written
//! through the ingest path like any source's resources, so they are validated, versioned and
//! audited, and their terminology rows are made in the same transactions.
//!
//! A package is remembered by name, version and digest: the same bytes loaded again are not
//! read again, and a resource that says what the store has is not written again, so a load
//! can be repeated (or resumed after a crash) without duplicates. A resource whose url and
//! version another resource already has updates that one.

use super::index::TYPES;
use super::tables;
use crate::ingest::restate::{self, Stated, Unit};
use crate::ingest::{Channel, Ingest, Source};
use crate::store::{Actor, StoreError, Tx};
use flate2::read::GzDecoder;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

/// Bounds on what a package may make the server read (its bytes are an outsider's).
pub const MAX_PACKAGE_BYTES: u64 = 512 << 20;
pub const MAX_FILE_BYTES: u64 = 64 << 20;
pub const MAX_UNPACKED_BYTES: u64 = 4 << 30;
pub const MAX_FILES: usize = 200_000;
/// Resources written per transaction.
const BATCH: usize = 100;

/// What a load did.
#[derive(Debug, Default)]
pub struct Loaded {
    pub name: String,
    pub version: String,
    /// The same package (name, version and bytes) was loaded before: nothing was read.
    pub already: bool,
    /// Terminology resources found in the package.
    pub found: usize,
    /// Resources that did not validate or clash with another, each with why: not written.
    pub refused: Vec<(String, String)>,
}

impl Loaded {
    /// Say what the load did, each refusal included.
    pub fn log(&self) {
        if self.already {
            tracing::info!(package = %self.name, version = %self.version, "terminology package already loaded");
            return;
        }
        for (what, why) in &self.refused {
            tracing::warn!(package = %self.name, resource = %what, %why, "not loaded");
        }
        tracing::info!(
            package = %self.name,
            version = %self.version,
            resources = self.found - self.refused.len(),
            refused = self.refused.len(),
            "terminology package loaded"
        );
    }
}

/// A package's terminology resources, read but not yet written.
struct Read_ {
    name: String,
    version: String,
    sha256: String,
    resources: Vec<Value>,
}

/// Load the package (or folder) at `path`.
pub fn load(ingest: &Ingest, path: &Path) -> anyhow::Result<Loaded> {
    let read = match path.is_dir() {
        true => read_folder(path)?,
        false => read_tgz(path)?,
    };
    write(ingest, read)
}

mod capability {
    include!(concat!(env!("OUT_DIR"), "/capability_terminology.rs"));
}

/// The package every server carries: `capability/terminology/` (built into the binary) and
/// `more` (the HL7v2 adapter's published maps), loaded at start-up like any package, so a
/// start with the same binary reads nothing again.
pub fn load_shipped(ingest: &Ingest, more: Vec<Value>) -> anyhow::Result<Loaded> {
    let mut resources = more;
    for (file, text) in capability::FILES {
        let r: Value = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("capability/terminology/{file}: {e}"))?;
        resources.push(r);
    }
    let sha = sha256(serde_json::to_string(&resources)?.as_bytes());
    write(
        ingest,
        Read_ {
            name: "emrsync.capability".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            sha256: sha,
            resources,
        },
    )
}

/// Write what a package holds.
fn write(ingest: &Ingest, read: Read_) -> anyhow::Result<Loaded> {
    let store = &ingest.store;
    let before = store.read(|c| tables::package_loaded(c, &read.name, &read.version))?;
    if before.as_deref() == Some(read.sha256.as_str()) {
        return Ok(Loaded {
            name: read.name,
            version: read.version,
            already: true,
            found: read.resources.len(),
            ..Default::default()
        });
    }
    let writer = ingest.writer(
        Arc::new(crate::auth::Grant::unrestricted()),
        Actor::Named(format!("package {}@{}", read.name, read.version)),
        Source {
            channel: Channel::Load,
            system: format!("{}@{}", read.name, read.version),
            reviewed_by: None,
        },
        format!("package-{}", uuid::Uuid::now_v7()),
    );
    let mut loaded = Loaded {
        name: read.name.clone(),
        version: read.version.clone(),
        found: read.resources.len(),
        ..Default::default()
    };
    let mut resources = read.resources;
    // code systems first: value sets and maps name them
    resources.sort_by_key(|r| TYPES.iter().position(|t| r["resourceType"] == *t));
    let mut homes: HashMap<(String, String, String), String> = HashMap::new();
    let mut stated = Vec::new();
    for r in resources {
        let rtype = TYPES
            .iter()
            .find(|t| r["resourceType"] == **t)
            .copied()
            .unwrap_or("CodeSystem");
        let url = r["url"].as_str().unwrap_or("").to_string();
        let version = r["version"].as_str().unwrap_or("").to_string();
        let own_id = r["id"].as_str().unwrap_or("").to_string();
        let label = format!("{rtype}/{own_id} ({url})");
        let key = (rtype.to_string(), url.clone(), version.clone());
        if let Some(first) = homes.get(&key) {
            loaded.refused.push((
                label,
                format!("the package's {rtype}/{first} has the same url and version"),
            ));
            continue;
        }
        // the resource that already has this url and version is the one updated
        let home = store
            .read(|c| tables::by_url(c, rtype, &url))?
            .into_iter()
            .find(|row| row.version == version)
            .map(|row| row.resource_id)
            .unwrap_or(own_id);
        homes.insert(key, home.clone());
        let mut body = r;
        body["id"] = Value::String(home.clone());
        match writer.accept(body, rtype, true) {
            Ok(accepted) => stated.push(Stated {
                rtype,
                id: home,
                body: accepted.resource,
            }),
            Err(e) => loaded.refused.push((label, e.to_string())),
        }
    }
    let total = stated.len();
    for (i, batch) in stated.chunks(BATCH).enumerate() {
        let last = (i + 1) * BATCH >= total;
        let unit = Record {
            package: last.then_some((&read.name, &read.version, &read.sha256, total as i64)),
        };
        restate::restate_all(store, &writer, batch, &unit)?;
    }
    if total == 0 {
        let unit = Record {
            package: Some((&read.name, &read.version, &read.sha256, 0)),
        };
        restate::restate_all(store, &writer, &[], &unit)?;
    }
    Ok(loaded)
}

/// The package's row, written with its last batch.
struct Record<'a> {
    package: Option<(&'a String, &'a String, &'a String, i64)>,
}

impl Unit for Record<'_> {
    type Done = ();
    type Seen = ();

    fn look(&self, _: &mut Tx) -> Result<ControlFlow<(), ()>, StoreError> {
        Ok(ControlFlow::Continue(()))
    }

    fn finish(&self, tx: &mut Tx, _: (), _: Vec<String>) -> Result<(), StoreError> {
        if let Some((name, version, sha, count)) = self.package {
            tables::record_package(tx.conn, name, version, sha, count)?;
        }
        Ok(())
    }
}

fn sha256(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    hex::encode(d.as_ref())
}

/// A terminology resource's JSON, or None for anything else.
fn terminology(bytes: &[u8]) -> Option<Value> {
    // serde_json refuses nesting past 128 levels; `accept` then holds it to the resource limit
    let v: Value = serde_json::from_slice(bytes).ok()?;
    TYPES.iter().any(|t| v["resourceType"] == *t).then_some(v)
}

/// True for a package file that may hold a terminology resource: the FHIR package tools name
/// them `Type-id.json`.
fn candidate(name: &str) -> bool {
    name.ends_with(".json") && TYPES.iter().any(|t| name.starts_with(&format!("{t}-")))
}

fn read_tgz(path: &Path) -> anyhow::Result<Read_> {
    let size = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        .len();
    anyhow::ensure!(
        size <= MAX_PACKAGE_BYTES,
        "{}: {size} bytes, more than a package may have ({MAX_PACKAGE_BYTES})",
        path.display()
    );
    let bytes = std::fs::read(path)?;
    let sha = sha256(&bytes);
    let mut archive = tar::Archive::new(GzDecoder::new(&bytes[..]).take(MAX_UNPACKED_BYTES));
    let mut manifest = None;
    let mut resources = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| anyhow::anyhow!("{}: not a gzip'd tar file: {e}", path.display()))?;
    for (n, entry) in entries.enumerate() {
        anyhow::ensure!(
            n < MAX_FILES,
            "{}: more than {MAX_FILES} files",
            path.display()
        );
        let entry = entry.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path()?.to_string_lossy().to_string();
        // only the package's own folder: its examples and other folders are not definitions
        let Some(file) = name.strip_prefix("package/").filter(|f| !f.contains('/')) else {
            continue;
        };
        let wanted = file == "package.json" || candidate(file);
        if !wanted {
            continue;
        }
        anyhow::ensure!(
            entry.header().size()? <= MAX_FILE_BYTES,
            "{}: {name} is larger than {MAX_FILE_BYTES} bytes",
            path.display()
        );
        let mut body = Vec::new();
        entry.take(MAX_FILE_BYTES).read_to_end(&mut body)?;
        if file == "package.json" {
            manifest =
                Some(serde_json::from_slice::<Value>(&body).map_err(|e| {
                    anyhow::anyhow!("{}: package/package.json: {e}", path.display())
                })?);
        } else if let Some(r) = terminology(&body) {
            resources.push(r);
        }
    }
    let manifest =
        manifest.ok_or_else(|| anyhow::anyhow!("{}: no package/package.json", path.display()))?;
    let field = |k: &str| {
        manifest[k]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("{}: package.json has no {k}", path.display()))
    };
    Ok(Read_ {
        name: field("name")?,
        version: field("version")?,
        sha256: sha,
        resources,
    })
}

/// A folder of resource files (`*.json`, any names): its name is its path, its version the
/// digest of its files.
fn read_folder(path: &Path) -> anyhow::Result<Read_> {
    let mut files: Vec<_> = std::fs::read_dir(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    anyhow::ensure!(
        files.len() <= MAX_FILES,
        "{}: more than {MAX_FILES} files",
        path.display()
    );
    let mut all = Vec::new();
    let mut resources = Vec::new();
    for f in files {
        let size = std::fs::metadata(&f)?.len();
        anyhow::ensure!(
            size <= MAX_FILE_BYTES,
            "{}: larger than {MAX_FILE_BYTES} bytes",
            f.display()
        );
        let body = std::fs::read(&f)?;
        all.extend_from_slice(&body);
        match terminology(&body) {
            Some(r) => resources.push(r),
            None => tracing::debug!(file = %f.display(), "not a terminology resource: skipped"),
        }
    }
    let sha = sha256(&all);
    Ok(Read_ {
        name: path.display().to_string(),
        version: sha[..16].to_string(),
        sha256: sha,
        resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever a file holds, reading it as a package answers, and never panics.
        #[test]
        fn any_bytes_read_as_a_package_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("p.tgz");
            std::fs::write(&path, &bytes).unwrap();
            prop_assert!(read_tgz(&path).is_err());
        }
    }

    #[test]
    fn a_package_keeps_its_own_folder_s_terminology_and_says_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.tgz");
        let build = |files: &[(&str, &str)]| {
            let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let mut tar = tar::Builder::new(gz);
            for (name, body) in files {
                let mut h = tar::Header::new_gnu();
                h.set_size(body.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                tar.append_data(&mut h, name, body.as_bytes()).unwrap();
            }
            std::fs::write(&path, tar.into_inner().unwrap().finish().unwrap()).unwrap();
        };
        let cs = r#"{"resourceType":"CodeSystem","id":"x","url":"http://x","status":"active","content":"complete"}"#;
        build(&[("package/CodeSystem-x.json", cs)]);
        let e = read_tgz(&path).err().unwrap().to_string();
        assert!(e.contains("no package/package.json"), "{e}");
        build(&[
            ("package/package.json", r#"{"name":"p","version":"1"}"#),
            ("package/CodeSystem-x.json", cs),
            ("package/example/CodeSystem-y.json", cs),
            ("package/Patient-z.json", r#"{"resourceType":"Patient"}"#),
        ]);
        let read = read_tgz(&path).unwrap();
        assert_eq!(
            (
                read.name.as_str(),
                read.version.as_str(),
                read.resources.len()
            ),
            ("p", "1", 1)
        );
    }
}
