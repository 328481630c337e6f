//! `KERNEL_OFFSETS`: struct offsets of the running kernel the programs read
//! through `bpf_probe_read_kernel`, from its BTF. Written at every load, so
//! a kernel upgrade under pinned maps gets its own.

use aya::maps::{Array, MapData};
use enforcer_common::{KOFF_TCP_FASTOPEN_CONNECT, KOFF_TCP_FASTOPEN_REQ, maps as names};
use tracing::warn;

use super::{judge::wrap as open_map, pins::Pins, writer::WriteError};

/// The offsets to write: `(slot, value)`, 0 for what BTF does not give.
pub fn probe() -> Vec<(u32, u32)> {
    let btf = crate::sys::btf::Structs::vmlinux(&["tcp_sock"]);
    let tcp = |f: &dyn Fn(&crate::sys::btf::Structs) -> Option<u32>| btf.as_ref().and_then(f);
    vec![
        (
            KOFF_TCP_FASTOPEN_REQ,
            tcp(&|b| b.offset("tcp_sock", "fastopen_req")).unwrap_or(0),
        ),
        (
            KOFF_TCP_FASTOPEN_CONNECT,
            tcp(&|b| b.bit_offset("tcp_sock", "fastopen_connect")).map_or(0, |b| b + 1),
        ),
    ]
}

/// Writes [`probe`]'s offsets; warns for what is unknown.
pub fn write(pins: &Pins) -> Result<(), WriteError> {
    let mut map: Array<MapData, u32> = open_map(pins, names::KERNEL_OFFSETS, Array::try_from)?;
    let offsets = probe();
    if offsets.iter().any(|&(_, v)| v == 0) {
        warn!(
            "the kernel's BTF does not say where a TCP socket keeps its Fast Open state: \
             TCP Fast Open to a shared name's front end is not refused (its first bytes \
             are not inspected)"
        );
    }
    for (slot, value) in offsets {
        map.set(slot, value, 0)
            .map_err(|source| WriteError::Write {
                map: names::KERNEL_OFFSETS,
                source,
            })?;
    }
    Ok(())
}
