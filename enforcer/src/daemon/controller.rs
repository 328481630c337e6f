//! The reconciler: policy + answers → maps, applied as diffs.

use std::{collections::BTreeSet, net::SocketAddr, path::PathBuf, sync::Arc};

use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use super::by_name::{NameIndex, patch_for};
use crate::{
    bpf::{
        Pins, dnsnames,
        nat64::write_prefixes,
        stats::set_mode,
        writer::{Applied, MapWriter, WriteError},
    },
    desired::{Desired, RuleTable, compile, names_to_resolve},
    policy::Policy,
    resolve::{Answers, NameStatus, Plan, answers::Resolution, now_ms},
    snapshot::{Snapshot, SnapshotError},
};

pub struct Controller {
    /// Shared with the rule table, which is derived from it.
    pub policy: Arc<Policy>,
    pub answers: Answers,
    writer: MapWriter,
    pins: Pins,
    state_dir: PathBuf,
    /// Until every name has answered (in this run, or seeded from the
    /// previous one and asked again), nothing is removed from the maps:
    /// what a previous instance enforced stays (fail closed).
    settled: bool,
    /// Every name was asked once in this run (time to say READY).
    first_round: bool,
    generation: u64,
    resolv_conf: PathBuf,
    /// The mode, NAT64 prefixes and DNS names in the kernel are not yet
    /// those of `policy` (set at start and when the policy changes).
    policy_maps_due: bool,
    pub rules: watch::Sender<Arc<RuleTable>>,
    pub plan: watch::Sender<Arc<Plan>>,
    /// When the policy in force was loaded (ms since the epoch).
    pub loaded_ms: u64,
    /// The next reconcile compiles the whole policy (start, reload,
    /// settling after removals were held back, a failed patch); otherwise
    /// only the names that changed are written.
    full_due: bool,
    /// Names whose addresses changed since the last reconcile.
    dirty: BTreeSet<String>,
    /// What the names put in the maps, kept per name.
    index: NameIndex,
    /// Something the policy and answers no longer want was kept (not yet
    /// settled): settling must compile everything to remove it.
    kept: bool,
    /// The DNS servers last written (resolv.conf is read on every
    /// reconcile; the map is written when they change).
    servers: Option<Vec<SocketAddr>>,
    /// When the next grace period may end: never later than the truth (an
    /// early wake-up finds nothing and looks again), kept without scanning
    /// every name on every answer.
    next_expiry: Option<u64>,
    /// Names of port rules (`dns.google:443`): their answers go to the
    /// port tries too.
    port_names: std::collections::HashSet<String>,
    /// Agent containment: the selectors in force and the contained processes.
    pub agents: super::agents::Containment,
}

pub fn plan_of(policy: &Policy, generation: u64, resolv_conf: &std::path::Path) -> Plan {
    Plan {
        names: names_to_resolve(policy),
        upstreams: policy.resolver.upstreams.clone(),
        min_ttl_s: policy.resolver.min_ttl_s,
        max_ttl_s: policy.resolver.max_ttl_s,
        concurrency: policy.resolver.concurrency,
        generation,
        resolv_conf: resolv_conf.to_owned(),
    }
}

/// What a resolution outcome changed for the daemon.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Every name has now been asked once in this run: say READY.
    pub first_round_done: bool,
    /// Removing what the answers no longer hold became safe.
    pub settled: bool,
}

/// Why a reload applied nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    Applied(String),
    /// The files changed on disk but the merged policy did not.
    Unchanged,
}

