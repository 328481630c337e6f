//! cgroup_skb ingress: DNS answers on their way into a socket of the
//! enforced cgroup. When the question name, or a CNAME target on its chain,
//! is a banned name (exact, or below a `*.suffix` wildcard at any depth),
//! the answer's addresses enter `LEARNED_V4/V6` before the application can
//! read the packet, so a `connect()` made the instant it has the answer is
//! judged with them. An allowed name's addresses become exceptions the same
//! way. The packet itself always passes: this program only learns.
//!
//! Bounds, all counted when hit: the first `DNS_SCRATCH_BYTES` of the
//! message, `MAX_RECORDS` answer records, names of at most `NAME_STEPS`
//! bytes and `MAX_JUMPS` compression pointers (a pointer must point
//! backwards, so loops end), the rightmost `DNS_MAX_LABELS` labels.
//! Only records whose owner is the question or a CNAME target already on
//! the chain count (by compression pointer, as servers write them), so an
//! answer cannot ban addresses for names it was not asked about. UDP, and
//! DNS over TCP as far as one segment holds it; IP fragments are counted
//! as not parsed.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{
        bpf_ktime_get_boot_ns,
        generated::{bpf_loop, bpf_skb_cgroup_id, bpf_skb_load_bytes},
    },
    macros::cgroup_skb,
    maps::{HashMap, PerCpuArray},
    programs::SkBuffContext,
};
use enforcer_common::{
    CONFIG_DNS_GRACE_S, CONFIG_DNS_MAX_TTL_S, CONFIG_DNS_MIN_TTL_S, DNS_LABEL_SEED, DNS_MAX_LABELS,
    DNS_NAME_SEED, DNS_REPORT_BYTES, DNS_SCRATCH_BYTES, DNS_SUFFIX_SLOTS, DNS_SUFFIX_TWEAK,
    DnsReport, LEARNED_F_ALLOW, LEARNED_F_INSPECT, Learned, STAT_DNS_IGNORED,
    STAT_DNS_LEARN_FAILED, STAT_DNS_LEARNED, STAT_DNS_MALFORMED, STAT_DNS_REPORT_CUT,
    STAT_DNS_REPORT_LOST, STAT_DNS_REPORTED, STAT_DNS_RESPONSES, STAT_DNS_TRUNCATED,
    STAT_DNS_UNPARSED, dns_fold, dns_label_byte, scoped_v4, scoped_v6,
};

use crate::{
    contain,
    maps::{
        CONFIG, DNS_NAMES, DNS_RECORDS, DNS_REPORTS, DNS_SCRATCH, DNS_SERVERS, DNS_WALK,
        LEARNED_SCOPED_USED, LEARNED_SCOPED_V4, LEARNED_SCOPED_V6, LEARNED_V4, LEARNED_V6,
        NAME_PORTS, NAME_SHARED,
    },
    net::{
        ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP, IPV6_HLEN, SKB_PASS, ipv4_hlen,
        skb_ethertype,
    },
    report::bump,
};

const DNS_PORT: u16 = 53;

const MASK: usize = DNS_SCRATCH_BYTES - 1;
/// Answer records walked per message.
const MAX_RECORDS: u32 = 16;
/// Bytes (length bytes included) read for one name, pointers followed.
const NAME_STEPS: u32 = 320;
const MAX_JUMPS: u32 = 8;
/// Names on the chain (the question and CNAME targets), by offset.
const MAX_CHAIN: usize = 8;

#[cgroup_skb(ingress)]
pub fn dns_ingress(ctx: SkBuffContext) -> i32 {
    if try_dns_ingress(&ctx).is_err() {
        bump(STAT_DNS_MALFORMED);
    }
    SKB_PASS
}

/// What the names of a message matched: rule ids, 0 for none.
#[derive(Clone, Copy)]
struct Decision {
    deny: u32,
    allow: u32,
}

/// Where the answer came from and who receives it.
#[derive(Clone, Copy)]
struct Origin {
    /// Answered by one of the host's DNS servers: learned for everyone.
    system: bool,
    /// Over UDP: the message is known to start where it is parsed. A TCP
    /// segment is parsed as if it began one, which a later segment of a
    /// long answer need not (its bytes could be made to look like one).
    datagram: bool,
    cgroup: u64,
}

