//! The controller: policy → maps, attach, then watch events and reloads.
//!
//! Shaped as `run(config, shutdown)` so tests drive it with their own pins,
//! cgroup and shutdown future.

mod by_name;
mod controller;
mod record;
mod watch;

use std::{future::Future, path::PathBuf};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tracing::{debug, error, info, warn};

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
    check_upstreams(&mut policy, &config);
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
    let control = bind_control(&config.socket)?;
    // From here on, every way out of `run` (errors included) removes the
    // socket file; the flows are flushed on every way out of the loop.
    let _socket_file = SocketFile(config.socket.clone());
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
        // Enforcement does not depend on it; attribution falls back to /proc.
        warn!(error = %e, "exec tracking unavailable: short-lived processes may be reported without their executable");
    }
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
    let rules_rx = controller.rules.subscribe();
    let mut events = EventReader::open(&pins)?;
    let mut execs = RingReader::open(&pins, enforcer_common::maps::PROC_EVENTS)?;
    let mut dns_reports = RingReader::open(&pins, enforcer_common::maps::DNS_REPORTS)?;
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
    let (metrics_tx, metrics_rx) = tokio::sync::watch::channel(String::new());
    let metrics_server = match controller.policy.report.metrics_listen {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                info!(%addr, "serving Prometheus metrics");
                Some(tokio::spawn(crate::metrics::serve(listener, metrics_rx)))
            }
            Err(e) => {
                warn!(%addr, error = %e, "cannot serve metrics");
                None
            }
        },
        None => None,
    };
    let mut metrics_tick = tokio::time::interval(std::time::Duration::from_secs(2));
    let facts = Facts {
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
    let mut errors = LoopErrors::default();
    // Learned addresses whose time is over are ignored by the programs at
    // once; this frees their map entries.
    let mut learned = crate::bpf::dnsnames::LearnedCounts::default();
    let mut purge = tokio::time::interval(std::time::Duration::from_secs(5));
    // READY once everything the loop needs is open (a policy without
    // names has nothing to wait for).
    if controller.first_round() {
        notify_ready(&controller.status());
    }
    tokio::pin!(shutdown);
    loop {
        let next_expiry = controller.next_expiry_ms();
        tokio::select! {
            () = &mut shutdown => break,
            _ = hup.recv() => {
                let _ = reload(&mut controller, &config, &mut policy_watch, true);
            }
            Some(()) = changes.recv() => {
                // Debounce without holding the loop: editors and config
                // management write in steps.
                reload_due = Some(tokio::time::Instant::now() + DEBOUNCE);
            }
            () = resolve::task::sleep_until(reload_due) => {
                reload_due = None;
                let _ = reload(&mut controller, &config, &mut policy_watch, false);
            }
            Some(job) = jobs.recv() => {
                use crate::control::{Response, protocol::Command};
                let response = match job.command {
                    Command::Status => {
                        // Fresh counts (and the expired ones gone) for what status shows.
                        if let Ok(c) = crate::bpf::dnsnames::purge_expired(&pins) {
                            learned = c;
                        }
                        let mut s = status_json(&controller, &facts, &learned);
                        s["dns"]["reports"] = serde_json::json!({"received": recorder.dns_reports, "unparsed": recorder.dns_reports_unparsed});
                        Response::ok(s)
                    }
                    Command::Flows { since_ms, pid, exe, user, domain, name, limit } => {
                        let q = crate::flows::Query { since_ms, pid, exe, user, domain, name, limit };
                        match recorder.query(&q) {
                            Ok(flows) => Response::ok(serde_json::to_value(flows).expect("flows serialise")),
                            Err(e) => Response::error("failed", e.to_string()),
                        }
                    }
                    Command::Check { target } => {
                        // Resolving may take seconds: off the loop.
                        let policy = controller.policy.clone();
                        let rules = controller.rules.borrow().clone();
                        let pins = pins.clone();
                        let resolv_conf = config.resolv_conf.clone();
                        tokio::spawn(async move {
                            let response = match crate::check::live(&policy, &rules, &pins, &resolv_conf, &target).await {
                                Ok(v) => Response::ok(serde_json::json!({"blocked": v.blocked, "text": v.text, "detail": v.json})),
                                Err(e) => Response::error("bad_request", format!("{e:#}")),
                            };
                            let _ = job.reply.send(response);
                        });
                        continue;
                    }
                    Command::Reload => {
                        match reload(&mut controller, &config, &mut policy_watch, true) {
                            Ok(msg) => Response::ok(msg.into()),
                            Err(msg) => Response::error("failed", msg),
                        }
                    }
                    Command::Follow => Response::error("bad_request", "follow is served by the connection"),
                    Command::Detach => {
                        detach_requested = true;
                        Response::ok("detaching: the daemon stops and removes the enforcement".into())
                    }
                };
                let _ = job.reply.send(response);
                if detach_requested {
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
                            report_first_round(&controller);
                            notify_ready(&controller.status());
                        } else {
                            notify_status(&controller.status());
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
            read = execs.next_batch(|b| exec_buf.push(b.to_vec())) => {
                if let Err(e) = read {
                    errors.record("reading exec records", &e).await;
                }
                for b in exec_buf.drain(..) {
                    recorder.on_exec(&b);
                }
            }
            read = dns_reports.next_batch(|b| recorder.on_dns_report(b)) => {
                if let Err(e) = read {
                    errors.record("reading DNS reports", &e).await;
                }
            }
            read = events.next_batch(|ev| event_buf.push(ev)) => {
                if let Err(e) = read {
                    errors.record("reading events", &e).await;
                }
                // Exec records and DNS answers first: a process may exec,
                // resolve and be refused between two wake-ups.
                execs.drain(|b| recorder.on_exec(b));
                dns_reports.drain(|b| recorder.on_dns_report(b));
                for ev in event_buf.drain(..) {
                    if recorder.on_block(ev, &rules_rx.borrow(), &controller.answers) {
                        recorder.flush();
                    }
                }
            }
            _ = flush.tick() => recorder.flush(),
            _ = metrics_tick.tick(), if metrics_server.is_some() => {
                metrics_tx.send_replace(render_metrics(&controller, &recorder, &facts));
            }
            _ = retention.tick() => recorder.retain(&controller.policy.report),
            _ = purge.tick() => match crate::bpf::dnsnames::purge_expired(&pins) {
                Ok(c) => learned = c,
                Err(e) => errors.record("removing expired learned addresses", &e).await,
            },
            _ = loss_check.tick() => match Stats::read(&pins) {
                Ok(stats) => {
                    let now = stats.ringbuf_full();
                    if now > losses {
                        warn!(lost = now - losses, total = now, "the event ring buffer was full; events were lost (counted, not reported)");
                    }
                    losses = now;
                }
                Err(e) => errors.record("reading the counters", &e).await,
            },
        }
    }
    resolver.abort();
    execs.drain(|b| recorder.on_exec(b));
    dns_reports.drain(|b| recorder.on_dns_report(b));
    events.drain(|ev| {
        recorder.on_block(ev, &rules_rx.borrow(), &controller.answers);
    });
    recorder.flush();
    let _ = server_stop.send(());
    let _ = server.await;
    if let Some(m) = metrics_server {
        m.abort();
    }
    if detach_requested {
        let report = crate::bpf::detach(&pins)?;
        info!(
            links = report.links,
            maps = report.maps,
            "detached on request; the enforcement is removed"
        );
        return Ok(());
    }
    info!(
        pins = %pins.root().display(),
        "stopping; the enforcement stays in the kernel (`enforcer detach` removes it)"
    );
    Ok(())
}

/// How long the policy files must be quiet before a change is reloaded.
const DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(300);

/// Errors the loop survives: each is logged (at most once a second per
/// kind) and counted, and a failing source is paused briefly so that a
/// persistent error cannot spin the loop.
#[derive(Default)]
struct LoopErrors {
    total: u64,
    last_logged: Option<std::time::Instant>,
}

impl LoopErrors {
    async fn record(&mut self, what: &str, error: &dyn std::fmt::Display) {
        self.total += 1;
        let now = std::time::Instant::now();
        if self
            .last_logged
            .is_none_or(|t| now.duration_since(t) >= std::time::Duration::from_secs(1))
        {
            self.last_logged = Some(now);
            error!(error = %error, total = self.total, "{what} failed; the daemon goes on (enforcement is in the kernel)");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Says how the first round of resolutions went, loudly when DNS failed.
fn report_first_round(controller: &Controller) {
    let a = &controller.answers;
    let failing = a.count(resolve::NameStatus::Stale) + a.count(resolve::NameStatus::Partial);
    if failing == 0 {
        info!("first resolution of every name is in the maps");
        return;
    }
    warn!(
        names = a.names.len(),
        failing,
        never_answered = a.never_answered(),
        "first resolution round: some names did not answer; their last known addresses stay enforced and they are retried (`enforcer reload` retries now)"
    );
}

/// Re-reads the policy. A bad policy is rejected whole and the one in
/// force stays. `explicit`: asked for (SIGHUP, `enforcer reload`), as
/// opposed to a file change. Afterwards the watch follows the files of the
/// policy in force (a drop-in directory may have appeared).
fn reload(
    controller: &mut Controller,
    config: &Config,
    watch: &mut watch::PolicyWatch,
    explicit: bool,
) -> Result<String, String> {
    let result = read_and_apply(controller, config, explicit);
    watch.follow(&controller.policy);
    result
}

fn read_and_apply(
    controller: &mut Controller,
    config: &Config,
    explicit: bool,
) -> Result<String, String> {
    match Policy::resolve(config.policy.as_deref()) {
        Ok(mut policy) => {
            check_upstreams(&mut policy, config);
            match controller.reload(policy, explicit) {
                Ok(controller::ReloadOutcome::Applied(msg)) => Ok(msg),
                Ok(controller::ReloadOutcome::Unchanged) => {
                    debug!("policy files touched; the merged policy is unchanged");
                    Ok("policy unchanged".into())
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => {
            error!(
                error = %e,
                kept = %controller.policy.source(),
                "reload rejected; the policy in force stays"
            );
            Err(format!("reload rejected, the policy in force stays: {e}"))
        }
    }
}

/// Warns (in `policy.warnings`: logged, and listed by `status`) when a ban
/// covers a server the resolver asks, the configured upstreams or else
/// those of resolv.conf, read now.
fn check_upstreams(policy: &mut Policy, config: &Config) {
    let upstreams =
        resolve::dns::upstreams(policy.resolver.upstreams.as_deref(), &config.resolv_conf);
    policy.check_upstreams(&upstreams.unwrap_or_default(), &config.resolv_conf);
}

/// Removes the control socket file when the daemon stops, however it stops
/// (short of `kill -9`, after which the next start replaces it).
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.0) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(path = %self.0.display(), error = %e, "cannot remove the control socket")
            }
        }
    }
}

/// Binds the control socket: refuses to steal one a live daemon serves,
/// replaces a stale one, and lets root and the `enforcer` group connect.
fn bind_control(path: &std::path::Path) -> Result<tokio::net::UnixListener, DaemonError> {
    use std::os::unix::fs::PermissionsExt as _;
    let err = |source| DaemonError::Socket {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another enforcer daemon serves this socket; give each instance its own --socket",
            )));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(err)?;
    let mode = if let Some(gid) = crate::control::auth::enforcer_gid() {
        std::os::unix::fs::chown(path, Some(0), Some(gid)).map_err(err)?;
        0o660
    } else {
        0o600
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)?;
    Ok(listener)
}

/// Everything `status` reports that the controller does not hold.
struct Facts<'a> {
    config: &'a Config,
    cgroup: &'a std::path::Path,
    pins: &'a Pins,
    started_ms: u64,
}

