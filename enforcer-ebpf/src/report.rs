use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
    bpf_get_current_uid_gid, bpf_ktime_get_ns,
};
use enforcer_common::{
    CONFIG_XDP_EVENTS_PER_SEC, Event, SKB_REPORT_INTERVAL_NS, STAT_RINGBUF_FULL,
    STAT_SKB_EVENTS_COALESCED, STAT_XDP_EVENTS_SUPPRESSED, STATS_LEN, SockOwner, VERDICT_ALLOWED,
    VERDICT_PASS, XDP_EVENTS_PER_SEC_DEFAULT, stat_index,
};

use crate::{
    maps::{CONFIG, EVENTS, REPORTED, STATS, XDP_RATE},
    verdict::{Match, passes},
};

#[inline(always)]
pub fn bump(index: u32) {
    if index >= STATS_LEN {
        return;
    }
    if let Some(counter) = STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, and programs do not migrate mid-run.
        unsafe { *counter += 1 };
    }
}

#[inline(always)]
pub fn count(hook: u32, verdict: u32) {
    bump(stat_index(hook, verdict));
}

/// The end every packet program shares: count the verdict, report it
/// unless it passed untouched or was allowed by an exception (`report`
/// gets the verdict and rule), and say whether the packet goes on.
#[inline(always)]
pub fn conclude(hook: u32, found: Match, report: impl FnOnce(u32, u32)) -> bool {
    let Match { verdict, rule_id } = found;
    count(hook, verdict);
    if verdict == VERDICT_PASS {
        return true;
    }
    if verdict != VERDICT_ALLOWED {
        report(verdict, rule_id);
    }
    passes(verdict)
}

/// The current task as a socket owner.
#[inline(always)]
pub fn current_owner() -> SockOwner {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    SockOwner {
        // SAFETY: a helper without arguments.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    }
}

/// What an event says about the traffic, apart from who sent it.
pub struct Flow {
    pub hook: u32,
    pub verdict: u32,
    pub rule_id: u32,
    pub family: u32,
    pub addr: [u32; 4],
    pub port: u32,
    pub protocol: u32,
    pub flags: u32,
    pub cookie: u64,
    /// The containing agent selector + 1 (0: none).
    pub agent: u32,
}

impl Flow {
    /// A flow of `hook` with nothing known yet but `flags`; the hooks fill
    /// in the rest with struct update syntax.
    pub const fn blank(hook: u32, flags: u32) -> Flow {
        Flow {
            hook,
            verdict: 0,
            rule_id: 0,
            family: 0,
            addr: [0; 4],
            port: 0,
            protocol: 0,
            flags,
            cookie: 0,
            agent: 0,
        }
    }
}

/// Writes one event; a full ring buffer is counted, never silent.
#[inline(always)]
pub fn emit(flow: &Flow, owner: &SockOwner) {
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        bump(STAT_RINGBUF_FULL);
        return;
    };
    entry.write(Event {
        // SAFETY: a helper without arguments.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        cookie: flow.cookie,
        cgroup_id: owner.cgroup_id,
        pid: owner.pid,
        tgid: owner.tgid,
        uid: owner.uid,
        gid: owner.gid,
        rule_id: flow.rule_id,
        hook: flow.hook,
        verdict: flow.verdict,
        family: flow.family,
        port: flow.port,
        protocol: flow.protocol,
        flags: flow.flags,
        agent: flow.agent,
        addr: flow.addr,
        comm: owner.comm,
    });
    entry.submit(0);
}

/// A per-CPU budget of XDP events per second, so a flood of banned frames
/// cannot drown the ring buffer (and the events of the other hooks).
/// Suppressed events are counted.
#[inline(always)]
pub fn xdp_event_allowed() -> bool {
    let Some(state) = XDP_RATE.get_ptr_mut(0) else {
        return false;
    };
    let limit = match CONFIG.get(CONFIG_XDP_EVENTS_PER_SEC) {
        Some(&n) if n > 0 => n as u64,
        _ => XDP_EVENTS_PER_SEC_DEFAULT as u64,
    };
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: per-CPU slot, exclusive while this program runs on this CPU.
    let state = unsafe { &mut *state };
    if now.wrapping_sub(state.window_start_ns) >= 1_000_000_000 {
        state.window_start_ns = now;
        state.count = 0;
    }
    if state.count >= limit {
        bump(STAT_XDP_EVENTS_SUPPRESSED);
        return false;
    }
    state.count += 1;
    true
}

/// Remembers that the socket `cookie` was just reported.
#[inline(always)]
pub fn mark_reported(cookie: u64) {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let _ = REPORTED.insert(cookie, now, 0);
}

/// Whether the skb hook should report `cookie` now: not if it was reported
/// (by any hook) within the interval. A flow of packets to a banned address
/// then costs one event per interval, not one per packet.
#[inline(always)]
pub fn skb_report_due(cookie: u64) -> bool {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(last) = REPORTED.get_ptr(cookie) {
        // SAFETY: an LRU value read whole.
        if now.wrapping_sub(unsafe { *last }) < SKB_REPORT_INTERVAL_NS {
            bump(STAT_SKB_EVENTS_COALESCED);
            return false;
        }
    }
    let _ = REPORTED.insert(cookie, now, 0);
    true
}