#[inline(always)]
fn try_dns_ingress(ctx: &SkBuffContext) -> Result<(), ()> {
    let (l4, l4_proto, src) = match skb_ethertype(ctx) {
        ETH_P_IP => {
            let vihl: u8 = ctx.load(0).map_err(|_| ())?;
            let frag: u16 = ctx.load(6).map_err(|_| ())?;
            let p: u8 = ctx.load(9).map_err(|_| ())?;
            let saddr: u32 = ctx.load(12).map_err(|_| ())?;
            if u16::from_be(frag) & 0x3fff != 0 {
                if p == IPPROTO_UDP {
                    bump(STAT_DNS_UNPARSED);
                }
                return Ok(());
            }
            let mapped = [0, 0, u32::from_be(0x0000_ffff), saddr];
            (ipv4_hlen(vihl), p, mapped)
        }
        ETH_P_IPV6 => {
            let next: u8 = ctx.load(6).map_err(|_| ())?;
            let saddr: [u32; 4] = ctx.load(8).map_err(|_| ())?;
            (IPV6_HLEN, next, saddr)
        }
        _ => return Ok(()),
    };
    if l4_proto != IPPROTO_UDP && l4_proto != IPPROTO_TCP {
        return Ok(());
    }
    let sport = u16::from_be(ctx.load::<u16>(l4).map_err(|_| ())?);
    if sport != DNS_PORT {
        return Ok(());
    }
    // Where the DNS message starts, and its length as the transport says.
    let (start, len) = if l4_proto == IPPROTO_TCP {
        // DNS over TCP: a 2-byte length, then the message. Only what this
        // segment holds is parsed (the rest is counted as truncated);
        // segments without payload (ACKs) are not DNS.
        let doff: u8 = ctx.load(l4 + 12).map_err(|_| ())?;
        let payload = l4 + ((doff >> 4) as usize) * 4;
        if (ctx.skb.len() as usize) < payload + 2 + 12 {
            return Ok(());
        }
        let prefix = u16::from_be(ctx.load::<u16>(payload).map_err(|_| ())?) as usize;
        (payload + 2, prefix)
    } else {
        let udp_len = u16::from_be(ctx.load::<u16>(l4 + 4).map_err(|_| ())?) as usize;
        (l4 + 8, udp_len.checked_sub(8).ok_or(())?)
    };
    bump(STAT_DNS_RESPONSES);
    let buf = DNS_SCRATCH.get_ptr_mut(0).ok_or(())?;
    // SAFETY: a per-CPU value, ours for the program's run.
    let buf = unsafe { &mut *buf };
    // At least one byte and at most the buffer: the verifier must see both
    // bounds on the length passed.
    let avail = (ctx.skb.len() as usize).saturating_sub(start);
    if avail == 0 {
        return Err(());
    }
    let clamped = if avail > DNS_SCRATCH_BYTES {
        DNS_SCRATCH_BYTES
    } else {
        avail
    };
    // In 1..=DNS_SCRATCH_BYTES in a form the verifier follows.
    let copied = ((clamped - 1) & MASK) + 1;
    // SAFETY: `buf` holds DNS_SCRATCH_BYTES bytes; the helper checks the
    // packet bounds.
    let ret = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const c_void,
            start as u32,
            buf.as_mut_ptr() as *mut c_void,
            copied as u32,
        )
    };
    if ret != 0 {
        return Err(());
    }
    let wire_len = len;
    let len = if len > copied {
        bump(STAT_DNS_TRUNCATED);
        copied
    } else {
        len
    };
    let origin = Origin {
        // SAFETY: a map lookup of a stack key.
        system: unsafe { DNS_SERVERS.get(src) }.is_some(),
        datagram: l4_proto == IPPROTO_UDP,
        // SAFETY: the context's skb is valid for the program's run.
        cgroup: unsafe { bpf_skb_cgroup_id(ctx.skb.skb) },
    };
    let walk = DNS_RECORDS.get_ptr_mut(0).ok_or(())?;
    // SAFETY: a per-CPU value, ours for the program's run.
    unsafe { (*walk).taught = 0 };
    let parsed = parse_message(buf, len, origin);
    // Even a message that failed later on taught what it taught.
    // SAFETY: as above.
    if unsafe { (*walk).taught } != 0 {
        report(ctx, start, wire_len, len, origin.cgroup);
    }
    parsed
}

/// Hands the message to userspace (`DNS_REPORTS`), which names the
/// addresses it taught in flows. A full ring is counted, never waited for.
#[inline(always)]
fn report(ctx: &SkBuffContext, start: usize, wire_len: usize, len: usize, cgroup: u64) {
    let Some(mut entry) = DNS_REPORTS.reserve::<DnsReport>(0) else {
        bump(STAT_DNS_REPORT_LOST);
        return;
    };
    if len > DNS_REPORT_BYTES {
        bump(STAT_DNS_REPORT_CUT);
    }
    let n = if len > DNS_REPORT_BYTES {
        DNS_REPORT_BYTES
    } else {
        len
    };
    // In 1..=DNS_REPORT_BYTES in a form the verifier follows (a parsed
    // message has at least its 12-byte header).
    let n = ((n.wrapping_sub(1)) & (DNS_REPORT_BYTES - 1)) + 1;
    let r = entry.as_mut_ptr();
    // SAFETY: the reserved entry is ours until submitted or discarded;
    // the helper checks the packet bounds.
    let ret = unsafe {
        (*r).ts_ns = bpf_ktime_get_boot_ns();
        (*r).cgroup_id = cgroup;
        (*r).len = wire_len as u32;
        (*r).copied = n as u32;
        bpf_skb_load_bytes(
            ctx.skb.skb as *const c_void,
            start as u32,
            (*r).msg.as_mut_ptr() as *mut c_void,
            n as u32,
        )
    };
    if ret != 0 {
        entry.discard(0);
        bump(STAT_DNS_REPORT_LOST);
        return;
    }
    entry.submit(0);
    bump(STAT_DNS_REPORTED);
}

