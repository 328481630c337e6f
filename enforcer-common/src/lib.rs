//! Types and names shared by the eBPF programs (`enforcer-ebpf`) and the
//! userspace daemon (`enforcer`).
//!
//! Everything here is `#[repr(C)]` with explicit padding so that both sides
//! agree byte for byte; sizes are checked at compile time below.
//!
//! Byte order: IPv4 addresses travel as the `u32` whose *memory* holds the
//! address in network order (what `bpf_sock_addr.user_ip4` holds), IPv6
//! addresses as `[u32; 4]` likewise. LPM trie keys need network order in
//! memory, so the same value serves as hash key and as trie data.
#![no_std]

/// Map names, as the `#[map]` statics are named in the eBPF object.
pub mod maps {
    /// Exact banned IPv4 addresses: `u32` → rule id.
    pub const DENY_V4: &str = "DENY_V4";
    /// Exact banned IPv6 addresses: `[u32; 4]` → rule id.
    pub const DENY_V6: &str = "DENY_V6";
    /// Banned IPv4 ranges (LPM trie): `Key<u32>` → rule id.
    pub const DENY_LPM_V4: &str = "DENY_LPM_V4";
    /// Banned IPv6 ranges (LPM trie): `Key<[u32; 4]>` → rule id.
    pub const DENY_LPM_V6: &str = "DENY_LPM_V6";
    /// Allow exceptions, IPv4 (LPM trie); they win over any ban.
    pub const ALLOW_LPM_V4: &str = "ALLOW_LPM_V4";
    /// Allow exceptions, IPv6 (LPM trie); they win over any ban.
    pub const ALLOW_LPM_V6: &str = "ALLOW_LPM_V6";
    /// Runtime configuration, an array of `u32` indexed by `CONFIG_*`.
    pub const CONFIG: &str = "CONFIG";
    /// Per-CPU `u64` counters indexed by [`super::stat_index`] and `STAT_*`.
    pub const STATS: &str = "STATS";
    /// Ring buffer of [`super::Event`].
    pub const EVENTS: &str = "EVENTS";
    /// Socket cookie → [`super::SockOwner`], for hooks without task context.
    pub const SOCK_OWNERS: &str = "SOCK_OWNERS";
    /// Per-CPU XDP event rate limiter state ([`super::RateState`]).
    pub const XDP_RATE: &str = "XDP_RATE";
    /// Socket cookie → when it was last reported (ns), so that the skb hook
    /// reports a flow once per interval instead of once per packet.
    pub const REPORTED: &str = "REPORTED";
    /// Thread id → the argv it passed to execve (until the exec completes).
    pub const EXEC_ARGS: &str = "EXEC_ARGS";
    /// Per-CPU scratch space for building an [`super::ExecArgs`].
    pub const EXEC_SCRATCH: &str = "EXEC_SCRATCH";
    /// Ring buffer of [`super::ExecEvent`]: every successful exec.
    pub const PROC_EVENTS: &str = "PROC_EVENTS";

    /// Every map, in the order the loader pins them.
    pub const ALL: [&str; 15] = [
        DENY_V4,
        DENY_V6,
        DENY_LPM_V4,
        DENY_LPM_V6,
        ALLOW_LPM_V4,
        ALLOW_LPM_V6,
        CONFIG,
        STATS,
        EVENTS,
        SOCK_OWNERS,
        XDP_RATE,
        REPORTED,
        EXEC_ARGS,
        EXEC_SCRATCH,
        PROC_EVENTS,
    ];
}

/// Program names (the function names in `enforcer-ebpf`).
pub mod programs {
    pub const CONNECT4: &str = "connect4";
    pub const CONNECT6: &str = "connect6";
    pub const SENDMSG4: &str = "sendmsg4";
    pub const SENDMSG6: &str = "sendmsg6";
    pub const SKB_EGRESS: &str = "skb_egress";
    pub const SOCK_CREATE: &str = "sock_create";
    pub const XDP: &str = "xdp_filter";
    /// tracepoint syscalls/sys_enter_execve: captures argv.
    pub const EXEC_ARGV: &str = "execve_args";
    /// tracepoint sched/sched_process_exec: reports the exec.
    pub const PROCESS_EXEC: &str = "process_exec";
}

