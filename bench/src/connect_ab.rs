//! Section 10: what a connection to a destination never returned for a
//! shared name pays, next to nftables with the same address entries and
//! to no filter at all, with an A/A control. The three cases are run in
//! turn, round after round, so that a drift of the machine (other work
//! on a shared VM) spreads over all of them instead of favouring one.

use std::net::IpAddr;

use anyhow::{Context as _, Result};
use enforcer::{
    bpf::{CgroupHook, Datapath, Pins, dnsnames, sni, writer::MapWriter},
    desired::{ResolvedAddrs, compile},
    policy::{Policy, Source},
};
use enforcer_common::programs;
use enforcer_tests::{BpffsGuard, CgroupGuard, NetnsGuard, TempDir};

use crate::{
    Report, median,
    sections::{exact_v4, nft_ban_file, nft_file, prog_stats, run_connect_child},
};

const ADDRESSES: usize = 100_000;
const SHARED_NAMES: usize = 1_000;
const ROUNDS: usize = 5;
/// The programs a plain TCP connect to an allowed destination runs.
const PROGS: [&str; 4] = [
    programs::SOCK_CREATE,
    programs::CONNECT4,
    programs::SKB_EGRESS,
    programs::SNI_SOCKOPS,
];

/// The policy: `ADDRESSES` exact v4 bans and `SHARED_NAMES` shared banned
/// names, each resolved to a documentation address (never 127.0.0.1, the
/// destination of every connection here).
fn policy(addrs: &[std::net::Ipv4Addr]) -> Result<(Policy, ResolvedAddrs)> {
    let cidrs: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    let names: Vec<String> = (0..SHARED_NAMES)
        .map(|i| format!("{{\"name\":\"s{i}.shared.test\",\"shared\":true}}"))
        .collect();
    let json = format!(
        "{{\"version\":1,\"deny\":{{\"cidrs\":[{}],\"domains\":[{}]}}}}",
        cidrs.join(","),
        names.join(",")
    );
    let policy = Policy::parse(&json, Source::Embedded).context("bench policy")?;
    let mut resolved = ResolvedAddrs::new();
    for i in 0..SHARED_NAMES {
        let last = (i % 250 + 1) as u8;
        let net = if i < 250 {
            [198, 51, 100]
        } else {
            [203, 0, 113]
        };
        let ip = IpAddr::from([net[0], net[1], net[2], last]);
        resolved.insert(format!("s{i}.shared.test"), [ip].into());
    }
    Ok((policy, resolved))
}

/// Sums of run time and runs of `PROGS` over one connect run.
fn enforcer_run(dp: &mut Datapath, cg: &CgroupGuard, sums: &mut [(u64, u64); 4]) -> Result<f64> {
    let before: Vec<_> = PROGS.iter().map(|p| prog_stats(dp, p)).collect();
    let ns = NetnsGuard::new("ba");
    let rate = run_connect_child(cg.path(), "allowed", &ns)?;
    for (i, p) in PROGS.iter().enumerate() {
        if let (Some(b), Some(a)) = (before[i], prog_stats(dp, p)) {
            sums[i].0 += a.0 - b.0;
            sums[i].1 += a.1 - b.1;
        }
    }
    Ok(rate)
}

/// Turns kernel.bpf_stats_enabled on or off; returns whether it was on.
fn bpf_stats(on: bool) -> bool {
    const KNOB: &str = "/proc/sys/kernel/bpf_stats_enabled";
    let was = std::fs::read_to_string(KNOB).is_ok_and(|v| v.trim() == "1");
    let _ = std::fs::write(KNOB, if on { "1" } else { "0" });
    was
}

