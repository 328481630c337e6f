//! The verdict the kernel programs would give an address, read from the
//! pinned maps with the same lookups in the same order (`verdict.rs` in the
//! eBPF crate): an allow range wins, then an exact ban, then a banned
//! range; IPv4-mapped IPv6 addresses are judged as IPv4. `check` uses it so
//! that it reports what the kernel does, not what the policy meant.

use std::net::IpAddr;

use aya::maps::{Array, HashMap, LpmTrie, Map, MapData, MapError, lpm_trie::Key};
use enforcer_common::{CONFIG_MODE, MODE_AUDIT, maps as names, v4_key, v6_key};

use super::{pins::Pins, writer::WriteError};

/// What the maps say about one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelVerdict {
    /// No ban covers it.
    Pass,
    /// Banned by `rule`, but the allow range `exception` wins.
    Excepted { rule: u32, exception: u32 },
    /// Banned by `rule` (denied in enforce mode, reported in audit mode).
    Banned { rule: u32 },
}

/// The pinned verdict maps of one instance, opened for lookups.
pub struct Judge {
    deny_v4: HashMap<MapData, u32, u32>,
    deny_v6: HashMap<MapData, [u32; 4], u32>,
    deny_lpm_v4: LpmTrie<MapData, u32, u32>,
    deny_lpm_v6: LpmTrie<MapData, [u32; 4], u32>,
    allow_lpm_v4: LpmTrie<MapData, u32, u32>,
    allow_lpm_v6: LpmTrie<MapData, [u32; 4], u32>,
    config: Array<MapData, u32>,
}

fn open(pins: &Pins, name: &'static str) -> Result<Map, WriteError> {
    let path = pins.map(name);
    let err = |source| WriteError::Open {
        path: path.clone(),
        source,
    };
    Map::from_map_data(MapData::from_pin(&path).map_err(err)?).map_err(err)
}

fn wrap<T>(
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
            deny_v4: wrap(pins, names::DENY_V4, HashMap::try_from)?,
            deny_v6: wrap(pins, names::DENY_V6, HashMap::try_from)?,
            deny_lpm_v4: wrap(pins, names::DENY_LPM_V4, LpmTrie::try_from)?,
            deny_lpm_v6: wrap(pins, names::DENY_LPM_V6, LpmTrie::try_from)?,
            allow_lpm_v4: wrap(pins, names::ALLOW_LPM_V4, LpmTrie::try_from)?,
            allow_lpm_v6: wrap(pins, names::ALLOW_LPM_V6, LpmTrie::try_from)?,
            config: wrap(pins, names::CONFIG, Array::try_from)?,
        })
    }

    /// Whether the programs only report (audit mode).
    pub fn audit(&self) -> Result<bool, WriteError> {
        let mode = found(self.config.get(&CONFIG_MODE, 0), names::CONFIG)?;
        Ok(mode == Some(MODE_AUDIT))
    }

    pub fn verdict(&self, addr: IpAddr) -> Result<KernelVerdict, WriteError> {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let (ban, allow) = match addr {
            IpAddr::V4(a) => {
                let k = v4_key(a.octets());
                let key = Key::new(32, k);
                let ban = match found(self.deny_v4.get(&k, 0), names::DENY_V4)? {
                    Some(rule) => Some(rule),
                    None => found(self.deny_lpm_v4.get(&key, 0), names::DENY_LPM_V4)?,
                };
                let allow = match ban {
                    Some(_) => found(self.allow_lpm_v4.get(&key, 0), names::ALLOW_LPM_V4)?,
                    None => None,
                };
                (ban, allow)
            }
            IpAddr::V6(a) => {
                let k = v6_key(a.octets());
                let key = Key::new(128, k);
                let ban = match found(self.deny_v6.get(&k, 0), names::DENY_V6)? {
                    Some(rule) => Some(rule),
                    None => found(self.deny_lpm_v6.get(&key, 0), names::DENY_LPM_V6)?,
                };
                let allow = match ban {
                    Some(_) => found(self.allow_lpm_v6.get(&key, 0), names::ALLOW_LPM_V6)?,
                    None => None,
                };
                (ban, allow)
            }
        };
        Ok(match (ban, allow) {
            (None, _) => KernelVerdict::Pass,
            (Some(rule), Some(exception)) => KernelVerdict::Excepted { rule, exception },
            (Some(rule), None) => KernelVerdict::Banned { rule },
        })
    }
}