#[inline(always)]
fn byte(buf: &[u8; DNS_SCRATCH_BYTES], i: usize) -> u8 {
    buf[i & MASK]
}

#[inline(always)]
fn be16(buf: &[u8; DNS_SCRATCH_BYTES], i: usize) -> u16 {
    ((byte(buf, i) as u16) << 8) | byte(buf, i + 1) as u16
}

#[inline(always)]
fn be32(buf: &[u8; DNS_SCRATCH_BYTES], i: usize) -> u32 {
    ((be16(buf, i) as u32) << 16) | be16(buf, i + 2) as u32
}

#[inline(always)]
fn parse_message(buf: &[u8; DNS_SCRATCH_BYTES], len: usize, origin: Origin) -> Result<(), ()> {
    // Answers are parsed from the per-CPU copy in `buf`; the callbacks
    // below look the same copy up themselves.
    if len < 12 {
        return Err(());
    }
    let flags = be16(buf, 2);
    // A response (QR), a standard query (opcode 0), NOERROR.
    if flags & 0x8000 == 0 || (flags >> 11) & 0xf != 0 || flags & 0xf != 0 {
        return Ok(());
    }
    if be16(buf, 4) != 1 {
        return Ok(());
    }
    let answers = be16(buf, 6) as u32;
    let question = read_name(len, 12)?;
    // What agents may reach is learned from whole UDP answers of the
    // host's DNS servers only.
    contain::start_chain(origin.system && origin.datagram);
    if answers > MAX_RECORDS {
        bump(STAT_DNS_TRUNCATED);
    }
    let walk = DNS_RECORDS.get_ptr_mut(0).ok_or(())?;
    // SAFETY: a per-CPU value, ours for the program's run.
    let walk = unsafe { &mut *walk };
    walk.len = len as u64;
    walk.off = (question.end + 4) as u64;
    walk.answers = answers as u64;
    walk.cgroup = origin.cgroup;
    walk.system = origin.system as u32;
    walk.deny = question.decision.deny;
    walk.allow = question.decision.allow;
    walk.failed = 0;
    walk.chained = 1;
    walk.chain[0] = 12;
    // bpf_loop wants a stack context; the steps find the walk in the map,
    // so that the verifier sees the same (unknown) state in every step and
    // checks the step once.
    let mut unused = 0u64;
    // SAFETY: the callback and its context live for the call.
    unsafe {
        bpf_loop(
            answers.min(MAX_RECORDS),
            record_step as *mut c_void,
            &mut unused as *mut u64 as *mut c_void,
            0,
        );
    }
    if walk.failed != 0 { Err(()) } else { Ok(()) }
}

/// The state of the walk over the answer records (`record_step`), in a
/// per-CPU map (`DNS_RECORDS`).
#[repr(C)]
pub struct RecordWalk {
    len: u64,
    off: u64,
    answers: u64,
    cgroup: u64,
    system: u32,
    /// What the chain's names matched so far.
    deny: u32,
    allow: u32,
    failed: u32,
    chained: u32,
    /// A+AAAA records of a matching chain seen: the message is reported.
    taught: u32,
    /// Offsets of the names on the chain: the question, CNAME targets.
    chain: [u16; MAX_CHAIN],
}

/// One answer record: its owner must be on the chain (a compression
/// pointer to a name already on it); a CNAME extends the chain and may
/// match a banned or allowed name; an A or AAAA record of a matching chain
/// is learned. Returns 1 to stop.
#[inline(never)]
unsafe extern "C" fn record_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(w) = DNS_RECORDS.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: a per-CPU value, ours for the program's run.
    let w = unsafe { &mut *w };
    match record(w) {
        Ok(()) => 0,
        Err(()) => {
            w.failed = 1;
            1
        }
    }
}