/// Capacities of the maps. Hash maps are created with `BPF_F_NO_PREALLOC`,
/// so an unused capacity costs no kernel memory.
pub const MAX_EXACT_V4: u32 = 1 << 20;
pub const MAX_EXACT_V6: u32 = 1 << 20;
pub const MAX_RANGES_V4: u32 = 1 << 18;
pub const MAX_RANGES_V6: u32 = 1 << 18;
pub const MAX_ALLOW_V4: u32 = 1 << 16;
pub const MAX_ALLOW_V6: u32 = 1 << 16;
pub const MAX_SOCK_OWNERS: u32 = 1 << 16;
pub const MAX_REPORTED: u32 = 1 << 14;
/// The skb hook reports a socket at most once per this interval (the
/// syscall hooks report every attempt: each is a decision of the process).
pub const SKB_REPORT_INTERVAL_NS: u64 = 10_000_000_000;
/// Ring buffer size in bytes (a power of two, a multiple of the page size).
pub const EVENTS_BYTES: u32 = 1 << 22;
pub const PROC_EVENTS_BYTES: u32 = 1 << 21;
/// Threads between execve() entry and the exec completing.
pub const MAX_EXEC_ARGS: u32 = 1024;
/// Bytes of argv kept per exec (NUL-separated, truncated beyond).
pub const ARGS_BYTES: usize = 1024;
/// argv entries read per exec.
pub const MAX_ARGV: usize = 32;
pub const FILENAME_BYTES: usize = 256;

/// Index into the `CONFIG` array: the enforcement mode, `MODE_*`.
pub const CONFIG_MODE: u32 = 0;
/// Index into the `CONFIG` array: XDP events allowed per second per CPU
/// (0 means [`XDP_EVENTS_PER_SEC_DEFAULT`]).
pub const CONFIG_XDP_EVENTS_PER_SEC: u32 = 1;
pub const CONFIG_LEN: u32 = 4;

/// Deny banned destinations.
pub const MODE_ENFORCE: u32 = 0;
/// Let everything through, but emit the same events as `enforce` would.
pub const MODE_AUDIT: u32 = 1;

pub const XDP_EVENTS_PER_SEC_DEFAULT: u32 = 256;

/// Where a verdict was taken.
pub const HOOK_CONNECT4: u32 = 0;
pub const HOOK_CONNECT6: u32 = 1;
pub const HOOK_SENDMSG4: u32 = 2;
pub const HOOK_SENDMSG6: u32 = 3;
pub const HOOK_SKB_EGRESS: u32 = 4;
pub const HOOK_XDP: u32 = 5;
pub const HOOK_COUNT: u32 = 6;

/// No rule matched: the traffic passes.
pub const VERDICT_PASS: u32 = 0;
/// A ban matched but an allow exception covers the address: it passes.
pub const VERDICT_ALLOWED: u32 = 1;
/// A ban matched: denied (EPERM at the syscall, dropped on the wire).
pub const VERDICT_DENIED: u32 = 2;
/// A ban matched in audit mode: it passes, and an event is emitted.
pub const VERDICT_AUDITED: u32 = 3;
/// The program could not read what it needs to judge (a truncated header,
/// an unreadable context field). In `enforce` mode the traffic is denied
/// ([`ERROR_VERDICT_DENIES`]): an enforcer that cannot judge fails closed.
/// In `audit` mode it passes. An event is emitted either way.
pub const VERDICT_ERROR: u32 = 4;
pub const VERDICT_COUNT: u32 = 5;

/// Documents the internal-error policy above for code that must branch on it.
pub const ERROR_VERDICT_DENIES: bool = true;

/// Index of the counter for `hook` and `verdict` in the `STATS` array.
#[inline(always)]
pub const fn stat_index(hook: u32, verdict: u32) -> u32 {
    hook * VERDICT_COUNT + verdict
}
/// An event was not emitted because the ring buffer was full.
pub const STAT_RINGBUF_FULL: u32 = HOOK_COUNT * VERDICT_COUNT;
/// An XDP event was not emitted because of the XDP event rate limit.
pub const STAT_XDP_EVENTS_SUPPRESSED: u32 = STAT_RINGBUF_FULL + 1;
/// An skb verdict found no owner recorded for the socket cookie.
pub const STAT_OWNER_UNKNOWN: u32 = STAT_RINGBUF_FULL + 2;
/// An skb event was not emitted: the socket was reported within
/// [`SKB_REPORT_INTERVAL_NS`] (the verdict itself is counted as usual).
pub const STAT_SKB_EVENTS_COALESCED: u32 = STAT_RINGBUF_FULL + 3;
/// An exec record was not emitted because PROC_EVENTS was full.
pub const STAT_PROC_RINGBUF_FULL: u32 = STAT_RINGBUF_FULL + 4;
pub const STATS_LEN: u32 = STAT_RINGBUF_FULL + 5;

/// `Event::flags`: the banned address was the packet's source (XDP).
pub const EVENT_F_SOURCE: u32 = 1;
/// `Event::flags`: the destination was an IPv4-mapped IPv6 address.
pub const EVENT_F_V4_MAPPED: u32 = 1 << 1;
/// `Event::flags`: pid/uid/comm come from the socket owner record, not
/// from the current task (skb hook).
pub const EVENT_F_OWNER_FROM_COOKIE: u32 = 1 << 2;
/// `Event::flags`: no owner is known; pid, uid and comm are zero.
pub const EVENT_F_OWNER_UNKNOWN: u32 = 1 << 3;