pub fn connect_ab(r: &mut Report) -> Result<()> {
    r.line(format!(
        "Section 3's child (TCP connects to its own listener on 127.0.0.1, closed with RST, up to \
         20000 or 5 s per run) in three cases, run in turn for {ROUNDS} rounds: no filter; the \
         enforcer (every cgroup hook attached) with {ADDRESSES} exact v4 bans and {SHARED_NAMES} \
         shared banned names loaded, none of them ever returned 127.0.0.1 (so no connection is \
         inspected: what every other connection pays); nftables with the same {ADDRESSES} \
         addresses in a hash set (`table inet` output chain, `ip daddr @ban reject`; a name has \
         no nftables equivalent). A/A: the no-filter runs against each other. The rates are \
         taken with kernel.bpf_stats_enabled off (the statistics cost every program run two \
         clock reads); the in-place cost per program comes from one more enforcer run with it on."
    ));
    r.line("");
    let addrs = exact_v4(ADDRESSES, 0x10ab);
    let (policy, resolved) = policy(&addrs)?;
    let policy = std::sync::Arc::new(policy);
    let (desired, rules) = compile(&policy, &resolved);

    let none_cg = CgroupGuard::new("ba");
    let enf_cg = CgroupGuard::new("ba");
    let bpffs = BpffsGuard::new("ba");
    let pins = Pins::new(bpffs.pins_dir());
    let mut dp = Datapath::load(&pins)?;
    MapWriter::open(&pins)?.apply(&desired)?;
    dnsnames::write_names(&pins, &rules)?;
    sni::write(&pins, &policy, &rules, &resolved)?;
    dp.attach_cgroup(enf_cg.path(), &CgroupHook::ALL)?;

    let tmp = TempDir::new("ba");
    let nft_ns = NetnsGuard::new("ba");
    let file = nft_ban_file(&tmp, &addrs);
    nft_file(&nft_ns, &file)?;

    // The rates are taken with the kernel's BPF run statistics off: they
    // cost two clock reads per program run, which nftables never pays.
    let (mut none, mut enf, mut nft) = (Vec::new(), Vec::new(), Vec::new());
    let stats_were = bpf_stats(false);
    let rounds = (|| -> Result<()> {
        for _ in 0..ROUNDS {
            none.push(run_connect_child(
                none_cg.path(),
                "allowed",
                &NetnsGuard::new("ba"),
            )?);
            enf.push(run_connect_child(
                enf_cg.path(),
                "allowed",
                &NetnsGuard::new("ba"),
            )?);
            nft.push(run_connect_child(none_cg.path(), "allowed", &nft_ns)?);
        }
        Ok(())
    })();
    bpf_stats(stats_were);
    rounds?;
    // The in-place figures, from one more run with the statistics on.
    let mut sums = [(0u64, 0u64); 4];
    let stats_rate = enforcer_run(&mut dp, &enf_cg, &mut sums)?;
    r.line("| round | no filter connects/s | enforcer connects/s | nftables connects/s |");
    r.line("|---:|---:|---:|---:|");
    for i in 0..ROUNDS {
        r.line(format!(
            "| {} | {:.0} | {:.0} | {:.0} |",
            i + 1,
            none[i],
            enf[i],
            nft[i]
        ));
    }
    // Medians: one run disturbed by other work on the machine moves a
    // median less than a mean.
    let base = median(none.clone());
    let spread = none.iter().cloned().fold(f64::MIN, f64::max)
        - none.iter().cloned().fold(f64::MAX, f64::min);
    let over = |x: f64| 100.0 * (base - x) / x.max(1.0);
    let us = |x: f64| 1e6 / x.max(1.0) - 1e6 / base.max(1.0);
    r.line("");
    r.line(format!(
        "- A/A: the no-filter runs spread over {:.1} % of their median ({base:.0} connects/s)",
        100.0 * spread / base
    ));
    r.line(format!(
        "- enforcer: overhead {:+.1} % ({:+.2} µs per connect)",
        over(median(enf.clone())),
        us(median(enf.clone()))
    ));
    r.line(format!(
        "- nftables: overhead {:+.1} % ({:+.2} µs per connect)",
        over(median(nft.clone())),
        us(median(nft.clone()))
    ));
    let connects = sums[0].1.max(1) as f64;
    let per: Vec<String> = PROGS
        .iter()
        .zip(sums.iter())
        .map(|(p, (ns, runs))| {
            format!(
                "`{p}` {:.0} ns/run × {:.1} runs",
                *ns as f64 / (*runs).max(1) as f64,
                *runs as f64 / connects
            )
        })
        .collect();
    let total: u64 = sums.iter().map(|s| s.0).sum();
    r.line(format!(
        "- enforcer in place, per connection (one `sock_create` each), from one more run with \
         the statistics on ({stats_rate:.0} connects/s): {}; together {:.0} ns",
        per.join(", "),
        total as f64 / connects
    ));
    r.line("");
    r.line(
        "Overhead = (no-filter rate − rate) / rate, medians of the rounds. \
         `sock_create` records the socket's owner in socket-local storage (the kernel allocates \
         the storage there); see docs/PERFORMANCE.md.",
    );
    Ok(())
}
