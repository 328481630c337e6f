//! Writes the operator NAT64 prefixes the programs read: `NAT64_PREFIXES`
//! holds them, `CONFIG_NAT64_PREFIXES` says how many (0 spares every IPv6
//! packet the lookup). Prefixes are added before the count rises and
//! removed after it falls, so a prefix in both the old and the new policy
//! is never unjudged.

use std::collections::BTreeMap;

use enforcer_common::{CONFIG_NAT64_PREFIXES, maps as names, v6_key};

use super::{pinned::make_exactly, pins::Pins, stats::set_config, writer::WriteError};
use crate::policy::Policy;

type Key = [u32; 3];

/// Makes the kernel judge exactly `policy`'s NAT64 prefixes.
pub fn write_prefixes(pins: &Pins, policy: &Policy) -> Result<(), WriteError> {
    let desired: BTreeMap<Key, u32> = policy
        .nat64_prefixes
        .iter()
        .map(|e| {
            let k = v6_key(e.value.network().octets());
            ([k[0], k[1], k[2]], 1)
        })
        .collect();
    let count = u32::try_from(desired.len()).unwrap_or(u32::MAX);
    make_exactly(pins, names::NAT64_PREFIXES, &desired, || {
        set_config(pins, CONFIG_NAT64_PREFIXES, count)
    })
}
