//! `--scenario export`: a system Bulk Data export of whatever the server holds (the search data
//! set, say), timed from kick-off to the last file downloaded, while `--clients` tasks read
//! Patients by id as interactive traffic would. Prints the export's resources a second, the
//! server's largest resident memory seen in `/metrics` meanwhile, and the reads' row.

use super::stats::Sample;
use super::{Scenario, Target};
use anyhow::Context;
use reqwest::StatusCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub async fn run(t: Arc<Target>) -> anyhow::Result<()> {
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    // interactive reads beside it, for as long as it runs
    let mut readers = Vec::new();
    for client_no in 0..t.clients {
        let (t, done) = (t.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut n = (client_no as u64) << 32;
            while !done.load(Ordering::Relaxed) {
                let o = t.one(Scenario::Read, client_no, n).await;
                outcomes.push((o.latency, o.ok, o.resources));
                n += 1;
            }
            outcomes
        }));
    }
    let exported = export(&t).await;
    done.store(true, Ordering::Relaxed);
    let mut reads = Vec::new();
    for r in readers {
        reads.extend(r.await.unwrap_or_default());
    }
    let (resources, peak) = exported?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "export       {resources} resources in {secs:.1} s: {:.0} resources/s; server resident memory at most {} MB",
        resources as f64 / secs,
        peak / (1024 * 1024)
    );
    println!(
        "{}",
        Sample::from_outcomes(reads, started.elapsed()).row("read-during")
    );
    Ok(())
}

/// Kick off, poll (noting the server's memory), download every file: the lines read, and the
/// largest resident memory `/metrics` showed.
async fn export(t: &Target) -> anyhow::Result<(u64, u64)> {
    let resp = t
        .request(reqwest::Method::GET, "$export")
        .header("prefer", "respond-async")
        .send()
        .await?;
    anyhow::ensure!(
        resp.status() == StatusCode::ACCEPTED,
        "$export answered {}: {}",
        resp.status(),
        resp.text().await.unwrap_or_default()
    );
    let status_url = resp
        .headers()
        .get("content-location")
        .and_then(|v| v.to_str().ok())
        .context("no Content-Location")?
        .to_string();
    let root = t.base.trim_end_matches("/fhir").to_string();
    let mut peak = 0u64;
    let manifest: serde_json::Value = loop {
        peak = peak.max(resident(t, &root).await);
        let resp = t
            .request_url(reqwest::Method::GET, &status_url)
            .send()
            .await?;
        match resp.status() {
            StatusCode::OK => break resp.json().await?,
            StatusCode::ACCEPTED => tokio::time::sleep(Duration::from_millis(200)).await,
            other => anyhow::bail!("the export's status: {other}"),
        }
    };
    let mut lines = 0u64;
    for out in manifest["output"].as_array().into_iter().flatten() {
        let url = out["url"].as_str().context("an output without url")?;
        let mut resp = t.request_url(reqwest::Method::GET, url).send().await?;
        anyhow::ensure!(resp.status().is_success(), "{url}: {}", resp.status());
        while let Some(chunk) = resp.chunk().await? {
            lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        }
        peak = peak.max(resident(t, &root).await);
    }
    let _ = t
        .request_url(reqwest::Method::DELETE, &status_url)
        .send()
        .await;
    Ok((lines, peak))
}

/// The server's resident memory now, from `/metrics` (0 when it does not say).
async fn resident(t: &Target, root: &str) -> u64 {
    let Ok(resp) = t
        .request_url(reqwest::Method::GET, &format!("{root}/metrics"))
        .send()
        .await
    else {
        return 0;
    };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("emrsync_process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}
