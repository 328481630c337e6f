//! The rule table: every policy entry as a rule with an id that follows
//! its content.
//!
//! **Ids.** A rule's id is a hash of what it says (action, kind,
//! normalized target, port and protocol), not its place in the policy: a
//! drop-in that adds rules before it, a reorder, or a move to another file
//! leaves the id, its flows and its per-rule metrics as they were, and
//! every host of a fleet with the same rule gives it the same id. The
//! alternative, a registry of ids in the state directory, would hold a
//! second copy of every rule (tens of MiB at a million entries), differ
//! between hosts, and leave `check` without a daemon guessing. The cost of
//! a hash: the kernel maps carry `u32` ids, so two rules can collide
//! (about n²/2³³ pairs: none expected below ~10k rules, ~100 at a million).
//! A collision is resolved by content order (the lower encoding keeps the
//! hash, the other takes the next free id), so the result depends only on
//! the policy; the loser's id changes only if its partner goes or comes.
//!
//! **Memory.** The table holds the policy (shared, not copied) and 8 bytes
//! per rule: the id of each place and the places sorted by id. A `Rule` is
//! made on demand, borrowing its target and origin from the policy.
//! (A rule table copying the policy cost ~80 MB at 1M entries.)
//!
//! Precedence among rules naming the same key is policy order ("the first
//! keeps it"), which is the order of places here, never of ids.

use std::{fmt, sync::Arc};

use ipnet::IpNet;

use crate::policy::{DomainPattern, Origin, Policy, PortRule, PortTarget};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Deny,
    Allow,
}

/// What a rule names, borrowed from the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Cidr(IpNet),
    Domain(&'a DomainPattern),
    /// A network, `*` or a name on one port (`crate::portmaps`).
    Port(&'a PortRule),
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Cidr(net) => net.fmt(f),
            Target::Domain(d) => d.fmt(f),
            Target::Port(p) => p.fmt(f),
        }
    }
}

/// One policy entry, as events and `check` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule<'a> {
    pub id: u32,
    pub action: Action,
    pub target: Target<'a>,
    /// Where it was written: `<file>: deny.cidrs[3]`.
    pub origin: &'a Origin,
}

impl fmt::Display for Rule<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.action {
            Action::Deny => "deny",
            Action::Allow => "allow",
        };
        write!(f, "#{} {verb} {} ({})", self.id, self.target, self.origin)
    }
}

/// Rule ids are never 0 ("no rule" in events and maps).
#[derive(Debug, Clone, Default)]
pub struct RuleTable {
    policy: Option<Arc<Policy>>,
    /// The id of the rule at each place (policy order: deny CIDRs, deny
    /// domains, allow CIDRs, allow domains, deny ports, allow ports).
    ids: Vec<u32>,
    /// Places, sorted by their id: `get` is a binary search.
    by_id: Vec<u32>,
}

impl PartialEq for RuleTable {
    fn eq(&self, other: &Self) -> bool {
        self.ids == other.ids && self.iter().eq(other.iter())
    }
}

impl Eq for RuleTable {}

impl RuleTable {
    /// The rules of `policy`, with their ids.
    pub fn new(policy: Arc<Policy>) -> RuleTable {
        let mut table = RuleTable {
            ids: Vec::new(),
            by_id: Vec::new(),
            policy: Some(policy),
        };
        let n = table.len_of_policy();
        let mut buf = Vec::with_capacity(64);
        let hashes: Vec<u32> = (0..n)
            .map(|p| content_hash(&table.at(p, 0), &mut buf))
            .collect();
        table.ids = assign(&hashes, |a, b| {
            let (mut x, mut y) = (Vec::new(), Vec::new());
            encode(&table.at(a, 0), &mut x);
            encode(&table.at(b, 0), &mut y);
            x.cmp(&y)
        });
        // Sorted as (id, place) pairs: a sort keyed through `ids` reads it
        // at random, a million times log n.
        let mut pairs: Vec<(u32, u32)> = (table.ids.iter().copied()).zip(0..n as u32).collect();
        pairs.sort_unstable();
        // Collected from a borrow: `into_iter` would reuse the pairs'
        // buffer, twice the size.
        table.by_id = pairs.iter().map(|&(_, place)| place).collect();
        table
    }

