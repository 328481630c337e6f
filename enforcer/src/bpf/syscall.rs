//! The raw bpf(2) system call, for what aya 0.14 does not wrap: batch map
//! updates (`batch`), and loading, attaching and pinning the Unix-domain
//! programs (`unix`).

use std::{io, os::fd::RawFd};

/// `bpf(cmd, attr, sizeof attr)`: the returned fd or value, or the errno.
///
/// # Safety
/// `attr` must be laid out as the `union bpf_attr` member of `cmd`, and
/// every pointer in it valid for what the kernel reads and writes through
/// it during the call.
pub unsafe fn bpf<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<RawFd> {
    // SAFETY: `attr` is live and `size_of::<A>()` bytes long for the call;
    // the rest is the caller's promise.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut A,
            std::mem::size_of::<A>() as u32,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as RawFd)
    }
}
