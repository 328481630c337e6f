//! The resolver's incremental path: which map entries the names put there,
//! kept per name, so that a changed answer becomes a patch of the few
//! host routes it touches instead of compiling and diffing the whole
//! state (at 1M entries that was ~100 ms per answer).
//!
//! The result is what `compile` would give for those keys: a key takes the
//! rule that names it first in policy order (ids follow content, not
//! order: `crate::rules`). A CIDR host route of the policy comes before
//! every domain rule, so a key such a rule holds is left as it is. Pure:
//! unit-tested against `compile`.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
};

use enforcer_common::{v4_key, v6_key};
use ipnet::IpNet;

use crate::{
    bpf::writer::{Held, Patch},
    desired::{Action, Prefix, ResolvedAddrs, RuleTable, Target},
    mapdiff::MapDiff,
    policy::DomainPattern,
};

/// A rule's place in policy order and its id.
type Ranked = (u32, u32);

/// Per name: its rule ids and the addresses in the maps for it; per
/// address: the names that hold it.
#[derive(Debug, Default)]
pub struct NameIndex {
    /// The first deny and the first allow rule of each exact name, each
    /// as (place in policy order, id): the place decides between names.
    ids: HashMap<String, (Option<Ranked>, Option<Ranked>)>,
    applied: HashMap<String, BTreeSet<IpAddr>>,
    holders: HashMap<IpAddr, BTreeSet<String>>,
}

impl NameIndex {
    /// The index of `rules` with `resolved` in the maps.
    #[cfg(test)]
    pub fn build(rules: &RuleTable, resolved: &ResolvedAddrs) -> NameIndex {
        NameIndex::build_except(rules, resolved, &BTreeSet::new())
    }

    /// As `build`, leaving out the rules `skip` (shared names: their
    /// addresses are inspected, never in the address maps).
    pub fn build_except(
        rules: &RuleTable,
        resolved: &ResolvedAddrs,
        skip: &BTreeSet<u32>,
    ) -> NameIndex {
        let mut index = NameIndex::default();
        for (place, rule) in rules.iter().enumerate() {
            let Target::Domain(DomainPattern::Exact(name)) = rule.target else {
                continue;
            };
            if skip.contains(&rule.id) {
                continue;
            }
            let e = index.ids.entry(name.clone()).or_default();
            let slot = match rule.action {
                Action::Deny => &mut e.0,
                Action::Allow => &mut e.1,
            };
            slot.get_or_insert((place as u32, rule.id));
        }
        let mut touched = BTreeSet::new();
        for (name, addrs) in resolved {
            index.update(name, addrs, &mut touched);
        }
        index
    }

    /// `name` now stands for `addrs`; the addresses whose holders changed
    /// are added to `touched`. A name no rule names is ignored.
    pub fn update(&mut self, name: &str, addrs: &BTreeSet<IpAddr>, touched: &mut BTreeSet<IpAddr>) {
        if !self.ids.contains_key(name) {
            return;
        }
        let new: BTreeSet<IpAddr> = addrs.iter().map(IpAddr::to_canonical).collect();
        let old = self.applied.remove(name).unwrap_or_default();
        for gone in old.difference(&new) {
            if let Some(h) = self.holders.get_mut(gone) {
                h.remove(name);
                if h.is_empty() {
                    self.holders.remove(gone);
                }
            }
            touched.insert(*gone);
        }
        for added in new.difference(&old) {
            self.holders
                .entry(*added)
                .or_default()
                .insert(name.to_owned());
            touched.insert(*added);
        }
        if !new.is_empty() {
            self.applied.insert(name.to_owned(), new);
        }
    }

    /// The rule ids the names give `addr`: (deny, allow).
    fn wanted(&self, addr: &IpAddr) -> (Option<u32>, Option<u32>) {
        let mut out = (None, None);
        for name in self.holders.get(addr).into_iter().flatten() {
            let (deny, allow) = self.ids.get(name).copied().unwrap_or_default();
            out.0 = min_some(out.0, deny);
            out.1 = min_some(out.1, allow);
        }
        (out.0.map(|(_, id)| id), out.1.map(|(_, id)| id))
    }
}

