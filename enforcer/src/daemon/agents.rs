//! Agent containment, run by the daemon: the selectors into the maps (at
//! start and on every reload), the processes that were running before
//! the exec hook could see them marked from /proc, marks remapped when
//! selectors move, marks of processes that are gone removed, and reports.

use std::{collections::BTreeMap, path::PathBuf};

use enforcer_common::agents::{
    STAT_ALLOWED, STAT_AUDITED, STAT_DENIED, STAT_FULL, STAT_INHERITED, STAT_MATCHED, STAT_NO_ARGS,
    STAT_RAW_REFUSED,
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
    /// Nothing applied yet in this run: the marks in the pinned map were
    /// made under the previous instance's selectors.
    fresh: bool,
}

impl Containment {
    /// Nothing contained, nothing written (before the policy is applied).
    pub fn idle(pins: Pins) -> Containment {
        Containment {
            pins,
            proc_root: PathBuf::from("/proc"),
            compiled: Compiled::new(&[]).expect("no selectors compile"),
            agents: Vec::new(),
            fresh: true,
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

    /// Writes `compiled` for `policy`, moves existing marks to the new
    /// selector indices, and marks the running processes the new
    /// selectors match.
    pub fn apply(&mut self, policy: &Policy, compiled: Compiled) -> Result<(), ContainError> {
        let offsets = if compiled.is_empty() {
            TraceOffsets::probe().unwrap_or(TraceOffsets {
                fork_child: 0,
                exit_group_dead: 0,
            })
        } else {
            TraceOffsets::probe().ok_or(ContainError::NoTracefs)?
        };
        // The numbering the marks follow now: this run's, or on the first
        // apply the one the previous instance left in the pins.
        let old_keys = if self.fresh {
            maps::selector_keys(&self.pins)?
        } else {
            self.compiled.keys()
        };
        let names_changed = self.fresh
            || self.compiled.allow.names != compiled.allow.names
            || old_keys != compiled.keys();
        maps::write(&self.pins, &compiled, offsets)?;
        let bank = maps::bank(&self.pins)?;
        let new_keys = compiled.keys();
        // Twice: a child forked from a parent the first pass had not moved
        // yet inherited the old numbering.
        let mut released = 0;
        for _ in 0..2 {
            released += maps::remap(&self.pins, &old_keys, &new_keys, bank)?;
        }
        self.fresh = false;
        if released > 0 {
            info!(
                released,
                "processes of selectors no longer in the policy are released"
            );
        }
        if names_changed {
            // Their selector bits followed the old numbering.
            maps::clear_learned(&self.pins)?;
        }
        self.compiled = compiled;
        self.agents = policy.agents.clone();
        if !self.compiled.is_empty() {
            for w in host_escapes() {
                warn!("{w}");
            }
            let marked = self.mark_running(bank)?;
            info!(
                selectors = self.compiled.names.len(),
                states = self.compiled.tables.states(),
                marked,
                "agent selectors in force"
            );
        }
        Ok(())
    }

    /// Marks the running processes the selectors contain (twice: a
    /// process forked while the first pass read /proc, before its parent
    /// was marked, is found by the second).
    fn mark_running(&self, bank: u32) -> Result<usize, ContainError> {
        let mut marked = 0;
        for _ in 0..2 {
            let snapshot = procs::snapshot(&self.proc_root);
            let found = procs::contained(&snapshot, &self.compiled.tables, bank);
            marked += maps::mark(&self.pins, &found)?;
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

    /// The name of selector `index`.
    pub fn name_of(&self, index: u32) -> String {
        self.compiled
            .names
            .get(index as usize)
            .cloned()
            .unwrap_or_else(|| format!("#{index}"))
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
        AgentsReport {
            selectors,
            contained,
            counters,
        }
    }
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
