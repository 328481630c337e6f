//! Turns verdict events into attributed flows: the process (from the exec
//! cache), its cgroup and unit, the user, the banned names behind the
//! address, the name an application's DNS answer gave it (reported by the
//! kernel); aggregates them and writes them to the store (within the
//! policy's row bound at every write). Each new flow is logged, at most
//! `LOG_PER_SECOND` a second: beyond, they are counted and the count is
//! logged every `NOT_LOGGED_EVERY`.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    path::Path,
    time::{Duration, Instant},
};

use tracing::{debug, warn};

use crate::{
    answer_names::{self, Remembered},
    attrib::{CgroupIndex, ProcCache, ProcInfo, unit_of, user_names},
    bpf::events::{BlockEvent, DecodeError, Hook, decode_dns_report, decode_exec},
    desired::RuleTable,
    flows::{Flow, FlowKey, Pending, Store, StoreError},
    resolve::{Answers, now_ms},
    sys::clock::KernelClock,
};

/// Processes remembered for attribution.
const PROC_CACHE: usize = 16_384;
/// New flows remembered for "log once"; forgotten wholesale beyond.
const LOGGED: usize = 50_000;
/// New-flow log lines a second (and the burst allowed).
const LOG_PER_SECOND: u32 = 20;
/// How often the count of new flows not logged is.
const NOT_LOGGED_EVERY: Duration = Duration::from_secs(10);

/// The files of the state directory, closed to others (see
/// `sys::statedir`) before the store opens there.
pub fn prepare_state_dir(dir: &Path) -> std::io::Result<()> {
    let mut files = crate::flows::FILES.to_vec();
    files.extend([crate::snapshot::FILE_NAME, crate::snapshot::TMP_FILE_NAME]);
    crate::sys::statedir::prepare(dir, crate::control::auth::enforcer_gid(), &files)
}

/// At most `per_second` a second, `per_second` at once.
#[derive(Debug)]
pub struct LogBudget {
    per_second: u32,
    tokens: u32,
    refilled: Instant,
}

impl LogBudget {
    pub fn new(per_second: u32, now: Instant) -> LogBudget {
        LogBudget {
            per_second,
            tokens: per_second,
            refilled: now,
        }
    }

