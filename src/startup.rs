//! Builds the application on a bound listener (port 0 works: tests read the real port back)
//! and runs it until stopped.

use crate::api::{self, AppState};
use crate::auth::idp::IdpConfig;
use crate::auth::{Authority, Grant};
use crate::config::Settings;
use crate::ingest::{Hooks, Ingest};
use crate::ops::tasks::{AtShutdown, OnExit, Tasks};
use crate::store::Store;
use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// The ingest path of a server with `settings` (also what the `replay` command runs messages
/// through, so that a replayed message meets the same rules as one received).
pub fn ingest(store: Store, settings: &Settings) -> anyhow::Result<Ingest> {
    let mut hooks = Hooks::default();
    hooks.truth.push(truth(&store)?);
    if !settings.no_mpi {
        hooks.identity.push(mpi(&store, settings)?);
    }
    let terminology = terminology(&store, settings);
    Ok(ingest_with(store, settings, hooks, &terminology))
}

/// The source-of-truth rules of the routes in force (see `routing::truth`).
pub fn truth(store: &Store) -> anyhow::Result<Arc<crate::routing::truth::Truth>> {
    let truth = Arc::new(crate::routing::truth::Truth::default());
    if let Some((_, routes)) = store.read(crate::routing::revisions::current)? {
        truth.set(&routes);
    }
    Ok(truth)
}

/// The terminology service of a server with `settings`.
pub fn terminology(store: &Store, settings: &Settings) -> Arc<crate::terminology::Terminology> {
    crate::terminology::Terminology::new(
        store.clone(),
        Duration::from_secs(settings.terminology_ttl_secs),
    )
}

/// The master patient index with the model `settings` names (else the shipped one), counted.
pub fn mpi(store: &Store, settings: &Settings) -> anyhow::Result<Arc<crate::identity::Mpi>> {
    let model = match &settings.mpi_model {
        Some(path) => {
            crate::identity::Model::load(path).map_err(|e| anyhow::anyhow!("--mpi-model: {e}"))?
        }
        None => crate::identity::Model::shipped(),
    };
    let golden = match &settings.mpi_golden {
        Some(path) => crate::identity::golden::Survivorship::load(path)
            .map_err(|e| anyhow::anyhow!("--mpi-golden: {e}"))?,
        None => crate::identity::golden::Survivorship::shipped(),
    };
    let providers = match &settings.provider_golden {
        Some(path) => crate::identity::providers::golden::Rules::load(path)
            .map_err(|e| anyhow::anyhow!("--provider-golden: {e}"))?,
        None => crate::identity::providers::golden::Rules::shipped(),
    };
    let mpi = crate::identity::Mpi::new(model)
        .with_survivorship(golden)
        .with_provider_rules(providers);
    store.read(|conn| mpi.count(conn))?;
    Ok(Arc::new(mpi))
}

/// The HL7v2 side of a server with `settings`: its messages go through `ingest`.
pub fn inbound(ingest: Ingest, settings: &Settings) -> crate::adapters::hl7v2::ingest::Inbound {
    crate::adapters::hl7v2::ingest::Inbound {
        ingest,
        zones: Arc::new(crate::adapters::hl7v2::zone::Zones {
            default: settings.hl7v2_time_zone,
            facilities: settings.hl7v2_facility_time_zone.clone(),
        }),
    }
}

/// `ingest`, with `hooks` on the path (see `ingest::hooks`).
/// Every ingest normalises codes through `terminology`'s maps, and keeps the terminology's
/// rows of what it writes (`terminology::index`).
pub fn ingest_with(
    store: Store,
    settings: &Settings,
    hooks: Hooks,
    terminology: &Arc<crate::terminology::Terminology>,
) -> Ingest {
    let mut hooks = hooks;
    if !settings.no_normalise {
        hooks
            .codes
            .push(Arc::new(crate::terminology::normalise::Normaliser {
                terminology: terminology.clone(),
                worklist: Arc::default(),
            }));
    }
    hooks.derived.push(Arc::new(crate::terminology::Rows));
    let endpoints = Arc::new(crate::subscriptions::subscription::EndpointPolicy {
        allow: settings.subscription_endpoint_allow.clone(),
        internal_networks: settings.subscription_endpoint_networks.clone(),
    });
    Ingest::new(store, hooks, endpoints)
}