    pub fn get(&self, id: u32) -> Option<Rule<'_>> {
        let k = self
            .by_id
            .binary_search_by_key(&id, |&p| self.ids[p as usize])
            .ok()?;
        let place = self.by_id[k] as usize;
        Some(self.at(place, id))
    }

    /// The rules in policy order (the order of precedence).
    pub fn iter(&self) -> impl Iterator<Item = Rule<'_>> {
        self.ids.iter().enumerate().map(|(p, &id)| self.at(p, id))
    }

    /// The id of the first rule whose target reads `target` (`10.0.0.0/8`,
    /// `api.example.com`, `*:853/tcp`).
    pub fn id_of(&self, target: &str) -> Option<u32> {
        self.iter()
            .find(|r| r.target.to_string() == target)
            .map(|r| r.id)
    }

    /// The id of the rule at `place` (its index in `iter`).
    pub fn id_at(&self, place: usize) -> u32 {
        self.ids[place]
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn len_of_policy(&self) -> usize {
        self.policy
            .as_deref()
            .map_or(0, |p| p.deny.len() + p.allow.len())
    }

    /// The rule at `place`, given its id.
    fn at(&self, place: usize, id: u32) -> Rule<'_> {
        let policy = self.policy.as_deref().expect("a place implies a policy");
        let (d, a) = (&policy.deny, &policy.allow);
        let mut p = place;
        for (action, rules, section) in [
            (Action::Deny, d, Section::Cidrs),
            (Action::Deny, d, Section::Domains),
            (Action::Allow, a, Section::Cidrs),
            (Action::Allow, a, Section::Domains),
            (Action::Deny, d, Section::Ports),
            (Action::Allow, a, Section::Ports),
        ] {
            let (target, origin) = match section {
                Section::Cidrs => match rules.cidrs.get(p) {
                    Some(e) => (Target::Cidr(e.value), &e.origin),
                    None => {
                        p -= rules.cidrs.len();
                        continue;
                    }
                },
                Section::Domains => match rules.domains.get(p) {
                    Some(e) => (Target::Domain(&e.value), &e.origin),
                    None => {
                        p -= rules.domains.len();
                        continue;
                    }
                },
                Section::Ports => match rules.ports.get(p) {
                    Some(e) => (Target::Port(&e.value), &e.origin),
                    None => {
                        p -= rules.ports.len();
                        continue;
                    }
                },
            };
            return Rule {
                id,
                action,
                target,
                origin,
            };
        }
        panic!("rule place {place} is past the policy's rules")
    }
}

#[derive(Clone, Copy)]
enum Section {
    Cidrs,
    Domains,
    Ports,
}

/// The canonical bytes of what a rule says, into `out` (cleared first).
/// Stable across versions: ids are stored with flows and compared across
/// hosts. A new kind of rule gets a new tag; existing encodings never
/// change.
fn encode(rule: &Rule<'_>, out: &mut Vec<u8>) {
    out.clear();
    out.push(match rule.action {
        Action::Deny => b'd',
        Action::Allow => b'a',
    });
    match rule.target {
        Target::Cidr(net) => {
            out.push(b'c');
            net_bytes(out, net);
        }
        Target::Domain(d) => {
            out.push(b'n');
            domain_bytes(out, d);
        }
        Target::Port(p) => {
            out.push(b'p');
            match &p.target {
                PortTarget::Any => out.push(b'*'),
                PortTarget::Net(net) => {
                    out.push(b'c');
                    net_bytes(out, *net);
                }
                PortTarget::Domain(d) => {
                    out.push(b'n');
                    domain_bytes(out, d);
                }
            }
            out.extend_from_slice(&p.spec.port.to_be_bytes());
            out.push(p.spec.proto.map_or(0, |proto| proto.number()));
        }
    }
}

