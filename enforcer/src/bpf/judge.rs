//! The verdict the kernel programs would give an address, read from the
//! pinned maps with the same lookups in the same order (`verdict.rs` in the
//! eBPF crate): an allow range wins, then an exact ban, then a banned
//! range; IPv4-mapped IPv6 addresses are judged as IPv4, NAT64 and 6to4
//! forms by the IPv4 rules when no IPv6 rule matches; with a port, the
//! rules with a port where no address rule spoke (the gate, then the port
//! trie, then the address exceptions). `check` uses it so that it reports
//! what the kernel does, not what the policy meant. Addresses learned from
//! DNS answers count when they apply to everyone (answered by one of the
//! host's DNS servers); one bound to the cgroup that received its answer
//! depends on who asks and is not counted.

use std::net::IpAddr;

use aya::{
    Pod,
    maps::{Array, HashMap, LpmTrie, Map, MapData, MapError, lpm_trie::Key},
};
use enforcer_common::{
    CONFIG_MODE, CONFIG_NAT64_PREFIXES, CONFIG_PORT_RULES, LEARNED_F_ALLOW, LEARNED_F_INSPECT,
    Learned, MODE_AUDIT, PORT_F_ALLOW, PORT_WORD_BITS, PortRule, embedded_v4, gate_bits,
    maps as names, name_port_covers, port_word, v4_key, v6_key,
};

use super::{dnsnames::boot_ns, pins::Pins, writer::WriteError};

/// What the maps say about one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelVerdict {
    /// No ban covers it.
    Pass,
    /// Banned by `rule`, but the allow range `exception` wins.
    Excepted { rule: u32, exception: u32 },
    /// Banned by `rule` (denied in enforce mode, reported in audit mode).
    Banned { rule: u32 },
    /// A rule with a port excepts it (longer than any port ban covering it).
    PortExcepted { exception: u32 },
}

/// What the port gate says for one port and protocol (`verdict.rs`'s
/// `Gate`), with the port and protocol judged.
#[derive(Clone, Copy)]
struct Gate {
    trie: bool,
    names: bool,
    port: u16,
    /// The IP protocol number (`IPPROTO_TCP`, `IPPROTO_UDP`).
    proto: u8,
}

/// The pinned verdict maps of one instance, opened for lookups.
pub struct Judge {
    v4: Family<u32>,
    v6: Family<[u32; 4]>,
    config: Array<MapData, u32>,
    nat64_prefixes: HashMap<MapData, [u32; 3], u32>,
    port_v4: LpmTrie<MapData, [u32; 2], PortRule>,
    port_v6: LpmTrie<MapData, [u32; 5], PortRule>,
    gate: Array<MapData, u8>,
    /// Rule ids of shared banned names (`NAME_SHARED`).
    shared: HashMap<MapData, u32, u32>,
}

