//! What the DNS program needs from userspace: the names to match
//! (`DNS_NAMES`, from the policy's domain rules and their ids), the host's
//! own DNS servers (`DNS_SERVERS`: their answers count for everyone, their
//! addresses are never banned), the TTL clamp and grace (`CONFIG`); and the
//! clean-up of learned addresses whose time is over (the programs ignore
//! them already; removing them frees the map).

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use aya::maps::{HashMap, MapData, MapError};
use enforcer_common::{
    CONFIG_DNS_GRACE_S, CONFIG_DNS_MAX_TTL_S, CONFIG_DNS_MIN_TTL_S, Learned, NameRule,
    dns_name_key, dns_suffix_key, maps as names, v6_key,
};

use super::{
    pinned::{make_exactly, open_hash},
    pins::Pins,
    stats::set_config,
    writer::WriteError,
};
use crate::{
    desired::{Action, RuleTable, Target},
    policy::{DomainPattern, Policy, PortRule, PortTarget},
};

/// The `DNS_NAMES` entries for the domain rules of `rules`.
pub fn name_entries(rules: &RuleTable) -> BTreeMap<u64, NameRule> {
    let mut out: BTreeMap<u64, NameRule> = BTreeMap::new();
    for rule in rules.iter() {
        // A name with a port matches like any other; the addresses learned
        // for it carry its port (`NAME_PORTS`, written with the port maps).
        let d = match &rule.target {
            Target::Domain(d) => d,
            Target::Port(PortRule {
                target: PortTarget::Domain(d),
                ..
            }) => d,
            _ => continue,
        };
        // A `*-tail` rule has a key of its own (the kernel matches the
        // first label's tails against it) and uses the exact slots there.
        let (key, wild) = match d {
            DomainPattern::Exact(n) => (dns_name_key(n), false),
            DomainPattern::Wildcard(suffix) => (dns_name_key(suffix), true),
            DomainPattern::LabelTail(tail) => (dns_suffix_key(tail), false),
        };
        let e = out.entry(key).or_default();
        // The first rule for a name keeps it, as in the address maps.
        let slot = match (rule.action, wild) {
            (Action::Deny, false) => &mut e.deny_exact,
            (Action::Deny, true) => &mut e.deny_wild,
            (Action::Allow, false) => &mut e.allow_exact,
            (Action::Allow, true) => &mut e.allow_wild,
        };
        if *slot == 0 {
            *slot = rule.id;
        }
    }
    out
}

/// Makes `DNS_NAMES` exactly the names of `rules`: new and changed entries
/// first, then the ones no rule names any more.
pub fn write_names(pins: &Pins, rules: &RuleTable) -> Result<(), WriteError> {
    make_exactly(pins, names::DNS_NAMES, &name_entries(rules), || Ok(()))
}

/// The map key of a DNS server's address (IPv4 as `::ffff:a.b.c.d`).
fn server_key(ip: IpAddr) -> [u32; 4] {
    let v6 = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    v6_key(v6.octets())
}

/// Makes `DNS_SERVERS` exactly `servers`.
pub fn write_servers(pins: &Pins, servers: &[SocketAddr]) -> Result<(), WriteError> {
    let want: BTreeMap<[u32; 4], u32> = servers.iter().map(|s| (server_key(s.ip()), 1)).collect();
    make_exactly(pins, names::DNS_SERVERS, &want, || Ok(()))
}

/// The TTL clamp and grace the DNS program applies to learned addresses.
pub fn write_config(pins: &Pins, policy: &Policy) -> Result<(), WriteError> {
    let r = &policy.resolver;
    set_config(pins, CONFIG_DNS_MIN_TTL_S, r.min_ttl_s)?;
    set_config(pins, CONFIG_DNS_MAX_TTL_S, r.max_ttl_s)?;
    set_config(pins, CONFIG_DNS_GRACE_S, r.grace_s)
}