fn net_bytes(out: &mut Vec<u8>, net: IpNet) {
    // The policy keeps networks without host bits, so this is the normal form.
    match net {
        IpNet::V4(n) => {
            out.push(4);
            out.extend_from_slice(&n.addr().octets());
        }
        IpNet::V6(n) => {
            out.push(6);
            out.extend_from_slice(&n.addr().octets());
        }
    }
    out.push(net.prefix_len());
}

fn domain_bytes(out: &mut Vec<u8>, d: &DomainPattern) {
    // Stored lower-case without a trailing dot (`DomainPattern`).
    let (kind, name) = match d {
        DomainPattern::Exact(n) => (b'e', n),
        DomainPattern::Wildcard(n) => (b'w', n),
        DomainPattern::LabelTail(n) => (b't', n),
    };
    out.push(kind);
    out.extend_from_slice(name.as_bytes());
}

/// CRC-32 of the encoding: a fixed, documented function (ids must not
/// change with a toolchain or crate update, which rules out `std`'s and
/// foldhash's hashers). Its weakness, that collisions can be made on
/// purpose, costs nothing here: collisions are resolved, and the policy's
/// author is the only one who could make them.
fn content_hash(rule: &Rule<'_>, buf: &mut Vec<u8>) -> u32 {
    encode(rule, buf);
    crc32fast::hash(buf)
}

