//! The resolver task: resolves every name when its refresh is due, with
//! bounded concurrency, and reports each outcome to the controller.
//!
//! Refresh: at the answer's TTL clamped to [min_ttl_s, max_ttl_s].
//! NXDOMAIN: again after min_ttl_s. Failure (whole or partial): again after
//! a backoff of 1 s, 2 s, 4 s ... capped at `MAX_BACKOFF` (a laptop back on
//! the network must not wait an hour); the controller keeps what it knew.
//! A new plan generation (`enforcer reload`) makes every name due at once.
//! Without configured upstreams, /etc/resolv.conf is re-read every
//! `RESOLV_CONF_POLL` (following its symlink into /run, where network
//! managers rewrite it); a change rebuilds the resolver and re-asks every
//! failing name at once.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use hickory_resolver::TokioResolver;
use tokio::{
    sync::{Semaphore, mpsc, watch},
    task::JoinSet,
    time::Instant,
};
use tracing::{debug, info, warn};

use super::{answers::Resolution, dns};

/// What to resolve and how; the controller replaces it on every reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub names: Vec<String>,
    /// `None`: /etc/resolv.conf.
    pub upstreams: Option<Vec<SocketAddr>>,
    pub min_ttl_s: u32,
    pub max_ttl_s: u32,
    pub concurrency: u32,
    /// Bumped by every explicit reload: every name is asked again at once.
    pub generation: u64,
    /// Read for the upstreams when `upstreams` is `None`.
    pub resolv_conf: std::path::PathBuf,
}

/// The longest wait after a failure.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often /etc/resolv.conf is re-read when it supplies the upstreams.
pub const RESOLV_CONF_POLL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub name: String,
    pub resolution: Resolution,
}

/// Starts the task. It stops when the plan sender or the outcome
/// receiver is dropped.
pub fn spawn(
    plan: watch::Receiver<Arc<Plan>>,
    out: mpsc::Sender<Outcome>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(plan, out))
}

struct Schedule {
    due: Instant,
    failures: u32,
}

fn clamp(ttl_s: u32, plan: &Plan) -> Duration {
    Duration::from_secs(u64::from(ttl_s.clamp(plan.min_ttl_s, plan.max_ttl_s)))
}

fn backoff(failures: u32, plan: &Plan) -> Duration {
    let secs = 1u64 << failures.min(20);
    Duration::from_secs(secs.min(u64::from(plan.max_ttl_s)))
        .min(MAX_BACKOFF)
        .max(Duration::from_secs(1))
}

