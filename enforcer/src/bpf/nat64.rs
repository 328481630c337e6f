//! Writes the operator NAT64 prefixes the programs read: `NAT64_PREFIXES`
//! holds them, `CONFIG_NAT64_PREFIXES` says how many (0 spares every IPv6
//! packet the lookup). Prefixes are added before the count rises and
//! removed after it falls, so a prefix in both the old and the new policy
//! is never unjudged.

use std::collections::BTreeSet;

use aya::maps::{HashMap, Map, MapData, MapError};
use enforcer_common::{CONFIG_NAT64_PREFIXES, maps as names, v6_key};

use super::{pins::Pins, stats::set_config, writer::WriteError};
use crate::policy::Policy;

type Key = [u32; 3];

/// Makes the kernel judge exactly `policy`'s NAT64 prefixes.
pub fn write_prefixes(pins: &Pins, policy: &Policy) -> Result<(), WriteError> {
    let path = pins.map(names::NAT64_PREFIXES);
    let open_err = |source| WriteError::Open {
        path: path.clone(),
        source,
    };
    let map = Map::from_map_data(MapData::from_pin(&path).map_err(open_err)?).map_err(open_err)?;
    let mut map: HashMap<MapData, Key, u32> = HashMap::try_from(map).map_err(open_err)?;
    let write_err = |source| WriteError::Write {
        map: names::NAT64_PREFIXES,
        source,
    };
    let current: BTreeSet<Key> =
        map.keys()
            .collect::<Result<_, _>>()
            .map_err(|source| WriteError::Read {
                map: names::NAT64_PREFIXES,
                source,
            })?;
    let desired: BTreeSet<Key> = policy
        .nat64_prefixes
        .iter()
        .map(|e| {
            let k = v6_key(e.value.network().octets());
            [k[0], k[1], k[2]]
        })
        .collect();
    for key in desired.difference(&current) {
        map.insert(key, 1, 0).map_err(write_err)?;
    }
    let count = u32::try_from(desired.len()).unwrap_or(u32::MAX);
    set_config(pins, CONFIG_NAT64_PREFIXES, count)?;
    for key in current.difference(&desired) {
        match map.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(source) => return Err(write_err(source)),
        }
    }
    Ok(())
}
