//! `KERNEL_OFFSETS`: struct offsets of the running kernel the programs read
//! through `bpf_probe_read_kernel`, from its BTF, and the host's mount
//! namespace. Written at every load, so a kernel upgrade under pinned maps
//! gets its own.

use aya::maps::{Array, MapData};
use enforcer_common::{
    KOFF_CRED_USER_NS, KOFF_HOST_MNT_INUM, KOFF_MNT_NS_INUM, KOFF_NSPROXY_MNT_NS, KOFF_SK_MSG_SK,
    KOFF_TASK_NSPROXY, KOFF_TASK_REAL_CRED, KOFF_TCP_FASTOPEN_CONNECT, KOFF_TCP_FASTOPEN_REQ,
    KOFF_TCP_IS_MPTCP, KOFF_TCP_WRITE_SEQ, KOFF_USER_NS_INUM, maps as names,
};
use tracing::warn;

use super::{judge::wrap as open_map, pins::Pins, writer::WriteError};

/// The offsets to write: `(slot, value)`, 0 for what BTF does not give.
pub fn probe() -> Vec<(u32, u32)> {
    let btf = crate::sys::btf::Structs::kernel();
    let at = |st: &str, m: &str| btf.and_then(|b| b.offset(st, m));
    let inum = |st: &str| Some(at(st, "ns")? + at("ns_common", "inum")?);
    let host_mnt = host_mount_namespace();
    vec![
        (
            KOFF_TCP_FASTOPEN_REQ,
            at("tcp_sock", "fastopen_req").unwrap_or(0),
        ),
        (
            KOFF_TCP_FASTOPEN_CONNECT,
            btf.and_then(|b| b.bit_offset("tcp_sock", "fastopen_connect"))
                .map_or(0, |b| b + 1),
        ),
        (
            KOFF_TCP_IS_MPTCP,
            btf.and_then(|b| b.bit_offset("tcp_sock", "is_mptcp"))
                .map_or(0, |b| b + 1),
        ),
        (KOFF_SK_MSG_SK, at("sk_msg", "sk").unwrap_or(0)),
        (KOFF_TCP_WRITE_SEQ, at("tcp_sock", "write_seq").unwrap_or(0)),
        (
            KOFF_TASK_REAL_CRED,
            at("task_struct", "real_cred").unwrap_or(0),
        ),
        (KOFF_CRED_USER_NS, at("cred", "user_ns").unwrap_or(0)),
        (KOFF_USER_NS_INUM, inum("user_namespace").unwrap_or(0)),
        (KOFF_TASK_NSPROXY, at("task_struct", "nsproxy").unwrap_or(0)),
        (KOFF_NSPROXY_MNT_NS, at("nsproxy", "mnt_ns").unwrap_or(0)),
        (KOFF_MNT_NS_INUM, inum("mnt_namespace").unwrap_or(0)),
        (KOFF_HOST_MNT_INUM, host_mnt),
    ]
}

/// The host's mount namespace: PID 1's, whatever the daemon's own (its
/// unit gives it a private one: ProtectSystem=). Where PID 1's cannot be
/// read (a sandbox without ptrace access to it), the daemon's own, said.
fn host_mount_namespace() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    let ino = |p: &str| std::fs::metadata(p).map(|m| m.ino() as u32);
    match ino("/proc/1/ns/mnt") {
        Ok(i) => i,
        Err(e) => {
            warn!(
                error = %e,
                "cannot read PID 1's mount namespace; taking this process's as the host's \
                 (if the daemon runs in a private one, contained processes reach no \
                 Unix-domain socket)"
            );
            ino("/proc/self/ns/mnt").unwrap_or(0)
        }
    }
}

/// Writes [`probe`]'s offsets; warns for what is unknown.
pub fn write(pins: &Pins) -> Result<(), WriteError> {
    let mut map: Array<MapData, u32> = open_map(pins, names::KERNEL_OFFSETS, Array::try_from)?;
    let offsets = probe();
    let unknown = |slots: &[u32]| {
        offsets
            .iter()
            .any(|(slot, v)| slots.contains(slot) && *v == 0)
    };
    if unknown(&[KOFF_TCP_FASTOPEN_REQ, KOFF_TCP_FASTOPEN_CONNECT]) {
        warn!(
            "the kernel's BTF does not say where a TCP socket keeps its Fast Open state: \
             TCP Fast Open to a shared name's front end is not refused (its first bytes \
             are not inspected)"
        );
    }
    if unknown(&[KOFF_TCP_IS_MPTCP]) {
        warn!(
            "the kernel's BTF does not say which TCP sockets are MPTCP subflows: MPTCP to a \
             shared name's front end is not refused (such sockets cannot be inspected)"
        );
    }
    if unknown(&[KOFF_SK_MSG_SK, KOFF_TCP_WRITE_SEQ]) {
        warn!(
            "the kernel's BTF does not say where a TCP socket's write queue ends: bytes \
             written to an inspected connection before it was under inspection are stopped \
             only when they leave unjudged, not when they wait corked in its queue"
        );
    }
    if unknown(&[
        KOFF_TASK_REAL_CRED,
        KOFF_CRED_USER_NS,
        KOFF_USER_NS_INUM,
        KOFF_TASK_NSPROXY,
        KOFF_NSPROXY_MNT_NS,
        KOFF_MNT_NS_INUM,
        KOFF_HOST_MNT_INUM,
    ]) {
        warn!(
            "the kernel's BTF does not say where a process's namespaces are: contained \
             processes reach no Unix-domain socket, whatever their allow lists say"
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
