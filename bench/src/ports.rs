//! Section 7: what rules with a port cost traffic that matches no rule
//! (the address-only path). The same loaded object is judged under policy
//! A (1000 exact address bans, no port rule), then B (A plus `*:853` and
//! 1000 rules with a port), then A again: A→A is the noise, A→B the cost.

use anyhow::{Context as _, Result};
use enforcer::{
    bpf::{CgroupHook, Datapath, Pins, ports, writer::MapWriter},
    desired::compile,
    policy::{Policy, Source},
    portmaps,
};
use enforcer_common::programs;
use enforcer_tests::{BpffsGuard, CgroupGuard, NetnsGuard, frame};

use crate::{
    Report, raw,
    sections::{REPEAT, ROUNDS, floor_run, prog_stats, run_connect_child, skb_run, xdp_run},
};

/// 1000 exact bans in 100.64.0.0/16; with `ports`, also `*:853`, 500
/// addresses on 443 (both protocols, as DoH endpoints are written) and 500
/// on ports 1000-1499 (TCP).
fn policy(ports: bool) -> Policy {
    let mut cidrs: Vec<String> = (0..1000u32)
        .map(|i| format!("\"100.64.{}.{}\"", i / 250, i % 250 + 1))
        .collect();
    if ports {
        cidrs.push("\"*:853\"".into());
        cidrs.extend((0..500u32).map(|i| format!("\"100.96.{}.{}:443\"", i / 250, i % 250 + 1)));
        cidrs.extend(
            (0..500u32).map(|i| format!("\"100.97.{}.{}:{}/tcp\"", i / 250, i % 250 + 1, 1000 + i)),
        );
    }
    Policy::parse(
        &format!(
            r#"{{"version": 1, "deny": {{"cidrs": [{}]}}}}"#,
            cidrs.join(",")
        ),
        Source::Embedded,
    )
    .expect("bench policy")
}

fn apply(pins: &Pins, p: &Policy) -> Result<()> {
    let (desired, rules) = compile(&std::sync::Arc::new(p.clone()), &Default::default());
    MapWriter::open(pins)?.apply(&desired)?;
    ports::write(pins, &portmaps::build(&rules, &Default::default()))?;
    Ok(())
}

/// ns per `connect4` run over real connects to an allowed loopback
/// listener (an ephemeral port: no rule, gate closed), from bpf_stats.
fn connect4_ns(dp: &mut Datapath, cg: &CgroupGuard) -> Result<f64> {
    let before = prog_stats(dp, programs::CONNECT4).context("connect4 stats")?;
    let ns = NetnsGuard::new("bq");
    run_connect_child(cg.path(), "allowed", &ns)?;
    let after = prog_stats(dp, programs::CONNECT4).context("connect4 stats")?;
    Ok((after.0 - before.0) as f64 / (after.1 - before.1).max(1) as f64)
}

pub fn port_rules(r: &mut Report) -> Result<()> {
    r.line(format!(
        "Traffic that matches no rule, judged under policy A (1000 exact v4 bans, no rule with a \
         port), B (A + `*:853` + 500 addresses on 443 + 500 addresses on ports 1000-1499/tcp), then \
         A again (A/A control), on one loaded object. XDP and cgroup_skb egress: BPF_PROG_TEST_RUN \
         on a UDP frame to a miss address, {REPEAT} repeats, median of {ROUNDS}, kernel ns per run; \
         port 40000 has no rule (the gate is closed), port 443 has rules for other addresses (the \
         gate is open: one port-trie lookup that misses). connect4: real TCP connects to an allowed \
         loopback listener on an ephemeral port (section 3's child), in-place ns per run from \
         kernel.bpf_stats_enabled. Floor: a return-only program of the same type."
    ));
    r.line("");
    let bpffs = BpffsGuard::new("bq");
    let pins = Pins::new(bpffs.pins_dir());
    let mut dp = Datapath::load(&pins)?;
    let cg = CgroupGuard::new("bq");
    dp.attach_cgroup(cg.path(), &CgroupHook::ALL)?;
    let (a, b) = (policy(false), policy(true));
    let src = [192, 0, 2, 1];
    let dst = [198, 51, 100, 1];
    let v6 = ("2001:db8:ffff::1", "2001:db8:fffe::1");
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "v4, port 40000",
            frame::ipv4_udp(src, dst, 50000, 40000, &[]),
        ),
        ("v4, port 443", frame::ipv4_udp(src, dst, 50000, 443, &[])),
        (
            "v6, port 40000",
            frame::ipv6_udp(v6.0, v6.1, 50000, 40000, &[]),
        ),
        ("v6, port 443", frame::ipv6_udp(v6.0, v6.1, 50000, 443, &[])),
    ];
    let xdp_floor = raw::return_only(raw::PROG_TYPE_XDP, raw::ATTACH_XDP, 1)?;
    let skb_floor = raw::return_only(raw::PROG_TYPE_CGROUP_SKB, raw::ATTACH_CGROUP_INET_EGRESS, 1)?;
    // [policy A, B, A again] per program and case.
    let mut rows = Vec::new();
    let mut connect = Vec::new();
    for p in [&a, &b, &a] {
        apply(&pins, p)?;
        let mut per_case = Vec::new();
        for (_, f) in &cases {
            per_case.push((xdp_run(&mut dp, f)?, skb_run(&mut dp, f)?));
        }
        rows.push(per_case);
        connect.push(connect4_ns(&mut dp, &cg)?);
    }
    r.line("| program | traffic | A ns | B ns | A again ns | B − A ns | A/A ns | floor ns |");
    r.line("|---|---|---:|---:|---:|---:|---:|---:|");
    for (i, (what, f)) in cases.iter().enumerate() {
        let xf = floor_run(&xdp_floor, f)?;
        let sf = floor_run(&skb_floor, f)?;
        for (name, pick, floor) in [("xdp", 0usize, xf), ("skb egress", 1usize, sf)] {
            let get = |k: usize| {
                if pick == 0 {
                    rows[k][i].0
                } else {
                    rows[k][i].1
                }
            };
            let (a1, bb, a2) = (get(0), get(1), get(2));
            r.line(format!(
                "| {name} | {what} | {a1:.0} | {bb:.0} | {a2:.0} | {:+.0} | {:+.0} | {floor:.0} |",
                bb - (a1 + a2) / 2.0,
                a2 - a1
            ));
        }
    }
    let (c1, cb, c2) = (connect[0], connect[1], connect[2]);
    r.line(format!(
        "| connect4 (in place) | TCP, loopback, ephemeral port | {c1:.0} | {cb:.0} | {c2:.0} | {:+.0} | {:+.0} | – |",
        cb - (c1 + c2) / 2.0,
        c2 - c1
    ));
    r.line("");
    r.line(
        "B − A is B against the mean of both A runs; an A/A difference as large as B − A means the \
         cost is within the noise.",
    );
    drop(dp);
    Ok(())
}
