//! Shared names in the kernel: attaching the inspection programs, and the
//! addresses the daemon resolved for shared names (`INSPECT_V4/V6`).
//!
//! The sock_ops program is a cgroup program like the others (pinned link).
//! The sk_msg verdict is attached to the pinned `SNI_SOCKS` sockhash, not
//! to a cgroup: the kernel keeps it there for as long as the map lives, so
//! it goes on judging when the daemon exits or dies, and a new instance's
//! attach replaces it.

use std::{collections::BTreeMap, fs::File, net::IpAddr};

use aya::{
    Ebpf,
    maps::{MapData, SockHash},
    programs::{CgroupAttachMode, ProgramError, SkMsg, SockOps, links::FdLink},
};
use enforcer_common::{CONFIG_SNI, maps as names, programs, v4_key, v6_key};

use super::{
    DatapathError,
    datapath::{link_error, program_error},
    pinned::make_exactly,
    pins::Pins,
    writer::WriteError,
};
use crate::{
    desired::{Action, ResolvedAddrs, RuleTable, Target},
    policy::{DomainPattern, Policy},
};

/// Attaches the sk_msg verdict to `SNI_SOCKS`, then the sock_ops program
/// to `cgroup` (in that order: a socket put into the map finds its verdict
/// program there). Returns the sock_ops link, to be pinned.
pub fn attach(ebpf: &mut Ebpf, cgroup: &File) -> Result<FdLink, DatapathError> {
    let msg_err = program_error(programs::SNI_MSG);
    let map = ebpf
        .map(names::SNI_SOCKS)
        .ok_or_else(|| DatapathError::Object(format!("no map {}", names::SNI_SOCKS)))?;
    let socks: SockHash<&MapData, u64> = SockHash::try_from(map)
        .map_err(|e| DatapathError::Object(format!("{}: {e}", names::SNI_SOCKS)))?;
    let map_fd = socks.fd().try_clone().map_err(|e| {
        DatapathError::Object(format!("{}: duplicating its fd: {e}", names::SNI_SOCKS))
    })?;
    let msg: &mut SkMsg = ebpf
        .program_mut(programs::SNI_MSG)
        .ok_or_else(|| msg_err(ProgramError::NotLoaded))?
        .try_into()
        .map_err(msg_err)?;
    let id = msg.attach(&map_fd).map_err(msg_err)?;
    let link = msg.take_link(id).map_err(msg_err)?;
    // The attachment belongs to the map from now on: dropping the link
    // would detach it when this process exits.
    std::mem::forget(link);

    let ops_err = program_error(programs::SNI_SOCKOPS);
    let ops: &mut SockOps = ebpf
        .program_mut(programs::SNI_SOCKOPS)
        .ok_or_else(|| ops_err(ProgramError::NotLoaded))?
        .try_into()
        .map_err(ops_err)?;
    let id = ops
        .attach(cgroup, CgroupAttachMode::Single)
        .map_err(ops_err)?;
    let link = ops.take_link(id).map_err(ops_err)?;
    link.try_into().map_err(link_error(programs::SNI_SOCKOPS))
}

/// Rule id of each shared banned name, for `NAME_SHARED`.
pub fn shared_rules(policy: &Policy, rules: &RuleTable) -> BTreeMap<u32, u32> {
    rules
        .iter()
        .filter(|r| r.action == Action::Deny)
        .filter_map(|r| match &r.target {
            Target::Domain(d) if policy.deny.is_shared(d) => Some((r.id, 1)),
            _ => None,
        })
        .collect()
}

/// The rule ids of the shared banned names (`NameIndex` leaves them out).
pub fn shared_ids(policy: &Policy, rules: &RuleTable) -> std::collections::BTreeSet<u32> {
    shared_rules(policy, rules).into_keys().collect()
}

/// The addresses the daemon resolved for shared banned names, by family,
/// each with its rule: the `INSPECT_V4/V6` contents.
pub type InspectAddrs = (BTreeMap<u32, u32>, BTreeMap<[u32; 4], u32>);

