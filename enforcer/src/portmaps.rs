//! The rules with a port as map contents, pure data like `desired`: the
//! port tries (`PORT_LPM_V4/V6`, keyed by port word + address), the gate
//! (which ports over which protocol have rules) and the port of each name
//! rule with one (`NAME_PORTS`, for the addresses the DNS program learns).
//!
//! Precedence in the kernel (`verdict.rs`): address rules first, as
//! before; only traffic none of them matched reaches the port rules. Among
//! those the longest prefix wins, and an exception with a port wins over a
//! ban of the same port and protocol: a ban inside an exception's range is
//! stored as that exception, so the one lookup still answers it.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use enforcer_common::{
    PORT_F_ALLOW, PORT_WORD_BITS, PortRule as Value, gate_bits, name_port, port_word, v4_key,
    v6_key,
};
use ipnet::IpNet;

use crate::{
    desired::{Action, Prefix, ResolvedAddrs, RuleTable, Target},
    policy::{DomainPattern, PortTarget, Proto},
};

pub type PortV4 = [u32; 2];
pub type PortV6 = [u32; 5];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortMaps {
    pub v4: BTreeMap<Prefix<PortV4>, Value>,
    pub v6: BTreeMap<Prefix<PortV6>, Value>,
    /// Port → `PORT_GATE_*` bits; ports not listed are 0.
    pub gate: BTreeMap<u16, u8>,
    pub name_ports: BTreeMap<u32, u32>,
}

impl PortMaps {
    /// Whether the policy has rules with a port (`CONFIG_PORT_RULES`).
    pub fn any(&self) -> bool {
        !self.gate.is_empty()
    }
}

/// One trie entry before the exceptions are folded in.
struct Item {
    word: u32,
    net: IpNet,
    value: Value,
}

