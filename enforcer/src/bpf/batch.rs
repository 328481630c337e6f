//! `BPF_MAP_UPDATE_BATCH` for hash maps, which aya 0.14 does not wrap:
//! a full load of a million exact addresses is one syscall per few
//! thousand entries instead of one per entry.

use std::{io, os::fd::AsRawFd as _, os::fd::BorrowedFd};

/// `bpf_cmd::BPF_MAP_UPDATE_BATCH` (uapi, stable).
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// The `batch` member of `union bpf_attr` (uapi).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Entries per syscall: large enough that the syscall cost vanishes,
/// small enough that the kernel's copy of the batch stays small.
pub const CHUNK: usize = 8192;

/// Writes `keys[i] → values[i]` into the hash map `fd` (BPF_ANY). Returns
/// how many the kernel took; on an error the entries before it are in.
/// `Unsupported` (a kernel without batch operations for this map type):
/// the caller writes one by one.
pub fn update<K: aya::Pod, V: aya::Pod>(
    fd: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> Result<usize, io::Error> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    let mut done = 0;
    for (ks, vs) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)) {
        let mut attr = BatchAttr {
            keys: ks.as_ptr() as u64,
            values: vs.as_ptr() as u64,
            count: ks.len() as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is the `batch` member, and the key and value
        // arrays it points to live for the call; the kernel reads `count`
        // entries of each and writes back only `count`.
        if let Err(e) = unsafe { super::syscall::bpf(BPF_MAP_UPDATE_BATCH, &mut attr) } {
            done += attr.count as usize;
            return Err(match e.raw_os_error() {
                // ENOTSUPP (524) and EINVAL from kernels or map types
                // without batch updates, before any entry was written.
                Some(libc::EINVAL | 524 | libc::EOPNOTSUPP) if done == 0 => {
                    io::Error::new(io::ErrorKind::Unsupported, e)
                }
                _ => e,
            });
        }
        done += ks.len();
    }
    Ok(done)
}