/// `lookup`: the addresses a name stands for now.
pub fn inspect_addrs(
    policy: &Policy,
    rules: &RuleTable,
    lookup: impl Fn(&str) -> Option<Vec<IpAddr>>,
) -> InspectAddrs {
    let mut v4 = BTreeMap::new();
    let mut v6 = BTreeMap::new();
    for (id, _) in shared_rules(policy, rules) {
        let Some(Target::Domain(DomainPattern::Exact(name))) = rules.get(id).map(|r| r.target)
        else {
            continue;
        };
        for addr in lookup(name).into_iter().flatten() {
            match addr.to_canonical() {
                IpAddr::V4(a) => v4.entry(v4_key(a.octets())).or_insert(id),
                IpAddr::V6(a) => v6.entry(v6_key(a.octets())).or_insert(id),
            };
        }
    }
    (v4, v6)
}

/// Makes `NAME_SHARED` and `INSPECT_V4/V6` what the policy and the current
/// answers say: inspections are added before bans are lifted elsewhere.
pub fn write(
    pins: &Pins,
    policy: &Policy,
    rules: &RuleTable,
    resolved: &ResolvedAddrs,
) -> Result<(), WriteError> {
    make_exactly(
        pins,
        names::NAME_SHARED,
        &shared_rules(policy, rules),
        || Ok(()),
    )?;
    super::stats::set_config(pins, CONFIG_SNI, policy.shared_names.config())?;
    let proxies: BTreeMap<u16, u32> = policy
        .shared_names
        .proxy_ports
        .iter()
        .map(|&p| (p, 1))
        .collect();
    make_exactly(pins, names::SNI_PROXY_PORTS, &proxies, || Ok(()))?;
    write_inspect(pins, policy, rules, |n| {
        resolved.get(n).map(|a| a.iter().copied().collect())
    })
}

/// Makes `INSPECT_V4/V6` the addresses `lookup` gives the shared names
/// (the resolver's path: only these maps change with an answer).
pub fn write_inspect(
    pins: &Pins,
    policy: &Policy,
    rules: &RuleTable,
    lookup: impl Fn(&str) -> Option<Vec<IpAddr>>,
) -> Result<(), WriteError> {
    let (v4, v6) = inspect_addrs(policy, rules, lookup);
    make_exactly(pins, names::INSPECT_V4, &v4, || Ok(()))?;
    make_exactly(pins, names::INSPECT_V6, &v6, || Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        desired::compile,
        policy::{Policy, Source},
    };
    use std::collections::BTreeSet;

    #[test]
    fn a_shared_names_addresses_are_inspected_and_never_banned() {
        let p = std::sync::Arc::new(Policy::parse(
            r#"{"version": 1, "deny": {"domains": ["own.test",
                {"name": "front.test", "shared": true}, {"name": "*.front.test", "shared": true}]}}"#,
            Source::Embedded,
        ).unwrap());
        let mut resolved = ResolvedAddrs::new();
        resolved.insert(
            "own.test".into(),
            ["192.0.2.1".parse().unwrap()].into_iter().collect(),
        );
        resolved.insert(
            "front.test".into(),
            [
                "198.51.100.7".parse().unwrap(),
                "2001:db8::7".parse().unwrap(),
            ]
            .into_iter()
            .collect(),
        );
        let (desired, rules) = compile(&p, &resolved);
        assert_eq!(
            desired.deny_v4.keys().copied().collect::<Vec<_>>(),
            [v4_key([192, 0, 2, 1])]
        );
        assert!(desired.deny_v6.is_empty());
        let (v4, v6) = inspect_addrs(&p, &rules, |n| {
            resolved.get(n).map(|a| a.iter().copied().collect())
        });
        let id = |t: &str| rules.id_of(t).unwrap();
        assert_eq!(
            v4.into_iter().collect::<Vec<_>>(),
            [(v4_key([198, 51, 100, 7]), id("front.test"))]
        );
        assert_eq!(v6.len(), 1);
        // The wildcard's rule is shared too: what the kernel learns for it
        // is inspected.
        assert_eq!(
            shared_rules(&p, &rules)
                .keys()
                .copied()
                .collect::<BTreeSet<_>>(),
            BTreeSet::from([id("front.test"), id("*.front.test")])
        );
    }
}
