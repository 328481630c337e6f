//! Writes the rules with a port (`crate::portmaps`) into the pinned port
//! tries, the gate, `NAME_PORTS` and `CONFIG_PORT_RULES`. Order: the
//! switch and the gate open first (old and new bits together), then the
//! names' ports and the trie entries go in, then what is stale goes out,
//! the gate narrows to the new bits and the switch turns off last if no
//! rule is left. A ban in force before and after is never out of reach.

use std::collections::BTreeMap;

use aya::maps::{Array, LpmTrie, MapData, MapError, lpm_trie::Key};
use enforcer_common::{CONFIG_PORT_RULES, PortRule, maps as names};

use super::{
    judge::wrap as open_map,
    pinned::{make_exactly, open_hash},
    pins::Pins,
    stats::set_config,
    writer::WriteError,
};
use crate::{desired::Prefix, portmaps::PortMaps};

/// A port trie's entries in the kernel.
fn read_trie<A: aya::Pod + Ord>(
    trie: &LpmTrie<MapData, A, PortRule>,
    name: &'static str,
) -> Result<BTreeMap<Prefix<A>, PortRule>, WriteError> {
    trie.iter()
        .map(|kv| {
            kv.map(|(k, v)| {
                (
                    Prefix {
                        len: k.prefix_len(),
                        addr: k.data(),
                    },
                    v,
                )
            })
        })
        .collect::<Result<_, _>>()
        .map_err(|source| WriteError::Read { map: name, source })
}

/// The port of a trie key's first word (`enforcer_common::port_word`).
fn port_of(word: u32) -> u16 {
    let b = word.to_ne_bytes();
    u16::from_be_bytes([b[0], b[1]])
}

struct Trie<A: aya::Pod> {
    name: &'static str,
    map: LpmTrie<MapData, A, PortRule>,
    have: BTreeMap<Prefix<A>, PortRule>,
}

impl<A: aya::Pod + Ord + Copy> Trie<A> {
    fn open(pins: &Pins, name: &'static str) -> Result<Self, WriteError> {
        let map: LpmTrie<MapData, A, PortRule> = open_map(pins, name, LpmTrie::try_from)?;
        let have = read_trie(&map, name)?;
        Ok(Trie { name, map, have })
    }

    fn upsert(&mut self, want: &BTreeMap<Prefix<A>, PortRule>) -> Result<(), WriteError> {
        for (k, v) in want {
            if self.have.get(k) != Some(v) {
                self.map
                    .insert(&Key::new(k.len, k.addr), v, 0)
                    .map_err(|source| WriteError::Write {
                        map: self.name,
                        source,
                    })?;
            }
        }
        Ok(())
    }

    fn remove_stale(&mut self, want: &BTreeMap<Prefix<A>, PortRule>) -> Result<(), WriteError> {
        for k in self.have.keys().filter(|k| !want.contains_key(k)) {
            match self.map.remove(&Key::new(k.len, k.addr)) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(source) => {
                    return Err(WriteError::Write {
                        map: self.name,
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Makes the port maps of `pins` hold exactly `want`.
pub fn write(pins: &Pins, want: &PortMaps) -> Result<(), WriteError> {
    let mut v4: Trie<[u32; 2]> = Trie::open(pins, names::PORT_LPM_V4)?;
    let mut v6: Trie<[u32; 5]> = Trie::open(pins, names::PORT_LPM_V6)?;
    let mut gate: Array<MapData, u8> = open_map(pins, names::PORT_GATE, Array::try_from)?;
    let name_ports: BTreeMap<u32, u32> = open_hash::<u32, u32>(pins, names::NAME_PORTS)?
        .iter()
        .collect::<Result<_, _>>()
        .map_err(|source| WriteError::Read {
            map: names::NAME_PORTS,
            source,
        })?;
    let capacity = |n: usize, map: &'static str| {
        if n > enforcer_common::MAX_PORT_RULES as usize {
            return Err(WriteError::Capacity {
                map,
                needed: n,
                capacity: enforcer_common::MAX_PORT_RULES,
            });
        }
        Ok(())
    };
    capacity(want.v4.len(), names::PORT_LPM_V4)?;
    capacity(want.v6.len(), names::PORT_LPM_V6)?;
    // The ports whose gate may be set now: every trie key's, and every
    // name rule's (learned addresses need the gate too).
    let mut ports: Vec<u16> = v4.have.keys().map(|k| port_of(k.addr[0])).collect();
    ports.extend(v6.have.keys().map(|k| port_of(k.addr[0])));
    ports.extend(name_ports.values().map(|p| (p >> 8) as u16));
    ports.extend(want.gate.keys());
    ports.sort_unstable();
    ports.dedup();
    let gate_err = |source| WriteError::Write {
        map: names::PORT_GATE,
        source,
    };
    let read_gate = |gate: &Array<MapData, u8>, port: u16| {
        gate.get(&u32::from(port), 0)
            .map_err(|source| WriteError::Read {
                map: names::PORT_GATE,
                source,
            })
    };
    if want.any() {
        set_config(pins, CONFIG_PORT_RULES, 1)?;
    }
    for (&port, &bits) in &want.gate {
        let old = read_gate(&gate, port)?;
        if old | bits != old {
            gate.set(u32::from(port), old | bits, 0).map_err(gate_err)?;
        }
    }
    make_exactly(pins, names::NAME_PORTS, &want.name_ports, || {
        v4.upsert(&want.v4)?;
        v6.upsert(&want.v6)?;
        v4.remove_stale(&want.v4)?;
        v6.remove_stale(&want.v6)
    })?;
    for port in ports {
        let bits = want.gate.get(&port).copied().unwrap_or(0);
        if read_gate(&gate, port)? != bits {
            gate.set(u32::from(port), bits, 0).map_err(gate_err)?;
        }
    }
    if !want.any() {
        set_config(pins, CONFIG_PORT_RULES, 0)?;
    }
    Ok(())
}