#[inline(always)]
fn record(w: &mut RecordWalk) -> Result<(), ()> {
    let buf = DNS_SCRATCH.get_ptr(0).ok_or(())?;
    // SAFETY: a per-CPU value, ours for the program's run.
    let buf = unsafe { &*buf };
    let len = w.len as usize;
    let mut off = w.off as usize;
    if off + 12 > len {
        return Err(());
    }
    let first = byte(buf, off);
    let on_chain = if first & 0xc0 == 0xc0 {
        let ptr = be16(buf, off) & 0x3fff;
        off += 2;
        on(&w.chain, w.chained as usize, ptr)
    } else {
        off = skip_name(buf, len, off)?;
        false
    };
    if off + 10 > len {
        return Err(());
    }
    let rtype = be16(buf, off);
    let ttl = be32(buf, off + 4);
    let rdlen = be16(buf, off + 8) as usize;
    let rdata = off + 10;
    if rdata + rdlen > len {
        return Err(());
    }
    w.off = (rdata + rdlen) as u64;
    if !on_chain {
        return Ok(());
    }
    let decision = Decision {
        deny: w.deny,
        allow: w.allow,
    };
    let origin = Origin {
        system: w.system != 0,
        // Not read past the question (`start_chain` took it there).
        datagram: false,
        cgroup: w.cgroup,
    };
    // RR TYPE values (RFC 1035, RFC 3596 for AAAA).
    const TYPE_A: u16 = 1;
    const TYPE_CNAME: u16 = 5;
    const TYPE_AAAA: u16 = 28;
    match rtype {
        TYPE_CNAME => {
            let target = read_name(len, rdata)?;
            contain::extend_chain();
            if w.deny == 0 {
                w.deny = target.decision.deny;
            }
            if w.allow == 0 {
                w.allow = target.decision.allow;
            }
            push(w, rdata as u16);
            // The target written as a pointer: later owners point where it
            // points.
            if byte(buf, rdata) & 0xc0 == 0xc0 {
                push(w, be16(buf, rdata) & 0x3fff);
            }
        }
        TYPE_A if rdlen == 4 && contain::chain_learns() => {
            let a = [
                byte(buf, rdata),
                byte(buf, rdata + 1),
                byte(buf, rdata + 2),
                byte(buf, rdata + 3),
            ];
            if (decision.deny | decision.allow) != 0 {
                w.taught += 1;
                learn_v4(a, ttl, decision, origin);
            }
            if !local_v4(a[0], a[1]) {
                contain::learn_v4(u32::from_ne_bytes(a), expiry(ttl));
            }
        }
        TYPE_AAAA if rdlen == 16 && contain::chain_learns() => {
            let mut a = [0u8; 16];
            for (j, b) in a.iter_mut().enumerate() {
                *b = byte(buf, rdata + j);
            }
            if (decision.deny | decision.allow) != 0 {
                w.taught += 1;
                learn_v6(a, ttl, decision, origin);
            }
            match v6_answer(&a) {
                V6Answer::V4(v4) => contain::learn_v4(u32::from_ne_bytes(v4), expiry(ttl)),
                V6Answer::V6(key) => contain::learn_v6(key, expiry(ttl)),
                _ => {}
            }
        }
        TYPE_A if rdlen == 4 && (decision.deny | decision.allow) != 0 => {
            let a = [
                byte(buf, rdata),
                byte(buf, rdata + 1),
                byte(buf, rdata + 2),
                byte(buf, rdata + 3),
            ];
            w.taught += 1;
            learn_v4(a, ttl, decision, origin);
        }
        TYPE_AAAA if rdlen == 16 && (decision.deny | decision.allow) != 0 => {
            let mut a = [0u8; 16];
            for (j, b) in a.iter_mut().enumerate() {
                *b = byte(buf, rdata + j);
            }
            w.taught += 1;
            learn_v6(a, ttl, decision, origin);
        }
        _ => {}
    }
    Ok(())
}

#[inline(always)]
fn push(w: &mut RecordWalk, offset: u16) {
    let i = w.chained as usize;
    if i < MAX_CHAIN {
        w.chain[i] = offset;
        w.chained += 1;
    }
}

#[inline(always)]
fn on(chain: &[u16; MAX_CHAIN], chained: usize, ptr: u16) -> bool {
    let mut i = 0;
    while i < MAX_CHAIN {
        if i < chained && chain[i] == ptr {
            return true;
        }
        i += 1;
    }
    false
}

/// The offset after a name, without reading its labels' bytes.
#[inline(never)]
fn skip_name(buf: &[u8; DNS_SCRATCH_BYTES], len: usize, start: usize) -> Result<usize, ()> {
    let mut pos = start;
    for _ in 0..64 {
        if pos >= len {
            return Err(());
        }
        let c = byte(buf, pos);
        if c == 0 {
            return Ok(pos + 1);
        }
        if c & 0xc0 == 0xc0 {
            return Ok(pos + 2);
        }
        if c & 0xc0 != 0 {
            return Err(());
        }
        pos += c as usize + 1;
    }
    Err(())
}

struct Name {
    /// The offset after the name where it starts (not where a pointer led).
    end: usize,
    decision: Decision,
}