/// `CLOCK_BOOTTIME` in ns: the clock of `Learned::expires_ns`.
pub fn boot_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Learned addresses still in force, per family, after removing the ones
/// whose time is over.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LearnedCounts {
    pub v4: usize,
    pub v6: usize,
    /// Bans bound to the cgroup that received the answer (both families).
    pub scoped: usize,
    pub removed: usize,
}

fn purge<K: aya::Pod + Clone>(
    pins: &Pins,
    name: &'static str,
    now: u64,
) -> Result<(usize, usize), WriteError> {
    let mut map: HashMap<MapData, K, Learned> = open_hash(pins, name)?;
    let entries: Vec<(K, Learned)> = map
        .iter()
        .collect::<Result<_, _>>()
        .map_err(|source| WriteError::Read { map: name, source })?;
    let mut live = 0;
    let mut removed = 0;
    for (k, v) in entries {
        if v.expires_ns > now {
            live += 1;
            continue;
        }
        // A newer answer may have refreshed it since the read: check again.
        match map.get(&k, 0) {
            Ok(cur) if cur.expires_ns > now => live += 1,
            Ok(_) => match map.remove(&k) {
                Ok(()) | Err(MapError::KeyNotFound) => removed += 1,
                Err(source) => return Err(WriteError::Write { map: name, source }),
            },
            Err(_) => {}
        }
    }
    Ok((live, removed))
}

pub fn purge_expired(pins: &Pins) -> Result<LearnedCounts, WriteError> {
    let now = boot_ns();
    let (v4, r4) = purge::<u32>(pins, names::LEARNED_V4, now)?;
    let (v6, r6) = purge::<[u32; 4]>(pins, names::LEARNED_V6, now)?;
    let (s4, rs4) = purge::<[u32; 4]>(pins, names::LEARNED_SCOPED_V4, now)?;
    let (s6, rs6) = purge::<[u32; 6]>(pins, names::LEARNED_SCOPED_V6, now)?;
    Ok(LearnedCounts {
        v4,
        v6,
        scoped: s4 + s6,
        removed: r4 + r6 + rs4 + rs6,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{desired::compile, policy::Source};

    #[test]
    fn exact_and_wildcard_rules_share_a_key_and_keep_the_first_id() {
        let p = std::sync::Arc::new(
            Policy::parse(
                r#"{"version": 1, "deny": {"domains": ["api.test", "*.api.test", "API.test"]},
                "allow": {"domains": ["ok.api.test"]}}"#,
                Source::Embedded,
            )
            .unwrap(),
        );
        let (_, rules) = compile(&p, &Default::default());
        let e = name_entries(&rules);
        assert_eq!(e.len(), 2);
        let api = e[&dns_name_key("api.test")];
        let id = |t: &str| rules.id_of(t).unwrap();
        assert_eq!(
            (api.deny_exact, api.deny_wild),
            (id("api.test"), id("*.api.test"))
        );
        assert_eq!(
            e[&dns_name_key("ok.api.test")].allow_exact,
            id("ok.api.test")
        );
        assert_eq!(dns_name_key("OK.Api.test"), dns_name_key("ok.api.test"));
    }

    #[test]
    fn a_label_tail_rule_has_its_own_key() {
        let p = std::sync::Arc::new(
            Policy::parse(
                r#"{"version": 1, "deny": {"domains": ["*-region.test", "region.test"]},
                "allow": {"domains": ["*-ok-region.test"]}}"#,
                Source::Embedded,
            )
            .unwrap(),
        );
        let (_, rules) = compile(&p, &Default::default());
        let e = name_entries(&rules);
        assert_eq!(e.len(), 3);
        let id = |t: &str| rules.id_of(t).unwrap();
        assert_eq!(
            e[&dns_suffix_key("-region.test")].deny_exact,
            id("*-region.test")
        );
        assert_eq!(
            e[&dns_name_key("region.test")].deny_exact,
            id("region.test")
        );
        assert_eq!(
            e[&dns_suffix_key("-ok-region.test")].allow_exact,
            id("*-ok-region.test")
        );
    }
}
