//! The controller: policy → maps, attach, then watch events and reloads.
//!
//! Shaped as `run(config, shutdown)` so tests drive it with their own pins,
//! cgroup and shutdown future.
//!
//! # Layout
//! - this file: start-up, and the event loop that waits on everything.
//! - `controller`: the policy, the names' answers and the maps they make.
//! - `dispatch`: the control socket's requests, answered.
//! - `status`: what `status` and the metrics report.
//! - `reload`: reading the policy again; the last reload remembered.
//! - `record`: verdict events → attributed flows in the store.
//! - `watch`: the policy files, followed.
//! - `socket`: the control socket's file.
//! - `notify`: sd_notify and the first round's report.
//! - `loop_errors`: errors the loop survives.
//! - `shutdown`: the way out: drain, stop the tasks, keep or detach.
//! - `agents`: agent containment: selectors into the maps, running
//!   processes marked from /proc, marks kept current.

mod agents;
mod by_name;
mod controller;
mod dispatch;
mod loop_errors;
mod notify;
mod record;
mod reload;
mod shutdown;
mod socket;
mod status;
mod watch;

use std::{future::Future, path::PathBuf};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tracing::{error, info, warn};

use crate::{
    bpf::{
        CgroupHook, Datapath, DatapathError, Pins,
        events::{EventReader, RingReader},
        stats::Stats,
        writer::{MapWriter, WriteError},
    },
    policy::{Policy, PolicyError},
    resolve,
    sys::cgroup::{self, CgroupError},
};

pub use controller::Controller;
pub use reload::ReloadError;

