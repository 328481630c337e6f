//! Agent containment: a process whose exec matches an agent selector is
//! marked in `CONTAINED` before its new program runs a single instruction
//! (sched_process_exec fires inside execve, before the return to user
//! space); its children inherit the mark at fork (sched_process_fork), and
//! a later exec of anything keeps it, so a contained process cannot leave
//! by running an uncontained binary. The connect/sendmsg and skb programs
//! then judge a contained process by its selector's allow list before any
//! ban.
//!
//! Matching happens here, in the kernel, on the strings execve was given
//! (the path and argv), with the automaton the daemon compiled from the
//! policy's selectors (`AGENT_DFA`); the daemon runs the same tables over
//! /proc for the processes that were already running, so that both agree.

use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{
            bpf_ktime_get_boot_ns, bpf_loop, bpf_probe_read_kernel, bpf_probe_read_kernel_str,
        },
    },
    macros::tracepoint,
    maps::lpm_trie::Key,
    programs::TracePointContext,
};
use enforcer_common::{
    ARGS_BYTES, FILENAME_BYTES, KOFF_CRED_USER_NS, KOFF_HOST_MNT_INUM, KOFF_MNT_NS_INUM,
    KOFF_NSPROXY_MNT_NS, KOFF_TASK_NSPROXY, KOFF_TASK_REAL_CRED, KOFF_USER_NS_INUM,
    VERDICT_AUDITED, VERDICT_DENIED,
    agents::{
        ACTION_AUDIT, ACTION_DENY_ALL, AgentLearned, CFG_BANK, CFG_EXIT_GROUP_DEAD, CFG_FORK_CHILD,
        CFG_KINDS, CFG_NAMES, CFG_ON, CFG_STRIDE, Contained, INIT_USER_NS_INUM, KIND_CMDLINE,
        KIND_EXE, KIND_SCRIPT, MAX_NAME_SELECTORS, MAX_SELECTORS, MAX_STATES, MAX_TRANSITIONS,
        STAT_ALLOWED, STAT_AUDITED, STAT_DENIED, STAT_FULL, STAT_INHERITED, STAT_MATCHED,
        STAT_NO_ARGS, STAT_RAW_REFUSED, STATE_DEAD, STATE_START, STATS_LEN, TAG_CMDLINE, TAG_EXE,
        TAG_SCRIPT, WALK_ARGS, WALK_BYTES, allow_word,
    },
};

use crate::{
    maps::{
        AGENT_ACCEPT, AGENT_ALLOW_V4, AGENT_ALLOW_V6, AGENT_CLASSES, AGENT_CONFIG, AGENT_DFA,
        AGENT_DNS, AGENT_LEARNED_V4, AGENT_LEARNED_V6, AGENT_NAMES, AGENT_RANKS, AGENT_SELECTORS,
        AGENT_STATS, AGENT_WALK, CONTAINED, DNS_SERVERS, EXEC_ARGS,
    },
    verdict::audit_mode,
};

/// The state of one automaton run, in a per-CPU map (`AGENT_WALK`): the
/// executable path at 0, argv (NUL-separated) at `WALK_ARGS`.
#[repr(C)]
pub struct AgentWalk {
    state: u32,
    pos: u32,
    end: u32,
    /// The bank's stride and table offsets, read once per exec: a reload
    /// switching banks meanwhile does not mix two automata.
    stride: u32,
    trans_base: u32,
    class_base: u32,
    accept_base: u32,
    _pad: u32,
    /// 1: read NUL as a space (argv joined into a command line).
    spaces: u32,
    /// The script scan: the argument index, where it starts, and the
    /// first argument after argv[0] that is not an option.
    arg: u32,
    arg_start: u32,
    found_start: u32,
    found_end: u32,
    buf: [u8; WALK_BYTES],
}

#[inline(always)]
fn cfg(index: u32) -> u32 {
    match AGENT_CONFIG.get(index) {
        Some(&v) => v,
        None => 0,
    }
}