pub struct Application {
    /// Every long-running task, watched (see `ops::tasks`).
    tasks: Tasks,
    /// How long a shutdown waits for what is in hand.
    shutdown: Duration,
    /// The ingest path, whose hooks write what they kept when the server stops.
    ingest: Ingest,
    /// The HTTP requests in hand.
    drain: Arc<crate::api::drain::Drain>,
    port: u16,
    /// The MLLP listener's port, when HL7v2 is on.
    mllp_port: Option<u16>,
    base_url: String,
    server: Server,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Application::build_with(settings, Hooks::default()).await
    }

    /// `build`, with `hooks` on the ingest path of every source.
    pub async fn build_with(settings: Settings, hooks: Hooks) -> anyhow::Result<Application> {
        let store_settings = settings.store_settings()?;
        tracing::info!(database = %store_settings.database.describe(), "opening store");
        let store = tokio::task::spawn_blocking(move || Store::open(&store_settings)).await??;
        let listener = TcpListener::bind(&settings.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
        let addr = listener.local_addr()?;
        let https = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => {
                let mut config = crate::tls::server_config(cert, key, None)?;
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Some(config)
            }
            _ => None,
        };
        let scheme = if https.is_some() { "https" } else { "http" };
        let base_url = settings
            .base_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{addr}/fhir"))
            .trim_end_matches('/')
            .to_string();
        if settings.insecure_dev {
            tracing::warn!(
                "!!! --insecure-dev: FHIR API served WITHOUT AUTHENTICATION on {addr}. \
                 Never use this with real patient data. !!!"
            );
        }
        let authority = {
            let (store, base_url) = (store.clone(), base_url.clone());
            let idp = match (&settings.idp_issuer, &settings.idp_jwks_uri) {
                (Some(issuer), Some(jwks_uri)) => {
                    tracing::info!(%issuer, %jwks_uri, "accepting the identity provider's tokens");
                    Some(IdpConfig {
                        issuer: issuer.clone(),
                        jwks_uri: jwks_uri.clone(),
                        audience: settings
                            .idp_audience
                            .clone()
                            .unwrap_or_else(|| base_url.clone()),
                    })
                }
                _ => None,
            };
            let seal = store.master_key();
            if seal.is_none() {
                tracing::warn!(
                    "no master key (--master-key-file or EMRSYNC_MASTER_KEY): the token \
                     signing keys are kept unsealed in the database, and anyone who can read \
                     it can forge tokens; an embedded database is kept in clear"
                );
            }
            let mut authority =
                tokio::task::spawn_blocking(move || Authority::open(&store, &base_url, idp, seal))
                    .await??;
            authority.throttle =
                crate::auth::throttle::Throttle::new(crate::auth::throttle::ThrottleSettings {
                    account_failures: settings.lockout_after.max(1),
                    address_failures: settings.lockout_address_after.max(1),
                    ..Default::default()
                });
            authority
        };
        {
            let store = store.clone();
            let written = tokio::task::spawn_blocking(move || {
                crate::subscriptions::topic_basic::publish(&store)
            })
            .await??;
            if written > 0 {
                tracing::info!(written, "published SubscriptionTopics as Basic resources");
            }
        }
        let mpi = {
            let (store, settings) = (store.clone(), settings.clone());
            tokio::task::spawn_blocking(move || mpi(&store, &settings)).await??
        };
        let mut hooks = hooks;
        // the routes (and their source-of-truth rules) a file names are in force before the
        // first write is taken
        if let Some(path) = settings.routes.clone() {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("--routes {}: {e}", path.display()))?;
            let routes = crate::routing::config::Routes::parse(&text)
                .map_err(|e| anyhow::anyhow!("--routes {}:\n{e}", path.display()))?;
            let (s, actor) = (store.clone(), format!("file {}", path.display()));
            let revision = tokio::task::spawn_blocking(move || {
                s.write_rows(|c| crate::routing::revisions::record(c, &routes, &actor))
            })
            .await??;
            tracing::info!(version = revision.version, summary = %revision.summary, "routes in force");
        }
        let truth = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || truth(&store)).await??
        };
        hooks.truth.push(truth.clone());
        if !settings.no_mpi {
            hooks.identity.push(mpi.clone());
        }
        let terminology = terminology(&store, &settings);
        let ingest = ingest_with(store.clone(), &settings, hooks, &terminology);
        let flushed = ingest.clone();
        if !settings.no_shipped_terminology {
            // the terminology every server carries: the v2-to-FHIR maps the HL7v2 adapter
            // maps with, and capability/terminology/
            let i = ingest.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                let maps = crate::adapters::hl7v2::concept_maps::concept_maps();
                crate::terminology::package::load_shipped(&i, maps)
            })
            .await??;
            if !loaded.refused.is_empty() || !loaded.already {
                loaded.log();
            }
        }
        for path in &settings.terminology_packages {
            let (i, p) = (ingest.clone(), path.clone());
            let loaded =
                tokio::task::spawn_blocking(move || crate::terminology::package::load(&i, &p))
                    .await?
                    .map_err(|e| {
                        anyhow::anyhow!("--terminology-package {}: {e}", path.display())
                    })?;
            loaded.log();
        }
        let endpoints = ingest.endpoints();
        let mut tasks = Tasks::default();
        // the recorder first: what the tasks count from their start is kept
        crate::ops::metrics::handle();
        tasks.spawn("metrics upkeep", OnExit::Restart, AtShutdown::Stop, |_| {
            crate::ops::metrics::upkeep()
        });
        if let Some(queue) = store.take_audit_queue() {
            // told at shutdown, it writes what is queued before it returns
            let queue = Arc::new(tokio::sync::Mutex::new(queue));
            let every = Duration::from_millis(settings.audit_flush_ms.max(1));
            let s = store.clone();
            tasks.spawn(
                "audit flusher",
                OnExit::Restart,
                AtShutdown::Drain,
                move |stop| crate::ops::audit::run(s.clone(), queue.clone(), every, stop),
            );
        }
        let mllp_port = match &settings.mllp {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen for MLLP on {addr}: {e}"))?;
                let port = listener.local_addr()?.port();
                let tls = match (&settings.mllp_tls_cert, &settings.mllp_tls_key) {
                    (Some(cert), Some(key)) => Some(crate::adapters::hl7v2::mllp::tls(
                        cert,
                        key,
                        settings.mllp_tls_client_ca.as_deref(),
                    )?),
                    _ => None,
                };
                tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), "HL7v2 MLLP listening");
                let mllp = crate::adapters::hl7v2::mllp::MllpSettings {
                    max_message_bytes: settings.mllp_max_bytes,
                    idle_timeout: Duration::from_secs(settings.mllp_idle_secs.max(1)),
                    original_acks_only: settings.mllp_original_acks,
                    tls,
                    peers: crate::adapters::hl7v2::peers::PeerLimits {
                        allow: settings.mllp_allow.clone(),
                        max_connections: settings.mllp_max_connections,
                        max_connections_per_address: settings.mllp_max_connections_per_address,
                        // one whole message must always fit an address's quarter
                        max_buffered_bytes: settings
                            .mllp_max_buffered_bytes
                            .max(4 * (settings.mllp_max_bytes + 64 * 1024)),
                        messages_per_second: settings.mllp_rate,
                    },
                };
                // the listener is the server's HL7v2 side: if it stops, the process stops
                // (and its supervisor starts it again) rather than run deaf to its senders
                // (started once: an essential task is not restarted, so the socket is taken
                // once, and closed as soon as shutdown starts)
                let inbound = inbound(ingest.clone(), &settings);
                let listener = std::sync::Mutex::new(Some(listener));
                tasks.spawn(
                    "MLLP listener",
                    OnExit::StopProcess,
                    AtShutdown::Drain,
                    move |stop| {
                        let listener = listener.lock().ok().and_then(|mut l| l.take());
                        let (inbound, mllp) = (inbound.clone(), mllp.clone());
                        async move {
                            if let Some(listener) = listener {
                                crate::adapters::hl7v2::mllp::serve(listener, inbound, mllp, stop)
                                    .await
                            }
                        }
                    },
                );
                Some(port)
            }
            None => None,
        };
        {
            // the unmapped codes met by normalisation, written every few seconds
            let i = ingest.clone();
            tasks.spawn("hook flush", OnExit::Restart, AtShutdown::Stop, move |_| {
                let i = i.clone();
                async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        let i = i.clone();
                        let _ = tokio::task::spawn_blocking(move || i.flush_hooks()).await;
                    }
                }
            });
        }
        let sockets = crate::subscriptions::websocket::Sockets::default();
        let workers = crate::subscriptions::Workers::new(
            store.clone(),
            base_url.clone(),
            crate::subscriptions::delivery::DeliverySettings {
                retry_max: Duration::from_secs(settings.subscription_retry_max_secs.max(1)),
                error_after: settings.subscription_error_after.max(1),
                endpoints: endpoints.clone(),
                ..Default::default()
            },
            sockets.clone(),
        );
        let workers = match settings.no_mpi {
            true => workers,
            false => workers.with_persons(Arc::new(crate::identity::reading::Persons)),
        };
        let workers = Arc::new(workers);
        if !settings.no_mpi {
            let (i, m) = (ingest.clone(), mpi.clone());
            tasks.spawn("MPI linker", OnExit::Restart, AtShutdown::Stop, move |_| {
                crate::identity::linker::run(i.clone(), m.clone())
            });
        }
        let w = workers.clone();
        tasks.spawn(
            "subscription dispatcher",
            OnExit::Restart,
            AtShutdown::Stop,
            move |_| w.dispatcher(),
        );
        let w = workers.clone();
        tasks.spawn(
            "subscription delivery",
            OnExit::Restart,
            AtShutdown::Stop,
            move |_| w.deliverer(),
        );
        tasks.spawn(
            "delivery outcomes",
            OnExit::Restart,
            AtShutdown::Stop,
            move |_| workers.recorder(),
        );
        // this process, as holder of the leases of jobs one process does at a time when
        // several share a PostgreSQL database
        let process = uuid::Uuid::new_v4().to_string();
        {
            let senders = crate::routing::send::Senders {
                store: store.clone(),
                persons: match settings.no_mpi {
                    true => None,
                    false => Some(Arc::new(crate::identity::reading::Persons)),
                },
                retry_max: Duration::from_secs(settings.route_retry_max_secs.max(1)),
                owner: process.clone(),
                terminology: terminology.clone(),
                base: base_url.clone(),
            };
            let truth = truth.clone();
            tasks.spawn("router", OnExit::Restart, AtShutdown::Stop, move |_| {
                crate::routing::Router {
                    senders: senders.clone(),
                    truth: truth.clone(),
                }
                .run()
            });
        }
        if settings.alert_interval_secs > 0 {
            let ingest = ingest.clone();
            let every = Duration::from_secs(settings.alert_interval_secs);
            tasks.spawn("alerts", OnExit::Restart, AtShutdown::Stop, move |_| {
                crate::ops::alerts::run(ingest.clone(), every)
            });
        }
        if let Some(stream) = settings
            .stream
            .publisher(&base_url, &process, !settings.no_mpi)
        {
            store.set_publishing();
            let s = store.clone();
            tasks.spawn(
                "stream publisher",
                OnExit::Restart,
                AtShutdown::Stop,
                move |_| crate::stream::run(s.clone(), stream.clone()),
            );
        }
        let mut sources = std::collections::HashMap::new();
        for path in &settings.sources {
            let source = crate::adapters::vendor::source::Source::load(path)
                .map_err(|e| anyhow::anyhow!("the vendor source {e}"))?;
            let source = Arc::new(source);
            sources.insert(source.definition.name.clone(), source.clone());
            // a task's name lives as long as the server: one per source, made once at start
            let task = |what: &str| -> &'static str {
                Box::leak(
                    format!("vendor source {} {what}", source.definition.name).into_boxed_str(),
                )
            };
            if source.definition.polled().next().is_some() {
                let (ingest, owner, source) = (ingest.clone(), process.clone(), source.clone());
                tasks.spawn(
                    task("poller"),
                    OnExit::Restart,
                    AtShutdown::Stop,
                    move |_| {
                        crate::adapters::vendor::poll::Poller::new(ingest.clone(), source.clone())
                            .run(owner.clone())
                    },
                );
            }
            if source.definition.drop_folder.is_some() {
                let dropper = Arc::new(crate::adapters::vendor::folder::Dropper {
                    ingest: ingest.clone(),
                    inbound: inbound(ingest.clone(), &settings),
                    source: source.clone(),
                });
                let owner = process.clone();
                tasks.spawn(
                    task("drop folder"),
                    OnExit::Restart,
                    AtShutdown::Stop,
                    move |_| dropper.clone().run(owner.clone()),
                );
            }
        }
        let retention = crate::ops::retention::Retention {
            hl7v2_archive_days: settings.hl7v2_archive_days,
            event_days: settings.event_retention_days,
            audit_days: settings.audit_retention_days,
            stream: settings.stream.broker.url.is_some(),
        };
        let s = store.clone();
        tasks.spawn(
            "retention sweep",
            OnExit::Restart,
            AtShutdown::Stop,
            move |_| crate::ops::retention::run(s.clone(), retention, Duration::from_secs(3600)),
        );
        let exports = crate::bulk::Exports::new(
            store.clone(),
            settings.store.data_dir.clone(),
            base_url.clone(),
            crate::bulk::ExportSettings {
                max_running: settings.exports_running.max(1),
                max_per_client: settings.exports_per_client.max(1),
                keep: Duration::from_secs(settings.export_keep_hours * 3600),
                per_file: settings.export_file_resources.max(1),
            },
        );
        let e = exports.clone();
        tasks.spawn(
            "bulk export",
            OnExit::Restart,
            AtShutdown::Stop,
            move |_| e.clone().run(),
        );
        let rates = Arc::new(crate::api::rate::Rates {
            auth_per_address: crate::api::rate::Rate::per_second(settings.auth_rate),
            webhook_per_address: crate::api::rate::Rate::per_second(settings.webhook_rate),
            api_per_client: crate::api::rate::Rate::per_second(settings.api_rate),
        });
        {
            // addresses and clients come and go: forget those whose allowance is full again
            let rates = rates.clone();
            tasks.spawn(
                "rate forgetting",
                OnExit::Restart,
                AtShutdown::Stop,
                move |_| {
                    let rates = rates.clone();
                    async move {
                        loop {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            rates.auth_per_address.forget_idle();
                            rates.webhook_per_address.forget_idle();
                            rates.api_per_client.forget_idle();
                        }
                    }
                },
            );
        }
        let state = web::Data::new(AppState {
            store,
            base_url: base_url.clone(),
            authority: Arc::new(authority),
            insecure_dev: settings.insecure_dev,
            open_grant: Arc::new(Grant::unrestricted()),
            max_body_bytes: settings.max_body_bytes,
            body_budget: crate::api::body::BodyBudget::new(
                settings
                    .max_body_bytes_in_flight
                    .max(settings.max_body_bytes),
            ),
            max_bundle_entries: settings.max_bundle_entries,
            writes: crate::api::admission::Writes::new(settings.max_writes_in_flight),
            hl7v2: inbound(ingest.clone(), &settings),
            ingest,
            mpi,
            mpi_on: !settings.no_mpi,
            terminology,
            truth,
            sockets,
            rates: rates.clone(),
            tasks: tasks.states(),
            exports,
            sources: Arc::new(sources),
        });
        let hsts = https.is_some();
        let drain = Arc::new(crate::api::drain::Drain::default());
        let counted = drain.clone();
        let server = HttpServer::new(move || {
            // over TLS, browsers are told to come back over TLS only (a year, as is usual)
            let hsts_header = actix_web::middleware::Condition::new(
                hsts,
                actix_web::middleware::DefaultHeaders::new()
                    .add(("Strict-Transport-Security", "max-age=31536000")),
            );
            App::new()
                .wrap(hsts_header)
                .configure(|cfg| api::routes(cfg, state.clone()))
                // outermost: every request is counted while in hand (see `api::drain`)
                .wrap(crate::api::drain::Counting(counted.clone()))
        })
        // Longer than clients' usual idle pools hold a connection (actix's default is
        // 5 s): a client that reuses a connection the server just closed sees a reset.
        .keep_alive(Duration::from_secs(75))
        // signals are handled by `run_until_stopped`, which stops the MLLP side too
        .disable_signals();
        let mut server = match https {
            Some(config) => server.listen_rustls_0_23(listener, config)?,
            None => server.listen(listener)?,
        };
        if let Some(n) = settings.workers {
            server = server.workers(n);
        }
        tracing::info!(%addr, %base_url, tls = hsts, "emrsync listening");
        Ok(Application {
            port: addr.port(),
            mllp_port,
            base_url,
            server: server.run(),
            tasks,
            drain,
            shutdown: Duration::from_secs(settings.shutdown_secs),
            ingest: flushed,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn mllp_port(&self) -> Option<u16> {
        self.mllp_port
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Serve until SIGTERM or SIGINT, then shut down gracefully: no new HTTP or MLLP
    /// connection is accepted, requests and messages in hand finish (until the deadline),
    /// background tasks stop. An error when an essential task stopped (the process should
    /// exit with a non-zero status, so that its supervisor starts it again).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        enum Why {
            Server(std::io::Result<()>),
            Signal,
            Failed(&'static str),
        }
        let Application {
            server,
            mut tasks,
            shutdown,
            drain,
            ingest,
            ..
        } = self;
        let handle = server.handle();
        // the server runs on its own task: it must go on being polled to carry out the
        // handle's commands (pause, stop) while this one waits for them
        let mut server = tokio::spawn(server);
        let why = tokio::select! {
            ended = &mut server => Why::Server(ended.unwrap_or_else(|e| Err(std::io::Error::other(e)))),
            _ = crate::ops::tasks::termination() => Why::Signal,
            name = tasks.failed() => Why::Failed(name),
        };
        match why {
            Why::Server(ended) => {
                tasks.shut_down(shutdown).await;
                Ok(ended?)
            }
            Why::Signal => {
                tracing::info!(deadline = ?shutdown, "refusing new connections; finishing what is in hand");
                // both sides at once: HTTP waits for its requests, MLLP for its messages;
                // then idle keep-alive connections are closed with the server
                handle.pause().await;
                let (finished, ()) = tokio::join!(drain.close(shutdown), tasks.shut_down(shutdown));
                if !finished {
                    tracing::warn!(deadline = ?shutdown, "HTTP requests still in hand at the shutdown deadline");
                }
                handle.stop(false).await;
                server.await??;
                // what the hooks kept since their last flush (the unmapped codes worklist)
                let _ = tokio::task::spawn_blocking(move || ingest.flush_hooks()).await;
                tracing::info!("stopped");
                Ok(())
            }
            Why::Failed(name) => {
                // requests in hand still get their answers (until the deadline); a graceful
                // stop of the server itself would also wait for idle keep-alive connections
                handle.pause().await;
                drain.close(shutdown).await;
                handle.stop(false).await;
                anyhow::bail!("the {name} stopped: the server cannot go on without it")
            }
        }
    }
}