#[derive(Debug, Clone)]
pub struct Config {
    /// `None`: the system policy if present, else the embedded default.
    pub policy: Option<PathBuf>,
    /// `None`: the root of the cgroup2 hierarchy (the whole host).
    pub cgroup: Option<PathBuf>,
    pub xdp_ifaces: Vec<String>,
    pub bpffs: PathBuf,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub hooks: Vec<CgroupHook>,
    /// Read for the DNS servers when the policy names none.
    pub resolv_conf: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error(transparent)]
    Maps(#[from] WriteError),
    #[error("{path}: cannot prepare the state directory: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("signal handling: {0}")]
    Signal(#[source] std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::flows::StoreError),
    #[error("agent containment: {0}")]
    Agents(String),
    #[error("control socket {path}: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Brings the enforcement up and keeps it current until `shutdown`
/// resolves. On return the enforcement stays in the kernel (fail closed).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    // Before READY: a reload requested right after start must not kill us.
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;
    let mut policy = Policy::resolve(config.policy.as_deref())?;
    // Selectors the kernel tables cannot hold stop the start, like any
    // invalid policy, before anything is attached.
    let compiled =
        agents::Containment::compile(&policy).map_err(|e| DaemonError::Agents(e.to_string()))?;
    reload::check_upstreams(&mut policy, &config);
    info!(source = %policy.source(), drop_ins = policy.sources.len() - 1, mode = %policy.mode, "policy loaded");
    for w in &policy.warnings {
        warn!("{w}");
    }
    let cgroup = match &config.cgroup {
        Some(path) => cgroup::check_cgroup_dir(path)?,
        None => cgroup::cgroup2_mount()?,
    };
    let pins = Pins::new(&config.bpffs);
    // Before anything is created, loaded or attached: a mistyped interface
    // or a daemon already on these pins stops this one with nothing changed.
    crate::bpf::check_xdp_ifaces(&config.xdp_ifaces)?;
    let _instance = crate::bpf::InstanceLock::acquire(&pins)?;
    record::prepare_state_dir(&config.state_dir).map_err(|source| DaemonError::StateDir {
        path: config.state_dir.clone(),
        source,
    })?;

    let started_ms = resolve::now_ms();
    let control = socket::bind(&config.socket)?;
    // From here on, every way out of `run` (errors included) removes the
    // socket file; the flows are flushed on every way out of the loop.
    let _socket_file = socket::SocketFile(config.socket.clone());
    // The flow store exists (with its schema) before READY, so that readers
    // never see it half-made.
    let mut recorder =
        record::Recorder::new(&config.state_dir, &cgroup::cgroup2_mount()?, &policy.report)?;
    let mut datapath = Datapath::load(&pins)?;
    if datapath.adopted() {
        info!(pins = %pins.root().display(), "adopting the maps of a previous instance; they stay in force");
    }
    let writer = MapWriter::open(&pins)?;
    let mut controller = Controller::new(
        policy,
        writer,
        pins.clone(),
        config.state_dir.clone(),
        config.resolv_conf.clone(),
    );
    // Static rules (and, on a restart, everything already enforced) go in
    // before the programs attach and before the first name resolves:
    // start closed, then widen to exactly the policy.
    let applied = controller.reconcile()?;
    info!(
        added_or_changed = applied.upserts,
        removed = applied.removes,
        "verdict maps reconciled (static rules)"
    );
    datapath.attach_cgroup(&cgroup, &config.hooks)?;
    for iface in &config.xdp_ifaces {
        datapath.attach_xdp(iface)?;
    }
    if let Err(e) = datapath.attach_exec_tracking() {
        // Containment does: without these hooks an agent would run free.
        if !compiled.is_empty() {
            return Err(DaemonError::Agents(format!(
                "the policy contains agents, but the exec/fork tracepoints cannot be attached: {e}"
            )));
        }
        // The bans do not; attribution falls back to /proc.
        warn!(error = %e, "exec tracking unavailable: short-lived processes may be reported without their executable");
    }
    // With the exec hook running: processes started from now on are
    // matched by the kernel, the ones already running from /proc.
    let agents_policy = controller.policy.clone();
    controller
        .agents
        .apply(&agents_policy, compiled)
        .map_err(|e| DaemonError::Agents(e.to_string()))?;
    drop(agents_policy);
    datapath.prune()?;
    // The links and maps are pinned; the loader's handles are not needed.
    drop(datapath);
    info!(cgroup = %cgroup.display(), "enforcing");

    let (outcome_tx, mut outcomes) = mpsc::channel(1024);
    let resolver = resolve::spawn(controller.plan.subscribe(), outcome_tx);
    let (change_tx, mut changes) = mpsc::channel(1);
    let main_path = Policy::main_path(config.policy.as_deref());
    let mut policy_watch = watch::PolicyWatch::new(main_path.clone(), change_tx);
    policy_watch.follow(&controller.policy);
    // A file change reloads once the files have been quiet this long.
    let mut reload_due: Option<tokio::time::Instant> = None;
    let mut reloads = crate::control::status::Reloads::default();
    let mut readers = shutdown::Readers {
        events: EventReader::open(&pins)?,
        execs: RingReader::open(&pins, enforcer_common::maps::PROC_EVENTS)?,
        dns_reports: RingReader::open(&pins, enforcer_common::maps::DNS_REPORTS)?,
    };
    let mut flush = tokio::time::interval(std::time::Duration::from_secs(1));
    let (job_tx, mut jobs) = mpsc::channel::<crate::control::Job>(64);
    let (server_stop, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::control::run(
        control,
        job_tx,
        recorder.follow.clone(),
        async move {
            let _ = server_stopped.await;
        },
    ));
    let (metrics_tx, metrics_server) =
        status::serve_metrics(controller.policy.report.metrics_listen).await;
    let mut metrics_tick = tokio::time::interval(std::time::Duration::from_secs(2));
    let facts = status::Facts {
        config: &config,
        cgroup: &cgroup,
        pins: &pins,
        started_ms,
    };
    let mut detach_requested = false;
    let mut exec_buf: Vec<Vec<u8>> = Vec::new();
    let mut event_buf = Vec::new();
    let mut retention = tokio::time::interval(std::time::Duration::from_secs(60));
    let mut loss_check = tokio::time::interval(std::time::Duration::from_secs(10));
    let mut losses = Stats::read(&pins).map_or(0, |s| s.ringbuf_full());
    let mut uninspectable = Stats::read(&pins).map_or(0, |s| s.sni_sockets_failed());
    let mut errors = loop_errors::LoopErrors::default();
    // Learned addresses whose time is over are ignored by the programs at
    // once; this frees their map entries.
    let mut learned = crate::bpf::dnsnames::LearnedCounts::default();
    let mut purge = tokio::time::interval(std::time::Duration::from_secs(5));
    // READY once everything the loop needs is open (a policy without
    // names has nothing to wait for).
    if controller.first_round() {
        notify::ready(&controller.status());
    }
    tokio::pin!(shutdown);
    loop {
        let next_expiry = controller.next_expiry_ms();
        tokio::select! {
            () = &mut shutdown => break,
            _ = hup.recv() => {
                let _ = reload::reload(&mut controller, &config, &mut policy_watch, &mut reloads, true);
            }
            Some(()) = changes.recv() => {
                // Debounce without holding the loop: editors and config
                // management write in steps.
                reload_due = Some(tokio::time::Instant::now() + DEBOUNCE);
            }
            () = resolve::task::sleep_until(reload_due) => {
                reload_due = None;
                let _ = reload::reload(&mut controller, &config, &mut policy_watch, &mut reloads, false);
            }
            Some(job) = jobs.recv() => {
                let ctx = dispatch::Ctx {
                    controller: &mut controller,
                    recorder: &mut recorder,
                    watch: &mut policy_watch,
                    reloads: &mut reloads,
                    learned: &mut learned,
                    facts: &facts,
                };
                if dispatch::answer(job, ctx) == dispatch::Next::Detach {
                    detach_requested = true;
                    break;
                }
            }
            Some(first) = outcomes.recv() => {
                let mut progress = controller.on_outcome(&first.name, first.resolution);
                while let Ok(more) = outcomes.try_recv() {
                    let p = controller.on_outcome(&more.name, more.resolution);
                    progress.first_round_done |= p.first_round_done;
                    progress.settled |= p.settled;
                }
                controller.expire();
                match controller.reconcile() {
                    Ok(_) => {
                        if progress.first_round_done {
                            notify::report_first_round(&controller);
                            notify::ready(&controller.status());
                        } else {
                            notify::status(&controller.status());
                        }
                        if progress.settled && !progress.first_round_done {
                            info!("every name has answered; the maps now hold exactly the policy");
                        }
                    }
                    Err(e) => error!(error = %e, "applying resolved addresses failed; the maps keep what they had"),
                }
            }
            () = sleep_until_ms(next_expiry) => {
                if controller.expire()
                    && let Err(e) = controller.reconcile()
                {
                    error!(error = %e, "removing expired addresses failed");
                }
            }
            read = readers.execs.next_batch(|b| exec_buf.push(b.to_vec())) => {
                if let Err(e) = read {
                    errors.record("reading exec records", &e).await;
                }
                for b in exec_buf.drain(..) {
                    recorder.on_exec(&b);
                }
            }
            read = readers.dns_reports.next_batch(|b| recorder.on_dns_report(b)) => {
                if let Err(e) = read {
                    errors.record("reading DNS reports", &e).await;
                }
            }
            read = readers.events.next_batch(|ev| event_buf.push(ev)) => {
                if let Err(e) = read {
                    errors.record("reading events", &e).await;
                }
                // Exec records and DNS answers first: a process may exec,
                // resolve and be refused between two wake-ups.
                readers.execs.drain(|b| recorder.on_exec(b));
                readers.dns_reports.drain(|b| recorder.on_dns_report(b));
                recorder.sync_clock();
                let rules = controller.rules.borrow();
                for ev in event_buf.drain(..) {
                    if recorder.on_block(ev, &rules, &controller.answers, &controller.agents) {
                        recorder.flush();
                    }
                }
            }
            _ = flush.tick() => recorder.flush(),
            _ = metrics_tick.tick(), if metrics_server.is_some() => {
                metrics_tx.send_replace(status::render_metrics(&controller, &recorder, &facts));
            }
            _ = retention.tick() => recorder.retain(&controller.policy.report),
            _ = purge.tick() => {
                match crate::bpf::dnsnames::purge_expired(&pins) {
                    Ok(c) => learned = c,
                    Err(e) => errors.record("removing expired learned addresses", &e).await,
                }
                controller.retry_agents();
                if let Err(e) = controller.agents.forget_gone() {
                    errors.record("removing marks of exited processes", &e).await;
                }
            }
            _ = loss_check.tick() => match Stats::read(&pins) {
                Ok(stats) => {
                    let now = stats.ringbuf_full();
                    if now > losses {
                        warn!(lost = now - losses, total = now, "the event ring buffer was full; events were lost (counted, not reported)");
                    }
                    losses = now;
                    let failed = stats.sni_sockets_failed();
                    if failed > uninspectable {
                        warn!(
                            connections = failed - uninspectable,
                            total = failed,
                            "connections to inspected destinations could not be put fully under \
                             name inspection (the sockhash full: 65536 such connections open; a \
                             socket the kernel keeps out of it; or no memory): those the sockhash \
                             refused send nothing and stall"
                        );
                    }
                    uninspectable = failed;
                }
                Err(e) => errors.record("reading the counters", &e).await,
            },
        }
    }
    let tasks = shutdown::Tasks {
        resolver,
        server_stop,
        server,
        metrics: metrics_server,
    };
    shutdown::finish(
        readers,
        recorder,
        &controller,
        tasks,
        &pins,
        detach_requested,
    )
    .await
}

/// How long the policy files must be quiet before a change is reloaded.
const DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(300);

async fn sleep_until_ms(when_ms: Option<u64>) {
    match when_ms {
        Some(t) => {
            let wait = t.saturating_sub(resolve::now_ms());
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        }
        None => std::future::pending().await,
    }
}
