//! The controller: policy → maps, attach, then watch events and reloads.
//!
//! Shaped as `run(config, shutdown)` so tests drive it with their own pins,
//! cgroup and shutdown future.

mod controller;
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
        events::{BlockEvent, DecodeError, EventReader},
        stats::Stats,
        writer::{MapWriter, WriteError},
    },
    desired::RuleTable,
    policy::{Policy, PolicyError},
    resolve,
    sys::cgroup::{self, CgroupError},
};

pub use controller::Controller;

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
    #[error("{path}: cannot create the state directory: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("signal handling: {0}")]
    Signal(#[source] std::io::Error),
    #[error("reading events: {0}")]
    Events(#[source] std::io::Error),
}

/// Brings the enforcement up and keeps it current until `shutdown`
/// resolves. On return the enforcement stays in the kernel (fail closed).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    // Before READY: a reload requested right after start must not kill us.
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;
    let policy = Policy::resolve(config.policy.as_deref())?;
    info!(source = %policy.source(), drop_ins = policy.sources.len() - 1, mode = %policy.mode, "policy loaded");
    for w in &policy.warnings {
        warn!("{w}");
    }
    let cgroup = match &config.cgroup {
        Some(path) => cgroup::check_cgroup_dir(path)?,
        None => cgroup::cgroup2_mount()?,
    };
    let pins = Pins::new(&config.bpffs);
    std::fs::create_dir_all(&config.state_dir).map_err(|source| DaemonError::StateDir {
        path: config.state_dir.clone(),
        source,
    })?;

    let mut datapath = Datapath::load(&pins)?;
    if datapath.adopted() {
        info!(pins = %pins.root().display(), "adopting the maps of a previous instance; they stay in force");
    }
    let writer = MapWriter::open(&pins)?;
    let mut controller = Controller::new(policy, writer, pins.clone(), config.state_dir.clone());
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
    datapath.prune()?;
    // The links and maps are pinned; the loader's handles are not needed.
    drop(datapath);
    info!(cgroup = %cgroup.display(), "enforcing");
    if controller.settled() {
        notify_ready(&controller.status());
    }

    let (outcome_tx, mut outcomes) = mpsc::channel(1024);
    let resolver = resolve::spawn(controller.plan.subscribe(), outcome_tx);
    let (change_tx, mut changes) = mpsc::channel(1);
    let main_path = Policy::main_path(config.policy.as_deref());
    let _watch = watch::watch(
        main_path.as_deref(),
        &Policy::drop_in_dir(main_path.as_deref(), None),
        change_tx,
    );
    let rules_rx = controller.rules.subscribe();
    let mut events = EventReader::open(&pins)?;
    let mut loss_check = tokio::time::interval(std::time::Duration::from_secs(10));
    let mut losses = Stats::read(&pins)?.ringbuf_full();
    tokio::pin!(shutdown);
    loop {
        let next_expiry = controller.answers.next_expiry_ms();
        tokio::select! {
            () = &mut shutdown => break,
            _ = hup.recv() => reload(&mut controller, &config),
            Some(()) = changes.recv() => {
                // Debounce: editors and config management write in steps.
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                while changes.try_recv().is_ok() {}
                reload(&mut controller, &config);
            }
            Some(first) = outcomes.recv() => {
                let mut ready = controller.on_outcome(&first.name, first.resolution);
                while let Ok(more) = outcomes.try_recv() {
                    ready |= controller.on_outcome(&more.name, more.resolution);
                }
                controller.expire();
                match controller.reconcile() {
                    Ok(_) if ready => {
                        info!("first resolution of every name is in the maps");
                        notify_ready(&controller.status());
                    }
                    Ok(_) => notify_status(&controller.status()),
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
            read = events.next_batch(|ev| log_event(ev, &rules_rx.borrow())) => {
                read.map_err(DaemonError::Events)?;
            }
            _ = loss_check.tick() => {
                let now = Stats::read(&pins)?.ringbuf_full();
                if now > losses {
                    warn!(lost = now - losses, total = now, "the event ring buffer was full; events were lost (counted, not reported)");
                }
                losses = now;
            }
        }
    }
    resolver.abort();
    events.drain(|ev| log_event(ev, &rules_rx.borrow()));
    info!(
        pins = %pins.root().display(),
        "stopping; the enforcement stays in the kernel (`enforcer detach` removes it)"
    );
    Ok(())
}

/// Re-reads the policy. A bad policy is rejected whole and the one in
/// force stays.
fn reload(controller: &mut Controller, config: &Config) {
    match Policy::resolve(config.policy.as_deref()) {
        Ok(policy) => controller.reload(policy),
        Err(e) => error!(
            error = %e,
            kept = %controller.policy.source(),
            "reload rejected; the policy in force stays"
        ),
    }
}

async fn sleep_until_ms(when_ms: Option<u64>) {
    match when_ms {
        Some(t) => {
            let wait = t.saturating_sub(resolve::now_ms());
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        }
        None => std::future::pending().await,
    }
}

fn log_event(event: Result<BlockEvent, DecodeError>, rules: &RuleTable) {
    match event {
        Ok(ev) => {
            let rule = rules
                .get(ev.rule_id)
                .map_or_else(|| format!("#{}", ev.rule_id), ToString::to_string);
            let addr = ev.addr.map_or_else(|| "?".to_owned(), |a| a.to_string());
            warn!(
                hook = %ev.hook,
                verdict = %ev.verdict,
                rule,
                dst = %addr,
                port = ev.port,
                protocol = ev.protocol,
                pid = ev.tgid,
                tid = ev.pid,
                uid = ev.uid,
                comm = %ev.comm,
                cgroup_id = ev.cgroup_id,
                "blocked attempt"
            );
        }
        Err(e) => error!(error = %e, "undecodable event (object and daemon out of step?)"),
    }
}

fn notify_ready(status: &str) {
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

fn notify_status(status: &str) {
    notify(&[sd_notify::NotifyState::Status(status)]);
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        warn!(error = %e, "sd_notify failed");
    }
}
