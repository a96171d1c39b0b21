//! Bulk Data export (`$export`, Bulk Data Access IG 2.0): a client kicks a job off, polls its
//! status, and downloads ndjson files. Jobs are rows (`jobs`), kept across restarts; a few run
//! at once in the background (`Exports::run`), each reading one snapshot of the store
//! (`run::export`) on its own pooled connection; their files are kept behind `ExportFiles`.
//!
//! Only the client that kicked a job off may see it: to anyone else it does not exist (404).

pub mod files;
pub mod jobs;
mod out;
mod provenance;
pub mod request;
pub mod run;

use crate::auth::{Grant, Interaction};
use crate::fhir::resource::now_micros;
use crate::store::{Store, StoreError};
use files::ExportFiles;
use jobs::Job;
pub use request::{BadRequest, ExportRequest, Level};
use run::{Output, Progress, RunError};
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How exports run: how many at once, per client, how long files are kept.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    /// Exports running at once in this process.
    pub max_running: usize,
    /// Exports one client may have waiting or running.
    pub max_per_client: i64,
    /// How long the files of a finished export are kept.
    pub keep: Duration,
    /// Resources per file.
    pub per_file: u64,
}

/// A process that stays silent this long no longer runs its jobs.
const SILENT_AFTER: Duration = Duration::from_secs(60);
const BEAT_EVERY: Duration = Duration::from_secs(10);

/// Why a request about an export is refused.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Bad(#[from] BadRequest),
    #[error("{0}")]
    Forbidden(String),
    #[error("no such export")]
    NotFound,
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a job stands, as its status URL tells it.
pub enum Status {
    /// Waiting or running; what it has done so far.
    InProgress(String),
    /// Finished: its manifest.
    Done(serde_json::Value),
    /// Stopped by an error, said in the body.
    Failed(String),
}

/// The server's exports: kick-off, status, files, cancel, and the task that runs them.
#[derive(Clone)]
pub struct Exports {
    store: Store,
    files: Arc<dyn ExportFiles>,
    settings: ExportSettings,
    /// The base URL the manifest's file URLs start with.
    base: String,
    /// Jobs running in this process.
    running: Arc<Mutex<HashMap<String, Arc<Progress>>>>,
    wake: Arc<tokio::sync::Notify>,
    /// This process, as the jobs it runs name it (`bulk_exports.runner`).
    runner: Arc<str>,
}

/// Who may see a job: the client a token was issued to (else its subject).
pub fn owner_of(grant: &Grant) -> String {
    grant
        .client_id
        .clone()
        .unwrap_or_else(|| grant.subject.clone())
}

impl Exports {
    pub fn new(store: Store, data_dir: PathBuf, base: String, settings: ExportSettings) -> Self {
        Exports {
            store,
            files: Arc::new(files::Directory::new(data_dir.join("exports"))),
            settings,
            base,
            running: Arc::default(),
            wake: Arc::default(),
            runner: uuid::Uuid::new_v4().to_string().into(),
        }
    }

    /// Make a job of `request` for `grant`'s client, asked at `url`; its id.
    pub fn kick_off(
        &self,
        grant: &Grant,
        request: &ExportRequest,
        url: &str,
    ) -> Result<String, ExportError> {
        // every type named must be one the token may search; with none named, the export
        // holds the types it may
        for t in &request.types {
            grant
                .reach(Interaction::Search, t)
                .map_err(|d| ExportError::Forbidden(d.to_string()))?;
        }
        if request.types.is_empty()
            && !request
                .type_filters
                .iter()
                .all(|(t, _)| grant.reach(Interaction::Search, t).is_ok())
        {
            return Err(ExportError::Forbidden(
                "_typeFilter names a type this token may not search".into(),
            ));
        }
        if request.provenance.is_some() {
            grant
                .reach(Interaction::Search, "Provenance")
                .map_err(|d| ExportError::Forbidden(format!("includeAssociatedData: {d}")))?;
        }
        let owner = owner_of(grant);
        let params =
            serde_json::to_string(request).map_err(|e| StoreError::Database(e.to_string()))?;
        let job = Job {
            id: uuid::Uuid::new_v4().to_string(),
            owner: owner.clone(),
            actor: grant.actor(),
            scope: grant.scope.clone(),
            patient: grant.patient.clone(),
            request: url.to_string(),
            params,
            status: jobs::ACCEPTED.into(),
            created_at: now_micros(),
            transaction_time: None,
            finished_at: None,
            heartbeat_at: None,
            output: None,
            error: None,
            runner: None,
        };
        let max = self.settings.max_per_client;
        let made = self.store.write_rows(|c| {
            if jobs::active_of(c, &owner)? >= max {
                return Ok(false);
            }
            jobs::insert(c, &job)?;
            Ok(true)
        })?;
        if !made {
            return Err(ExportError::Busy(format!(
                "this client has {max} exports waiting or running already; wait for one to end or cancel it"
            )));
        }
        self.wake.notify_one();
        Ok(job.id)
    }

