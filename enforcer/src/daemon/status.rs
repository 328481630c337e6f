//! What `status` and the metrics report, from the controller, the
//! recorder and the kernel's counters.

use std::collections::BTreeMap;

use enforcer_common::{HOOK_COUNT, VERDICT_COUNT};
use tracing::{info, warn};

use super::{Config, Controller, record::Recorder};
use crate::{
    bpf::{
        Pins,
        dnsnames::LearnedCounts,
        events::{Hook, Verdict},
        stats::Stats,
    },
    control::status::{Dns, DnsReports, Events, NameCounts, PolicyStatus, Reloads, Status},
    resolve::{self, NameStatus},
};

/// Everything `status` reports that the controller does not hold.
pub struct Facts<'a> {
    pub config: &'a Config,
    pub cgroup: &'a std::path::Path,
    pub pins: &'a Pins,
    pub started_ms: u64,
}

/// Every (hook, verdict, count) of the counters.
fn verdicts(stats: &Stats) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
    (0..HOOK_COUNT).flat_map(move |hook| {
        (0..VERDICT_COUNT).map(move |verdict| {
            (
                Hook::from_raw(hook).map_or("?", Hook::as_str),
                Verdict::from_raw(verdict).map_or("?", Verdict::as_str),
                stats.get(hook, verdict),
            )
        })
    })
}

/// Entries per map, as the controller counts them.
fn map_counts(controller: &Controller) -> BTreeMap<String, u64> {
    serde_json::from_value(controller.map_counts()).unwrap_or_default()
}

pub fn build(
    controller: &Controller,
    facts: &Facts<'_>,
    learned: &LearnedCounts,
    recorder: &Recorder,
    reloads: &Reloads,
) -> Status {
    let stats = Stats::read(facts.pins).ok();
    let now = resolve::now_ms();
    let mut per_hook: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (hook, verdict, n) in stats.iter().flat_map(verdicts) {
        per_hook
            .entry(hook.into())
            .or_default()
            .insert(verdict.into(), n);
    }
    let a = &controller.answers;
    let count = |s| a.count(s) as u64;
    Status {
        agents: crate::control::status::AgentsStatus {
            selectors: controller.agents.names().to_vec(),
            contained: controller.agents.contained(),
        },
        version: env!("CARGO_PKG_VERSION").into(),
        mode: controller.policy.mode.to_string(),
        cgroup: facts.cgroup.display().to_string(),
        xdp_interfaces: facts.config.xdp_ifaces.clone(),
        pins: facts.pins.root().display().to_string(),
        policy: PolicyStatus {
            sources: controller
                .policy
                .sources
                .iter()
                .map(ToString::to_string)
                .collect(),
            loaded_ms: controller.loaded_ms,
            age_s: now.saturating_sub(controller.loaded_ms) / 1000,
            warnings: controller.policy.warnings.clone(),
        },
        maps: map_counts(controller),
        names: NameCounts {
            total: a.names.len() as u64,
            fresh: count(NameStatus::Fresh),
            partial: count(NameStatus::Partial),
            never_answered: a.never_answered() as u64,
            ignored_addresses: a.names.values().map(|s| s.ignored.len() as u64).sum(),
            settled: controller.settled(),
            summary: controller.status(),
            stale: count(NameStatus::Stale),
            nxdomain: count(NameStatus::Nxdomain),
            pending: count(NameStatus::Pending),
        },
        events: Events {
            per_hook,
            lost_ringbuf_full: stats.as_ref().map(Stats::ringbuf_full),
            xdp_suppressed: stats.as_ref().map(Stats::xdp_events_suppressed),
            skb_coalesced: stats.as_ref().map(Stats::skb_events_coalesced),
            owner_unknown: stats.as_ref().map(Stats::owner_unknown),
        },
        dns: Dns {
            learned_v4: learned.v4 as u64,
            learned_v6: learned.v6 as u64,
            learned_scoped: learned.scoped as u64,
            counters: stats.as_ref().map(|s| {
                s.dns()
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect()
            }),
            reports: DnsReports {
                received: recorder.dns_reports,
                unparsed: recorder.dns_reports_unparsed,
            },
        },
        sni: stats.as_ref().map(|s| {
            s.sni()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect()
        }),
        uptime_s: now.saturating_sub(facts.started_ms) / 1000,
        reload: reloads.clone(),
    }
}

/// Serves the metrics on `listen` (when set and free): where to send each
/// new rendering, and the server's task.
pub async fn serve_metrics(
    listen: Option<std::net::SocketAddr>,
) -> (
    tokio::sync::watch::Sender<String>,
    Option<tokio::task::JoinHandle<()>>,
) {
    let (tx, rx) = tokio::sync::watch::channel(String::new());
    let Some(addr) = listen else {
        return (tx, None);
    };
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            info!(%addr, "serving Prometheus metrics");
            (tx, Some(tokio::spawn(crate::metrics::serve(listener, rx))))
        }
        Err(e) => {
            warn!(%addr, error = %e, "cannot serve metrics");
            (tx, None)
        }
    }
}

/// The Prometheus exposition of the same counters.
pub fn render_metrics(controller: &Controller, recorder: &Recorder, facts: &Facts<'_>) -> String {
    let stats = Stats::read(facts.pins).ok();
    let verdicts = stats.iter().flat_map(verdicts).collect();
    let counts = map_counts(controller);
    let maps = counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let a = &controller.answers;
    let names = [
        ("fresh", NameStatus::Fresh),
        ("stale", NameStatus::Stale),
        ("nxdomain", NameStatus::Nxdomain),
        ("pending", NameStatus::Pending),
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
