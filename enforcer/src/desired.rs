//! The desired kernel state as pure data: policy → the contents of every
//! verdict map, each entry carrying the id of the rule that put it there.
//! No root, no kernel: unit-tested as is.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use enforcer_common::{v4_key, v6_key};
use ipnet::IpNet;

use crate::policy::{DomainPattern, Policy};

pub use crate::resolve::ResolvedAddrs;
pub use crate::rules::{Action, Rule, RuleTable, Target};

/// A trie key: prefix length and the address in map byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix<A> {
    pub len: u32,
    pub addr: A,
}

pub type V4 = u32;
pub type V6 = [u32; 4];

/// The contents of every map the controller owns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub deny_v4: BTreeMap<V4, u32>,
    pub deny_v6: BTreeMap<V6, u32>,
    pub deny_lpm_v4: BTreeMap<Prefix<V4>, u32>,
    pub deny_lpm_v6: BTreeMap<Prefix<V6>, u32>,
    pub allow_lpm_v4: BTreeMap<Prefix<V4>, u32>,
    pub allow_lpm_v6: BTreeMap<Prefix<V6>, u32>,
}

impl Desired {
    pub fn len(&self) -> usize {
        self.deny_v4.len()
            + self.deny_v6.len()
            + self.deny_lpm_v4.len()
            + self.deny_lpm_v6.len()
            + self.allow_lpm_v4.len()
            + self.allow_lpm_v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Compiles a policy and the current answers for its names; the rule
/// table is derived from the policy (`crate::rules`: ids follow content).
/// Host routes (/32, /128) of bans and every resolved address go to the
/// exact hash maps, the rest to the tries; resolved addresses of allowed
/// names become host-route exceptions. When two rules cover the same key,
/// the first one in policy order keeps it: deny CIDRs, deny domains, allow
/// CIDRs, allow domains (then the rules with a port, whose maps are built
/// from the rule table by `crate::portmaps`).
pub fn compile(policy: &Arc<Policy>, resolved: &ResolvedAddrs) -> (Desired, RuleTable) {
    let rules = RuleTable::new(policy.clone());
    let mut d = Desired::default();
    let mut ids = (0..rules.len()).map(|place| rules.id_at(place));
    let mut next = || ids.next().expect("one id per rule");
    for entry in &policy.deny.cidrs {
        d.deny_net(entry.value, next());
    }
    for entry in &policy.deny.domains {
        let id = next();
        // A shared name's addresses are inspected (`bpf::sni`), not banned.
        if policy.deny.is_shared(&entry.value) {
            continue;
        }
        for addr in exact_addrs(&entry.value, resolved) {
            d.deny_net(IpNet::from(addr.to_canonical()), id);
        }
    }
    for entry in &policy.allow.cidrs {
        d.allow_net(entry.value, next());
    }
    for entry in &policy.allow.domains {
        let id = next();
        for addr in exact_addrs(&entry.value, resolved) {
            d.allow_net(IpNet::from(addr.to_canonical()), id);
        }
    }
    (d, rules)
}

/// The addresses the daemon resolved for an exact name rule; a wildcard has
/// none here (its subdomains are learned from answers in the kernel).
fn exact_addrs<'a>(
    pattern: &DomainPattern,
    resolved: &'a ResolvedAddrs,
) -> impl Iterator<Item = &'a IpAddr> {
    let name = match pattern {
        DomainPattern::Exact(name) => Some(name.as_str()),
        DomainPattern::Wildcard(_) | DomainPattern::LabelTail(_) => None,
    };
    name.and_then(|n| resolved.get(n)).into_iter().flatten()
}