    /// `owner`'s job `id`.
    fn job_of(&self, owner: &str, id: &str) -> Result<Job, ExportError> {
        match self.store.read(|c| jobs::get(c, id))? {
            Some(job) if job.owner == owner => Ok(job),
            _ => Err(ExportError::NotFound),
        }
    }

    pub fn status(&self, grant: &Grant, id: &str) -> Result<Status, ExportError> {
        let job = self.job_of(&owner_of(grant), id)?;
        Ok(match job.status.as_str() {
            jobs::DONE => Status::Done(self.manifest(&job)),
            jobs::FAILED => Status::Failed(job.error.unwrap_or_default()),
            jobs::RUNNING => Status::InProgress(
                self.running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(id)
                    .map(|p| p.describe())
                    .unwrap_or_else(|| "running".into()),
            ),
            _ => Status::InProgress("waiting to start".into()),
        })
    }

    /// The path of a finished job's file, for its owner only.
    pub fn file(&self, grant: &Grant, id: &str, name: &str) -> Result<PathBuf, ExportError> {
        let job = self.job_of(&owner_of(grant), id)?;
        let listed = job
            .output
            .as_deref()
            .and_then(|o| serde_json::from_str::<Vec<Output>>(o).ok())
            .is_some_and(|outputs| outputs.iter().any(|o| o.name == name));
        if job.status != jobs::DONE || !listed {
            return Err(ExportError::NotFound);
        }
        self.files.path(id, name).map_err(|_| ExportError::NotFound)
    }

