//! The reconciler: policy + answers → maps, applied as diffs.

use std::{path::PathBuf, sync::Arc};

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::{
    bpf::{
        Pins,
        nat64::write_prefixes,
        stats::set_mode,
        writer::{Applied, MapWriter, WriteError},
    },
    desired::{Desired, RuleTable, compile, names_to_resolve},
    policy::Policy,
    resolve::{Answers, NameStatus, Plan, answers::Resolution, now_ms},
    snapshot::{Snapshot, rule_views},
};

pub struct Controller {
    pub policy: Policy,
    pub answers: Answers,
    writer: MapWriter,
    pins: Pins,
    state_dir: PathBuf,
    /// Until every name had its first resolution, nothing is removed from
    /// the maps: what a previous instance enforced stays (fail closed).
    settled: bool,
    pub rules: watch::Sender<Arc<RuleTable>>,
    pub plan: watch::Sender<Arc<Plan>>,
    /// When the policy in force was loaded (ms since the epoch).
    pub loaded_ms: u64,
}

pub fn plan_of(policy: &Policy) -> Plan {
    Plan {
        names: names_to_resolve(policy),
        upstreams: policy.resolver.upstreams.clone(),
        min_ttl_s: policy.resolver.min_ttl_s,
        max_ttl_s: policy.resolver.max_ttl_s,
        concurrency: policy.resolver.concurrency,
    }
}

/// `desired` plus whatever `current` holds that `desired` lacks.
fn union(current: &Desired, desired: &Desired) -> Desired {
    fn merge<K: Ord + Copy>(
        cur: &std::collections::BTreeMap<K, u32>,
        want: &std::collections::BTreeMap<K, u32>,
    ) -> std::collections::BTreeMap<K, u32> {
        let mut out = cur.clone();
        out.extend(want.iter().map(|(k, v)| (*k, *v)));
        out
    }
    Desired {
        deny_v4: merge(&current.deny_v4, &desired.deny_v4),
        deny_v6: merge(&current.deny_v6, &desired.deny_v6),
        deny_lpm_v4: merge(&current.deny_lpm_v4, &desired.deny_lpm_v4),
        deny_lpm_v6: merge(&current.deny_lpm_v6, &desired.deny_lpm_v6),
        // Exceptions are not kept: keeping one the policy dropped would open.
        allow_lpm_v4: desired.allow_lpm_v4.clone(),
        allow_lpm_v6: desired.allow_lpm_v6.clone(),
    }
}

impl Controller {
    pub fn new(policy: Policy, writer: MapWriter, pins: Pins, state_dir: PathBuf) -> Controller {
        let mut answers = Answers::default();
        let plan = plan_of(&policy);
        answers.set_names(&plan.names);
        let settled = answers.all_attempted();
        Controller {
            policy,
            answers,
            writer,
            pins,
            state_dir,
            settled,
            rules: watch::channel(Arc::new(RuleTable::default())).0,
            plan: watch::channel(Arc::new(plan)).0,
            loaded_ms: now_ms(),
        }
    }

    pub fn settled(&self) -> bool {
        self.settled
    }

    /// Applies policy + answers to the maps.
    pub fn reconcile(&mut self) -> Result<Applied, WriteError> {
        let (desired, rules) = compile(&self.policy, &self.answers.addrs());
        let target = if self.settled {
            desired
        } else {
            union(&self.writer.current(), &desired)
        };
        let applied = self.writer.apply(&target)?;
        set_mode(&self.pins, self.policy.mode)?;
        write_prefixes(&self.pins, &self.policy)?;
        self.rules.send_replace(Arc::new(rules));
        self.write_snapshot();
        Ok(applied)
    }

    /// A resolution arrived. Returns whether the first full round just
    /// completed (time to say READY).
    pub fn on_outcome(&mut self, name: &str, resolution: Resolution) -> bool {
        if let Resolution::Failed(e) = &resolution {
            warn!(name, error = %e, "resolution failed; the addresses last known stay enforced");
        }
        self.answers
            .record(name, now_ms(), self.policy.resolver.grace_s, resolution);
        let newly_settled = !self.settled && self.answers.all_attempted();
        if newly_settled {
            self.settled = true;
        }
        newly_settled
    }

    pub fn expire(&mut self) -> bool {
        self.answers.expire(now_ms())
    }

    /// Applies a new policy as a whole, or keeps the current one.
    pub fn reload(&mut self, policy: Policy) -> Result<String, String> {
        for w in &policy.warnings {
            warn!("{w}");
        }
        let previous = std::mem::replace(&mut self.policy, policy);
        let previous_answers = self.answers.clone();
        let plan = plan_of(&self.policy);
        self.answers.set_names(&plan.names);
        match self.reconcile() {
            Ok(applied) => {
                info!(
                    sources = self.policy.sources.len(),
                    mode = %self.policy.mode,
                    added_or_changed = applied.upserts,
                    removed = applied.removes,
                    "policy reloaded"
                );
                self.plan.send_replace(Arc::new(plan));
                self.loaded_ms = now_ms();
                Ok(format!(
                    "policy reloaded: {} added or changed, {} removed",
                    applied.upserts, applied.removes
                ))
            }
            Err(e) => {
                error!(error = %e, "reload failed; the previous policy stays in force");
                self.policy = previous;
                self.answers = previous_answers;
                Err(format!(
                    "reload failed, the previous policy stays in force: {e}"
                ))
            }
        }
    }

    /// Entries per map, as last written.
    pub fn map_counts(&self) -> serde_json::Value {
        let d = self.writer.current();
        serde_json::json!({
            "deny_v4": d.deny_v4.len(),
            "deny_v6": d.deny_v6.len(),
            "deny_lpm_v4": d.deny_lpm_v4.len(),
            "deny_lpm_v6": d.deny_lpm_v6.len(),
            "allow_lpm_v4": d.allow_lpm_v4.len(),
            "allow_lpm_v6": d.allow_lpm_v6.len(),
        })
    }

    pub fn status(&self) -> String {
        let a = &self.answers;
        format!(
            "{} mode; {} names: {} fresh, {} stale, {} nxdomain, {} pending",
            self.policy.mode,
            a.names.len(),
            a.count(NameStatus::Fresh),
            a.count(NameStatus::Stale),
            a.count(NameStatus::Nxdomain),
            a.count(NameStatus::Pending),
        )
    }

    fn write_snapshot(&self) {
        let snapshot = Snapshot {
            updated_ms: now_ms(),
            sources: self
                .policy
                .sources
                .iter()
                .map(ToString::to_string)
                .collect(),
            mode: self.policy.mode.to_string(),
            rules: rule_views(&self.rules.borrow()),
            answers: self.answers.clone(),
        };
        if let Err(e) = snapshot.write(&self.state_dir) {
            warn!(error = %e, "cannot write the resolved-state snapshot");
        }
    }
}