/// The state of one name walk, advanced a byte at a time by `name_step`
/// under `bpf_loop`: the verifier checks the step once, not once per byte.
/// It lives in a per-CPU map (`DNS_WALK`), not on the stack: zeroing the
/// label array there would cost a byte loop in every caller.
#[repr(C)]
pub struct NameWalk {
    pub(crate) len: u64,
    pub(crate) pos: u64,
    pub(crate) end: u64,
    pub(crate) hash: u64,
    pub(crate) count: u64,
    pub(crate) left: u32,
    pub(crate) jumps: u32,
    /// `WALKING`, `DONE` or `FAILED`.
    pub(crate) state: u32,
    pub(crate) _pad: u32,
    pub(crate) labels: [u64; DNS_MAX_LABELS],
    /// Hashes of the first label's tails, each from one of its last
    /// hyphens on (`*-tail` rules); slot `hyphens - 1` (mod the slots) is
    /// the newest, shortest tail.
    pub(crate) tails: [u64; DNS_SUFFIX_SLOTS],
    /// Hyphens seen in the first label (not at its first byte).
    pub(crate) hyphens: u32,
    /// The length of the label being read.
    pub(crate) label_len: u32,
    /// The fold so far (`fold_step`) and what it matched.
    pub(crate) key: u64,
    pub(crate) deny: u32,
    pub(crate) allow: u32,
}

/// A walk a `bpf_loop` step advances: failed when its input is missing.
pub(crate) trait Stepped {
    fn fail(&mut self);
}

impl Stepped for NameWalk {
    fn fail(&mut self) {
        self.state = FAILED;
    }
}

/// What every step begins with: its walk and the scratch copy it reads,
/// from their per-CPU maps. `None` (stop the loop) if either is missing,
/// the walk then marked failed.
#[inline(always)]
pub(crate) fn step_state<W: Stepped, const N: usize>(
    walk: &PerCpuArray<W>,
    scratch: &PerCpuArray<[u8; N]>,
) -> Option<(&'static mut W, &'static [u8; N])> {
    let w = walk.get_ptr_mut(0)?;
    // SAFETY: a per-CPU value, ours for the program's run; the loop's
    // steps run one at a time.
    let w = unsafe { &mut *w };
    let Some(buf) = scratch.get_ptr(0) else {
        w.fail();
        return None;
    };
    // SAFETY: as above.
    Some((w, unsafe { &*buf }))
}

pub(crate) const WALKING: u32 = 0;
pub(crate) const DONE: u32 = 1;
pub(crate) const FAILED: u32 = 2;

/// One byte of a name: a label byte (hashed), a length byte (a new
/// label), the root (done) or a compression pointer (followed backwards).
/// Returns 1 to stop the loop.
#[inline(never)]
unsafe extern "C" fn name_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some((w, buf)) = step_state(&DNS_WALK, &DNS_SCRATCH) else {
        return 1;
    };
    let pos = w.pos as usize;
    if pos >= w.len as usize {
        w.state = FAILED;
        return 1;
    }
    let c = byte(buf, pos);
    if w.left > 0 {
        if w.count == 0 {
            first_label_byte(w, c);
        }
        w.hash = dns_label_byte(w.hash, c);
        w.left -= 1;
        w.pos += 1;
        if w.left == 0 {
            w.labels[(w.count as usize) & (DNS_MAX_LABELS - 1)] = w.hash;
            w.count += 1;
        }
        return 0;
    }
    if c == 0 {
        if w.end == 0 {
            w.end = w.pos + 1;
        }
        w.state = DONE;
        return 1;
    }
    if c & 0xc0 == 0xc0 {
        let ptr = (be16(buf, pos) & 0x3fff) as u64;
        if w.end == 0 {
            w.end = w.pos + 2;
        }
        w.jumps += 1;
        // Backwards only: a pointer loop cannot go on.
        if w.jumps > MAX_JUMPS || ptr >= w.pos {
            w.state = FAILED;
            return 1;
        }
        w.pos = ptr;
        return 0;
    }
    if c & 0xc0 != 0 {
        w.state = FAILED;
        return 1;
    }
    w.left = c as u32;
    w.label_len = c as u32;
    w.hash = DNS_LABEL_SEED;
    w.pos += 1;
    0
}

/// A byte of the first label: extends every tail, and a hyphen (not the
/// label's first byte) starts a new one in the oldest slot. Rotating keeps
/// the tails of the last `DNS_SUFFIX_SLOTS` hyphens, the ones a rule with
/// at most that many hyphens can name.
#[inline(always)]
pub(crate) fn first_label_byte(w: &mut NameWalk, c: u8) {
    let mut i = 0;
    while i < DNS_SUFFIX_SLOTS {
        w.tails[i] = dns_label_byte(w.tails[i], c);
        i += 1;
    }
    if c == b'-' && w.left < w.label_len {
        w.tails[(w.hyphens as usize) & (DNS_SUFFIX_SLOTS - 1)] = dns_label_byte(DNS_LABEL_SEED, c);
        w.hyphens += 1;
    }
}

