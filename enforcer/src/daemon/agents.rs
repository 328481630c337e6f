//! Agent containment, run by the daemon: the selectors into the maps (at
//! start and on every reload), the processes that were running before
//! the exec hook could see them marked from /proc, marks remapped when
//! selectors move, marks of processes that are gone removed, and reports.

use std::{collections::BTreeMap, path::PathBuf};

use enforcer_common::{
    agents::{
        STAT_ALLOWED, STAT_AUDITED, STAT_DENIED, STAT_FULL, STAT_INHERITED, STAT_MATCHED,
        STAT_NO_ARGS, STAT_RAW_REFUSED,
    },
    programs,
};
use tracing::{info, warn};

use crate::{
    agents::{
        CompileError, Compiled, Tables,
        procs::{self, Proc},
        report::{AgentsReport, ContainedProc, SelectorReport},
    },
    bpf::{
        Pins,
        agents::{self as maps, TraceOffsets},
        writer::WriteError,
    },
    policy::{Policy, agents::Agent},
};

#[derive(Debug, thiserror::Error)]
pub enum ContainError {
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error(transparent)]
    Maps(#[from] WriteError),
    #[error(
        "agent selectors need the sched_process_fork tracepoint's record layout from tracefs \
         (events/sched/sched_process_fork/format), which cannot be read: without it the children \
         of an agent would escape containment"
    )]
    NoTracefs,
}

pub struct Containment {
    pins: Pins,
    proc_root: PathBuf,
    compiled: Compiled,
    agents: Vec<Agent>,
    /// `slots[rank]`: where each selector lives in the maps.
    slots: Vec<u32>,
    /// The last apply failed: the next reload applies again, even of a
    /// policy equal to the one in force.
    failed: bool,
    /// `AGENT_UNIX_SEEN`, opened at the first Unix-domain event.
    unix_seen: std::cell::OnceCell<maps::UnixSeen>,
}

impl Containment {
    /// Nothing contained, nothing written (before the policy is applied).
    pub fn idle(pins: Pins) -> Containment {
        Containment {
            pins,
            proc_root: PathBuf::from("/proc"),
            compiled: Compiled::new(&[]).expect("no selectors compile"),
            agents: Vec::new(),
            slots: Vec::new(),
            unix_seen: std::cell::OnceCell::new(),
            failed: false,
        }
    }

    /// The policy's selectors compiled, or why they cannot be enforced (a
    /// reload with such a policy is rejected whole).
    pub fn compile(policy: &Policy) -> Result<Compiled, CompileError> {
        Compiled::new(&policy.agents)
    }

    pub fn tables(&self) -> &Tables {
        &self.compiled.tables
    }

    pub fn names(&self) -> &[String] {
        &self.compiled.names
    }

    /// Whether the selectors in force are the policy's (false after a
    /// failed apply).
    pub fn in_sync(&self) -> bool {
        !self.failed
    }

    /// Writes `compiled` for `policy` and marks the running processes the
    /// selectors match. Each selector keeps the slot its name had in the
    /// pinned maps (this run's, or the previous instance's after a
    /// restart), so marks never move; the marks of selectors that left are
    /// removed (their processes are released).
    pub fn apply(&mut self, policy: &Policy, compiled: Compiled) -> Result<(), ContainError> {
        self.failed = true;
        for w in replaceable_unix_paths(&policy.agents) {
            warn!("{w}");
        }
        let offsets = if compiled.is_empty() {
            TraceOffsets::probe().unwrap_or_default()
        } else {
            TraceOffsets::probe().ok_or(ContainError::NoTracefs)?
        };

        let previous = maps::selector_keys(&self.pins)?;
        let assigned = crate::agents::assign_slots(&compiled, &previous)?;
        let names_before = self.compiled.allow(&self.slots).names;
        // A slot that gets a selector it did not hold: first made absent
        // (the kernel then ignores its marks, passes none on at fork, and
        // makes none from the old tables), then emptied of the marks its
        // previous holder left, then written.
        maps::set_absent(&self.pins, &assigned.fresh)?;
        maps::sweep(&self.pins, |slot| assigned.fresh.contains(&slot))?;
        maps::write(&self.pins, &compiled, &assigned.slots, offsets)?;
        maps::move_marks(&self.pins, &assigned.moved)?;
        // Slots no selector holds now: their processes are released.
        let released = maps::sweep(&self.pins, |slot| !assigned.slots.contains(&slot))?;
        if released > 0 {
            info!(
                released,
                "processes of selectors no longer in the policy are released"
            );
        }
        // Addresses learned for names carry a bit per slot: when a slot
        // gets another selector or a selector's names change, the bits no
        // longer say what the policy says (a dropped name would stay
        // reachable for its TTL). Cleared once the new names are in
        // `AGENT_NAMES`; relearned at the next answer.
        if !assigned.fresh.is_empty() || names_before != compiled.allow(&assigned.slots).names {
            maps::clear_learned(&self.pins)?;
        }
        self.compiled = compiled;
        self.slots = assigned.slots.clone();
        self.agents = policy.agents.clone();
        if !self.compiled.is_empty() {
            for w in host_escapes() {
                warn!("{w}");
            }
            let marked = self.mark_running()?;
            info!(
                selectors = self.compiled.names.len(),
                states = self.compiled.tables.states(),
                marked,
                "agent selectors in force"
            );
        }
        self.failed = false;
        Ok(())
    }