/// One address family's verdict maps, keyed by `K` (`u32` or `[u32; 4]`).
struct Family<K> {
    /// Key length of a single address in the tries (32 or 128).
    bits: u32,
    deny: HashMap<MapData, K, u32>,
    deny_lpm: LpmTrie<MapData, K, u32>,
    allow_lpm: LpmTrie<MapData, K, u32>,
    /// Addresses the DNS program learned from answers.
    learned: HashMap<MapData, K, Learned>,
    /// The pin names of `deny`, `deny_lpm`, `allow_lpm` and `learned`,
    /// for errors.
    names: [&'static str; 4],
}

impl<K: Pod> Family<K> {
    fn open(pins: &Pins, bits: u32, names: [&'static str; 4]) -> Result<Family<K>, WriteError> {
        let [deny, deny_lpm, allow_lpm, learned] = names;
        Ok(Family {
            bits,
            deny: wrap(pins, deny, HashMap::try_from)?,
            deny_lpm: wrap(pins, deny_lpm, LpmTrie::try_from)?,
            allow_lpm: wrap(pins, allow_lpm, LpmTrie::try_from)?,
            learned: wrap(pins, learned, HashMap::try_from)?,
            names,
        })
    }

    /// What the DNS program learned for `k` that applies to everyone
    /// (answered by one of the host's DNS servers) and is still in force.
    /// An entry bound to the cgroup that received the answer is not
    /// counted: `check` speaks for every process.
    fn learned(&self, k: K) -> Result<Option<Learned>, WriteError> {
        let l = found(self.learned.get(&k, 0), self.names[3])?;
        Ok(l.filter(|l| l.cgroup_id == 0 && l.expires_ns > boot_ns()))
    }

    /// An exact ban, else a banned range, else a ban learned from a DNS
    /// answer (for every port); then an allow range, or an allowed name's
    /// learned address, excepts it.
    fn verdict(&self, k: K) -> Result<KernelVerdict, WriteError> {
        let [deny, deny_lpm, allow_lpm, _] = self.names;
        let key = Key::new(self.bits, k);
        let learned = self.learned(k)?;
        let every_port = |allow: bool| {
            learned
                // A shared name's address (`LEARNED_F_INSPECT`) is neither.
                .filter(|l| {
                    l.flags & LEARNED_F_INSPECT == 0
                        && (l.flags & LEARNED_F_ALLOW != 0) == allow
                        && l.port == 0
                })
                .map(|l| l.rule_id)
        };
        let ban = match found(self.deny.get(&k, 0), deny)? {
            Some(rule) => Some(rule),
            None => match found(self.deny_lpm.get(&key, 0), deny_lpm)? {
                Some(rule) => Some(rule),
                None => every_port(false),
            },
        };
        let Some(rule) = ban else {
            return Ok(KernelVerdict::Pass);
        };
        let allow = match found(self.allow_lpm.get(&key, 0), allow_lpm)? {
            Some(exception) => Some(exception),
            None => every_port(true),
        };
        Ok(match allow {
            Some(exception) => KernelVerdict::Excepted { rule, exception },
            None => KernelVerdict::Banned { rule },
        })
    }
}

fn open(pins: &Pins, name: &'static str) -> Result<Map, WriteError> {
    let path = pins.map(name);
    let err = |source| WriteError::Open {
        path: path.clone(),
        source,
    };
    Map::from_map_data(MapData::from_pin(&path).map_err(err)?).map_err(err)
}

pub(super) fn wrap<T>(
    pins: &Pins,
    name: &'static str,
    f: impl FnOnce(Map) -> Result<T, MapError>,
) -> Result<T, WriteError> {
    f(open(pins, name)?).map_err(|source| WriteError::Open {
        path: pins.map(name),
        source,
    })
}

/// `Ok(None)` for "no such key", the error otherwise.
fn found<V>(r: Result<V, MapError>, map: &'static str) -> Result<Option<V>, WriteError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(source) => Err(WriteError::Read { map, source }),
    }
}

impl Judge {
    pub fn open(pins: &Pins) -> Result<Judge, WriteError> {
        Ok(Judge {
            v4: Family::open(
                pins,
                32,
                [
                    names::DENY_V4,
                    names::DENY_LPM_V4,
                    names::ALLOW_LPM_V4,
                    names::LEARNED_V4,
                ],
            )?,
            v6: Family::open(
                pins,
                128,
                [
                    names::DENY_V6,
                    names::DENY_LPM_V6,
                    names::ALLOW_LPM_V6,
                    names::LEARNED_V6,
                ],
            )?,
            config: wrap(pins, names::CONFIG, Array::try_from)?,
            nat64_prefixes: wrap(pins, names::NAT64_PREFIXES, HashMap::try_from)?,
            port_v4: wrap(pins, names::PORT_LPM_V4, LpmTrie::try_from)?,
            port_v6: wrap(pins, names::PORT_LPM_V6, LpmTrie::try_from)?,
            gate: wrap(pins, names::PORT_GATE, Array::try_from)?,
            shared: wrap(pins, names::NAME_SHARED, HashMap::try_from)?,
        })
    }