/// Whether selectors are loaded; nothing else is looked at while not.
#[inline(always)]
pub fn on() -> bool {
    cfg(CFG_ON) != 0
}

#[inline(always)]
fn stat(index: u32) {
    if index >= STATS_LEN {
        return;
    }
    if let Some(c) = AGENT_STATS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot, ours while this program runs.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn next(w: &AgentWalk, state: u32, byte: u8) -> u32 {
    let class = match AGENT_CLASSES.get(w.class_base + byte as u32) {
        Some(&c) => c as u32,
        None => return STATE_DEAD,
    };
    if state >= MAX_STATES || class >= 256 {
        return STATE_DEAD;
    }
    let i = state * w.stride + class;
    if i >= MAX_TRANSITIONS {
        return STATE_DEAD;
    }
    match AGENT_DFA.get(w.trans_base + i) {
        Some(&s) => s as u32,
        None => STATE_DEAD,
    }
}

/// One byte of a run. Returns 1 to stop (the end, or a dead state: no
/// selector can match whatever follows).
#[inline(never)]
unsafe extern "C" fn walk_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(w) = AGENT_WALK.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: a per-CPU value, ours for the program's run.
    let w = unsafe { &mut *w };
    if w.pos >= w.end || w.state == STATE_DEAD {
        return 1;
    }
    let mut b = w.buf[(w.pos as usize) & (WALK_BYTES - 1)];
    if b == 0 && w.spaces != 0 {
        b = b' ';
    }
    w.state = next(w, w.state, b);
    w.pos += 1;
    0
}

/// Runs the automaton over `tag` then the buffer's bytes `start..end`:
/// the matching selector's index + 1, or 0.
#[inline(always)]
fn run(w: *mut AgentWalk, tag: u8, start: u32, end: u32, spaces: bool) -> u32 {
    // SAFETY: `w` is the per-CPU walk, ours for the program's run; the
    // steps reach it through the map, so it is written through the raw
    // pointer only, and read back volatile after the loop.
    unsafe {
        (*w).state = next(&*w, STATE_START, tag);
        (*w).pos = start;
        (*w).end = end;
        (*w).spaces = spaces as u32;
        let mut unused = 0u64;
        let n = end.saturating_sub(start);
        bpf_loop(
            n.min(WALK_BYTES as u32),
            walk_step as *mut c_void,
            &mut unused as *mut u64 as *mut c_void,
            0,
        );
        let state = core::ptr::read_volatile(&(*w).state);
        if state >= MAX_STATES {
            return 0;
        }
        match AGENT_ACCEPT.get((*w).accept_base + state) {
            Some(&s) => s as u32,
            None => 0,
        }
    }
}

/// One byte of the script scan: finds the first argument after argv[0]
/// that does not start with `-` (the script an interpreter runs, or the
/// module after `-m`).
#[inline(never)]
unsafe extern "C" fn scan_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(w) = AGENT_WALK.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: a per-CPU value, ours for the program's run.
    let w = unsafe { &mut *w };
    if w.pos >= w.end {
        if w.found_start != 0 && w.found_end == 0 {
            w.found_end = w.end;
        }
        return 1;
    }
    let b = w.buf[(w.pos as usize) & (WALK_BYTES - 1)];
    if w.found_start != 0 {
        if b == 0 {
            w.found_end = w.pos;
            return 1;
        }
    } else if w.arg_start == w.pos && w.arg >= 1 && b != b'-' && b != 0 {
        w.found_start = w.pos;
    }
    if b == 0 {
        w.arg += 1;
        w.arg_start = w.pos + 1;
    }
    w.pos += 1;
    0
}

/// The lower of two "index + 1" matches (0: none): the selector written
/// first in the policy wins.
#[inline(always)]
fn first(a: u32, b: u32) -> u32 {
    if a == 0 {
        b
    } else if b == 0 || a < b {
        a
    } else {
        b
    }
}

