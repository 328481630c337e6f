//! Pinned hash maps that userspace keeps equal to a wanted set of entries
//! (the DNS names and servers, the NAT64 prefixes): opened by pin, and
//! brought to exactly what is wanted in an order that never leaves a
//! wanted entry out.

use std::collections::BTreeMap;

use aya::maps::{HashMap, Map, MapData, MapError};

use super::{pins::Pins, writer::WriteError};

/// The pinned hash map `name`, checked against its key and value types.
pub fn open_hash<K: aya::Pod, V: aya::Pod>(
    pins: &Pins,
    name: &'static str,
) -> Result<HashMap<MapData, K, V>, WriteError> {
    let path = pins.map(name);
    let err = |source| WriteError::Open {
        path: path.clone(),
        source,
    };
    let map = Map::from_map_data(MapData::from_pin(&path).map_err(err)?).map_err(err)?;
    HashMap::try_from(map).map_err(err)
}

/// Makes the pinned hash map `name` hold exactly `want`: new and changed
/// entries first, then `between` (e.g. a count the programs read, which
/// may rise only once the entries are there and fall only before they
/// go), then the removal of what `want` no longer holds.
pub fn make_exactly<K, V>(
    pins: &Pins,
    name: &'static str,
    want: &BTreeMap<K, V>,
    between: impl FnOnce() -> Result<(), WriteError>,
) -> Result<(), WriteError>
where
    K: aya::Pod + Ord,
    V: aya::Pod + PartialEq,
{
    let mut map: HashMap<MapData, K, V> = open_hash(pins, name)?;
    let have: BTreeMap<K, V> = map
        .iter()
        .collect::<Result<_, _>>()
        .map_err(|source| WriteError::Read { map: name, source })?;
    let write_err = |source| WriteError::Write { map: name, source };
    for (k, v) in want {
        if have.get(k) != Some(v) {
            map.insert(k, v, 0).map_err(write_err)?;
        }
    }
    between()?;
    for k in have.keys().filter(|k| !want.contains_key(k)) {
        match map.remove(k) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(source) => return Err(write_err(source)),
        }
    }
    Ok(())
}
