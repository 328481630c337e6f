//! Section 10: what agent containment costs. Uncontained processes: their
//! connect() under policy A (no selector), B (100 selectors, each with an
//! allow list), A again (A/A control): the cost is one map lookup of the
//! caller's pid. Every process: the exec, fork and exit hooks per event,
//! with B loaded (an exec runs the selector automaton over its path and
//! argv), for an exec that matches no selector and for one that does.

use anyhow::{Context as _, Result};
use enforcer::{
    agents::Compiled,
    bpf::{
        CgroupHook, Datapath, Pins,
        agents::{self, TraceOffsets},
    },
    policy::{Policy, Source},
};
use enforcer_common::programs;
use enforcer_tests::{BpffsGuard, CgroupGuard, NetnsGuard, TempDir};

use crate::{
    Report,
    sections::{prog_stats, run_connect_child},
};

const SELECTORS: usize = 100;
const EXECS: usize = 300;

/// A: no selector; B: 100, each with exe and script patterns (4 with a
/// cmdline pattern too) and an allow list of two networks (and a name, for
/// the first 64).
fn policy(selectors: usize, matching: &str) -> Policy {
    let mut list: Vec<String> = (0..selectors)
        .map(|i| {
            // Names fit the first 64 selectors' masks.
            let name = if i < 64 {
                format!(r#", "gw-{i}.corp.example""#)
            } else {
                String::new()
            };
            // Two-sided command-line patterns double the automaton each:
            // a few, as a real policy would have.
            let cmdline = if i < 4 {
                format!(r#""cmdline": ["* --agent-{i} *"], "#)
            } else {
                String::new()
            };
            format!(
                r#"{{"name": "agent-{i}", "exe": ["~/.local/share/agent-{i}/versions/*", "**/bin/agent-{i}"],
                    "script": ["**/@vendor/agent-{i}/cli.js"], {cmdline}
                    "allow": ["10.{i}.0.0/16", "10.200.{i}.1:443"{name}]}}"#
            )
        })
        .collect();
    if selectors > 0 {
        list.push(format!(r#"{{"name": "bench", "exe": ["{matching}"]}}"#));
    }
    Policy::parse(
        &format!(r#"{{"version": 1, "agents": [{}]}}"#, list.join(",")),
        Source::Embedded,
    )
    .expect("bench policy")
}

fn apply(pins: &Pins, p: &Policy) -> Result<()> {
    let offsets = TraceOffsets::probe().context("tracefs offsets")?;
    let slots: Vec<u32> = (0..p.agents.len() as u32).collect();
    agents::write(pins, &Compiled::new(&p.agents)?, &slots, offsets)?;
    Ok(())
}

fn connect4_ns(dp: &mut Datapath, cg: &CgroupGuard) -> Result<f64> {
    let before = prog_stats(dp, programs::CONNECT4).context("connect4 stats")?;
    let ns = NetnsGuard::new("ba");
    run_connect_child(cg.path(), "allowed", &ns)?;
    let after = prog_stats(dp, programs::CONNECT4).context("connect4 stats")?;
    Ok((after.0 - before.0) as f64 / (after.1 - before.1).max(1) as f64)
}

/// In-place ns per run of `connect_unix` over the child's Unix-domain
/// connects (the program is loaded outside aya: found by its id).
fn connect_unix_ns(dp: &Datapath, cg: &CgroupGuard) -> Result<f64> {
    let id = dp
        .unix()
        .and_then(|u| u.id(programs::CONNECT_UNIX))
        .context("connect_unix is not loaded (kernel without Unix attach types?)")?;
    let stats = || -> Result<(u64, u64)> {
        let info = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .find(|p| p.id() == id)
            .context("connect_unix stats")?;
        Ok((info.run_time().as_nanos() as u64, info.run_count()))
    };
    let before = stats()?;
    let ns = NetnsGuard::new("bu");
    run_connect_child(cg.path(), "unix", &ns)?;
    let after = stats()?;
    Ok((after.0 - before.0) as f64 / (after.1 - before.1).max(1) as f64)
}

const HOOKS: [&str; 4] = [
    programs::EXEC_ARGV,
    programs::PROCESS_EXEC,
    programs::PROCESS_FORK,
    programs::PROCESS_EXIT,
];

/// In-place ns per run of each hook over `EXECS` fork+exec+exit of `bin`
/// (the hooks are global: other processes' events count too).
fn exec_ns(dp: &mut Datapath, bin: &std::path::Path) -> Result<Vec<(f64, u64)>> {
    let before: Vec<_> = HOOKS.iter().map(|h| prog_stats(dp, h)).collect();
    for _ in 0..EXECS {
        std::process::Command::new(bin)
            .args(["--flag", "/tmp/some/file", "more", "arguments"])
            .status()?;
    }
    Ok(HOOKS
        .iter()
        .zip(before)
        .map(|(h, b)| match (b, prog_stats(dp, h)) {
            (Some(b), Some(a)) => {
                let runs = a.1 - b.1;
                ((a.0 - b.0) as f64 / runs.max(1) as f64, runs)
            }
            _ => (f64::NAN, 0),
        })
        .collect())
}

pub fn containment(r: &mut Report) -> Result<()> {
    r.line(format!(
        "connect4 of an uncontained process (section 3's child: real TCP connects to an allowed \
         loopback listener) and connect_unix (the same child's Unix-domain stream connects to a \
         listener of its own), in-place ns per run from kernel.bpf_stats_enabled, under policy A (no \
         agent selector), B ({SELECTORS} selectors, each with exe and script patterns (4 with a \
         two-sided cmdline pattern too) and an allow list with two networks and, for the first 64, \
         a name; one more selector matching the bench's own \
         `true` copy), then A again (A/A control). Then, with B, the exec-tracking hooks per event \
         over {EXECS} fork+exec+exit of a copy of /bin/true with 4 arguments: one path no selector \
         matches, one path the extra selector matches (that process is contained)."
    ));
    r.line("");
    let bpffs = BpffsGuard::new("ba");
    let tmp = TempDir::new("ba");
    let pins = Pins::new(bpffs.pins_dir());
    let mut dp = Datapath::load(&pins)?;
    let cg = CgroupGuard::new("ba");
    dp.attach_cgroup(cg.path(), &CgroupHook::ALL)?;
    dp.attach_exec_tracking()?;
    let plain = tmp.path().join("plain-true");
    let matching = tmp.path().join("agent-true");
    std::fs::copy("/bin/true", &plain)?;
    std::fs::copy("/bin/true", &matching)?;
    let (a, b) = (
        policy(0, ""),
        policy(SELECTORS, matching.to_str().expect("utf-8 path")),
    );
    let tables = Compiled::new(&b.agents)?.tables;
    let (mut connect, mut unix) = (Vec::new(), Vec::new());
    for p in [&a, &b, &a] {
        apply(&pins, p)?;
        connect.push(connect4_ns(&mut dp, &cg)?);
        unix.push(connect_unix_ns(&dp, &cg)?);
    }
    r.line("| uncontained process | A ns | B ns | A again ns | B − A ns | A/A ns |");
    r.line("|---|---:|---:|---:|---:|---:|");
    for (what, v) in [
        ("connect4: TCP, loopback", &connect),
        ("connect_unix: Unix-domain stream", &unix),
    ] {
        let (c1, cb, c2) = (v[0], v[1], v[2]);
        r.line(format!(
            "| {what} | {c1:.0} | {cb:.0} | {c2:.0} | {:+.0} | {:+.0} |",
            cb - (c1 + c2) / 2.0,
            c2 - c1
        ));
    }
    r.line("");
    apply(&pins, &a)?;
    let none = exec_ns(&mut dp, &plain)?;
    apply(&pins, &b)?;
    let miss = exec_ns(&mut dp, &plain)?;
    let hit = exec_ns(&mut dp, &matching)?;
    apply(&pins, &a)?;
    r.line(format!(
        "Selector automaton of B: {} states × {} byte classes.",
        tables.states(),
        tables.stride
    ));
    r.line("");
    r.line("| hook | A (no selector) ns | B, no match ns | B, match ns | runs (B, match) |");
    r.line("|---|---:|---:|---:|---:|");
    for (i, h) in HOOKS.iter().enumerate() {
        r.line(format!(
            "| {h} | {:.0} | {:.0} | {:.0} | {} |",
            none[i].0, miss[i].0, hit[i].0, hit[i].1
        ));
    }
    r.line("");
    r.line(
        "B − A is B against the mean of both A runs; an A/A difference as large as B − A means the \
         cost is within the noise. The exec hook's cost with selectors is the automaton walk over \
         the path and argv (bounded: 256 + 1024 bytes); fork and exit cost a hash lookup or delete \
         of the pid.",
    );
    drop(dp);
    Ok(())
}