    /// Whether the kernel enforces rule `id` by name only (a shared name).
    pub fn shared(&self, id: u32) -> Result<bool, WriteError> {
        Ok(found(self.shared.get(&id, 0), names::NAME_SHARED)?.is_some())
    }

    /// The verdict for traffic to `addr` on `port` over IP protocol
    /// `proto` (`IPPROTO_TCP`, `IPPROTO_UDP`; a plain number: this layer
    /// knows the kernel's terms, not the policy's): the
    /// address rules, then (where none spoke) the rules with a port, as
    /// `verdict.rs` does: the port gate's bits say whether the port trie
    /// and the learned addresses of name rules with this port are looked
    /// at; a port exception decides; a ban (from the trie, else learned
    /// for a name with this port) yields to an address-only exception or a
    /// learned exception covering the port.
    pub fn verdict_on(
        &self,
        addr: IpAddr,
        port: u16,
        proto: u8,
    ) -> Result<KernelVerdict, WriteError> {
        let by_addr = self.verdict(addr)?;
        if by_addr != KernelVerdict::Pass {
            return Ok(by_addr);
        }
        let on = found(self.config.get(&CONFIG_PORT_RULES, 0), names::CONFIG)?;
        let gate = found(self.gate.get(&u32::from(port), 0), names::PORT_GATE)?.unwrap_or(0);
        let (trie_bit, names_bit) = gate_bits(proto);
        let g = Gate {
            trie: gate & trie_bit != 0,
            names: gate & names_bit != 0,
            port,
            proto,
        };
        if on.unwrap_or(0) == 0 || (!g.trie && !g.names) {
            return Ok(KernelVerdict::Pass);
        }
        let word = port_word(port, proto);
        match addr {
            IpAddr::V4(a) => self.port_v4(g, v4_key(a.octets())),
            IpAddr::V6(v6) => {
                if let Some(a) = v6.to_ipv4_mapped() {
                    return self.port_v4(g, v4_key(a.octets()));
                }
                let k = v6_key(v6.octets());
                let hit = if g.trie {
                    found(
                        self.port_v6.get(
                            &Key::new(PORT_WORD_BITS + 128, [word, k[0], k[1], k[2], k[3]]),
                            0,
                        ),
                        names::PORT_LPM_V6,
                    )?
                } else {
                    None
                };
                let found6 = self.port_verdict(g, hit, &self.v6, k)?;
                if found6 != KernelVerdict::Pass {
                    return Ok(found6);
                }
                match self.embedded(k)? {
                    Some(v4) => self.port_v4(g, v4),
                    None => Ok(KernelVerdict::Pass),
                }
            }
        }
    }

    fn port_v4(&self, g: Gate, a: u32) -> Result<KernelVerdict, WriteError> {
        let hit = if g.trie {
            let word = port_word(g.port, g.proto);
            found(
                self.port_v4
                    .get(&Key::new(PORT_WORD_BITS + 32, [word, a]), 0),
                names::PORT_LPM_V4,
            )?
        } else {
            None
        };
        self.port_verdict(g, hit, &self.v4, a)
    }

    /// `port_check` of `verdict.rs`: a port exception decides; a port ban,
    /// else a ban learned for a name with this port, yields to an
    /// address-only exception or a learned exception covering the port.
    fn port_verdict<K: Pod>(
        &self,
        g: Gate,
        hit: Option<PortRule>,
        family: &Family<K>,
        k: K,
    ) -> Result<KernelVerdict, WriteError> {
        let learned = family.learned(k)?;
        let covers = |l: &Learned| name_port_covers(l.port, g.port, g.proto);
        let rule = match hit {
            Some(r) if r.flags & PORT_F_ALLOW != 0 => {
                return Ok(KernelVerdict::PortExcepted {
                    exception: r.rule_id,
                });
            }
            Some(r) => r.rule_id,
            None if g.names => match learned {
                Some(l) if l.flags & (LEARNED_F_ALLOW | LEARNED_F_INSPECT) == 0 && covers(&l) => {
                    l.rule_id
                }
                _ => return Ok(KernelVerdict::Pass),
            },
            None => return Ok(KernelVerdict::Pass),
        };
        let key = Key::new(family.bits, k);
        let exception = match found(family.allow_lpm.get(&key, 0), family.names[2])? {
            Some(e) => Some(e),
            None => learned
                .filter(|l| l.flags & LEARNED_F_ALLOW != 0 && covers(l))
                .map(|l| l.rule_id),
        };
        Ok(match exception {
            Some(exception) => KernelVerdict::Excepted { rule, exception },
            None => KernelVerdict::Banned { rule },
        })
    }