/// The `*-tail` rules over the first label (folded onto `parent`, the key
/// of the rest of the name): the shortest tail first, so that a longer
/// (more specific) one overwrites.
#[inline(always)]
fn tail_rules(w: &mut NameWalk, parent: u64) {
    let filled = if (w.hyphens as usize) < DNS_SUFFIX_SLOTS {
        w.hyphens as usize
    } else {
        DNS_SUFFIX_SLOTS
    };
    let mut i = 0;
    while i < DNS_SUFFIX_SLOTS {
        if i < filled {
            let slot = (w.hyphens as usize).wrapping_sub(1 + i) & (DNS_SUFFIX_SLOTS - 1);
            let key = dns_fold(parent, w.tails[slot] ^ DNS_SUFFIX_TWEAK);
            // SAFETY: a map lookup of a stack key.
            if let Some(rule) = unsafe { DNS_NAMES.get(key) } {
                decide(w, rule.deny_exact, rule.allow_exact);
            }
        }
        i += 1;
    }
}

/// One suffix of the name (label `j` from the right): folds it into the
/// key and looks the key up; the whole name matches exact entries, a
/// shorter suffix wildcard entries, and before the leftmost label is
/// folded, its tails match `*-tail` entries. The most specific match wins
/// (later, longer suffixes overwrite): exact, then `*-tail`, then `*.`.
#[inline(never)]
unsafe extern "C" fn fold_step(j: u64, _ctx: *mut c_void) -> i64 {
    let Some(w) = DNS_WALK.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: a per-CPU value, ours for the program's run.
    let w = unsafe { &mut *w };
    let stop = fold_label(w, j);
    if stop == 0 {
        contain::fold_name(w.key, j + 1 == w.count);
    }
    stop
}

/// The body of `fold_step` for any walk (the SNI program keeps its own
/// walk, so that a DNS answer parsed in softirq on the same CPU cannot
/// overwrite it): label `j` from the right. Returns 1 to stop.
#[inline(always)]
pub(crate) fn fold_label(w: &mut NameWalk, j: u64) -> i64 {
    let count = w.count;
    if j >= count {
        return 1;
    }
    let label = w.labels[((count - 1 - j) as usize) & (DNS_MAX_LABELS - 1)];
    if j + 1 == count && w.hyphens != 0 {
        let parent = w.key;
        tail_rules(w, parent);
    }
    w.key = dns_fold(w.key, label);
    // SAFETY: a map lookup of a stack key.
    let Some(rule) = (unsafe { DNS_NAMES.get(w.key) }) else {
        return 0;
    };
    let (deny, allow) = if j + 1 == count {
        (rule.deny_exact, rule.allow_exact)
    } else {
        (rule.deny_wild, rule.allow_wild)
    };
    decide(w, deny, allow);
    0
}

/// The port scope ([`enforcer_common::name_port`]) of a name rule; 0: every
/// port.
#[inline(always)]
fn rule_port(rule_id: u32) -> u32 {
    // SAFETY: a map lookup of a stack key.
    match unsafe { NAME_PORTS.get(rule_id) } {
        Some(&p) => p,
        None => 0,
    }
}

/// Takes the rules of one name level into the walk, which goes from the
/// least specific level to the most specific (`*.a.b`, `*.b`-style
/// wildcards, then `*-tail`, then the exact name), so that the most
/// specific rule decides, as for the policy: a more specific exception
/// wins over a broader ban (which is kept, for `entry` to see), a more
/// specific ban over a broader exception. Two bans make one: a ban on
/// every port is never narrowed by a more specific ban on one port.
#[inline(always)]
fn decide(w: &mut NameWalk, deny: u32, allow: u32) {
    if allow != 0 {
        w.allow = allow;
        if deny != 0 {
            w.deny = deny;
        }
    } else if deny != 0 {
        w.allow = 0;
        if w.deny == 0 || rule_port(w.deny) != 0 {
            w.deny = deny;
        }
    }
}

