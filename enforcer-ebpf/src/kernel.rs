//! Reads of kernel structs the context does not expose, at offsets that
//! differ between kernel builds: the daemon writes them from the kernel's
//! BTF into `KERNEL_OFFSETS` (`KOFF_*`). Every read goes through
//! `bpf_probe_read_kernel`, which fails cleanly on a bad address; a failed
//! read is `None` and the callers decide on the closed side.

use aya_ebpf::helpers::bpf_probe_read_kernel;

use crate::maps::KERNEL_OFFSETS;

/// `KERNEL_OFFSETS[slot]`; 0: unknown.
#[inline(always)]
pub fn offset(slot: u32) -> u32 {
    match KERNEL_OFFSETS.get(slot) {
        Some(&v) => v,
        None => 0,
    }
}

/// The `T` at byte `off` of the kernel address `base`.
#[inline(always)]
pub fn read<T>(base: u64, off: u32) -> Option<T> {
    // SAFETY: a kernel read through the helper, which fails cleanly.
    unsafe { bpf_probe_read_kernel((base as *const u8).wrapping_add(off as usize) as *const T) }
        .ok()
}

/// A pointer at byte `off` of `base`.
#[inline(always)]
pub fn pointer(base: u64, off: u32) -> Option<u64> {
    read::<u64>(base, off)
}

/// Whether the bitfield at bit `at_plus_1 - 1` of `base` is set (0:
/// unknown, false). Little-endian bitfields: byte `bit / 8`, bit `bit % 8`.
#[inline(always)]
pub fn bit_set(base: u64, at_plus_1: u32) -> bool {
    if at_plus_1 == 0 {
        return false;
    }
    let bit = at_plus_1 - 1;
    matches!(read::<u8>(base, bit / 8), Some(b) if b & (1u8 << (bit % 8)) != 0)
}

/// A cgroup sock_addr program's context as the kernel's address: its
/// `struct bpf_sock_addr_kern`, whose members the context does not expose
/// (a privileged loader may pass this pointer to a helper).
#[inline(always)]
pub fn sock_addr_kern(ctx: &aya_ebpf::programs::SockAddrContext) -> u64 {
    ctx.sock_addr as u64
}
