//! Section 6: the DNS program (`dns_ingress`), which runs on every packet
//! into the enforced cgroup: what a non-DNS packet pays, and what parsing
//! an answer costs, against a return-only cgroup_skb program.

use anyhow::{Context as _, Result};
use aya::programs::CgroupSkb;
use enforcer::{
    bpf::{Datapath, Pins, dnsnames},
    desired::compile,
    policy::{Policy, Source},
};
use enforcer_common::programs;
use enforcer_tests::{BpffsGuard, dnswire, frame};

use crate::{
    Report, raw,
    sections::{REPEAT, ROUNDS, floor_run, median_of_runs},
};

fn floor(frame: &[u8]) -> Result<f64> {
    let fd = raw::return_only(raw::PROG_TYPE_CGROUP_SKB, raw::ATTACH_CGROUP_INET_EGRESS, 1)?;
    floor_run(&fd, frame)
}

/// A policy banning `n` names (`name{i}.banned.test`) and `*.wild.test`.
fn policy(n: usize) -> Policy {
    let names: Vec<String> = (0..n)
        .map(|i| format!("\"name{i}.banned.test\""))
        .chain(std::iter::once("\"*.wild.test\"".to_owned()))
        .collect();
    Policy::parse(
        &format!(
            r#"{{"version": 1, "deny": {{"domains": [{}]}}}}"#,
            names.join(",")
        ),
        Source::Embedded,
    )
    .expect("bench policy")
}

pub fn dns_answers(r: &mut Report) -> Result<()> {
    r.line(format!(
        "The cgroup_skb ingress program `{}` run by BPF_PROG_TEST_RUN, {REPEAT} repeats, median of \
         {ROUNDS}; kernel-reported ns per run. It sees every packet into the enforced cgroup, so \
         the first row is what ordinary traffic pays. Answers are UDP from port 53; the banned ones \
         are learned (a map update per address, the same entry rewritten on every repeat). \
         Floor: a return-only cgroup_skb program.",
        programs::DNS_INGRESS
    ));
    r.line("");
    let not_dns = frame::ipv4_udp([192, 0, 2, 1], [192, 0, 2, 2], 8080, 40000, &[0; 64]);
    let many: Vec<u8> = (0..16u8)
        .flat_map(|i| dnswire::a_record([198, 51, 100, i]))
        .collect();
    let answer = |name: &str, an: u16, body: &[u8]| {
        frame::ipv4_udp(
            [192, 0, 2, 53],
            [192, 0, 2, 1],
            53,
            40000,
            &dnswire::message(name, an, body),
        )
    };
    let one = dnswire::a_record([198, 51, 100, 7]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("UDP, not DNS (every other packet)", not_dns.clone()),
        (
            "answer for an unlisted name, 1 A",
            answer("api.example.test", 1, &one),
        ),
        (
            "answer for a banned name, 1 A (learned)",
            answer("name7.banned.test", 1, &one),
        ),
        (
            "answer for a wildcard name 4 labels deep, 1 A",
            answer("a.b.c.wild.test", 1, &one),
        ),
        (
            "answer for a banned name, 16 A (learned)",
            answer("name7.banned.test", 16, &many),
        ),
    ];
    let floor_ns = floor(&not_dns)?;
    r.line("| names in policy | packet | ns | floor ns | ratio |");
    r.line("|---:|---|---:|---:|---:|");
    for n in [10usize, 10_000] {
        let bpffs = BpffsGuard::new("bd");
        let pins = Pins::new(bpffs.pins_dir());
        let mut dp = Datapath::load(&pins)?;
        let p = policy(n);
        let (_, rules) = compile(&std::sync::Arc::new(p.clone()), &Default::default());
        dnsnames::write_names(&pins, &rules)?;
        dnsnames::write_config(&pins, &p)?;
        let prog: &mut CgroupSkb = dp
            .ebpf_mut()
            .program_mut(programs::DNS_INGRESS)
            .context("dns program")?
            .try_into()?;
        for (what, frame) in &cases {
            let ns = median_of_runs(prog, frame)?;
            r.line(format!(
                "| {n} | {what} | {ns:.0} | {floor_ns:.0} | {:.1} |",
                ns / floor_ns
            ));
        }
        drop(dp);
    }
    Ok(())
}