fn status_json(
    controller: &Controller,
    facts: &Facts<'_>,
    learned: &crate::bpf::dnsnames::LearnedCounts,
) -> serde_json::Value {
    use enforcer_common::{HOOK_COUNT, VERDICT_COUNT};
    let stats = Stats::read(facts.pins).ok();
    let now = resolve::now_ms();
    let mut hooks = serde_json::Map::new();
    if let Some(s) = &stats {
        for hook in 0..HOOK_COUNT {
            let name = crate::bpf::events::Hook::from_raw(hook).map_or("?", |h| h.as_str());
            let mut verdicts = serde_json::Map::new();
            for verdict in 0..VERDICT_COUNT {
                let v = crate::bpf::events::Verdict::from_raw(verdict).map_or("?", |v| v.as_str());
                verdicts.insert(v.into(), s.get(hook, verdict).into());
            }
            hooks.insert(name.into(), verdicts.into());
        }
    }
    let a = &controller.answers;
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "mode": controller.policy.mode.to_string(),
        "cgroup": facts.cgroup.display().to_string(),
        "xdp_interfaces": facts.config.xdp_ifaces,
        "pins": facts.pins.root().display().to_string(),
        "policy": {
            "sources": controller.policy.sources.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "loaded_ms": controller.loaded_ms,
            "age_s": now.saturating_sub(controller.loaded_ms) / 1000,
            "warnings": controller.policy.warnings,
        },
        "maps": controller.map_counts(),
        "names": {
            "total": a.names.len(),
            "fresh": a.count(resolve::NameStatus::Fresh),
            "partial": a.count(resolve::NameStatus::Partial),
            "never_answered": a.never_answered(),
            "ignored_addresses": a.names.values().map(|s| s.ignored.len()).sum::<usize>(),
            "settled": controller.settled(),
            "summary": controller.status(),
            "stale": a.count(resolve::NameStatus::Stale),
            "nxdomain": a.count(resolve::NameStatus::Nxdomain),
            "pending": a.count(resolve::NameStatus::Pending),
        },
        "events": {
            "per_hook": hooks,
            "lost_ringbuf_full": stats.as_ref().map(Stats::ringbuf_full),
            "xdp_suppressed": stats.as_ref().map(Stats::xdp_events_suppressed),
            "skb_coalesced": stats.as_ref().map(Stats::skb_events_coalesced),
            "owner_unknown": stats.as_ref().map(Stats::owner_unknown),
        },
        "dns": {
            "learned_v4": learned.v4,
            "learned_v6": learned.v6,
            "learned_scoped": learned.scoped,
            "counters": stats.as_ref().map(|s| s.dns().into_iter().collect::<std::collections::BTreeMap<_, _>>()),
        },
        "uptime_s": now.saturating_sub(facts.started_ms) / 1000,
    })
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

