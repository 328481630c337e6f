//! Pinned maps are checked against this build's definitions before they are
//! adopted (as cilium/ebpf's MapSpec.Compatible does). A map made by another
//! build with another layout would be read and written with the wrong key
//! or value size by this build's programs and writer. On a mismatch the
//! daemon refuses, changes nothing, and says what to do: migrating entries
//! between layouts would need to know what each old layout meant.

use std::fmt;

use aya::maps::{MapInfo, MapType};
use aya_obj::generated::bpf_map_type::{self, BPF_MAP_TYPE_RINGBUF};

use super::{DatapathError, Pins};

/// One field of one pinned map that differs from this build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub map: String,
    pub field: &'static str,
    pub pinned: u32,
    pub expected: u32,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (pinned, expected) = match self.field {
            "map_flags" => (
                format!("{:#x}", self.pinned),
                format!("{:#x}", self.expected),
            ),
            "map type" => (type_name(self.pinned), type_name(self.expected)),
            _ => (self.pinned.to_string(), self.expected.to_string()),
        };
        write!(
            f,
            "{}: {} is {pinned} pinned, {expected} in this build",
            self.map, self.field
        )
    }
}

/// `PerCpuArray` for 6; the number itself if aya does not know it.
fn type_name(raw: u32) -> String {
    bpf_map_type::try_from(raw)
        .ok()
        .and_then(|t| MapType::try_from(t).ok())
        .map_or_else(|| raw.to_string(), |t| format!("{t:?}"))
}

/// What this run would create for a map: the object's definition with the
/// loader's adjustments (capacity overrides; ring buffers rounded to a
/// power-of-two number of pages, as aya does).
struct Expected {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

fn expected(def: &aya_obj::Map, capacity: Option<u32>) -> Expected {
    let mut max_entries = capacity.unwrap_or(def.max_entries());
    let mut value_size = def.value_size();
    if def.map_type() == BPF_MAP_TYPE_RINGBUF as u32 {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u32;
        if max_entries != 0 {
            max_entries = page * max_entries.div_ceil(page).next_power_of_two();
        }
        value_size = 0;
    }
    Expected {
        map_type: def.map_type(),
        key_size: def.key_size(),
        value_size,
        max_entries,
        map_flags: def.map_flags(),
    }
}

/// Compares every map of `object` that is pinned under `pins` with what
/// this run would create. Reads only.
pub fn check(
    pins: &Pins,
    object: &[u8],
    capacity: &[(&'static str, u32)],
) -> Result<(), DatapathError> {
    let parsed =
        aya_obj::Object::parse(object).map_err(|e| DatapathError::Object(e.to_string()))?;
    let mut mismatches = Vec::new();
    for name in enforcer_common::maps::ALL {
        let path = pins.map(name);
        if !path.exists() {
            continue;
        }
        let def = parsed
            .maps
            .get(name)
            .ok_or_else(|| DatapathError::Object(format!("the object defines no map {name}")))?;
        let want = expected(def, capacity.iter().find(|(n, _)| *n == name).map(|c| c.1));
        let info = MapInfo::from_pin(&path).map_err(|source| DatapathError::PinInfo {
            path: path.clone(),
            source: Box::new(source),
        })?;
        // An unknown type number stays a number, never a false match.
        let pinned_type = info.map_type().map_or(u32::MAX, |t| t as u32);
        for (field, pinned, expected) in [
            ("map type", pinned_type, want.map_type),
            ("key_size", info.key_size(), want.key_size),
            ("value_size", info.value_size(), want.value_size),
            ("max_entries", info.max_entries(), want.max_entries),
            ("map_flags", info.map_flags(), want.map_flags),
        ] {
            if pinned != expected {
                mismatches.push(Mismatch {
                    map: name.to_owned(),
                    field,
                    pinned,
                    expected,
                });
            }
        }
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(DatapathError::PinLayout {
            root: pins.root().to_owned(),
            mismatches,
        })
    }
}

/// The mismatches, one per clause, for the error message.
pub fn describe(mismatches: &[Mismatch]) -> String {
    mismatches
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatches_read_as_pinned_versus_expected() {
        let m = |field, pinned, expected| Mismatch {
            map: "CONFIG".into(),
            field,
            pinned,
            expected,
        };
        assert_eq!(
            describe(&[
                m("value_size", 8, 4),
                m("map type", 6, 2),
                m("map_flags", 1, 0)
            ]),
            "CONFIG: value_size is 8 pinned, 4 in this build; \
             CONFIG: map type is PerCpuArray pinned, Array in this build; \
             CONFIG: map_flags is 0x1 pinned, 0x0 in this build"
        );
    }

    #[test]
    fn ring_buffers_are_expected_at_the_size_aya_creates() {
        let ring = aya_obj::Map::new_from_params(BPF_MAP_TYPE_RINGBUF as u32, 0, 0, 5000, 0);
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u32;
        // 5000 bytes: two 4 KiB pages, or one larger page.
        let want = if page == 4096 { 8192 } else { page };
        assert_eq!(expected(&ring, None).max_entries, want);
        assert_eq!(expected(&ring, Some(1 << 20)).max_entries, 1 << 20);
    }
}
