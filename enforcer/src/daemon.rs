//! The controller: policy → maps, attach, then watch events and reloads.
//!
//! Shaped as `run(config, shutdown)` so tests drive it with their own pins,
//! cgroup and shutdown future.

use std::{future::Future, path::PathBuf, sync::Arc};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
};
use tracing::{error, info, warn};

use crate::{
    bpf::{
        CgroupHook, Datapath, DatapathError, Pins,
        events::{BlockEvent, DecodeError, EventReader},
        stats::{Stats, set_mode},
        writer::{MapWriter, WriteError},
    },
    desired::{RuleTable, compile},
    policy::{Policy, PolicyError},
    sys::cgroup::{self, CgroupError},
};

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
    info!(source = %policy.source(), mode = %policy.mode, "policy loaded");
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
    let mut writer = MapWriter::open(&pins)?;
    let (desired, rules) = compile(&policy, &crate::desired::ResolvedAddrs::new());
    // Maps first, links second: on a first start the programs see a full
    // policy from their first run; on a restart the diff is adds-first.
    let applied = writer.apply(&desired)?;
    set_mode(&pins, policy.mode)?;
    info!(
        entries = desired.len(),
        added_or_changed = applied.upserts,
        removed = applied.removes,
        "verdict maps reconciled"
    );
    datapath.attach_cgroup(&cgroup, &config.hooks)?;
    for iface in &config.xdp_ifaces {
        datapath.attach_xdp(iface)?;
    }
    datapath.prune()?;
    // The links and maps are pinned; the loader's handles are not needed.
    drop(datapath);

    let status = format!(
        "enforcing {} rules ({} map entries) in {} mode on {}",
        rules.len(),
        desired.len(),
        policy.mode,
        cgroup.display()
    );
    notify_ready(&status);
    info!("{status}");

    let (rules_tx, rules_rx) = watch::channel(Arc::new(rules));
    let mut events = EventReader::open(&pins)?;
    let mut loss_check = tokio::time::interval(std::time::Duration::from_secs(10));
    let mut losses = Stats::read(&pins)?.ringbuf_full();
    let mut state = Reloadable {
        policy,
        writer,
        rules: rules_tx,
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = hup.recv() => state.reload(&config, &pins),
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
    events.drain(|ev| log_event(ev, &rules_rx.borrow()));
    info!(
        pins = %pins.root().display(),
        "stopping; the enforcement stays in the kernel (`enforcer detach` removes it)"
    );
    Ok(())
}

struct Reloadable {
    policy: Policy,
    writer: MapWriter,
    rules: watch::Sender<Arc<RuleTable>>,
}

impl Reloadable {
    /// Re-reads the policy. A bad policy is rejected whole and the one in
    /// force stays; a capacity problem changes nothing.
    fn reload(&mut self, config: &Config, pins: &Pins) {
        let policy = match Policy::resolve(config.policy.as_deref()) {
            Ok(policy) => policy,
            Err(e) => {
                error!(error = %e, kept = %self.policy.source(), "reload rejected; the policy in force stays");
                return;
            }
        };
        let (desired, rules) = compile(&policy, &crate::desired::ResolvedAddrs::new());
        match self.writer.apply(&desired) {
            Ok(applied) => {
                if let Err(e) = set_mode(pins, policy.mode) {
                    error!(error = %e, "setting the mode failed");
                    return;
                }
                info!(
                    source = %policy.source(),
                    mode = %policy.mode,
                    added_or_changed = applied.upserts,
                    removed = applied.removes,
                    "policy reloaded"
                );
                self.policy = policy;
                self.rules.send_replace(Arc::new(rules));
            }
            Err(e) => error!(error = %e, "reload failed; see the error for what stays in force"),
        }
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
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(
        false,
        &[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(status),
        ],
    ) {
        warn!(error = %e, "sd_notify failed");
    }
}
