//! The resolver task: resolves every name when its refresh is due, with
//! bounded concurrency, and reports each outcome to the controller.
//!
//! Refresh: at the answer's TTL clamped to [min_ttl_s, max_ttl_s].
//! NXDOMAIN: again after min_ttl_s. Failure: again after a backoff of 1 s,
//! 2 s, 4 s ... capped at max_ttl_s; the controller keeps the last answer.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    sync::{Semaphore, mpsc, watch},
    task::JoinSet,
    time::Instant,
};
use tracing::{debug, warn};

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
}

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
}

async fn run(mut plan_rx: watch::Receiver<Arc<Plan>>, out: mpsc::Sender<Outcome>) {
    let mut schedule: BTreeMap<String, Schedule> = BTreeMap::new();
    let mut plan = plan_rx.borrow_and_update().clone();
    let mut resolver = None;
    let mut upstreams_in_use = None;
    loop {
        // Follow the plan: new names are due now, dropped names go.
        schedule.retain(|n, _| plan.names.contains(n));
        for name in &plan.names {
            schedule.entry(name.clone()).or_insert(Schedule {
                due: Instant::now(),
                failures: 0,
            });
        }
        if resolver.is_none() || upstreams_in_use.as_ref() != Some(&plan.upstreams) {
            match dns::upstreams(plan.upstreams.as_deref()).and_then(|u| dns::build(&u)) {
                Ok(r) => {
                    resolver = Some(Arc::new(r));
                    upstreams_in_use = Some(plan.upstreams.clone());
                }
                Err(e) => {
                    // Every name fails this round (the known answers stay);
                    // the next round tries to build it again.
                    warn!(error = %e, "no resolver");
                    resolver = None;
                    upstreams_in_use = None;
                }
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
                }
                () = sleep_until(next) => {}
            }
            continue;
        }

        let limit = Arc::new(Semaphore::new(plan.concurrency.max(1) as usize));
        let mut batch = JoinSet::new();
        for name in due {
            let resolver = resolver.clone();
            let limit = limit.clone();
            let min_ttl = plan.min_ttl_s;
            batch.spawn(async move {
                let _permit = limit.acquire().await;
                let resolution = match resolver {
                    Some(r) => dns::resolve(&r, &name, min_ttl).await,
                    None => Resolution::Failed("no usable upstream DNS server".into()),
                };
                Outcome { name, resolution }
            });
        }
        while let Some(done) = batch.join_next().await {
            let Ok(outcome) = done else { continue };
            if let Some(s) = schedule.get_mut(&outcome.name) {
                let wait = match &outcome.resolution {
                    Resolution::Addresses { ttl_s, .. } => {
                        s.failures = 0;
                        clamp(*ttl_s, &plan)
                    }
                    Resolution::NxDomain => {
                        s.failures = 0;
                        clamp(plan.min_ttl_s, &plan)
                    }
                    Resolution::Failed(_) => {
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
        }
    }
}

async fn sleep_until(when: Option<Instant>) {
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
        assert_eq!(backoff(40, &p), Duration::from_secs(3600));
    }
}