fn min_some(a: Option<Ranked>, b: Option<Ranked>) -> Option<Ranked> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether rule `id` is a CIDR rule of `action` for exactly the host
/// route `host`: such a key is the policy's, not the names'.
fn static_rule(rules: &RuleTable, id: u32, action: Action, host: IpNet) -> bool {
    rules
        .get(id)
        .is_some_and(|r| r.action == action && r.target == Target::Cidr(host))
}

/// One key's change: to `want` (`None`: absent), from what the map holds.
/// Removal is left out while `may_remove` is false (not settled).
fn change<K: Copy>(
    diff: &mut MapDiff<K>,
    key: K,
    held: Option<u32>,
    want: Option<u32>,
    may_remove: bool,
) -> bool {
    match (held, want) {
        (Some(h), Some(w)) if h == w => false,
        (h, Some(w)) => {
            diff.new_keys += usize::from(h.is_none());
            diff.upserts.push((key, w));
            false
        }
        (Some(_), None) if may_remove => {
            diff.removes.push(key);
            false
        }
        (Some(_), None) => true,
        (None, None) => false,
    }
}

/// The patch that gives the `touched` addresses their entries under
/// `index`, against what the maps hold. `settled`: removals are allowed
/// (until then, what the maps hold stays). Returns the patch and whether
/// a removal was held back.
pub fn patch_for(
    index: &NameIndex,
    touched: &BTreeSet<IpAddr>,
    held: &Held<'_>,
    rules: &RuleTable,
    settled: bool,
) -> (Patch, bool) {
    let mut p = Patch::default();
    let mut kept = false;
    for addr in touched {
        let (deny, allow) = index.wanted(addr);
        let host = IpNet::from(*addr);
        match addr {
            IpAddr::V4(a) => {
                let key = v4_key(a.octets());
                let h = held.deny_v4.get(&key).copied();
                if !h.is_some_and(|id| static_rule(rules, id, Action::Deny, host)) {
                    kept |= change(&mut p.deny_v4, key, h, deny, settled);
                }
                let key = Prefix { len: 32, addr: key };
                let h = held.allow_lpm_v4.get(&key).copied();
                if !h.is_some_and(|id| static_rule(rules, id, Action::Allow, host)) {
                    // Exceptions are never kept: keeping one would open.
                    change(&mut p.allow_lpm_v4, key, h, allow, true);
                }
            }
            IpAddr::V6(a) => {
                let key = v6_key(a.octets());
                let h = held.deny_v6.get(&key).copied();
                if !h.is_some_and(|id| static_rule(rules, id, Action::Deny, host)) {
                    kept |= change(&mut p.deny_v6, key, h, deny, settled);
                }
                let key = Prefix {
                    len: 128,
                    addr: key,
                };
                let h = held.allow_lpm_v6.get(&key).copied();
                if !h.is_some_and(|id| static_rule(rules, id, Action::Allow, host)) {
                    change(&mut p.allow_lpm_v6, key, h, allow, true);
                }
            }
        }
    }
    (p, kept)
}