/// Reads the name at `start`: hashes each label as it goes (one pass over
/// the bytes, pointers followed backwards only), then folds the rightmost
/// labels from the right, looking each suffix up in `DNS_NAMES`: the whole
/// name against exact entries, every shorter suffix against wildcards.
#[inline(never)]
fn read_name(len: usize, start: usize) -> Result<Name, ()> {
    let w = DNS_WALK.get_ptr_mut(0).ok_or(())?;
    // SAFETY: a per-CPU value, ours for the program's run; one walk at a
    // time (walks are never nested).
    let w = unsafe { &mut *w };
    w.len = len as u64;
    w.pos = start as u64;
    w.end = 0;
    w.hash = DNS_LABEL_SEED;
    w.count = 0;
    w.left = 0;
    w.jumps = 0;
    w.hyphens = 0;
    w.label_len = 0;
    w.state = WALKING;
    w.key = DNS_NAME_SEED;
    w.deny = 0;
    w.allow = 0;
    contain::start_name();
    // bpf_loop wants a stack context; the steps find the walk in the map.
    let mut unused = 0u64;
    // SAFETY: the callback and its context live for the call.
    unsafe {
        bpf_loop(
            NAME_STEPS,
            name_step as *mut c_void,
            &mut unused as *mut u64 as *mut c_void,
            0,
        );
    }
    let count = w.count as usize;
    if w.state != DONE || count == 0 {
        return Err(());
    }
    // SAFETY: as above.
    unsafe {
        bpf_loop(
            count.min(DNS_MAX_LABELS) as u32,
            fold_step as *mut c_void,
            &mut unused as *mut u64 as *mut c_void,
            0,
        );
    }
    let decision = Decision {
        deny: w.deny,
        allow: w.allow,
    };
    Ok(Name {
        end: w.end as usize,
        decision,
    })
}

#[inline(always)]
fn config(index: u32, default: u32) -> u32 {
    match CONFIG.get(index) {
        Some(&v) if v != 0 => v,
        _ => default,
    }
}

/// When an address from an answer with `ttl` stops counting.
#[inline(always)]
fn expiry(ttl: u32) -> u64 {
    // The defaults while the daemon has not written the CONFIG entries.
    let min = config(CONFIG_DNS_MIN_TTL_S, 30);
    let max = config(CONFIG_DNS_MAX_TTL_S, 3600);
    let grace = match CONFIG.get(CONFIG_DNS_GRACE_S) {
        Some(&g) => g,
        None => 0,
    };
    let ttl = if ttl < min {
        min
    } else if ttl > max {
        max
    } else {
        ttl
    };
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    now + (ttl as u64 + grace as u64) * 1_000_000_000
}

/// The entry to store, given what is stored under the same key (the
/// same address, and for a scoped ban the same cgroup): a live exception
/// is never turned into a ban, and an expiry is never shortened.
#[inline(always)]
fn merge(old: Option<&Learned>, new: Learned) -> Option<Learned> {
    let Some(old) = old else {
        return Some(new);
    };
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if old.expires_ns <= now {
        return Some(new);
    }
    let old_allow = old.flags & LEARNED_F_ALLOW != 0;
    let new_allow = new.flags & LEARNED_F_ALLOW != 0;
    if old_allow && !new_allow {
        return None;
    }
    // A live ban (a dedicated name's address) is not weakened into an
    // inspection by a shared name answering with the same address.
    if old.flags == 0 && new.flags & LEARNED_F_INSPECT != 0 {
        return None;
    }
    let mut out = new;
    if old_allow == new_allow {
        if old.cgroup_id == 0 {
            out.cgroup_id = 0;
        }
        if old.expires_ns > out.expires_ns {
            out.expires_ns = old.expires_ns;
        }
        out.port = wider_port(old.port, new.port);
    }
    Some(out)
}

/// The port scope of an address learned for two rules: every port wins
/// over one port, both protocols over one. Two different ports cannot be
/// held by one entry: the newer answer's name keeps it (its application
/// is about to connect); the daemon's own resolution of names with a port
/// goes to the port tries, where both stay.
#[inline(always)]
fn wider_port(old: u32, new: u32) -> u32 {
    if old == 0 || new == 0 {
        0
    } else if old >> 8 == new >> 8 && old != new {
        old & !0xff
    } else {
        new
    }
}

/// What an answer teaches about its addresses, if anything. An exception
/// is learned only from the host's DNS servers: any process can answer
/// itself, and an exception lifts bans (static ones included). An
/// exception with a port inside a broader ban is not learned either: one
/// entry cannot hold "banned except on 443", and the ban is the safe half
/// (an address exception with a port, `allow.cidrs: ["ADDR:443"]`, opens
/// such a port).
#[inline(always)]
fn entry(ttl: u32, d: Decision, origin: Origin) -> Option<Learned> {
    let allow_port = if d.allow != 0 { rule_port(d.allow) } else { 0 };
    let (rule_id, flags, port) =
        if d.allow != 0 && origin.system && (allow_port == 0 || d.deny == 0) {
            (d.allow, LEARNED_F_ALLOW, allow_port)
        } else if d.deny != 0 {
            (d.deny, shared_flag(d.deny), rule_port(d.deny))
        } else {
            return None;
        };
    Some(Learned {
        rule_id,
        flags,
        expires_ns: expiry(ttl),
        cgroup_id: if origin.system { 0 } else { origin.cgroup },
        port,
        _reserved: 0,
    })
}