    /// Cancel `id` (waiting, running or finished): its row and files are gone.
    pub fn cancel(&self, grant: &Grant, id: &str) -> Result<(), ExportError> {
        let job = self.job_of(&owner_of(grant), id)?;
        if let Some(p) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&job.id)
        {
            p.cancelled.store(true, Ordering::Relaxed);
        }
        self.store.write_rows(|c| jobs::delete(c, &job.id))?;
        // a running job removes what it wrote when it sees the cancel; this removes the rest
        if let Err(e) = self.files.remove(&job.id) {
            tracing::warn!(job = %job.id, error = %e, "removing a cancelled export's files");
        }
        Ok(())
    }

    /// The completion manifest of a finished job.
    fn manifest(&self, job: &Job) -> serde_json::Value {
        let outputs: Vec<Output> = job
            .output
            .as_deref()
            .and_then(|o| serde_json::from_str(o).ok())
            .unwrap_or_default();
        let url = |o: &Output| format!("{}/$export-file/{}/{}", self.base, job.id, o.name);
        let listed = |o: &Output| json!({"type": o.rtype, "url": url(o), "count": o.count});
        let of = |keep: &dyn Fn(&Output) -> bool| -> Vec<serde_json::Value> {
            outputs.iter().filter(|o| keep(o)).map(listed).collect()
        };
        let errors = of(&|o| o.rtype == "OperationOutcome");
        let deleted = of(&|o| o.deleted);
        let files = of(&|o| o.rtype != "OperationOutcome" && !o.deleted);
        json!({
            "transactionTime": crate::fhir::resource::instant(job.transaction_time.unwrap_or(job.created_at)),
            "request": job.request,
            "requiresAccessToken": true,
            "output": files,
            "deleted": deleted,
            "error": errors,
        })
    }

    /// The task that runs waiting jobs, a few at once, keeps running ones alive in the
    /// table, and removes expired files.
    pub async fn run(self) {
        // An embedded database has one server: what it left running when it stopped runs
        // again now. PostgreSQL may have other live servers; their silence decides (`upkeep`).
        if self.store.database().is_sqlite() {
            let here: Vec<String> = self.running_here();
            match self.store.write_rows(|c| jobs::requeue(c, None, &here)) {
                Ok(ids) => {
                    for id in ids {
                        tracing::warn!(job = %id, "an export cut short by a stop runs again");
                    }
                }
                Err(e) => tracing::error!(error = %e, "exports left running"),
            }
        }
        let mut working = tokio::task::JoinSet::new();
        let mut beat = tokio::time::interval(BEAT_EVERY);
        loop {
            let here = self.running.lock().unwrap_or_else(|p| p.into_inner()).len();
            if here < self.settings.max_running {
                match self.store.write_rows(|c| jobs::take_next(c, &self.runner)) {
                    Ok(Some(job)) => {
                        let this = self.clone();
                        working.spawn_blocking(move || this.carry_out(job));
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "taking the next export"),
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                Some(_) = working.join_next() => {}
                _ = beat.tick() => self.upkeep(),
            }
        }
    }

    fn running_here(&self) -> Vec<String> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Say this process's jobs are alive, run again those whose process fell silent, and
    /// remove what expired.
    fn upkeep(&self) {
        let now = now_micros();
        let ids = self.running_here();
        let silent_since = now - SILENT_AFTER.as_micros() as i64;
        let expire_before = now - self.settings.keep.as_micros() as i64;
        if ids.is_empty() {
            match self
                .store
                .read(|c| jobs::tending_due(c, silent_since, expire_before))
            {
                Ok(false) => return,
                Ok(true) => {}
                Err(e) => return tracing::error!(error = %e, "export upkeep"),
            }
        }
        let done = self.store.write_rows(|c| {
            let lost = match ids.is_empty() {
                true => Vec::new(),
                false => jobs::beat(c, &ids, &self.runner, now)?,
            };
            let again = jobs::requeue(c, Some(silent_since), &ids)?;
            let expired = jobs::expired(c, expire_before)?;
            for id in &expired {
                jobs::delete(c, id)?;
            }
            Ok((lost, again, expired))
        });
        match done {
            Ok((lost, again, expired)) => {
                // this process was thought stopped and another runs the job now (or it was
                // cancelled): stop at the next page
                let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                for id in &lost {
                    if let Some(progress) = running.get(id) {
                        tracing::warn!(job = %id, "an export this process runs is no longer its own; stopping it");
                        progress.cancelled.store(true, Ordering::Relaxed);
                    }
                }
                drop(running);
                for id in &again {
                    tracing::warn!(job = %id, "an export whose process stopped runs again");
                }
                if !again.is_empty() {
                    self.wake.notify_one();
                }
                for id in expired {
                    if let Err(e) = self.files.remove(&id) {
                        tracing::warn!(job = %id, error = %e, "removing an expired export's files");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "export upkeep"),
        }
    }

    /// Run `job` to its end (on a blocking thread) and record how it ended.
    fn carry_out(&self, job: Job) {
        let progress = Arc::new(Progress::default());
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.id.clone(), progress.clone());
        let outcome = self.export(&job, &progress);
        let now = now_micros();
        let recorded = match &outcome {
            Ok((time, outputs)) => {
                let text = serde_json::to_string(outputs).unwrap_or_default();
                self.store
                    .write_rows(|c| jobs::finish(c, &job.id, &self.runner, *time, &text, now))
            }
            Err(RunError::Cancelled) => Ok(false),
            Err(e) => {
                tracing::error!(job = %job.id, error = %e, "export failed");
                let said = format!("the export stopped: {e}");
                self.store
                    .write_rows(|c| jobs::fail(c, &job.id, &self.runner, &said, now))
                    .map(|_| false)
            }
        };
        // cancelled (its row is gone), failed or not recorded: nothing it wrote is served;
        // unless another process took the job over, whose files these are now when the
        // directory is shared
        let elsewhere = || {
            self.store
                .read(|c| jobs::run_elsewhere(c, &job.id, &self.runner))
                .unwrap_or(true)
        };
        if !matches!(recorded, Ok(true)) && !elsewhere() {
            let _ = self.files.remove(&job.id);
        }
        if let Err(e) = recorded {
            tracing::error!(job = %job.id, error = %e, "recording an export's end");
        }
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&job.id);
        tracing::info!(job = %job.id, exported = progress.exported.load(Ordering::Relaxed), "export ended");
    }

    fn export(&self, job: &Job, progress: &Progress) -> Result<(i64, Vec<Output>), RunError> {
        let request: ExportRequest = serde_json::from_str(&job.params).map_err(|e| {
            StoreError::Database(format!("the export's request does not read: {e}"))
        })?;
        let grant = Grant::stored(&job.actor, &job.scope, job.patient.clone());
        // a job run again starts from nothing
        self.files.remove(&job.id)?;
        let (time, mut outputs) = self.store.read(|c| {
            Ok(run::export(
                c,
                self.files.as_ref(),
                &job.id,
                &request,
                &grant,
                progress,
                self.settings.per_file,
            ))
        })??;
        if !request.ignored.is_empty() {
            outputs.push(self.ignored_file(&job.id, &request.ignored)?);
        }
        Ok((time, outputs))
    }

    /// The error file saying which parameters were ignored (`Prefer: handling=lenient`).
    fn ignored_file(&self, job: &str, ignored: &[String]) -> Result<Output, RunError> {
        let outcome = serde_json::json!({
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "warning", "code": "not-supported",
                "diagnostics": format!("ignored parameters: {}", ignored.join(", "))}]
        });
        let name = "OperationOutcome-1.ndjson";
        let mut w = self.files.create(job, name)?;
        w.write_all(format!("{outcome}\n").as_bytes())?;
        w.flush()?;
        Ok(Output {
            rtype: "OperationOutcome".into(),
            name: name.into(),
            count: 1,
            deleted: false,
        })
    }
}