    /// Strictness by slot (audit 0, deny 1, deny-all 2), as the exec hook
    /// ranks a takeover.
    /// Slots of no selector are -1: below audit, any mark takes their place.
    fn strictness_by_slot(&self) -> Vec<i16> {
        let mut out = vec![-1; enforcer_common::agents::MAX_SELECTORS as usize];
        for (rank, a) in self.compiled.agents.iter().enumerate() {
            out[self.slots[rank] as usize] = i16::from(strictness(a.action));
        }
        out
    }

    /// Marks the running processes the selectors contain, until a pass
    /// marks nothing more (a process forked while a pass read /proc,
    /// before its parent was marked, is found by the next); at most 5.
    fn mark_running(&self) -> Result<usize, ContainError> {
        let by_rank: Vec<u8> = self
            .compiled
            .agents
            .iter()
            .map(|a| strictness(a.action))
            .collect();
        let by_slot = self.strictness_by_slot();
        let mut marked = 0;
        for _ in 0..5 {
            let snapshot = procs::snapshot(&self.proc_root);
            let found = procs::contained(&snapshot, &self.compiled.tables, &self.slots, &by_rank);
            let n = maps::mark(&self.pins, &found, &by_slot)?;
            marked += n;
            if n == 0 {
                break;
            }
        }
        Ok(marked)
    }

    /// Removes the marks of processes that no longer exist, and learned
    /// allow-list addresses whose time is over.
    pub fn forget_gone(&self) -> Result<usize, WriteError> {
        if self.compiled.is_empty() {
            return Ok(0);
        }
        maps::purge_learned(&self.pins, crate::bpf::dnsnames::boot_ns())?;
        let root = self.proc_root.clone();
        maps::forget_gone(&self.pins, |pid| root.join(pid.to_string()).exists())
    }

    /// The name of the selector in slot `slot`.
    pub fn name_of(&self, slot: u32) -> String {
        self.slots
            .iter()
            .position(|s| *s == slot)
            .and_then(|rank| self.compiled.names.get(rank).cloned())
            .unwrap_or_else(|| format!("#{slot}"))
    }

    /// The Unix-domain socket name a contained process was refused, by
    /// the key its event carries. The map is opened once.
    pub fn unix_seen(&self, key: u64) -> Option<String> {
        // Opened again after a failure (not remembered as absent).
        if self.unix_seen.get().is_none()
            && let Some(map) = maps::open_unix_seen(&self.pins)
        {
            let _ = self.unix_seen.set(map);
        }
        maps::unix_seen(self.unix_seen.get()?, key)
    }

    /// The root (the process whose exec matched) of contained process `pid`.
    pub fn root_of(&self, pid: u32) -> Option<u32> {
        maps::contained_one(&self.pins, pid).map(|c| c.root)
    }

