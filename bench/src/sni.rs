//! Section 9: what name inspection (shared names) costs. Connections to an
//! address never tied to a shared name pay the sock_ops callback only;
//! connections to an inspected address pay the sockhash insert and one
//! sk_msg run over their first write (a ClientHello for an allowed name),
//! after which the rest of the connection is let through unjudged.

use anyhow::{Context as _, Result};
use enforcer::{
    bpf::{CgroupHook, Datapath, Pins, dnsnames, sni},
    desired::{ResolvedAddrs, compile},
    policy::{Policy, Source},
};
use enforcer_common::programs;
use enforcer_tests::{BpffsGuard, CgroupGuard, NetnsGuard};

use crate::{
    Report,
    sections::{prog_stats, run_connect_child},
};

/// A program's in-place ns per run over a run, and its runs.
type PerProgram = Vec<(&'static str, f64, u64)>;

/// The connect child's rate (connects/s, each writing one ClientHello for
/// an allowed name), and the in-place ns per run of `progs` over it.
fn run(dp: &mut Datapath, cg: &CgroupGuard, progs: &[&'static str]) -> Result<(f64, PerProgram)> {
    let before: Vec<_> = progs.iter().map(|p| prog_stats(dp, p)).collect();
    let ns = NetnsGuard::new("bs");
    let rate = run_connect_child(cg.path(), "hello", &ns)?;
    let mut per = Vec::new();
    for (i, p) in progs.iter().enumerate() {
        if let (Some(b), Some(a)) = (before[i], prog_stats(dp, p)) {
            let runs = a.1 - b.1;
            per.push((*p, (a.0 - b.0) as f64 / runs.max(1) as f64, runs));
        }
    }
    Ok((rate, per))
}

/// Points the shared name `banned.test` at `addrs` (the daemon's own
/// resolution: `INSPECT_V4`), through the product's writers.
fn inspect(pins: &Pins, addrs: &[&str]) -> Result<()> {
    let policy = Policy::parse(
        r#"{"version": 1, "deny": {"domains": [{"name": "banned.test", "shared": true}]}}"#,
        Source::Embedded,
    )
    .context("bench policy")?;
    let mut resolved = ResolvedAddrs::new();
    resolved.insert(
        "banned.test".into(),
        addrs.iter().map(|a| a.parse().unwrap()).collect(),
    );
    let (_, rules) = compile(&std::sync::Arc::new(policy.clone()), &resolved);
    dnsnames::write_names(pins, &rules)?;
    sni::write(pins, &policy, &rules, &resolved)?;
    Ok(())
}

pub fn name_inspection(r: &mut Report) -> Result<()> {
    let hello = enforcer_tests::tls::client_hello("ok.test", enforcer_tests::tls::Hello::Plain);
    r.line(format!(
        "Section 3's child, each connection also writing one {}-byte TLS ClientHello for an \
         allowed name (`ok.test`) before it is closed, to its own listener on 127.0.0.1. Runs: \
         no enforcement twice (A/A); every cgroup hook attached with 127.0.0.1 not inspected \
         (the shared name points elsewhere: the cost every other connection pays); then with \
         127.0.0.1 inspected (every connection goes through the sockhash and one sk_msg run). \
         In-place ns per program run from kernel.bpf_stats_enabled.",
        hello.len()
    ));
    r.line("");
    let cg = CgroupGuard::new("bs");
    let plain = |cg: &CgroupGuard| -> Result<f64> {
        let ns = NetnsGuard::new("bs");
        run_connect_child(cg.path(), "hello", &ns)
    };
    let a1 = plain(&cg)?;
    let a2 = plain(&cg)?;
    let base = (a1 + a2) / 2.0;
    let bpffs = BpffsGuard::new("bs");
    let pins = Pins::new(bpffs.pins_dir());
    let mut dp = Datapath::load(&pins)?;
    dp.attach_cgroup(cg.path(), &CgroupHook::ALL)?;
    let progs = [programs::SNI_SOCKOPS, programs::SNI_MSG];
    inspect(&pins, &["192.0.2.1"])?;
    let (other, other_per) = run(&mut dp, &cg, &progs)?;
    inspect(&pins, &["127.0.0.1"])?;
    let (inspected, per) = run(&mut dp, &cg, &progs)?;
    let pct = |x: f64| 100.0 * (base - x) / x.max(1.0);
    r.line(format!("- no enforcement, run 1: {a1:.0} connects/s"));
    r.line(format!(
        "- no enforcement, run 2 (A/A): {a2:.0} connects/s; A/A noise {:.1} %",
        100.0 * (a1 - a2).abs() / base
    ));
    r.line(format!(
        "- enforcer, destination not inspected: {other:.0} connects/s, overhead {:+.1} %",
        pct(other)
    ));
    r.line(format!(
        "- enforcer, destination inspected: {inspected:.0} connects/s, overhead {:+.1} %; \
         {:+.1} µs per connection against not inspected",
        pct(inspected),
        1e6 / inspected.max(1.0) - 1e6 / other.max(1.0)
    ));
    for (label, list) in [("not inspected", &other_per), ("inspected", &per)] {
        let text: Vec<String> = list
            .iter()
            .map(|(p, ns, runs)| format!("`{p}` {ns:.0} ns/run ({runs} runs)"))
            .collect();
        r.line(format!("- in place, {label}: {}", text.join(", ")));
    }
    Ok(())
}
