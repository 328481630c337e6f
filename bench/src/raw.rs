//! The few bpf(2) calls aya does not offer for hand-written programs: the
//! return-only floor programs, the live-frame generator and its test run.

use std::{
    io,
    os::fd::{FromRawFd as _, OwnedFd, RawFd},
};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;

pub const PROG_TYPE_XDP: u32 = 6;
pub const PROG_TYPE_CGROUP_SKB: u32 = 8;
pub const ATTACH_XDP: u32 = 37;
pub const ATTACH_CGROUP_INET_EGRESS: u32 = 1;
const F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

fn sys_bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> io::Result<libc::c_long> {
    // SAFETY: attr is a zero-padded bpf_attr prefix of 128 bytes.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn put32(a: &mut [u8; 128], off: usize, v: u32) {
    a[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put64(a: &mut [u8; 128], off: usize, v: u64) {
    a[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

fn get32(a: &[u8; 128], off: usize) -> u32 {
    u32::from_ne_bytes(a[off..off + 4].try_into().unwrap())
}

/// One eBPF instruction.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = (src << 4) | (dst & 0xf);
    b[2..4].copy_from_slice(&off.to_le_bytes());
    b[4..8].copy_from_slice(&imm.to_le_bytes());
    u64::from_le_bytes(b)
}

const MOV64_IMM: u8 = 0xb7;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const HELPER_REDIRECT: i32 = 23;

fn load(prog_type: u32, attach: u32, insns: &[u64]) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut a = [0u8; 128];
    put32(&mut a, 0, prog_type);
    put32(&mut a, 4, insns.len() as u32);
    put64(&mut a, 8, insns.as_ptr() as u64);
    put64(&mut a, 16, license.as_ptr() as u64);
    // prog_name at 48 (16 bytes), prog_ifindex 64, expected_attach_type 68.
    a[48..53].copy_from_slice(b"bench");
    put32(&mut a, 68, attach);
    let fd = sys_bpf(BPF_PROG_LOAD, &mut a)?;
    // SAFETY: the kernel returned a new fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `return ret;` and nothing else.
pub fn return_only(prog_type: u32, attach: u32, ret: i32) -> io::Result<OwnedFd> {
    load(
        prog_type,
        attach,
        &[insn(MOV64_IMM, 0, 0, 0, ret), insn(EXIT, 0, 0, 0, 0)],
    )
}

/// An XDP program that redirects every frame to `ifindex` (transmits it
/// there; on a veth the peer receives it).
pub fn redirect_to(ifindex: u32) -> io::Result<OwnedFd> {
    load(
        PROG_TYPE_XDP,
        ATTACH_XDP,
        &[
            insn(MOV64_IMM, 1, 0, 0, ifindex as i32),
            insn(MOV64_IMM, 2, 0, 0, 0),
            insn(CALL, 0, 0, 0, HELPER_REDIRECT),
            insn(EXIT, 0, 0, 0, 0),
        ],
    )
}

/// BPF_PROG_TEST_RUN: (return value, kernel-reported ns per run).
pub fn test_run(
    prog: &OwnedFd,
    data: &[u8],
    repeat: u32,
    live_batch: Option<u32>,
) -> io::Result<(u32, u32)> {
    use std::os::fd::AsRawFd as _;
    let mut a = [0u8; 128];
    put32(&mut a, 0, prog.as_raw_fd() as u32);
    put32(&mut a, 8, data.len() as u32);
    put64(&mut a, 16, data.as_ptr() as u64);
    put32(&mut a, 32, repeat);
    if let Some(batch) = live_batch {
        // flags at 64, cpu 68, batch_size 72.
        put32(&mut a, 64, F_TEST_XDP_LIVE_FRAMES);
        put32(&mut a, 72, batch);
    }
    sys_bpf(BPF_PROG_TEST_RUN, &mut a)?;
    Ok((get32(&a, 4), get32(&a, 36)))
}

/// BPF_LINK_CREATE for XDP on `ifindex` (of the calling thread's netns);
/// closing the returned fd detaches.
pub fn xdp_link(prog: &OwnedFd, ifindex: u32) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd as _;
    let mut a = [0u8; 128];
    put32(&mut a, 0, prog.as_raw_fd() as u32);
    put32(&mut a, 4, ifindex);
    put32(&mut a, 8, ATTACH_XDP);
    let fd = sys_bpf(BPF_LINK_CREATE, &mut a)?;
    // SAFETY: the kernel returned a new fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}