fn render_metrics(
    controller: &Controller,
    recorder: &record::Recorder,
    facts: &Facts<'_>,
) -> String {
    use enforcer_common::{HOOK_COUNT, VERDICT_COUNT};
    let stats = Stats::read(facts.pins).ok();
    let mut verdicts = Vec::new();
    if let Some(s) = &stats {
        for hook in 0..HOOK_COUNT {
            for verdict in 0..VERDICT_COUNT {
                let h = crate::bpf::events::Hook::from_raw(hook).map_or("?", |h| h.as_str());
                let v = crate::bpf::events::Verdict::from_raw(verdict).map_or("?", |v| v.as_str());
                verdicts.push((h, v, s.get(hook, verdict)));
            }
        }
    }
    let counts = controller.map_counts();
    let maps = counts
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_u64().unwrap_or(0)))
        .collect();
    let a = &controller.answers;
    let names = [
        ("fresh", resolve::NameStatus::Fresh),
        ("stale", resolve::NameStatus::Stale),
        ("nxdomain", resolve::NameStatus::Nxdomain),
        ("pending", resolve::NameStatus::Pending),
    ]
    .into_iter()
    .map(|(k, st)| (k, a.count(st) as u64))
    .collect();
    let rules_table = controller.rules.borrow();
    let rules = recorder
        .rule_hits
        .iter()
        .map(|(id, n)| {
            let text = rules_table
                .get(*id)
                .map_or_else(|| format!("#{id}"), |r| r.target.to_string());
            (*id, (text, *n))
        })
        .collect();
    crate::metrics::render(&crate::metrics::Snapshot {
        verdicts,
        lost: stats.as_ref().map_or(0, Stats::ringbuf_full),
        xdp_suppressed: stats.as_ref().map_or(0, Stats::xdp_events_suppressed),
        skb_coalesced: stats.as_ref().map_or(0, Stats::skb_events_coalesced),
        owner_unknown: stats.as_ref().map_or(0, Stats::owner_unknown),
        maps,
        names,
        rules,
        flows: recorder.flows_recorded,
        uptime_s: resolve::now_ms().saturating_sub(facts.started_ms) / 1000,
    })
}