/// The names whose addresses the policy needs, in order: the name of each
/// exact domain rule (deny first).
pub fn names_to_resolve(policy: &Policy) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    // A set, not `names.contains`: 10k names made that 10^8 comparisons.
    let mut seen = std::collections::HashSet::new();
    for d in policy
        .deny
        .domain_values()
        .chain(policy.allow.domain_values())
    {
        // A wildcard (`*.` or `*-`) is enforced on the answers
        // applications get (the in-kernel DNS program); its apex is
        // another name and is not banned in its stead.
        if !matches!(d, DomainPattern::Exact(_)) {
            continue;
        }
        if seen.insert(d.resolvable()) {
            names.push(d.resolvable().to_owned());
        }
    }
    // Names with a port: their addresses go to the port tries.
    for entry in policy.deny.ports.iter().chain(&policy.allow.ports) {
        if let crate::policy::PortTarget::Domain(DomainPattern::Exact(name)) = &entry.value.target
            && seen.insert(name)
        {
            names.push(name.clone());
        }
    }
    names
}

impl Desired {
    fn deny_net(&mut self, net: IpNet, id: u32) {
        match (net.addr(), net.prefix_len()) {
            (IpAddr::V4(a), 32) => {
                self.deny_v4.entry(v4_key(a.octets())).or_insert(id);
            }
            (IpAddr::V6(a), 128) => {
                self.deny_v6.entry(v6_key(a.octets())).or_insert(id);
            }
            (IpAddr::V4(a), len) => {
                let key = Prefix {
                    len: len.into(),
                    addr: v4_key(a.octets()),
                };
                self.deny_lpm_v4.entry(key).or_insert(id);
            }
            (IpAddr::V6(a), len) => {
                let key = Prefix {
                    len: len.into(),
                    addr: v6_key(a.octets()),
                };
                self.deny_lpm_v6.entry(key).or_insert(id);
            }
        }
    }

    fn allow_net(&mut self, net: IpNet, id: u32) {
        let len = u32::from(net.prefix_len());
        match net.addr() {
            IpAddr::V4(a) => {
                let key = Prefix {
                    len,
                    addr: v4_key(a.octets()),
                };
                self.allow_lpm_v4.entry(key).or_insert(id);
            }
            IpAddr::V6(a) => {
                let key = Prefix {
                    len,
                    addr: v6_key(a.octets()),
                };
                self.allow_lpm_v6.entry(key).or_insert(id);
            }
        }
    }
}