    /// Whether the programs only report (audit mode).
    pub fn audit(&self) -> Result<bool, WriteError> {
        let mode = found(self.config.get(&CONFIG_MODE, 0), names::CONFIG)?;
        Ok(mode == Some(MODE_AUDIT))
    }

    /// The verdict for `addr`. IPv4-mapped addresses are judged as IPv4;
    /// other IPv6 addresses by the IPv6 rules and, when none matches and
    /// they embed an IPv4 address (an operator NAT64 prefix, 64:ff9b::/96,
    /// 6to4), by the IPv4 rules for it, as the programs do.
    pub fn verdict(&self, addr: IpAddr) -> Result<KernelVerdict, WriteError> {
        match addr {
            IpAddr::V4(a) => self.v4.verdict(v4_key(a.octets())),
            IpAddr::V6(v6) => {
                if let Some(a) = v6.to_ipv4_mapped() {
                    return self.v4.verdict(v4_key(a.octets()));
                }
                let k = v6_key(v6.octets());
                let found = self.v6.verdict(k)?;
                if found != KernelVerdict::Pass {
                    return Ok(found);
                }
                match self.embedded(k)? {
                    Some(v4) => self.v4.verdict(v4),
                    None => Ok(KernelVerdict::Pass),
                }
            }
        }
    }

    /// The IPv4 address `k` carries, as the programs read it: after one of
    /// the operator's NAT64 prefixes first, else in a well-known form
    /// (64:ff9b::/96, 6to4, v4-mapped).
    fn embedded(&self, k: [u32; 4]) -> Result<Option<u32>, WriteError> {
        Ok(match self.operator_prefix(k)? {
            Some(v4) => Some(v4),
            None => {
                let e = embedded_v4(k);
                (e.via != 0).then_some(e.v4)
            }
        })
    }

    /// The IPv4 address after an operator NAT64 /96 prefix, if `k` has one.
    fn operator_prefix(&self, k: [u32; 4]) -> Result<Option<u32>, WriteError> {
        let count = found(self.config.get(&CONFIG_NAT64_PREFIXES, 0), names::CONFIG)?;
        if count.unwrap_or(0) == 0 {
            return Ok(None);
        }
        let hit = found(
            self.nat64_prefixes.get(&[k[0], k[1], k[2]], 0),
            names::NAT64_PREFIXES,
        )?;
        Ok(hit.map(|_| k[3]))
    }
}

#[cfg(test)]
mod tests {
    /// Layers import downward only: the judge reads the kernel's maps in
    /// the kernel's terms (protocol numbers, rule ids), never the policy's
    /// types (issue 9: it imported `policy::Proto`).
    #[test]
    fn the_judge_imports_nothing_from_the_layers_above() {
        let source = include_str!("judge.rs");
        // Every `use crate::…;` item, grouped or not, and every inline path.
        let imports: Vec<&str> = source
            .match_indices("use crate::")
            .map(|(at, _)| &source[at..at + source[at..].find(';').unwrap()])
            .collect();
        for above in [
            "policy", "portmaps", "desired", "rules", "check", "daemon", "cli",
        ] {
            let path = format!("crate::{above}");
            assert!(!source.contains(&path), "bpf::judge uses {path}");
            let module = format!("{above}::");
            for import in &imports {
                assert!(!import.contains(&module), "bpf::judge imports {import}");
            }
        }
    }
}