/// Ids from the content hashes of the rules at each place. Equal hashes:
/// the rule first in `content_order` keeps it, the others take the next
/// free ids after it (skipping 0 and every hash some rule has), in that
/// order. Deterministic for a set of rules, whatever their places.
fn assign(hashes: &[u32], content_order: impl Fn(usize, usize) -> std::cmp::Ordering) -> Vec<u32> {
    // At most 2^31 rules (`policy::MAX_RULES`, checked when the policy is
    // read): probing always finds a free id, and quickly.
    assert!(
        hashes.len() <= crate::policy::MAX_RULES,
        "the policy check bounds the rule count"
    );
    let nonzero = |h: u32| h.max(1);
    let mut sorted: Vec<(u32, u32)> = hashes
        .iter()
        .enumerate()
        .map(|(p, &h)| (nonzero(h), p as u32))
        .collect();
    sorted.sort_unstable_by_key(|&(h, _)| h);
    let mut ids = vec![0u32; hashes.len()];
    let mut losers: Vec<(u32, u32)> = Vec::new();
    for group in sorted.chunk_by(|a, b| a.0 == b.0) {
        let mut places: Vec<u32> = group.iter().map(|&(_, p)| p).collect();
        if places.len() > 1 {
            places.sort_by(|&a, &b| content_order(a as usize, b as usize).then(a.cmp(&b)));
        }
        ids[places[0] as usize] = group[0].0;
        losers.extend(places[1..].iter().map(|&p| (group[0].0, p)));
    }
    let is_hash = |id: u32| sorted.binary_search_by_key(&id, |&(h, _)| h).is_ok();
    let mut probed = std::collections::HashSet::new();
    for (hash, place) in losers {
        let mut id = hash;
        loop {
            id = nonzero(id.wrapping_add(1));
            if !is_hash(id) && probed.insert(id) {
                break;
            }
        }
        ids[place as usize] = id;
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Source;

    fn table(json: &str, file: &str) -> RuleTable {
        RuleTable::new(Arc::new(
            Policy::parse(json, Source::File(file.into())).unwrap(),
        ))
    }

    fn id_of(t: &RuleTable, text: &str) -> u32 {
        t.id_of(text).unwrap_or_else(|| panic!("no rule {text}"))
    }

    #[test]
    fn an_id_follows_the_content_not_the_place() {
        let before = table(
            r#"{"version":1,"deny":{"cidrs":["10.0.0.0/8","*:853"],"domains":["api.x.test"]}}"#,
            "a.json",
        );
        let after = table(
            r#"{"version":1,"deny":{"cidrs":["192.0.2.0/24","*:853","10.0.0.0/8","2001:db8::/32"],
                "domains":["new.test","*.y.test","api.x.test"]},
                "allow":{"domains":["ok.test"]}}"#,
            "b.json",
        );
        for text in ["10.0.0.0/8", "api.x.test", "*:853"] {
            assert_eq!(id_of(&before, text), id_of(&after, text), "{text}");
        }
        let r = after.get(id_of(&before, "api.x.test")).unwrap();
        assert_eq!(*r.origin, "b.json: deny.domains[2]");
        // The action is part of the content.
        let allowed = table(
            r#"{"version":1,"allow":{"domains":["api.x.test"]}}"#,
            "c.json",
        );
        assert_ne!(id_of(&allowed, "api.x.test"), id_of(&before, "api.x.test"));
        // Every id is found, none is 0, none twice.
        let mut ids: Vec<u32> = after.iter().map(|r| r.id).collect();
        for &id in &ids {
            assert_eq!(after.get(id).unwrap().id, id);
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), after.len());
        assert!(!ids.contains(&0) && after.get(0).is_none());
    }

    #[test]
    fn the_table_shares_the_policy_and_adds_8_bytes_a_rule() {
        let policy = Arc::new(
            Policy::parse(
                r#"{"version":1,"deny":{"cidrs":["10.0.0.0/8","192.0.2.1"],"domains":["a.test"]},
                    "allow":{"cidrs":["10.1.0.0/16"]}}"#,
                Source::Embedded,
            )
            .unwrap(),
        );
        let t = RuleTable::new(policy.clone());
        assert_eq!(Arc::strong_count(&policy), 2, "shared, not copied");
        assert_eq!(t.len(), 4);
        let bytes = (t.ids.capacity() + t.by_id.capacity()) * std::mem::size_of::<u32>();
        assert_eq!(bytes, 8 * t.len());
        // Targets and origins are the policy's own.
        let r = t.iter().nth(2).unwrap();
        assert!(
            matches!(r.target, Target::Domain(d) if std::ptr::eq(d, &policy.deny.domains[0].value))
        );
        assert!(std::ptr::eq(r.origin, &policy.deny.domains[0].origin));
    }

    #[test]
    fn ids_do_not_change_between_versions() {
        // Stored with flows and compared across hosts: a change of the
        // encoding or the hash would split every flow in the field.
        let t = table(
            r#"{"version":1,"deny":{"cidrs":["10.0.0.0/8","*:853/tcp"],"domains":["api.x.test"]}}"#,
            "a.json",
        );
        let ids: Vec<u32> = t.iter().map(|r| r.id).collect();
        // CRC-32 (IEEE) of `dc\x04\x0a\0\0\0\x08`, `dneapi.x.test` and
        // `dp*\x03\x55\x06`: the encodings of `encode`.
        assert_eq!(ids, [1411904981, 3754268981, 940830983]);
    }

    #[test]
    fn colliding_hashes_are_resolved_by_content_whatever_the_order() {
        // Places 0..4 with contents "c", "a", "b", "d"; the first three
        // collide on 7, and 8 is taken by the fourth.
        let content = ["c", "a", "b", "d"];
        fn order<'a>(c: &'a [&'a str]) -> impl Fn(usize, usize) -> std::cmp::Ordering + 'a {
            move |a, b| c[a].cmp(c[b])
        }
        let ids = assign(&[7, 7, 7, 8], order(&content));
        assert_eq!(ids, [10, 7, 9, 8], "a keeps 7; b and c skip 8");
        // The same rules at other places get the same ids.
        let moved = ["d", "b", "a", "c"];
        assert_eq!(assign(&[8, 7, 7, 7], order(&moved)), [8, 9, 7, 10]);
        // 0 is never an id; the space wraps.
        assert_eq!(assign(&[0, 1], order(&["a", "b"])), [1, 2]);
        assert_eq!(
            assign(&[u32::MAX, u32::MAX], order(&["a", "b"])),
            [u32::MAX, 1]
        );
    }
}