/// `LEARNED_F_INSPECT` for a shared name's rule: its front end serves other
/// names too, so its addresses are inspected (judged by the name each
/// connection sends), never banned.
#[inline(always)]
fn shared_flag(rule: u32) -> u32 {
    // SAFETY: a map lookup of a stack key.
    if unsafe { NAME_SHARED.get(rule) }.is_some() {
        LEARNED_F_INSPECT
    } else {
        0
    }
}

/// Sinkholes and the host itself, by an IPv4 address's first two bytes:
/// 0.0.0.0/8, loopback, link-local. Never learned.
#[inline(always)]
pub(crate) fn local_v4(a0: u8, a1: u8) -> bool {
    a0 == 0 || a0 == 127 || (a0 == 169 && a1 == 254)
}

#[inline(always)]
fn learn_v4(a: [u8; 4], ttl: u32, d: Decision, origin: Origin) {
    if local_v4(a[0], a[1]) {
        bump(STAT_DNS_IGNORED);
        return;
    }
    let key = u32::from_ne_bytes(a);
    let mapped = [0, 0, u32::from_be(0x0000_ffff), key];
    let keys = (key, scoped_v4(key, origin.cgroup));
    learn_in(
        (&LEARNED_V4, &LEARNED_SCOPED_V4),
        keys,
        mapped,
        ttl,
        d,
        origin,
    );
}

/// What an AAAA record's address is to the learning: never learned (the
/// unspecified address, loopback, link-local, or an IPv4-mapped sinkhole),
/// an IPv4 address (`::ffff:a.b.c.d`: the programs judge it by the IPv4
/// maps), or an IPv6 address as the maps key it.
pub(crate) enum V6Answer {
    Ignored,
    V4([u8; 4]),
    V6([u32; 4]),
}

#[inline(always)]
pub(crate) fn v6_answer(a: &[u8; 16]) -> V6Answer {
    let unspecified_or_loopback = a[..15].iter().all(|&b| b == 0) && (a[15] == 0 || a[15] == 1);
    let link_local = a[0] == 0xfe && a[1] & 0xc0 == 0x80;
    let mapped_v4 = a[..10].iter().all(|&b| b == 0) && a[10] == 0xff && a[11] == 0xff;
    if unspecified_or_loopback || link_local || (mapped_v4 && local_v4(a[12], a[13])) {
        return V6Answer::Ignored;
    }
    if mapped_v4 {
        return V6Answer::V4([a[12], a[13], a[14], a[15]]);
    }
    V6Answer::V6([
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ])
}

#[inline(always)]
fn learn_v6(a: [u8; 16], ttl: u32, d: Decision, origin: Origin) {
    let key = match v6_answer(&a) {
        V6Answer::Ignored => {
            bump(STAT_DNS_IGNORED);
            return;
        }
        V6Answer::V4(v4) => {
            learn_v4(v4, ttl, d, origin);
            return;
        }
        V6Answer::V6(key) => key,
    };
    let keys = (key, scoped_v6(key, origin.cgroup));
    learn_in((&LEARNED_V6, &LEARNED_SCOPED_V6), keys, key, ttl, d, origin);
}

/// Where an answer's address goes: the entry for everyone (`maps.0`,
/// `keys.0`) when one of the host's DNS servers answered, else the
/// receiving cgroup's own (`maps.1`, keyed by address and cgroup).
#[inline(always)]
fn learn_in<K, S>(
    maps: (&HashMap<K, Learned>, &HashMap<S, Learned>),
    keys: (K, S),
    server: [u32; 4],
    ttl: u32,
    d: Decision,
    origin: Origin,
) {
    if origin.system {
        learn(maps.0, keys.0, server, ttl, d, origin);
    } else {
        learn(maps.1, keys.1, server, ttl, d, origin);
    }
}

/// Stores what an answer says of `key` in `map` (either family's learned
/// addresses), merged with what is there, unless the address is one of the
/// host's DNS servers (`server`: the address as `DNS_SERVERS` keys it).
#[inline(always)]
fn learn<K>(
    map: &HashMap<K, Learned>,
    key: K,
    server: [u32; 4],
    ttl: u32,
    d: Decision,
    origin: Origin,
) {
    // SAFETY: map lookups of stack keys.
    if unsafe { DNS_SERVERS.get(server) }.is_some() {
        bump(STAT_DNS_IGNORED);
        return;
    }
    let Some(new) = entry(ttl, d, origin) else {
        return;
    };
    if new.cgroup_id != 0 {
        // From now on the verdicts look scoped bans up too.
        if let Some(used) = LEARNED_SCOPED_USED.get_ptr_mut(0) {
            // SAFETY: an array slot; any CPU writing 1 is the same.
            unsafe { *used = 1 };
        }
    }
    let Some(value) = merge(unsafe { map.get(&key) }, new) else {
        return;
    };
    match map.insert(&key, value, 0) {
        Ok(()) => bump(STAT_DNS_LEARNED),
        Err(_) => bump(STAT_DNS_LEARN_FAILED),
    }
}