/// Called by sched_process_exec with the record's filename location and
/// the thread id that called execve (argv was captured under it).
#[inline(always)]
pub fn on_exec(ctx: &TracePointContext, filename_loc: u32, old_tid: u32) {
    if !on() {
        return;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if old_tid != tgid {
        // A thread other than the leader exec'd and took the leader's pid:
        // its own entry (from the fork hook) would never be removed.
        let _ = CONTAINED.remove(old_tid);
    }
    // Contained already (inherited): whatever it runs now stays so; only
    // a stricter selector can take over (an agent started from an audited
    // tree is denied, not audited).
    // SAFETY: a map lookup of a stack key.
    // A mark of a slot no longer present (its selector left) counts as none.
    let current = unsafe { CONTAINED.get(tgid) }
        .copied()
        .filter(|c| present(c.selector));
    let Some(w) = AGENT_WALK.get_ptr_mut(0) else {
        return;
    };
    let bank = cfg(CFG_BANK) & 1;
    let kinds = cfg(CFG_KINDS + bank);
    let mut best = 0;
    // SAFETY: the walk is ours (see `run`); the reads are fault-tolerant
    // helpers into buffers of at least the sizes given.
    unsafe {
        (*w).stride = cfg(CFG_STRIDE + bank);
        (*w).trans_base = bank * MAX_TRANSITIONS;
        (*w).class_base = bank * 256;
        (*w).accept_base = bank * MAX_STATES;
        let off = (filename_loc & 0xffff) as usize;
        let n = bpf_probe_read_kernel_str(
            (*w).buf.as_mut_ptr().cast::<c_void>(),
            FILENAME_BYTES as u32,
            (ctx.as_ptr() as *const u8)
                .wrapping_add(off)
                .cast::<c_void>(),
        );
        if kinds & KIND_EXE != 0 && n > 1 {
            best = run(w, TAG_EXE, 0, (n - 1) as u32, false);
        }
        if kinds & (KIND_SCRIPT | KIND_CMDLINE) != 0 {
            match EXEC_ARGS.get_ptr(old_tid) {
                Some(args) => {
                    let len = (*args).len.min(ARGS_BYTES as u32);
                    bpf_probe_read_kernel(
                        (*w).buf
                            .as_mut_ptr()
                            .wrapping_add(WALK_ARGS)
                            .cast::<c_void>(),
                        ARGS_BYTES as u32,
                        (*args).args.as_ptr().cast::<c_void>(),
                    );
                    let end = WALK_ARGS as u32 + len;
                    if kinds & KIND_SCRIPT != 0 {
                        (*w).pos = WALK_ARGS as u32;
                        (*w).end = end;
                        (*w).arg = 0;
                        (*w).arg_start = WALK_ARGS as u32;
                        (*w).found_start = 0;
                        (*w).found_end = 0;
                        let mut unused = 0u64;
                        bpf_loop(
                            ARGS_BYTES as u32,
                            scan_step as *mut c_void,
                            &mut unused as *mut u64 as *mut c_void,
                            0,
                        );
                        let start = core::ptr::read_volatile(&(*w).found_start);
                        let stop = core::ptr::read_volatile(&(*w).found_end);
                        if start != 0 && stop > start {
                            best = first(best, run(w, TAG_SCRIPT, start, stop, false));
                        }
                    }
                    if kinds & KIND_CMDLINE != 0 && len > 0 {
                        // argv ends with a NUL, which is no separator.
                        best = first(best, run(w, TAG_CMDLINE, WALK_ARGS as u32, end - 1, true));
                    }
                }
                None => stat(STAT_NO_ARGS),
            }
        }
    }
    if best == 0 {
        return;
    }
    // The match is a rank in the policy; the mark holds the selector's slot.
    let slot = match AGENT_RANKS.get(bank * MAX_SELECTORS + ((best - 1) & (MAX_SELECTORS - 1))) {
        Some(&s) => s,
        None => return,
    };
    // A match read from the bank just switched out may name a slot the
    // reload is emptying: never marked, the daemon could not sweep it.
    if !present(slot) {
        return;
    }
    if let Some(c) = current
        && strictness(slot) <= strictness(c.selector)
    {
        return;
    }
    let mark = Contained {
        selector: slot,
        root: tgid,
    };
    match CONTAINED.insert(tgid, mark, 0) {
        Ok(()) => stat(STAT_MATCHED),
        Err(_) => stat(STAT_FULL),
    }
}

/// Whether slot `slot` holds a selector of the policy in force.
#[inline(always)]
fn present(slot: u32) -> bool {
    matches!(AGENT_SELECTORS.get(slot), Some(s) if s.present != 0)
}

/// How much a selector's action withholds: audit < deny < deny-all.
#[inline(always)]
fn strictness(selector: u32) -> u32 {
    match AGENT_SELECTORS.get(selector) {
        Some(s) if s.present != 0 => match s.action {
            ACTION_AUDIT => 0,
            ACTION_DENY_ALL => 2,
            _ => 1,
        },
        _ => 1,
    }
}

#[tracepoint(category = "sched", name = "sched_process_fork")]
pub fn process_fork(ctx: TracePointContext) -> u32 {
    let _ = try_process_fork(&ctx);
    0
}

/// The child of a contained process is contained (the same selector and
/// root); a child of another process clears what a recycled pid left.
fn try_process_fork(ctx: &TracePointContext) -> Result<(), i64> {
    if !on() {
        return Ok(());
    }
    let off = cfg(CFG_FORK_CHILD) as usize;
    if off == 0 {
        return Err(-1);
    }
    // SAFETY: the offset comes from the tracepoint's format (the daemon
    // reads it from tracefs); the read is fault-tolerant.
    let child: i32 = unsafe { ctx.read_at(off) }.map_err(|e| e as i64)?;
    let child = child as u32;
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: map lookups of stack keys.
    match unsafe { CONTAINED.get(tgid) } {
        // A released mark (its selector left the policy) is not passed on.
        Some(c) if present(c.selector) => {
            let mark = *c;
            match CONTAINED.insert(child, mark, 0) {
                Ok(()) => stat(STAT_INHERITED),
                Err(_) => stat(STAT_FULL),
            }
        }
        _ => {
            if unsafe { CONTAINED.get(child) }.is_some() {
                let _ = CONTAINED.remove(child);
            }
        }
    }
    Ok(())
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn process_exit(ctx: TracePointContext) -> u32 {
    let _ = try_process_exit(&ctx);
    0
}

/// A thread's own entry (made by the fork hook, which cannot tell threads
/// from processes) goes with the thread; the process's goes with its last
/// thread (`group_dead`). Kernels without `group_dead` leave that to the
/// daemon, which drops entries of pids that no longer exist.
fn try_process_exit(ctx: &TracePointContext) -> Result<(), i64> {
    if !on() {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let tgid = (pid_tgid >> 32) as u32;
    if tid != tgid {
        let _ = CONTAINED.remove(tid);
    }
    let off = cfg(CFG_EXIT_GROUP_DEAD) as usize;
    if off != 0 {
        // SAFETY: as in `try_process_fork`.
        let dead: u8 = unsafe { ctx.read_at(off) }.map_err(|e| e as i64)?;
        if dead != 0 {
            let _ = CONTAINED.remove(tgid);
        }
    }
    Ok(())
}

/// The containment of the current process.
#[derive(Clone, Copy)]
pub struct Agent {
    pub selector: u32,
    pub action: u32,
}

impl Agent {
    /// `Event::agent`.
    #[inline(always)]
    pub fn event_id(&self) -> u32 {
        self.selector + 1
    }

    /// What happens to a destination outside the allow list.
    #[inline(always)]
    pub fn verdict(&self) -> u32 {
        if self.action == ACTION_AUDIT || audit_mode() {
            stat(STAT_AUDITED);
            VERDICT_AUDITED
        } else {
            stat(STAT_DENIED);
            VERDICT_DENIED
        }
    }
}

/// Whether the current process may create the socket of `ctx`. A
/// contained process (unless its selector audits) may create TCP and UDP
/// sockets only: those pass the connect/sendmsg hooks. Raw, ICMP, SCTP and
/// every other protocol would be judged only per packet, by an owner
/// record that names the creator, whose mark may be gone; MPTCP opens
/// further subflows from a kernel worker, which no hook judges.
#[inline(always)]
pub fn may_create(ctx: &aya_ebpf::programs::SockContext) -> bool {
    const SOCK_STREAM: u32 = 1;
    const SOCK_DGRAM: u32 = 2;
    const IPPROTO_TCP: u32 = 6;
    const IPPROTO_UDP: u32 = 17;
    let Some(agent) = current() else {
        return true;
    };
    // SAFETY: the context pointer is valid for the program's run.
    let (kind, protocol) = unsafe { ((*ctx.sock).type_, (*ctx.sock).protocol) };
    let judged = match kind {
        SOCK_STREAM => protocol == IPPROTO_TCP || protocol == 0,
        SOCK_DGRAM => protocol == IPPROTO_UDP || protocol == 0,
        _ => false,
    };
    if judged || agent.action == ACTION_AUDIT || audit_mode() {
        return true;
    }
    stat(STAT_RAW_REFUSED);
    false
}

/// The agent containing process `tgid`, if any.
#[inline(always)]
pub fn of(tgid: u32) -> Option<Agent> {
    if !on() {
        return None;
    }
    // SAFETY: a map lookup of a stack key.
    let c = unsafe { CONTAINED.get(tgid) }?;
    let selector = c.selector;
    // Marks are made only for present slots; a slot no longer present
    // is a selector the policy dropped: its processes are released.
    let s = AGENT_SELECTORS.get(selector)?;
    if s.present == 0 {
        return None;
    }
    Some(Agent {
        selector,
        action: s.action,
    })
}

/// The agent containing the current process, if any.
#[inline(always)]
pub fn current() -> Option<Agent> {
    of((bpf_get_current_pid_tgid() >> 32) as u32)
}

/// Whether `agent` may reach the IPv4 address `addr` (network order) on
/// `port`/`proto`: the host's DNS servers on 53 (names are resolved by
/// them), its allow list, addresses the host's DNS servers returned for a
/// name on it.
#[inline(always)]
pub fn allows_v4(agent: &Agent, addr: u32, port: u16, proto: u8) -> bool {
    if agent.action == ACTION_DENY_ALL {
        return false;
    }
    let sel = agent.selector;
    let mapped = [0, 0, u32::from_be(0x0000_ffff), addr];
    // SAFETY: map lookups of stack keys.
    if port == 53 && unsafe { DNS_SERVERS.get(mapped) }.is_some() {
        stat(STAT_ALLOWED);
        return true;
    }
    for (p, pr) in [(port, proto), (port, 0), (0, 0)] {
        let key = Key::new(64, [allow_word(sel, pr, p), addr]);
        if AGENT_ALLOW_V4.get(&key).is_some() {
            stat(STAT_ALLOWED);
            return true;
        }
    }
    if cfg(CFG_NAMES) != 0 && sel < MAX_NAME_SELECTORS {
        // SAFETY: as above.
        if let Some(l) = unsafe { AGENT_LEARNED_V4.get(addr) }
            && learned_covers(l, sel)
        {
            stat(STAT_ALLOWED);
            return true;
        }
    }
    false
}

/// [`allows_v4`] for an IPv6 address (not IPv4-mapped).
#[inline(always)]
pub fn allows_v6(agent: &Agent, addr: [u32; 4], port: u16, proto: u8) -> bool {
    if agent.action == ACTION_DENY_ALL {
        return false;
    }
    let sel = agent.selector;
    // SAFETY: map lookups of stack keys.
    if port == 53 && unsafe { DNS_SERVERS.get(addr) }.is_some() {
        stat(STAT_ALLOWED);
        return true;
    }
    for (p, pr) in [(port, proto), (port, 0), (0, 0)] {
        let key = Key::new(
            160,
            [allow_word(sel, pr, p), addr[0], addr[1], addr[2], addr[3]],
        );
        if AGENT_ALLOW_V6.get(&key).is_some() {
            stat(STAT_ALLOWED);
            return true;
        }
    }
    if cfg(CFG_NAMES) != 0 && sel < MAX_NAME_SELECTORS {
        // SAFETY: as above.
        if let Some(l) = unsafe { AGENT_LEARNED_V6.get(addr) }
            && learned_covers(l, sel)
        {
            stat(STAT_ALLOWED);
            return true;
        }
    }
    false
}

/// Whether a Unix-domain name means, for the current task, what it means
/// on the host: the task is in the initial user namespace and the host's
/// mount namespace. A path names a socket only where the caller looks it
/// up: in a user namespace of its own a process can bind-mount any socket
/// (the Docker socket, a SOCKS proxy's) over an allowed path, chroot, or
/// join another namespace of the same user; a setuid sandbox (bwrap) can
/// build such a mount namespace without one. Credentials are the task's
/// real ones (`real_cred`): `cred` is what an io_uring personality swaps
/// in for a request. False when an offset is unknown (fail closed).
#[inline(always)]
pub fn namespaces_trusted() -> bool {
    use crate::kernel::{offset, pointer, read};
    let (cred_at, user_ns_at, user_inum_at) = (
        offset(KOFF_TASK_REAL_CRED),
        offset(KOFF_CRED_USER_NS),
        offset(KOFF_USER_NS_INUM),
    );
    let (nsproxy_at, mnt_ns_at, mnt_inum_at, host_mnt) = (
        offset(KOFF_TASK_NSPROXY),
        offset(KOFF_NSPROXY_MNT_NS),
        offset(KOFF_MNT_NS_INUM),
        offset(KOFF_HOST_MNT_INUM),
    );
    if cred_at == 0 || user_inum_at == 0 || nsproxy_at == 0 || mnt_inum_at == 0 || host_mnt == 0 {
        return false;
    }
    // SAFETY: a helper without arguments.
    let task = unsafe { aya_ebpf::helpers::bpf_get_current_task() };
    // task → real_cred → user_ns → ns.inum, task → nsproxy → mnt_ns → ns.inum
    let user = pointer(task, cred_at)
        .and_then(|c| pointer(c, user_ns_at))
        .and_then(|u| read::<u32>(u, user_inum_at));
    let mnt = pointer(task, nsproxy_at)
        .and_then(|n| pointer(n, mnt_ns_at))
        .and_then(|m| read::<u32>(m, mnt_inum_at));
    user == Some(INIT_USER_NS_INUM) && mnt == Some(host_mnt)
}

/// Whether `agent` may connect or send to the Unix-domain socket `key`
/// (its slot already set): only what its allow list names.
#[inline(always)]
pub fn allows_unix(agent: &Agent, key: &enforcer_common::agents::AgentUnixKey) -> bool {
    if agent.action == ACTION_DENY_ALL {
        return false;
    }
    // SAFETY: a map lookup of a stack key.
    if unsafe { crate::maps::AGENT_ALLOW_UNIX.get(key) }.is_some() && namespaces_trusted() {
        stat(STAT_ALLOWED);
        return true;
    }
    false
}

#[inline(always)]
fn learned_covers(l: &AgentLearned, sel: u32) -> bool {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    l.mask & (1u64 << (sel & 63)) != 0 && l.expires_ns > now
}

// Names in allow lists, learned from the DNS answers the DNS program
// parses. Only the host's DNS servers teach them: a contained process could
// answer itself "allowed name → any address" otherwise.
const NAME: u32 = 0;
const CHAIN: u32 = 1;
const SYSTEM: u32 = 2;

#[inline(always)]
fn dns_slot(i: u32) -> Option<*mut u64> {
    AGENT_DNS.get_ptr_mut(i)
}

/// A new name is being read.
#[inline(always)]
pub fn start_name() {
    if cfg(CFG_NAMES) == 0 {
        return;
    }
    if let Some(p) = dns_slot(NAME) {
        // SAFETY: a per-CPU slot, ours for the program's run.
        unsafe { *p = 0 };
    }
}

/// One suffix of the name being read has the key `key` (`exact`: the
/// whole name): the selectors whose allow lists name it.
#[inline(always)]
pub fn fold_name(key: u64, exact: bool) {
    if cfg(CFG_NAMES) == 0 {
        return;
    }
    // SAFETY: a map lookup of a stack key.
    let Some(n) = (unsafe { AGENT_NAMES.get(key) }) else {
        return;
    };
    let mask = if exact { n.exact } else { n.wild };
    if let Some(p) = dns_slot(NAME) {
        // SAFETY: as in `start_name`.
        unsafe { *p |= mask };
    }
}

/// The question was read: the chain starts with its selectors, if one of
/// the host's DNS servers answered.
#[inline(always)]
pub fn start_chain(system: bool) {
    let names = cfg(CFG_NAMES) != 0;
    // SAFETY: per-CPU slots, ours for the program's run.
    unsafe {
        let mask = match dns_slot(NAME) {
            Some(p) if names && system => *p,
            _ => 0,
        };
        if let Some(p) = dns_slot(CHAIN) {
            *p = mask;
        }
        if let Some(p) = dns_slot(SYSTEM) {
            *p = (names && system) as u64;
        }
    }
}

/// A CNAME target was read: its selectors join the chain's.
#[inline(always)]
pub fn extend_chain() {
    // SAFETY: as in `start_chain`.
    unsafe {
        let (Some(name), Some(chain), Some(system)) =
            (dns_slot(NAME), dns_slot(CHAIN), dns_slot(SYSTEM))
        else {
            return;
        };
        if *system != 0 {
            *chain |= *name;
        }
    }
}

/// Whether the answer's addresses are learned for some selector.
#[inline(always)]
pub fn chain_learns() -> bool {
    match dns_slot(CHAIN) {
        // SAFETY: as in `start_chain`.
        Some(p) => unsafe { *p != 0 },
        None => false,
    }
}

#[inline(always)]
fn chain_mask() -> u64 {
    match dns_slot(CHAIN) {
        // SAFETY: as in `start_chain`.
        Some(p) => unsafe { *p },
        None => 0,
    }
}

/// Merges with a live entry: selectors unioned, the later expiry kept.
#[inline(always)]
fn merged(old: Option<&AgentLearned>, mask: u64, expires_ns: u64) -> AgentLearned {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    match old {
        Some(o) if o.expires_ns > now => AgentLearned {
            mask: o.mask | mask,
            expires_ns: if o.expires_ns > expires_ns {
                o.expires_ns
            } else {
                expires_ns
            },
        },
        _ => AgentLearned { mask, expires_ns },
    }
}

/// An IPv4 address (network order; not a sinkhole, the caller checked)
/// answered for the chain.
#[inline(always)]
pub fn learn_v4(addr: u32, expires_ns: u64) {
    let mask = chain_mask();
    if mask == 0 {
        return;
    }
    // SAFETY: a map lookup of a stack key.
    let value = merged(unsafe { AGENT_LEARNED_V4.get(addr) }, mask, expires_ns);
    let _ = AGENT_LEARNED_V4.insert(addr, value, 0);
}

/// An IPv6 address (as the maps key it; the DNS program has set sinkholes
/// and IPv4-mapped addresses apart) answered for the chain.
#[inline(always)]
pub fn learn_v6(key: [u32; 4], expires_ns: u64) {
    let mask = chain_mask();
    if mask == 0 {
        return;
    }
    // SAFETY: a map lookup of a stack key.
    let value = merged(unsafe { AGENT_LEARNED_V6.get(key) }, mask, expires_ns);
    let _ = AGENT_LEARNED_V6.insert(key, value, 0);
}