pub const AF_INET: u32 = 2;
pub const AF_INET6: u32 = 10;

/// One verdict worth reporting, as written to the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Socket cookie (0 at XDP, where there is no socket).
    pub cookie: u64,
    /// cgroup v2 id of the task (or of the socket's owner at the skb hook).
    pub cgroup_id: u64,
    /// Kernel thread id.
    pub pid: u32,
    /// Kernel thread group id: the process id userspace sees.
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    pub rule_id: u32,
    /// `HOOK_*`.
    pub hook: u32,
    /// `VERDICT_*`.
    pub verdict: u32,
    /// `AF_INET` or `AF_INET6`.
    pub family: u32,
    /// Port of the banned side, host byte order (0 if not known).
    pub port: u32,
    /// IP protocol number (6 TCP, 17 UDP), 0 if not known.
    pub protocol: u32,
    /// `EVENT_F_*`.
    pub flags: u32,
    pub _reserved: u32,
    /// The banned address; IPv4 in `addr[0]`, network order in memory.
    pub addr: [u32; 4],
    pub comm: [u8; 16],
}

/// The task that created or last connected a socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockOwner {
    pub cgroup_id: u64,
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: [u8; 16],
}

/// argv of one execve(), NUL-separated, in the first `len` (at most
/// [`ARGS_BYTES`]) bytes. Twice that long so that each argument can be read
/// with a constant size at any offset below [`ARGS_BYTES`]: the verifier
/// cannot follow a size computed from the offset.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecArgs {
    pub len: u32,
    /// 1 if argv did not fit.
    pub truncated: u32,
    pub args: [u8; 2 * ARGS_BYTES],
}

/// `ExecEvent::flags`: argv was captured.
pub const EXEC_F_ARGS: u32 = 1;
/// `ExecEvent::flags`: argv was truncated.
pub const EXEC_F_TRUNCATED: u32 = 1 << 1;

/// A completed exec, reported from the kernel at the moment it happens, so
/// that a process that dies right after being refused can still be named.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEvent {
    pub ts_ns: u64,
    /// Thread group id (the process id).
    pub pid: u32,
    pub tid: u32,
    /// The thread that called execve (differs from `tid` when a
    /// non-leader thread exec'd).
    pub old_tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub args_len: u32,
    /// `EXEC_F_*`.
    pub flags: u32,
    pub _reserved: u32,
    pub comm: [u8; 16],
    /// The executable as passed to exec, NUL-terminated.
    pub filename: [u8; FILENAME_BYTES],
    pub args: [u8; ARGS_BYTES],
}

/// Per-CPU XDP event budget: the window start and the events in it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateState {
    pub window_start_ns: u64,
    pub count: u64,
}

// No implicit padding: the sizes are the sums of the fields.
const _: () = assert!(core::mem::size_of::<Event>() == 104);
const _: () = assert!(core::mem::size_of::<SockOwner>() == 40);
const _: () = assert!(core::mem::size_of::<RateState>() == 16);
const _: () = assert!(core::mem::size_of::<ExecArgs>() == 8 + 2 * ARGS_BYTES);
const _: () = assert!(core::mem::size_of::<ExecEvent>() == 56 + FILENAME_BYTES + ARGS_BYTES);

/// An IPv4 address as the maps key it: the octets in memory order.
#[inline(always)]
pub const fn v4_key(octets: [u8; 4]) -> u32 {
    u32::from_ne_bytes(octets)
}

/// An IPv6 address as the maps key it: the octets in memory order.
#[inline(always)]
pub const fn v6_key(o: [u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([o[0], o[1], o[2], o[3]]),
        u32::from_ne_bytes([o[4], o[5], o[6], o[7]]),
        u32::from_ne_bytes([o[8], o[9], o[10], o[11]]),
        u32::from_ne_bytes([o[12], o[13], o[14], o[15]]),
    ]
}

/// The inverse of [`v4_key`].
#[inline(always)]
pub const fn v4_octets(key: u32) -> [u8; 4] {
    key.to_ne_bytes()
}

/// The inverse of [`v6_key`].
pub const fn v6_octets(k: [u32; 4]) -> [u8; 16] {
    let mut o = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let b = k[i].to_ne_bytes();
        o[i * 4] = b[0];
        o[i * 4 + 1] = b[1];
        o[i * 4 + 2] = b[2];
        o[i * 4 + 3] = b[3];
        i += 1;
    }
    o
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all three are repr(C), padding-free, and valid for any bytes.
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::SockOwner {}
    unsafe impl aya::Pod for super::RateState {}
    unsafe impl aya::Pod for super::ExecArgs {}
    unsafe impl aya::Pod for super::ExecEvent {}
}
