//! The MPI benchmark: an index of `--patients` Patients loaded through transactions of 100
//! (`match-data`, which then waits for the linker to link them all), then `Patient/$match`
//! (`match`) from concurrent clients, each describing a random loaded Patient with its family
//! name mistyped and without its identifier or phone, so that the fields decide.

use super::{Target, data, search};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PATIENTS_PER_BUNDLE: usize = 100;

/// Patient `n`: about 1,000 family names (`search::family`), 16 given names, birth dates over
/// 90 years, 10,000 postal codes, 999 house numbers.
fn patient(n: usize) -> Value {
    let mut p = data::patient(None, n as u64);
    p["name"][0]["family"] = json!(search::family(n));
    p["identifier"][0]["value"] = json!(search::mrn(n));
    p
}

fn bundle(first: usize, count: usize) -> Value {
    let entries: Vec<Value> = (first..first + count)
        .map(|n| json!({"resource": patient(n), "request": {"method": "POST", "url": "Patient"}}))
        .collect();
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// Load the index, then wait until the linker has linked every Patient; prints both times.
pub async fn load(t: Arc<Target>, patients: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    search::load_bundles(t.clone(), (patients, PATIENTS_PER_BUNDLE, 1), bundle).await?;
    let origin = t.base.strip_suffix("/fhir").unwrap_or(&t.base).to_string();
    loop {
        let mut r = t.client.get(format!("{origin}/admin/mpi"));
        if let Some(token) = &t.token {
            r = r.bearer_auth(token);
        }
        let (ok, status) = t.send(r, reqwest::StatusCode::OK).await;
        anyhow::ensure!(ok, "GET /admin/mpi: {status}");
        if status["pending"] == 0 && status["goldenPending"] == 0 {
            println!(
                "indexed {} Patients, every one linked, {:.0} s after the load began",
                status["indexed"],
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The `$match` request for loaded Patient `n`: its family name with two letters swapped, no
/// identifier, no phone.
pub fn asked(n: usize) -> Value {
    let mut p = patient(n);
    let obj = p.as_object_mut().expect("a Patient is an object");
    obj.remove("identifier");
    obj.remove("telecom");
    let family: Vec<char> = search::family(n).chars().collect();
    let mut typo = family.clone();
    if typo.len() > 3 {
        typo.swap(1, 2);
    }
    p["name"][0]["family"] = json!(typo.into_iter().collect::<String>());
    json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": p},
        {"name": "count", "valueInteger": 5}]})
}