/// Hands the heap freed by a full compile (the parsed file, the previous
/// policy and rule table: hundreds of MiB at 1M entries) back to the
/// system; glibc keeps it otherwise and the daemon's RSS stays at the peak.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks and shrinks the allocator's own heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The exact names of the policy's port rules.
fn port_names(policy: &Policy) -> std::collections::HashSet<String> {
    use crate::policy::{DomainPattern, PortTarget};
    policy
        .deny
        .ports
        .iter()
        .chain(&policy.allow.ports)
        .filter_map(|e| match &e.value.target {
            PortTarget::Domain(DomainPattern::Exact(name)) => Some(name.clone()),
            _ => None,
        })
        .collect()
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
    /// A controller for `policy` that starts from what the previous
    /// instance knew (the state directory's last answers), so that a
    /// restart without DNS keeps every name-derived ban.
    pub fn new(
        policy: Policy,
        writer: MapWriter,
        pins: Pins,
        state_dir: PathBuf,
        resolv_conf: PathBuf,
    ) -> Controller {
        let pins_for_agents = pins.clone();
        let mut answers = Answers::default();
        let plan = plan_of(&policy, 0, &resolv_conf);
        answers.set_names(&plan.names);
        match Snapshot::read(&state_dir) {
            Ok(previous) => {
                answers.seed(&previous.answers);
                info!(
                    names = previous.answers.names.len(),
                    "starting from the previous instance's answers; they stay enforced until the names answer again"
                );
            }
            Err(SnapshotError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(error = %e, "cannot read the previous answers; the pinned maps stay as they are until every name has answered")
            }
        }
        let settled = answers.settled();
        let first_round = answers.all_attempted();
        Controller {
            policy: Arc::new(policy),
            answers,
            writer,
            pins,
            state_dir,
            settled,
            first_round,
            generation: 0,
            resolv_conf,
            policy_maps_due: true,
            rules: watch::channel(Arc::new(RuleTable::default())).0,
            plan: watch::channel(Arc::new(plan)).0,
            loaded_ms: now_ms(),
            full_due: true,
            dirty: BTreeSet::new(),
            index: NameIndex::default(),
            kept: false,
            servers: None,
            next_expiry: Some(0),
            port_names: Default::default(),
            agents: super::agents::Containment::idle(pins_for_agents),
        }
    }

    pub fn settled(&self) -> bool {
        self.settled
    }

    /// Every name was asked once in this run.
    pub fn first_round(&self) -> bool {
        self.first_round
    }

    /// Asks every name again now (an explicit `reload`), whatever its
    /// backoff says.
    pub fn resolve_now(&mut self) {
        self.generation += 1;
        self.plan.send_replace(Arc::new(plan_of(
            &self.policy,
            self.generation,
            &self.resolv_conf,
        )));
    }

    /// Applies policy + answers to the maps: only the names that changed
    /// when that is enough, else everything.
    pub fn reconcile(&mut self) -> Result<Applied, WriteError> {
        if !self.full_due && !self.policy_maps_due {
            match self.reconcile_names() {
                Ok(applied) => return Ok(applied),
                Err(e) => {
                    warn!(error = %e, "writing the changed names failed; applying the whole policy");
                }
            }
        }
        self.reconcile_full()
    }

    /// The resolver's path: a patch of the host routes the changed names
    /// touch.
    fn reconcile_names(&mut self) -> Result<Applied, WriteError> {
        let started = std::time::Instant::now();
        let names = self.dirty.len();
        // A shared name's addresses are inspected, never in the patch.
        if self
            .dirty
            .iter()
            .any(|n| self.policy.deny.is_shared_name(n))
        {
            let answers = &self.answers;
            crate::bpf::sni::write_inspect(&self.pins, &self.policy, &self.rules.borrow(), |n| {
                answers
                    .names
                    .get(n)
                    .map(|s| s.addrs.keys().copied().collect())
            })?;
        }
        let mut touched = BTreeSet::new();
        // A name with a port rule puts its addresses in the port tries,
        // which are rebuilt from the rules (few, as port rules go).
        let ports_due = self.dirty.iter().any(|n| self.port_names.contains(n));
        for name in std::mem::take(&mut self.dirty) {
            let addrs = self
                .answers
                .names
                .get(&name)
                .map(|s| s.addrs.keys().copied().collect())
                .unwrap_or_default();
            self.index.update(&name, &addrs, &mut touched);
        }
        let applied = if touched.is_empty() {
            Applied::default()
        } else {
            let (patch, kept) = patch_for(
                &self.index,
                &touched,
                &self.writer.held(),
                &self.rules.borrow(),
                self.settled,
            );
            self.kept |= kept;
            // The index is ahead of the maps if this fails: start over.
            self.full_due = true;
            let applied = self.writer.patch(&patch)?;
            self.full_due = false;
            applied
        };
        debug!(
            names,
            addresses = touched.len(),
            us = started.elapsed().as_micros() as u64,
            "changed names patched into the maps"
        );
        if ports_due {
            crate::bpf::ports::write(
                &self.pins,
                &crate::portmaps::build(&self.rules.borrow(), &self.answers.addrs()),
            )?;
        }
        self.write_servers()?;
        // During the first round every batch of answers would rewrite the
        // snapshot of all names (at 10k names, ~10 ms each, seconds in
        // all): it is written once the round is done. Until then the
        // pinned maps hold what this run learned.
        if self.first_round {
            self.write_snapshot();
        }
        Ok(applied)
    }

    /// Compiles the whole policy with the answers and makes the maps hold it.
    fn reconcile_full(&mut self) -> Result<Applied, WriteError> {
        let resolved = self.answers.addrs();
        let (desired, rules) = compile(&self.policy, &resolved);
        // Before the address maps: a name that became shared is inspected
        // before its address ban is lifted.
        crate::bpf::sni::write(&self.pins, &self.policy, &rules, &resolved)?;
        let target = if self.settled {
            desired
        } else {
            let target = union(&self.writer.current(), &desired);
            self.kept = target.len() != desired.len();
            target
        };
        let applied = self.writer.apply(&target)?;
        drop(target);
        crate::bpf::ports::write(&self.pins, &crate::portmaps::build(&rules, &resolved))?;
        self.port_names = port_names(&self.policy);
        // What depends on the policy alone is written when it changed, not
        // on every DNS answer.
        if self.policy_maps_due {
            set_mode(&self.pins, self.policy.mode.as_config())?;
            write_prefixes(&self.pins, &self.policy)?;
            dnsnames::write_names(&self.pins, &rules)?;
            dnsnames::write_config(&self.pins, &self.policy)?;
            self.policy_maps_due = false;
        }
        self.servers = None;
        self.write_servers()?;
        self.index = NameIndex::build_except(
            &rules,
            &resolved,
            &crate::bpf::sni::shared_ids(&self.policy, &rules),
        );
        self.dirty.clear();
        if self.settled {
            self.kept = false;
        }
        self.full_due = false;
        self.rules.send_replace(Arc::new(rules));
        self.write_snapshot();
        release_freed_memory();
        Ok(applied)
    }

    /// The host's DNS servers (resolv.conf may change at any time): their
    /// answers ban for everyone. Written when they change.
    fn write_servers(&mut self) -> Result<(), WriteError> {
        let servers = crate::resolve::dns::upstreams(
            self.policy.resolver.upstreams.as_deref(),
            &self.resolv_conf,
        )
        .unwrap_or_default();
        if self.servers.as_ref() != Some(&servers) {
            dnsnames::write_servers(&self.pins, &servers)?;
            self.servers = Some(servers);
        }
        Ok(())
    }

    /// A resolution arrived.
    pub fn on_outcome(&mut self, name: &str, resolution: Resolution) -> Progress {
        match &resolution {
            Resolution::Failed(e) => {
                warn!(name, error = %e, "resolution failed; the addresses last known stay enforced")
            }
            Resolution::Addresses {
                partial: Some(e), ..
            } => {
                warn!(name, error = %e, "half an answer; its addresses are added, none is released")
            }
            _ => {}
        }
        if let Resolution::Addresses { ignored, .. } = &resolution {
            for i in ignored {
                warn!(name, address = %i.addr, reason = ?i.reason, "address in a DNS answer ignored: never banned");
            }
        }
        self.answers
            .record(name, now_ms(), self.policy.resolver.grace_s, resolution);
        self.dirty.insert(name.to_owned());
        let expiry = self
            .answers
            .names
            .get(name)
            .filter(|s| !s.status.failing())
            .and_then(|s| s.addrs.values().filter_map(|a| a.expires_ms).min());
        if let Some(t) = expiry {
            self.next_expiry = Some(self.next_expiry.map_or(t, |n| n.min(t)));
        }
        let mut progress = Progress::default();
        if !self.first_round && self.answers.all_attempted() {
            self.first_round = true;
            progress.first_round_done = true;
            // The first round's garbage (every name's first answer, the
            // resolver's scratch) goes back before READY, as a full
            // compile's does.
            release_freed_memory();
        }
        if !self.settled && self.answers.settled() {
            self.settled = true;
            progress.settled = true;
            // What was kept until now goes.
            self.full_due |= self.kept;
        }
        progress
    }

    /// When [`Controller::expire`] may have something to remove.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.next_expiry
    }

    pub fn expire(&mut self) -> bool {
        let now = now_ms();
        if self.next_expiry.is_none_or(|t| t > now) {
            return false;
        }
        let changed = self.answers.expire_names(now);
        self.next_expiry = self.answers.next_expiry_ms();
        let any = !changed.is_empty();
        self.dirty.extend(changed);
        any
    }

    /// Applies a new policy as a whole, or keeps the current one. An
    /// `explicit` reload (SIGHUP, `enforcer reload`) also asks every name
    /// again at once; a file change whose merged policy equals the one in
    /// force changes nothing.
    pub fn reload(&mut self, policy: Policy, explicit: bool) -> Result<ReloadOutcome, String> {
        if policy == *self.policy && !self.agents.in_sync() {
            // The policy was applied but its selectors were not: again.
            let compiled = super::agents::Containment::compile(&policy)
                .map_err(|e| format!("applying the agent selectors failed: {e}"))?;
            self.agents
                .apply(&policy, compiled)
                .map_err(|e| format!("applying the agent selectors failed again: {e}"))?;
            return Ok(ReloadOutcome::Applied(
                "the agent selectors, which had failed, are now applied".into(),
            ));
        }
        if policy == *self.policy {
            // Already in force (a file change applied it before the
            // explicit reload came): nothing to write; an explicit reload
            // still asks every name again.
            if explicit {
                self.resolve_now();
                info!("policy unchanged; every name is being resolved again");
                return Ok(ReloadOutcome::Applied(
                    "policy unchanged; every name is being resolved again".into(),
                ));
            }
            return Ok(ReloadOutcome::Unchanged);
        }
        // Selectors that cannot be compiled reject the whole policy, before
        // anything is written.
        let compiled = super::agents::Containment::compile(&policy)
            .map_err(|e| format!("reload rejected, the policy in force stays: {e}"))?;
        for w in &policy.warnings {
            warn!("{w}");
        }
        let previous = std::mem::replace(&mut self.policy, Arc::new(policy));
        let previous_answers = self.answers.clone();
        self.policy_maps_due = true;
        self.full_due = true;
        if explicit {
            self.generation += 1;
        }
        let plan = plan_of(&self.policy, self.generation, &self.resolv_conf);
        self.answers.set_names(&plan.names);
        // New names are unanswered: nothing is removed until they answer.
        self.settled = self.answers.settled();
        self.next_expiry = Some(0);
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
                if let Err(e) = self.agents.apply(&self.policy, compiled) {
                    error!(error = %e, "applying the agent selectors failed");
                    return Err(format!(
                        "policy reloaded, but its agent selectors could not be applied: {e}"
                    ));
                }
                drop(previous);
                drop(previous_answers);
                release_freed_memory();
                Ok(ReloadOutcome::Applied(format!(
                    "policy reloaded: {} added or changed, {} removed{}",
                    applied.upserts,
                    applied.removes,
                    if explicit {
                        "; every name is being resolved again"
                    } else {
                        ""
                    }
                )))
            }
            Err(e) => {
                error!(error = %e, "reload failed; the previous policy stays in force");
                self.policy = previous;
                self.answers = previous_answers;
                self.next_expiry = Some(0);
                self.settled = self.answers.settled();
                // Some of the new policy's may have been written.
                self.policy_maps_due = true;
                self.full_due = true;
                Err(format!(
                    "reload failed, the previous policy stays in force: {e}"
                ))
            }
        }
    }

    /// Applies the policy's agent selectors again after a failed apply
    /// (called on a timer: a failure must not wait for the next edit).
    pub fn retry_agents(&mut self) {
        if self.agents.in_sync() {
            return;
        }
        let result = super::agents::Containment::compile(&self.policy)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                let policy = self.policy.clone();
                self.agents.apply(&policy, c).map_err(|e| e.to_string())
            });
        match result {
            Ok(()) => info!("the agent selectors, which had failed, are now applied"),
            Err(e) => error!(error = %e, "applying the agent selectors failed again; retrying"),
        }
    }

    /// Entries per map, as last written.
    pub fn map_counts(&self) -> serde_json::Value {
        let d = self.writer.held();
        serde_json::json!({
            "deny_v4": d.deny_v4.len(),
            "deny_v6": d.deny_v6.len(),
            "deny_lpm_v4": d.deny_lpm_v4.len(),
            "deny_lpm_v6": d.deny_lpm_v6.len(),
            "allow_lpm_v4": d.allow_lpm_v4.len(),
            "allow_lpm_v6": d.allow_lpm_v6.len(),
        })
    }

    /// One line for systemd's STATUS= and the log.
    pub fn status(&self) -> String {
        let a = &self.answers;
        let mut line = format!(
            "{} mode; {} names: {} fresh, {} partial, {} stale, {} nxdomain, {} pending",
            self.policy.mode,
            a.names.len(),
            a.count(NameStatus::Fresh),
            a.count(NameStatus::Partial),
            a.count(NameStatus::Stale),
            a.count(NameStatus::Nxdomain),
            a.count(NameStatus::Pending),
        );
        let never = a.never_answered();
        if never > 0 {
            line.push_str(&format!(
                "; {never} never answered (DNS unreachable?): only their static rules and what the pinned maps held are enforced"
            ));
        }
        if !self.settled {
            line.push_str("; nothing is removed until every name has answered");
        }
        line
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
            answers: self.answers.clone(),
        };
        if let Err(e) = snapshot.write(&self.state_dir) {
            warn!(error = %e, "cannot write the resolved-state snapshot");
        }
    }
}