    pub fn contained(&self) -> Vec<ContainedProc> {
        let marks = match maps::contained(&self.pins) {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "cannot read the contained processes");
                return Vec::new();
            }
        };
        let snapshot: BTreeMap<u32, Proc> = procs::snapshot(&self.proc_root)
            .into_iter()
            .map(|p| (p.pid, p))
            .collect();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        marks
            .into_iter()
            // Thread entries (made at clone) are not processes of their own.
            .filter(|(pid, _)| snapshot.contains_key(pid))
            .map(|(pid, c)| {
                let p = &snapshot[&pid];
                ContainedProc {
                    pid,
                    agent: self.name_of(c.selector),
                    root: c.root,
                    root_exe: snapshot
                        .get(&c.root)
                        .map_or_else(|| "(exited)".into(), |r| text(&r.exe)),
                    exe: text(&p.exe),
                    cmdline: p.argv.iter().map(|a| text(a)).collect::<Vec<_>>().join(" "),
                }
            })
            .collect()
    }

    pub fn report(&self) -> AgentsReport {
        let contained = self.contained();
        let selectors = self
            .agents
            .iter()
            .map(|a| SelectorReport {
                name: a.name.clone(),
                action: a.action.to_string(),
                exe: a.exe.iter().map(ToString::to_string).collect(),
                script: a.script.iter().map(ToString::to_string).collect(),
                cmdline: a.cmdline.iter().map(ToString::to_string).collect(),
                allow: a.allow.iter().map(ToString::to_string).collect(),
                source: a.source.clone(),
                defined_in: a.defined_in.to_string(),
                contained: contained.iter().filter(|c| c.agent == a.name).count() as u64,
            })
            .collect();
        let mut counters = BTreeMap::new();
        if let Ok(s) = maps::stats(&self.pins) {
            for (name, i) in [
                ("matched", STAT_MATCHED),
                ("inherited", STAT_INHERITED),
                ("full", STAT_FULL),
                ("no_args", STAT_NO_ARGS),
                ("denied", STAT_DENIED),
                ("audited", STAT_AUDITED),
                ("allowed", STAT_ALLOWED),
                ("raw_refused", STAT_RAW_REFUSED),
            ] {
                counters.insert(name.to_owned(), s[i as usize]);
            }
        }
        // The pinned links are the enforcement: they say it, not a flag.
        let unix_judged = [programs::CONNECT_UNIX, programs::SENDMSG_UNIX]
            .iter()
            .all(|p| self.pins.cgroup_link(p).exists());
        AgentsReport {
            selectors,
            contained,
            counters,
            unix_judged,
        }
    }
}

/// Allowed Unix-domain socket paths a local user could put another socket
/// behind (sshd's StrictModes, for sockets): the kernel compares the name
/// the program gives, so the socket and every directory above it must
/// belong to root and be writable by no one else. Said at each apply.
fn replaceable_unix_paths(agents: &[Agent]) -> Vec<String> {
    use std::os::unix::fs::MetadataExt as _;
    let mut out = Vec::new();
    for a in agents {
        for entry in &a.allow {
            let crate::policy::agents::AllowEntry::Unix(name) = entry else {
                continue;
            };
            if name.first() == Some(&0) {
                continue; // abstract: no file
            }
            let path = std::path::Path::new(
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name),
            );
            for p in path.ancestors() {
                // symlink_metadata: a symlink is judged as itself.
                let Ok(m) = std::fs::symlink_metadata(p) else {
                    continue; // not there (yet): nothing to replace
                };
                // A symlink's own mode means nothing; its owner does.
                let loose = m.uid() != 0 || (!m.file_type().is_symlink() && m.mode() & 0o022 != 0);
                if loose {
                    out.push(format!(
                        "agents[{}].allow: {entry}: {} is owned by uid {} with mode {:o}; a \
                         local user could put another socket behind this name. Use a socket \
                         in directories owned by root and writable by no one else",
                        a.name,
                        p.display(),
                        m.uid(),
                        m.mode() & 0o7777
                    ));
                    break;
                }
            }
        }
    }
    out
}

/// Host settings that let a contained process act through an uncontained
/// one of the same user, which containment cannot see: said at start.
fn host_escapes() -> Vec<String> {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    let mut out = Vec::new();
    if read("/proc/sys/kernel/yama/ptrace_scope").is_none_or(|v| v == "0") {
        out.push(
            "agent containment: kernel.yama.ptrace_scope is 0 (or Yama is absent): a contained \
             process may ptrace an uncontained process of its user (its parent shell) and act \
             through it; set kernel.yama.ptrace_scope=1 or higher"
                .to_owned(),
        );
    }
    if read("/proc/sys/dev/tty/legacy_tiocsti").as_deref() == Some("1") {
        out.push(
            "agent containment: dev.tty.legacy_tiocsti is 1: a contained process may type \
             commands into its terminal for the shell to run after it; set \
             dev.tty.legacy_tiocsti=0"
                .to_owned(),
        );
    }
    out
}

/// How much an action withholds (the exec hook's `strictness`).
fn strictness(action: crate::policy::agents::AgentAction) -> u8 {
    use crate::policy::agents::AgentAction;
    match action {
        AgentAction::Audit => 0,
        AgentAction::Deny => 1,
        AgentAction::DenyAll => 2,
    }
}