/// What a verdict would be for `addr` under `desired`, computed the way the
/// kernel programs do (exact, then longest prefix; an allow exception wins).
/// Returns the matching ban's rule id and, if any, the exception's. A model
/// for the tests of `compile`; `check` asks the kernel maps themselves
/// (`bpf::judge`).
#[cfg(test)]
fn lookup(desired: &Desired, addr: IpAddr) -> Option<(u32, Option<u32>)> {
    fn longest<A: Copy>(
        map: &BTreeMap<Prefix<A>, u32>,
        covers: impl Fn(&Prefix<A>) -> bool,
    ) -> Option<u32> {
        map.iter()
            .filter(|(k, _)| covers(k))
            .max_by_key(|(k, _)| k.len)
            .map(|(_, id)| *id)
    }
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match addr {
        IpAddr::V4(a) => {
            let covers = |k: &Prefix<V4>| {
                let net = IpNet::new(
                    IpAddr::V4(enforcer_common::v4_octets(k.addr).into()),
                    k.len as u8,
                );
                net.is_ok_and(|n| n.contains(&IpAddr::V4(a)))
            };
            let ban = desired
                .deny_v4
                .get(&v4_key(a.octets()))
                .copied()
                .or_else(|| longest(&desired.deny_lpm_v4, covers))?;
            Some((ban, longest(&desired.allow_lpm_v4, covers)))
        }
        IpAddr::V6(a) => {
            let covers = |k: &Prefix<V6>| {
                let net = IpNet::new(
                    IpAddr::V6(enforcer_common::v6_octets(k.addr).into()),
                    k.len as u8,
                );
                net.is_ok_and(|n| n.contains(&IpAddr::V6(a)))
            };
            let ban = desired
                .deny_v6
                .get(&v6_key(a.octets()))
                .copied()
                .or_else(|| longest(&desired.deny_lpm_v6, covers));
            match ban {
                Some(ban) => Some((ban, longest(&desired.allow_lpm_v6, covers))),
                // As the programs do: no v6 rule, so a NAT64 (64:ff9b::/96)
                // or 6to4 address is judged by the IPv4 address it carries.
                // Operator prefixes are not known here.
                None => {
                    let e = enforcer_common::embedded_v4(v6_key(a.octets()));
                    if e.via == 0 {
                        return None;
                    }
                    lookup(desired, IpAddr::from(enforcer_common::v4_octets(e.v4)))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::policy::Source;

    fn policy(json: &str) -> Arc<Policy> {
        Arc::new(Policy::parse(json, Source::File("t.json".into())).unwrap())
    }

    fn compile(p: &Arc<Policy>) -> (Desired, RuleTable) {
        compile_with(p, &ResolvedAddrs::new())
    }

    /// `super::compile` with each rule id in the maps replaced by the
    /// rule's place in policy order, counted from 1: which rule holds a
    /// key is what these tests are about, and places read better than
    /// content hashes (`crate::rules` tests the ids).
    fn compile_with(p: &Arc<Policy>, resolved: &ResolvedAddrs) -> (Desired, RuleTable) {
        let (d, rules) = super::compile(p, resolved);
        let place: std::collections::HashMap<u32, u32> =
            rules.iter().zip(1..).map(|(r, n)| (r.id, n)).collect();
        fn renumber<K: Ord + Copy>(
            m: &mut BTreeMap<K, u32>,
            place: &std::collections::HashMap<u32, u32>,
        ) {
            for id in m.values_mut() {
                *id = place[id];
            }
        }
        let mut d = d;
        renumber(&mut d.deny_v4, &place);
        renumber(&mut d.deny_v6, &place);
        renumber(&mut d.deny_lpm_v4, &place);
        renumber(&mut d.deny_lpm_v6, &place);
        renumber(&mut d.allow_lpm_v4, &place);
        renumber(&mut d.allow_lpm_v6, &place);
        (d, rules)
    }

    /// The rule at place `n` (from 1).
    fn nth(rules: &RuleTable, n: usize) -> Rule<'_> {
        rules.iter().nth(n - 1).unwrap()
    }

    use crate::resolve::answers::resolved_addrs as answers;

    #[test]
    fn resolved_names_become_exact_entries_with_their_rule() {
        let p = policy(
            r#"{"version":1,"deny":{"cidrs":["10.0.0.0/8"],"domains":["api.x.test","*.y.test"]},
                "allow":{"domains":["llm.corp.test"]}}"#,
        );
        let resolved = answers(&[
            ("api.x.test", &["1.2.3.4", "2001:db8::1", "::ffff:5.6.7.8"]),
            ("y.test", &["9.9.9.9"]),
            ("llm.corp.test", &["10.1.2.3"]),
        ]);
        let (d, rules) = compile_with(&p, &resolved);
        assert_eq!(d.deny_v4.get(&v4_key([1, 2, 3, 4])), Some(&2));
        assert_eq!(
            d.deny_v4.get(&v4_key([5, 6, 7, 8])),
            Some(&2),
            "v4-mapped answers are v4"
        );
        assert_eq!(
            d.deny_v4.get(&v4_key([9, 9, 9, 9])),
            None,
            "a wildcard's apex is another name"
        );
        assert_eq!(d.deny_v6.len(), 1);
        assert_eq!(
            d.allow_lpm_v4.get(&Prefix {
                len: 32,
                addr: v4_key([10, 1, 2, 3])
            }),
            Some(&4)
        );
        let api = nth(&rules, 2);
        assert_eq!(
            api.to_string(),
            format!("#{} deny api.x.test (t.json: deny.domains[0])", api.id)
        );
        // Inside the banned /8, the internal model endpoint is excepted.
        assert_eq!(lookup(&d, "10.1.2.3".parse().unwrap()), Some((1, Some(4))));
        assert_eq!(names_to_resolve(&p), ["api.x.test", "llm.corp.test"]);
    }

    #[test]
    fn host_routes_go_to_hash_maps_and_ranges_to_tries() {
        let p = policy(
            r#"{"version":1,"deny":{"cidrs":["1.2.3.4/32","10.0.0.0/8","::1/128","2607:6bc0::/48"]},
                "allow":{"cidrs":["10.20.0.0/16","fd00::/8"]}}"#,
        );
        let (d, rules) = compile(&p);
        assert_eq!(d.deny_v4.get(&v4_key([1, 2, 3, 4])), Some(&1));
        assert_eq!(
            d.deny_lpm_v4.get(&Prefix {
                len: 8,
                addr: v4_key([10, 0, 0, 0])
            }),
            Some(&2)
        );
        assert_eq!(d.deny_v6.len(), 1);
        assert_eq!(d.deny_lpm_v6.len(), 1);
        assert_eq!(d.allow_lpm_v4.len(), 1);
        assert_eq!(d.allow_lpm_v6.len(), 1);
        assert_eq!(d.len(), 6);
        assert_eq!(rules.len(), 6);
        let rule = nth(&rules, 5);
        assert_eq!(rule.action, Action::Allow);
        assert_eq!(*rule.origin, "t.json: allow.cidrs[0]");
        assert_eq!(rules.get(rule.id), Some(rule));
        assert!(rules.get(0).is_none());
    }

    #[test]
    fn duplicates_are_one_rule_and_overlaps_keep_the_first() {
        let p = policy(
            r#"{"version":1,"deny":{"cidrs":["1.2.3.4","1.2.3.4/32"],"domains":["a.test"]}}"#,
        );
        let resolved = answers(&[("a.test", &["1.2.3.4", "1.2.3.5"])]);
        let (d, rules) = compile_with(&p, &resolved);
        assert_eq!(rules.len(), 2, "the same network twice is one rule");
        assert_eq!(
            d.deny_v4.get(&v4_key([1, 2, 3, 4])),
            Some(&1),
            "the CIDR came first"
        );
        assert_eq!(d.deny_v4.get(&v4_key([1, 2, 3, 5])), Some(&2));
    }

    #[test]
    fn lookup_matches_the_kernel_order() {
        let p = policy(
            r#"{"version":1,"deny":{"cidrs":["10.0.0.0/8","10.1.0.0/16","10.9.9.9"]},
                "allow":{"cidrs":["10.1.2.0/24"]}}"#,
        );
        let (d, _) = compile(&p);
        assert_eq!(lookup(&d, "10.5.5.5".parse().unwrap()), Some((1, None)));
        assert_eq!(lookup(&d, "10.1.5.5".parse().unwrap()), Some((2, None)));
        assert_eq!(lookup(&d, "10.9.9.9".parse().unwrap()), Some((3, None)));
        assert_eq!(lookup(&d, "10.1.2.3".parse().unwrap()), Some((2, Some(4))));
        assert_eq!(
            lookup(&d, "::ffff:10.5.5.5".parse().unwrap()),
            Some((1, None))
        );
        assert_eq!(lookup(&d, "11.0.0.1".parse().unwrap()), None);
        // The NAT64 and 6to4 forms of a banned IPv4 address.
        assert_eq!(
            lookup(&d, "64:ff9b::a05:505".parse().unwrap()),
            Some((1, None))
        );
        assert_eq!(
            lookup(&d, "2002:a01:203::1".parse().unwrap()),
            Some((2, Some(4)))
        );
        assert_eq!(lookup(&d, "64:ff9b::b00:1".parse().unwrap()), None);
    }
}