/// `held` with `patch` applied, as the writer would leave it (for tests).
#[cfg(test)]
fn applied(held: &crate::desired::Desired, p: &Patch) -> crate::desired::Desired {
    use std::collections::BTreeMap;
    fn one<K: Ord + Copy>(m: &BTreeMap<K, u32>, d: &MapDiff<K>) -> BTreeMap<K, u32> {
        let mut m = m.clone();
        m.extend(d.upserts.iter().copied());
        for k in &d.removes {
            m.remove(k);
        }
        m
    }
    let mut out = held.clone();
    out.deny_v4 = one(&held.deny_v4, &p.deny_v4);
    out.deny_v6 = one(&held.deny_v6, &p.deny_v6);
    out.allow_lpm_v4 = one(&held.allow_lpm_v4, &p.allow_lpm_v4);
    out.allow_lpm_v6 = one(&held.allow_lpm_v6, &p.allow_lpm_v6);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        desired::{Desired, compile},
        policy::{Policy, Source},
    };

    fn held(d: &Desired) -> Held<'_> {
        Held {
            deny_v4: &d.deny_v4,
            deny_v6: &d.deny_v6,
            deny_lpm_v4: &d.deny_lpm_v4,
            deny_lpm_v6: &d.deny_lpm_v6,
            allow_lpm_v4: &d.allow_lpm_v4,
            allow_lpm_v6: &d.allow_lpm_v6,
        }
    }

    use crate::resolve::answers::resolved_addrs as answers;

    /// Each step's patch, applied to the maps of the step before, gives
    /// exactly what compiling the whole policy with the new answers gives.
    #[test]
    fn a_patch_equals_compiling_everything_again() {
        let p = std::sync::Arc::new(
            Policy::parse(
                r#"{"version":1,"deny":{"cidrs":["10.0.0.1","2001:db8::1","10.9.0.0/16"],
                 "domains":["a.test","b.test","*.w.test"]},
                "allow":{"cidrs":["10.0.0.7/32"],"domains":["ok.test","b.test"]}}"#,
                Source::File("t.json".into()),
            )
            .unwrap(),
        );
        let steps: Vec<ResolvedAddrs> = vec![
            answers(&[("a.test", &["10.0.0.2"]), ("b.test", &["10.0.0.3"])]),
            // a moves; b takes a's old address (b's rule comes later).
            answers(&[
                ("a.test", &["10.0.0.4", "2001:db8::4"]),
                ("b.test", &["10.0.0.2", "10.0.0.3"]),
            ]),
            // a takes a static ban's address and b's: the earlier rule wins.
            answers(&[
                ("a.test", &["10.0.0.1", "10.0.0.3", "::ffff:10.0.0.5"]),
                ("b.test", &["10.0.0.3", "2001:db8::1"]),
                ("ok.test", &["10.0.0.7", "10.0.0.8", "2001:db8::8"]),
            ]),
            // everything gone but one exception.
            answers(&[("ok.test", &["10.0.0.8"])]),
            answers(&[]),
        ];
        let (mut maps, rules) = compile(&p, &ResolvedAddrs::new());
        let mut index = NameIndex::build(&rules, &ResolvedAddrs::new());
        for (i, step) in steps.iter().enumerate() {
            let mut touched = BTreeSet::new();
            for name in ["a.test", "b.test", "ok.test"] {
                let addrs = step.get(name).cloned().unwrap_or_default();
                index.update(name, &addrs, &mut touched);
            }
            let (patch, kept) = patch_for(&index, &touched, &held(&maps), &rules, true);
            assert!(!kept);
            maps = applied(&maps, &patch);
            assert_eq!(maps, compile(&p, step).0, "step {i}");
            let rebuilt = NameIndex::build(&rules, step);
            assert_eq!(rebuilt.holders, index.holders, "step {i}");
        }
    }

    #[test]
    fn unsettled_patches_add_and_keep_but_exceptions_still_go() {
        let p = std::sync::Arc::new(
            Policy::parse(
                r#"{"version":1,"deny":{"domains":["a.test"]},"allow":{"domains":["ok.test"]}}"#,
                Source::Embedded,
            )
            .unwrap(),
        );
        let (maps, rules) = compile(
            &p,
            &answers(&[("a.test", &["10.0.0.2"]), ("ok.test", &["10.0.0.9"])]),
        );
        let mut index = NameIndex::build(
            &rules,
            &answers(&[("a.test", &["10.0.0.2"]), ("ok.test", &["10.0.0.9"])]),
        );
        let mut touched = BTreeSet::new();
        index.update(
            "a.test",
            &["10.0.0.3".parse().unwrap()].into(),
            &mut touched,
        );
        index.update("ok.test", &BTreeSet::new(), &mut touched);
        let (patch, kept) = patch_for(&index, &touched, &held(&maps), &rules, false);
        assert!(kept, "10.0.0.2 stays until settled");
        let after = applied(&maps, &patch);
        assert_eq!(after.deny_v4.len(), 2);
        assert!(after.allow_lpm_v4.is_empty());
    }
}