async fn run(mut plan_rx: watch::Receiver<Arc<Plan>>, out: mpsc::Sender<Outcome>) {
    let mut schedule: BTreeMap<String, Schedule> = BTreeMap::new();
    let mut plan = plan_rx.borrow_and_update().clone();
    let mut generation = plan.generation;
    let mut resolver: Option<Arc<TokioResolver>> = None;
    // The upstreams the resolver was built for.
    let mut in_use: Option<Vec<SocketAddr>> = None;
    let mut poll = tokio::time::interval(RESOLV_CONF_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The schedule follows the plan when the plan changes (not on every
    // round: with 10k names that scan cost ~100 ms a round).
    let mut plan_changed = true;
    loop {
        // Follow the plan: new names are due now, dropped names go.
        if std::mem::take(&mut plan_changed) {
            let wanted: std::collections::HashSet<&str> =
                plan.names.iter().map(String::as_str).collect();
            schedule.retain(|n, _| wanted.contains(n.as_str()));
            for name in &plan.names {
                schedule.entry(name.clone()).or_insert(Schedule {
                    due: Instant::now(),
                    failures: 0,
                });
            }
        }
        if plan.generation != generation {
            generation = plan.generation;
            for s in schedule.values_mut() {
                s.due = Instant::now();
                s.failures = 0;
            }
        }
        match dns::upstreams(plan.upstreams.as_deref(), &plan.resolv_conf) {
            Ok(ups) if in_use.as_ref() == Some(&ups) && resolver.is_some() => {}
            Ok(ups) => match dns::build(&ups) {
                Ok(r) => {
                    if in_use.is_some() {
                        info!(upstreams = ?ups, "DNS servers changed; asking failing names again");
                        for s in schedule.values_mut().filter(|s| s.failures > 0) {
                            s.due = Instant::now();
                            s.failures = 0;
                        }
                    }
                    resolver = Some(Arc::new(r));
                    in_use = Some(ups);
                }
                Err(e) => {
                    warn!(error = %e, "no resolver");
                    resolver = None;
                    in_use = None;
                }
            },
            Err(e) => {
                // Every name fails this round (the known answers stay); the
                // next round tries again.
                if resolver.is_some() || in_use.is_none() {
                    warn!(error = %e, "no resolver");
                }
                resolver = None;
                in_use = Some(Vec::new());
            }
        }

        let now = Instant::now();
        let due: Vec<String> = schedule
            .iter()
            .filter(|(_, s)| s.due <= now)
            .map(|(n, _)| n.clone())
            .collect();
        if due.is_empty() {
            let next = schedule.values().map(|s| s.due).min();
            tokio::select! {
                changed = plan_rx.changed() => {
                    if changed.is_err() { return; }
                    plan = plan_rx.borrow_and_update().clone();
                    plan_changed = true;
                }
                () = sleep_until(next) => {}
                _ = poll.tick(), if plan.upstreams.is_none() => {}
            }
            continue;
        }

        let limit = Arc::new(Semaphore::new(plan.concurrency.max(1) as usize));
        let upstreams: Arc<[SocketAddr]> = in_use.clone().unwrap_or_default().into();
        let mut batch = JoinSet::new();
        for name in due {
            let resolver = resolver.clone();
            let limit = limit.clone();
            let upstreams = upstreams.clone();
            let min_ttl = plan.min_ttl_s;
            batch.spawn(async move {
                let _permit = limit.acquire().await;
                let resolution = match resolver {
                    Some(r) => dns::resolve(&r, &name, min_ttl, &upstreams).await,
                    None => Resolution::Failed("no usable upstream DNS server".into()),
                };
                Outcome { name, resolution }
            });
        }
        while let Some(done) = batch.join_next().await {
            let Ok(outcome) = done else { continue };
            if let Some(s) = schedule.get_mut(&outcome.name) {
                let wait = match &outcome.resolution {
                    Resolution::Addresses {
                        ttl_s,
                        partial: None,
                        ..
                    } => {
                        s.failures = 0;
                        clamp(*ttl_s, &plan)
                    }
                    Resolution::NxDomain => {
                        s.failures = 0;
                        clamp(plan.min_ttl_s, &plan)
                    }
                    Resolution::Addresses {
                        partial: Some(_), ..
                    }
                    | Resolution::Failed(_) => {
                        let wait = backoff(s.failures, &plan);
                        s.failures = s.failures.saturating_add(1);
                        wait
                    }
                };
                s.due = Instant::now() + wait;
                debug!(name = %outcome.name, next_in = ?wait, "resolved");
            }
            if out.send(outcome).await.is_err() {
                return;
            }
        }
        if plan_rx.has_changed().unwrap_or(false) {
            plan = plan_rx.borrow_and_update().clone();
            plan_changed = true;
        }
    }
}

/// Sleeps until `when`; forever when there is none (a `select!` arm that
/// never fires).
pub(crate) async fn sleep_until(when: Option<Instant>) {
    match when {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            names: vec![],
            upstreams: None,
            min_ttl_s: 30,
            max_ttl_s: 3600,
            concurrency: 4,
            generation: 0,
            resolv_conf: dns::RESOLV_CONF.into(),
        }
    }

    #[test]
    fn refresh_is_the_ttl_clamped_and_failures_back_off_to_the_cap() {
        let p = plan();
        assert_eq!(clamp(5, &p), Duration::from_secs(30));
        assert_eq!(clamp(300, &p), Duration::from_secs(300));
        assert_eq!(clamp(86_400, &p), Duration::from_secs(3600));
        let waits: Vec<u64> = (0..5).map(|f| backoff(f, &p).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16]);
        assert_eq!(backoff(40, &p), MAX_BACKOFF);
    }
}