    /// Whether one more line may be logged at `now`.
    pub fn take(&mut self, now: Instant) -> bool {
        let whole_seconds = now.saturating_duration_since(self.refilled).as_secs();
        if whole_seconds > 0 {
            self.tokens = self.per_second;
            self.refilled = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

pub struct Recorder {
    /// Each flow as written to the store (its row after the write), for
    /// `enforcer flows --follow`.
    pub follow: tokio::sync::broadcast::Sender<Flow>,
    /// Attempts recorded per rule since start (for metrics).
    pub rule_hits: HashMap<u32, u64>,
    /// Distinct flows recorded since start.
    pub flows_recorded: u64,
    procs: ProcCache,
    cgroups: CgroupIndex,
    users: HashMap<u32, String>,
    store: Store,
    pending: Pending,
    logged: HashSet<FlowKey>,
    /// The row bound, from the policy (a reload's applies at the next
    /// `retain`).
    max_flows: u64,
    log_budget: LogBudget,
    /// New flows not logged since start, and since the count was last
    /// logged (when).
    pub flows_not_logged: u64,
    not_logged_unreported: u64,
    not_logged_reported: Instant,
    /// Addresses the kernel learned from DNS answers → the asked name.
    answer_names: Remembered,
    /// DNS reports received, and those that could not be parsed.
    pub dns_reports: u64,
    pub dns_reports_unparsed: u64,
    /// Converts the events' kernel times; read again for each batch.
    clock: KernelClock,
    /// This host's name, in every flow.
    host: String,
}

impl Recorder {
    pub fn new(
        state_dir: &Path,
        cgroup_root: &Path,
        report: &crate::policy::ReportSettings,
    ) -> Result<Recorder, StoreError> {
        let mut procs = ProcCache::new(PROC_CACHE);
        procs.seed_from_proc();
        let now = Instant::now();
        Ok(Recorder {
            follow: tokio::sync::broadcast::channel(1024).0,
            rule_hits: HashMap::new(),
            flows_recorded: 0,
            procs,
            cgroups: CgroupIndex::new(cgroup_root.to_owned()),
            users: user_names(&std::fs::read_to_string("/etc/passwd").unwrap_or_default()),
            store: Store::open(state_dir)?,
            pending: Pending::default(),
            logged: HashSet::new(),
            max_flows: report.max_flows,
            log_budget: LogBudget::new(LOG_PER_SECOND, now),
            flows_not_logged: 0,
            not_logged_unreported: 0,
            not_logged_reported: now,
            answer_names: Remembered::new(answer_names::MAX_REMEMBERED),
            dns_reports: 0,
            dns_reports_unparsed: 0,
            clock: KernelClock::now(),
            host: crate::sys::hostname(),
        })
    }

    /// Reads the clocks for the batch of events about to be handed in.
    pub fn sync_clock(&mut self) {
        self.clock = KernelClock::now();
    }

    /// An exec record from the kernel.
    pub fn on_exec(&mut self, bytes: &[u8]) {
        match decode_exec(bytes) {
            Ok(ev) => {
                let info = ProcInfo::from_exec(&ev);
                debug!(pid = info.pid, exe = %info.exe, "exec");
                self.procs.insert(info);
            }
            Err(e) => warn!(error = %e, "undecodable exec record"),
        }
    }

    /// A DNS answer that taught the kernel addresses (`DNS_REPORTS`).
    pub fn on_dns_report(&mut self, bytes: &[u8]) {
        self.dns_reports += 1;
        let parsed = decode_dns_report(bytes)
            .ok()
            .and_then(|(_, msg)| answer_names::parse(&msg));
        match parsed {
            Some(answer) => self.answer_names.learn(&answer, Instant::now()),
            None => {
                self.dns_reports_unparsed += 1;
                debug!(bytes = bytes.len(), "DNS report not parsed");
            }
        }
    }

    /// A verdict event. Returns whether the pending set should be flushed now.
    pub fn on_block(
        &mut self,
        event: Result<BlockEvent, DecodeError>,
        rules: &RuleTable,
        answers: &Answers,
        agents: &super::agents::Containment,
    ) -> bool {
        let ev = match event {
            Ok(ev) => ev,
            Err(e) => {
                warn!(error = %e, "undecodable event (object and daemon out of step?)");
                return false;
            }
        };
        let proc = if ev.owner_unknown || ev.tgid == 0 {
            None
        } else {
            self.procs.lookup(ev.tgid)
        };
        let cgroup = self.cgroups.path(ev.cgroup_id);
        let dst = match ev.hook {
            Hook::ConnectUnix | Hook::SendmsgUnix => ev
                .unix_key
                .and_then(|k| agents.unix_seen(k))
                .unwrap_or_else(|| "unix:?".to_owned()),
            _ => ev.addr.map_or_else(|| "?".to_owned(), |a| a.to_string()),
        };
        let domains = ev.addr.map(|a| names_for(answers, a)).unwrap_or_default();
        let (name, chain) = ev
            .addr
            .and_then(|a| self.answer_names.lookup(a, Instant::now()))
            .map(|o| (o.name.clone(), o.chain.clone()))
            .unwrap_or_default();
        let (rule, agent, agent_root) = match ev.agent {
            Some(index) => {
                let name = agents.name_of(index);
                let root = agents.root_of(ev.tgid).map_or_else(String::new, |root| {
                    let exe = self
                        .procs
                        .lookup(root)
                        .map_or_else(|| "(exited)".to_owned(), |p| p.exe.clone());
                    format!("{root} {exe}")
                });
                (format!("agent {name}: outside its allow list"), name, root)
            }
            None if ev.via == Some(crate::bpf::events::Via::Tfo) => (
                format!(
                    "TCP Fast Open to an inspected destination ({})",
                    rules.get(ev.rule_id).map_or_else(
                        || "inspect_all_tls or a proxy port".to_owned(),
                        |r| r.to_string()
                    )
                ),
                String::new(),
                String::new(),
            ),
            None => (
                rules
                    .get(ev.rule_id)
                    .map_or_else(|| format!("#{}", ev.rule_id), |r| r.to_string()),
                String::new(),
                String::new(),
            ),
        };
        // When the kernel saw it, however late it is read.
        let at = self.clock.wall_ms(ev.ts_ns);
        let flow = Flow {
            pid: ev.tgid,
            ppid: proc.as_ref().and_then(|p| p.ppid),
            exe: proc.as_ref().map_or_else(
                || {
                    if ev.comm.is_empty() {
                        "?".to_owned()
                    } else {
                        format!("?({})", ev.comm)
                    }
                },
                |p| p.exe.clone(),
            ),
            cmdline: proc
                .as_ref()
                .map(|p| p.cmdline.join(" "))
                .unwrap_or_default(),
            comm: ev.comm.clone(),
            uid: ev.uid,
            user: self.users.get(&ev.uid).cloned(),
            unit: cgroup.as_deref().and_then(unit_of),
            cgroup,
            dst,
            port: ev.port,
            protocol: ev.protocol,
            rule_id: ev.rule_id,
            rule,
            domains,
            verdict: ev.verdict.as_str().to_owned(),
            hooks: ev.hook.as_str().to_owned(),
            via: ev.via.map_or_else(String::new, |v| v.as_str().to_owned()),
            name,
            chain,
            host: self.host.clone(),
            agent,
            agent_root,
            count: 1,
            first_seen_ms: at,
            last_seen_ms: at,
        };
        let key = flow.key();
        *self.rule_hits.entry(flow.rule_id).or_default() += 1;
        if self.pending.add(flow.clone()) && !self.logged.contains(&key) {
            if self.logged.len() >= LOGGED {
                self.logged.clear();
            }
            self.logged.insert(key);
            self.flows_recorded += 1;
            if self.log_budget.take(Instant::now()) {
                log_new(&flow);
            } else {
                self.flows_not_logged += 1;
                self.not_logged_unreported += 1;
            }
        }
        self.pending.full()
    }

    pub fn flush(&mut self) {
        self.report_not_logged();
        if self.pending.is_empty() {
            return;
        }
        match self.store.flush(&mut self.pending, self.max_flows) {
            Ok(written) => {
                for flow in written {
                    // No follower is fine; a slow one lags and is told so.
                    let _ = self.follow.send(flow);
                }
            }
            Err(e) => warn!(error = %e, "writing flows failed; they are lost"),
        }
    }

    /// Logs how many new flows went unlogged, at most every
    /// `NOT_LOGGED_EVERY`.
    fn report_not_logged(&mut self) {
        let now = Instant::now();
        if self.not_logged_unreported == 0
            || now.saturating_duration_since(self.not_logged_reported) < NOT_LOGGED_EVERY
        {
            return;
        }
        warn!(
            not_logged = self.not_logged_unreported,
            not_logged_total = self.flows_not_logged,
            per_second = LOG_PER_SECOND,
            "new blocked flows not logged (rate limit); `enforcer flows` lists them"
        );
        self.not_logged_unreported = 0;
        self.not_logged_reported = now;
    }

    /// Flows from the store, after writing what is pending.
    pub fn query(&mut self, q: &crate::flows::Query) -> Result<Vec<Flow>, StoreError> {
        self.flush();
        self.store.query(q)
    }

    pub fn retain(&mut self, settings: &crate::policy::ReportSettings) {
        self.max_flows = settings.max_flows;
        let max_age_ms = u64::from(settings.retention_days) * 86_400_000;
        if let Err(e) = self.store.retain(now_ms(), max_age_ms, settings.max_flows) {
            warn!(error = %e, "flow retention failed");
        }
    }
}

/// One line per new flow, for whoever reads the journal.
fn log_new(flow: &Flow) {
    warn!(
        verdict = %flow.verdict,
        hook = %flow.hooks,
        pid = flow.pid,
        ppid = flow.ppid,
        exe = %flow.exe,
        cmdline = %flow.cmdline,
        uid = flow.uid,
        user = flow.user.as_deref().unwrap_or(""),
        cgroup = flow.cgroup.as_deref().unwrap_or(""),
        unit = flow.unit.as_deref().unwrap_or(""),
        dst = %flow.dst,
        // Only when a banned IPv4 host was reached over IPv6.
        via = (!flow.via.is_empty()).then_some(flow.via.as_str()),
        port = flow.port,
        protocol = flow.protocol,
        domains = %flow.domains,
        // Only when an application's DNS answer taught the address.
        name = (!flow.name.is_empty()).then_some(flow.name.as_str()),
        chain = (!flow.chain.is_empty()).then_some(flow.chain.as_str()),
        rule = %flow.rule,
        // Only for a contained process: its selector, and the process
        // whose exec matched it.
        agent = (!flow.agent.is_empty()).then_some(flow.agent.as_str()),
        agent_root = (!flow.agent_root.is_empty()).then_some(flow.agent_root.as_str()),
        host = %flow.host,
        "new blocked flow"
    );
}

/// The policy names whose answers hold `addr`, comma-separated.
fn names_for(answers: &Answers, addr: IpAddr) -> String {
    let addr = addr.to_canonical();
    answers
        .names
        .iter()
        .filter(|(_, s)| s.addrs.keys().any(|a| a.to_canonical() == addr))
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_budget_allows_a_burst_then_refills_each_second() {
        let t0 = Instant::now();
        let mut b = LogBudget::new(3, t0);
        assert_eq!((0..5).filter(|_| b.take(t0)).count(), 3);
        assert!(!b.take(t0 + Duration::from_millis(999)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..5).filter(|_| b.take(t1)).count(), 3);
        // A long quiet spell does not bank more than one second's worth.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.take(t2)).count(), 3);
    }
}
