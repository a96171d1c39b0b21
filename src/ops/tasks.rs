//! Every long-running task of a server, started in one place and watched. A task that ends or
//! panics is logged with its name, then restarted (after a pause that grows while it keeps
//! failing) or, for one the server cannot work without, the process is stopped with a
//! non-zero status so that its supervisor (systemd, Kubernetes) starts it again.
//!
//! On shutdown (SIGTERM or SIGINT), tasks that drain (the MLLP listener: it stops accepting,
//! its connections finish the message in hand and send its ACK) are given until a deadline;
//! the others (dispatch, delivery, sweeps: their work is in the database and resumes at the
//! next start) are stopped at once.

use futures_util::FutureExt;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// What is done when a task ends (it should not) or panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExit {
    /// Logged, and started again after a pause.
    Restart,
    /// Logged, and the process is stopped with a non-zero status.
    StopProcess,
}

/// Whether a task is given time to finish at shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtShutdown {
    /// Stopped at once.
    Stop,
    /// Told (its `watch::Receiver<bool>` turns `true`) and awaited until the deadline.
    Drain,
}

/// The first pause before a restart, and the longest.
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const LONGEST_PAUSE: Duration = Duration::from_secs(30);

/// Which tasks run now, and why each that does not stopped: what `/ready` reports.
#[derive(Clone, Default)]
pub struct TaskStates(Arc<Mutex<BTreeMap<&'static str, Option<String>>>>);

impl TaskStates {
    fn set(&self, name: &'static str, stopped: Option<String>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, stopped);
    }

    /// Every task by name: `None` while it runs, else how it stopped (it is being restarted).
    pub fn all(&self) -> Vec<(&'static str, Option<String>)> {
        let states = self.0.lock().unwrap_or_else(|p| p.into_inner());
        states.iter().map(|(n, s)| (*n, s.clone())).collect()
    }
}

/// The tasks of one server.
pub struct Tasks {
    states: TaskStates,
    watched: JoinSet<()>,
    stop: watch::Sender<bool>,
    /// Names of the tasks whose end stops the process.
    fatal_tx: mpsc::UnboundedSender<&'static str>,
    fatal_rx: mpsc::UnboundedReceiver<&'static str>,
}

impl Default for Tasks {
    fn default() -> Self {
        let (fatal_tx, fatal_rx) = mpsc::unbounded_channel();
        Tasks {
            states: TaskStates::default(),
            watched: JoinSet::new(),
            stop: watch::channel(false).0,
            fatal_tx,
            fatal_rx,
        }
    }
}

impl Tasks {
    /// The tasks' states, shared (for `/ready`).
    pub fn states(&self) -> TaskStates {
        self.states.clone()
    }

    /// Start `make()`'s task as `name`, watched: `make` is called again for each restart. It
    /// is handed the shutdown signal (`true` once shutdown starts).
    pub fn spawn<F, Fut>(&mut self, name: &'static str, on_exit: OnExit, at: AtShutdown, make: F)
    where
        F: Fn(watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.subscribe();
        let fatal = self.fatal_tx.clone();
        let states = self.states.clone();
        self.watched.spawn(async move {
            let mut pause = FIRST_PAUSE;
            loop {
                states.set(name, None);
                let run = AssertUnwindSafe(make(stop.clone())).catch_unwind();
                let mut told = stop.clone();
                let ended = match at {
                    AtShutdown::Drain => run.await,
                    AtShutdown::Stop => tokio::select! {
                        ended = run => ended,
                        _ = told.wait_for(|s| *s) => return,
                    },
                };
                if *stop.borrow() {
                    return; // it finished what it had in hand: shutdown goes on
                }
                let how = match &ended {
                    Ok(()) => "ended".to_string(),
                    Err(panic) => format!("panicked: {}", panic_text(panic.as_ref())),
                };
                states.set(name, Some(how.clone()));
                match on_exit {
                    OnExit::Restart => {
                        tracing::error!(
                            task = name,
                            how,
                            ?pause,
                            "background task stopped; restarting it"
                        );
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(LONGEST_PAUSE);
                    }
                    OnExit::StopProcess => {
                        tracing::error!(
                            task = name,
                            how,
                            "essential task stopped; stopping the server"
                        );
                        let _ = fatal.send(name);
                        return;
                    }
                }
            }
        });
    }

    /// Resolves with the name of the first essential task that stopped (never, if none does).
    pub async fn failed(&mut self) -> &'static str {
        match self.fatal_rx.recv().await {
            Some(name) => name,
            // no sender left: wait for ever (this handle holds one, so it does not happen)
            None => std::future::pending().await,
        }
    }

    /// Tell every task to stop; wait for those that drain until `deadline`, then stop them.
    pub async fn shut_down(mut self, deadline: Duration) {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(deadline, async {
            while self.watched.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                ?deadline,
                "tasks still busy at the shutdown deadline; stopped"
            );
            self.watched.abort_all();
        }
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Resolves at the first SIGTERM or SIGINT.
pub async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM and SIGINT: stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_task_that_panics_is_started_again() {
        let runs = Arc::new(AtomicU32::new(0));
        let mut tasks = Tasks::default();
        let r = runs.clone();
        tasks.spawn("flaky", OnExit::Restart, AtShutdown::Stop, move |_| {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("first runs fail");
                }
                std::future::pending::<()>().await
            }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "two restarts, then it runs");
        tasks.shut_down(Duration::from_secs(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_essential_task_that_ends_is_reported() {
        let mut tasks = Tasks::default();
        tasks.spawn(
            "listener",
            OnExit::StopProcess,
            AtShutdown::Drain,
            |_| async {},
        );
        let name = tokio::time::timeout(Duration::from_secs(1), tasks.failed()).await;
        assert_eq!(name.ok(), Some("listener"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_draining_task_finishes_its_work_before_shutdown_returns() {
        let done = Arc::new(AtomicU32::new(0));
        let mut tasks = Tasks::default();
        let d = done.clone();
        tasks.spawn(
            "drains",
            OnExit::StopProcess,
            AtShutdown::Drain,
            move |mut stop| {
                let d = d.clone();
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                    tokio::time::sleep(Duration::from_millis(300)).await; // the message in hand
                    d.store(1, Ordering::SeqCst);
                }
            },
        );
        tasks.spawn("idle", OnExit::Restart, AtShutdown::Stop, |_| {
            std::future::pending()
        });
        tasks.shut_down(Duration::from_secs(5)).await;
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }
}