/// The port maps for the port rules of `rules` and the addresses resolved
/// for their names. An exact name's resolved addresses are host entries;
/// a wildcard has none (the DNS program learns its subdomains' addresses
/// with the rule's port). When two rules name the same key, the first
/// keeps it, except that an exception wins over a ban.
pub fn build(rules: &RuleTable, resolved: &ResolvedAddrs) -> PortMaps {
    let mut maps = PortMaps::default();
    let mut items = Vec::new();
    for rule in rules.iter() {
        let Target::Port(p) = &rule.target else {
            continue;
        };
        let nets: Vec<IpNet> = match &p.target {
            PortTarget::Any => vec![
                "0.0.0.0/0".parse().expect("valid"),
                "::/0".parse().expect("valid"),
            ],
            PortTarget::Net(net) => vec![*net],
            PortTarget::Domain(d) => {
                maps.name_ports.entry(rule.id).or_insert(name_port(
                    p.spec.port,
                    p.spec.proto.map_or(0, Proto::number),
                ));
                let addrs: BTreeSet<IpAddr> = match d {
                    DomainPattern::Exact(name) => resolved
                        .get(name)
                        .into_iter()
                        .flatten()
                        .map(|a| a.to_canonical())
                        .collect(),
                    // Wildcards: only what the DNS program learns.
                    _ => BTreeSet::new(),
                };
                addrs.into_iter().map(IpNet::from).collect()
            }
        };
        let flags = match rule.action {
            Action::Deny => 0,
            Action::Allow => PORT_F_ALLOW,
        };
        for proto in p.spec.protos() {
            let gate = maps.gate.entry(p.spec.port).or_default();
            // A wildcard has no trie entries, only learned addresses; an
            // exact name has both (the daemon's resolution, the answers).
            let (trie_bit, names_bit) = gate_bits(proto.number());
            match &p.target {
                PortTarget::Domain(d) if !matches!(d, DomainPattern::Exact(_)) => {}
                _ => *gate |= trie_bit,
            }
            if matches!(p.target, PortTarget::Domain(_)) {
                *gate |= names_bit;
            }
            let word = port_word(p.spec.port, proto.number());
            for &net in &nets {
                items.push(Item {
                    word,
                    net,
                    value: Value {
                        rule_id: rule.id,
                        flags,
                    },
                });
            }
        }
    }
    // Per key: the first rule, unless a later one is an exception.
    let mut keyed: BTreeMap<(u32, IpNet), Value> = BTreeMap::new();
    for it in &items {
        keyed
            .entry((it.word, it.net))
            .and_modify(|v| {
                if v.flags & PORT_F_ALLOW == 0 && it.value.flags & PORT_F_ALLOW != 0 {
                    *v = it.value;
                }
            })
            .or_insert(it.value);
    }
    let allows: Vec<((u32, IpNet), Value)> = keyed
        .iter()
        .filter(|(_, v)| v.flags & PORT_F_ALLOW != 0)
        .map(|(k, v)| (*k, *v))
        .collect();
    for ((word, net), value) in keyed {
        // A ban inside an exception of the same port and protocol: the
        // longest-prefix lookup would find the ban, so it is stored as the
        // (longest) exception covering it.
        let value = if value.flags & PORT_F_ALLOW == 0 {
            allows
                .iter()
                .filter(|((w, a), _)| *w == word && a.contains(&net))
                .max_by_key(|((_, a), _)| a.prefix_len())
                .map_or(value, |(_, v)| *v)
        } else {
            value
        };
        let len = PORT_WORD_BITS + u32::from(net.prefix_len());
        match net.addr() {
            IpAddr::V4(a) => {
                maps.v4.insert(
                    Prefix {
                        len,
                        addr: [word, v4_key(a.octets())],
                    },
                    value,
                );
            }
            IpAddr::V6(a) => {
                let k = v6_key(a.octets());
                maps.v6.insert(
                    Prefix {
                        len,
                        addr: [word, k[0], k[1], k[2], k[3]],
                    },
                    value,
                );
            }
        }
    }
    maps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        desired::compile,
        policy::{Policy, Source},
    };
    use enforcer_common::{PORT_GATE_NAMES_TCP, PORT_GATE_NAMES_UDP, PORT_GATE_TCP, PORT_GATE_UDP};

    fn maps(json: &str, resolved: &[(&str, &str)]) -> (PortMaps, RuleTable) {
        let p = std::sync::Arc::new(Policy::parse(json, Source::File("t.json".into())).unwrap());
        let mut r = ResolvedAddrs::new();
        for (name, addr) in resolved {
            r.entry((*name).into())
                .or_default()
                .insert(addr.parse().unwrap());
        }
        let (_, rules) = compile(&p, &r);
        (build(&rules, &r), rules)
    }

    fn v4(word: u32, addr: [u8; 4], len: u32) -> Prefix<PortV4> {
        Prefix {
            len: PORT_WORD_BITS + len,
            addr: [word, v4_key(addr)],
        }
    }

    #[test]
    fn any_port_rule_covers_both_families_and_both_protocols() {
        let (m, rules) = maps(r#"{"version":1,"deny":{"cidrs":["*:853"]}}"#, &[]);
        assert_eq!(
            m.gate,
            BTreeMap::from([(853, PORT_GATE_TCP | PORT_GATE_UDP)])
        );
        assert_eq!(m.v4.len(), 2);
        assert_eq!(m.v6.len(), 2);
        let id = rules.id_of("*:853").unwrap();
        assert_eq!(m.v4[&v4(port_word(853, 6), [0; 4], 0)].rule_id, id);
        assert_eq!(
            rules.get(id).unwrap().to_string(),
            format!("#{id} deny *:853 (t.json: deny.cidrs[0])")
        );
    }

    #[test]
    fn an_exception_with_a_port_wins_over_a_longer_ban_inside_it() {
        let (m, rules) = maps(
            r#"{"version":1,"deny":{"cidrs":["*:853/tcp","10.1.2.3:853/tcp"]},
                "allow":{"cidrs":["10.1.0.0/16:853"]}}"#,
            &[],
        );
        let tcp = port_word(853, 6);
        let inner = m.v4[&v4(tcp, [10, 1, 2, 3], 32)];
        let id = rules.id_of("10.1.0.0/16:853").unwrap();
        assert_eq!((inner.rule_id, inner.flags), (id, PORT_F_ALLOW));
        assert_eq!(m.v4[&v4(tcp, [0; 4], 0)].flags, 0);
        // The exception is for both protocols; no UDP ban exists.
        assert_eq!(
            m.v4[&v4(port_word(853, 17), [10, 1, 0, 0], 16)].flags,
            PORT_F_ALLOW
        );
    }

    #[test]
    fn names_with_a_port_give_their_addresses_and_their_port() {
        let (m, rules) = maps(
            r#"{"version":1,"deny":{"domains":["doh.test:443/tcp","*.dot.test:853"]}}"#,
            &[("doh.test", "192.0.2.10"), ("doh.test", "2001:db8::10")],
        );
        let id = |t: &str| rules.id_of(t).unwrap();
        assert_eq!(m.name_ports[&id("doh.test:443/tcp")], name_port(443, 6));
        assert_eq!(m.name_ports[&id("*.dot.test:853")], name_port(853, 0));
        assert_eq!(m.gate[&443], PORT_GATE_TCP | PORT_GATE_NAMES_TCP);
        assert_eq!(
            m.gate[&853],
            PORT_GATE_NAMES_TCP | PORT_GATE_NAMES_UDP,
            "a wildcard: names only"
        );
        assert_eq!(
            m.v4[&v4(port_word(443, 6), [192, 0, 2, 10], 32)].rule_id,
            id("doh.test:443/tcp")
        );
        assert_eq!(m.v6.len(), 1);
        assert!(matches!(
            rules.get(id("*.dot.test:853")).unwrap().target,
            Target::Port(_)
        ));
        assert!(m.any());
        let (none, _) = maps(r#"{"version":1,"deny":{"cidrs":["10.0.0.0/8"]}}"#, &[]);
        assert!(!none.any());
    }
}
