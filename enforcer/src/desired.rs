//! The desired kernel state as pure data: policy → the contents of every
//! verdict map, each entry carrying the id of the rule that put it there.
//! No root, no kernel: unit-tested as is.

use std::{collections::BTreeMap, fmt, net::IpAddr};

use enforcer_common::{v4_key, v6_key};
use ipnet::IpNet;

use crate::policy::{Policy, Source};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Deny,
    Allow,
}

/// One policy entry, as events and `check` name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: u32,
    pub action: Action,
    pub net: IpNet,
    /// Where it was written: `<file>: deny.cidrs[3]`.
    pub origin: String,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.action {
            Action::Deny => "deny",
            Action::Allow => "allow",
        };
        write!(f, "#{} {verb} {} ({})", self.id, self.net, self.origin)
    }
}

/// Rule ids start at 1; 0 means "no rule" in events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleTable {
    rules: Vec<Rule>,
}

impl RuleTable {
    pub fn get(&self, id: u32) -> Option<&Rule> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.rules.get(index)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn push(&mut self, action: Action, net: IpNet, origin: String) -> u32 {
        let id = u32::try_from(self.rules.len() + 1).expect("fewer than 2^32 rules");
        self.rules.push(Rule {
            id,
            action,
            net,
            origin,
        });
        id
    }
}

/// Compiles the CIDR rules of a policy. Host routes (/32, /128) of bans go
/// to the exact hash maps, the rest to the tries. When two rules cover the
/// same key, the first one written keeps it.
pub fn compile(policy: &Policy) -> (Desired, RuleTable) {
    let mut desired = Desired::default();
    let mut rules = RuleTable::default();
    let file = match &policy.source {
        Source::File(path) => path.display().to_string(),
        Source::Embedded => "embedded".to_owned(),
    };
    for (i, net) in policy.deny.cidrs.iter().enumerate() {
        let id = rules.push(Action::Deny, *net, format!("{file}: deny.cidrs[{i}]"));
        match (net.addr(), net.prefix_len()) {
            (IpAddr::V4(a), 32) => {
                desired.deny_v4.entry(v4_key(a.octets())).or_insert(id);
            }
            (IpAddr::V6(a), 128) => {
                desired.deny_v6.entry(v6_key(a.octets())).or_insert(id);
            }
            (IpAddr::V4(a), len) => {
                let key = Prefix {
                    len: len.into(),
                    addr: v4_key(a.octets()),
                };
                desired.deny_lpm_v4.entry(key).or_insert(id);
            }
            (IpAddr::V6(a), len) => {
                let key = Prefix {
                    len: len.into(),
                    addr: v6_key(a.octets()),
                };
                desired.deny_lpm_v6.entry(key).or_insert(id);
            }
        }
    }
    for (i, net) in policy.allow.cidrs.iter().enumerate() {
        let id = rules.push(Action::Allow, *net, format!("{file}: allow.cidrs[{i}]"));
        let len = u32::from(net.prefix_len());
        match net.addr() {
            IpAddr::V4(a) => {
                let key = Prefix {
                    len,
                    addr: v4_key(a.octets()),
                };
                desired.allow_lpm_v4.entry(key).or_insert(id);
            }
            IpAddr::V6(a) => {
                let key = Prefix {
                    len,
                    addr: v6_key(a.octets()),
                };
                desired.allow_lpm_v6.entry(key).or_insert(id);
            }
        }
    }
    (desired, rules)
}

/// What a verdict would be for `addr` under `desired`, computed the way the
/// kernel programs do (exact, then longest prefix; an allow exception wins).
/// Returns the matching ban's rule id and, if any, the exception's.
pub fn lookup(desired: &Desired, addr: IpAddr) -> Option<(u32, Option<u32>)> {
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
                .or_else(|| longest(&desired.deny_lpm_v6, covers))?;
            Some((ban, longest(&desired.allow_lpm_v6, covers)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> Policy {
        Policy::parse(json, Source::File("t.json".into())).unwrap()
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
        let rule = rules.get(5).unwrap();
        assert_eq!(rule.action, Action::Allow);
        assert_eq!(rule.origin, "t.json: allow.cidrs[0]");
        assert!(rules.get(0).is_none() && rules.get(7).is_none());
    }

    #[test]
    fn duplicates_keep_the_first_rule() {
        let p = policy(r#"{"version":1,"deny":{"cidrs":["1.2.3.4","1.2.3.4/32"]}}"#);
        let (d, rules) = compile(&p);
        assert_eq!(d.deny_v4.values().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(rules.len(), 2);
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
    }
}
