//! Shared names, judged by the name a connection sends.
//!
//! A shared banned name (a vendor's API behind a CDN that serves other
//! sites from the same addresses) is never banned by address: its addresses
//! are *inspected* (`verdict::inspected_v4/v6`). `sni_sockops` puts every
//! TCP connection to such an address, once established, into `SNI_SOCKS`;
//! `sni_msg`, the sk_msg verdict on that map, then sees the application's
//! first write whole, before TCP cuts it into segments (a post-quantum
//! ClientHello of 1.2–1.9 KB spans two segments and may carry server_name
//! after the key share), and judges it by its name:
//! - a TLS ClientHello: the server_name extension wherever it stands;
//! - a plain HTTP request: its Host header.
//!
//! The name is hashed and matched against `DNS_NAMES` exactly as the DNS
//! program matches answers (`dns::fold_label`). Banned and not excepted:
//! `SK_DROP`, the write fails with EACCES at once. Anything else passes,
//! and the connection's state (`pending`) lets its later writes through
//! at once (`bpf_msg_apply_bytes` where the state could not be made). A
//! handshake record that cannot be parsed, or a ClientHello that does not
//! fill its record exactly (one split over several records), is an error
//! verdict (denied in enforce mode, counted). Proxy requests and plain
//! HTTP keep later writes under judgment (a tunnel's first write, each
//! further request).
//!
//! Bounds: the first `SNI_SCRATCH_BYTES` of the write, `MAX_EXTENSIONS`
//! extensions, names of at most 255 bytes; every length is checked against
//! the record.

use core::{
    ffi::c_void,
    ptr::{self, read_volatile},
};

use aya_ebpf::{
    bindings::{
        BPF_ANY, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, sk_action::SK_DROP, sk_action::SK_PASS,
    },
    helpers::generated::{
        bpf_get_socket_cookie, bpf_loop, bpf_map_delete_elem, bpf_msg_apply_bytes,
        bpf_msg_cork_bytes, bpf_msg_pull_data, bpf_probe_read_kernel,
    },
    macros::{sk_msg, sock_ops},
    programs::{SkMsgContext, SockOpsContext},
};
use enforcer_common::{
    AF_INET, AF_INET6, DNS_LABEL_SEED, DNS_MAX_LABELS, DNS_NAME_SEED, EVENT_F_ECH,
    EVENT_F_HTTP_HOST, EVENT_F_PROXY, EVENT_F_UNINSPECTED, HOOK_SNI, IPPROTO_TCP,
    SNI_F_ECH_OUTER_NAME, SNI_F_INSPECT_443, SNI_PENDING_HTTP, SNI_PENDING_JUDGED,
    SNI_PENDING_TUNNEL, SNI_PENDING_WAIT, SNI_SCRATCH_BYTES, STAT_OWNER_UNKNOWN, STAT_SNI_DENIED,
    STAT_SNI_ECH, STAT_SNI_HTTP, STAT_SNI_INSPECTED, STAT_SNI_MALFORMED, STAT_SNI_NOT_TLS,
    STAT_SNI_PASSED, STAT_SNI_PROXY, STAT_SNI_SOCKETS, STAT_SNI_SOCKETS_FAILED, SniPending,
    VERDICT_ALLOWED, VERDICT_AUDITED, VERDICT_DENIED, VERDICT_PASS, dns_label_byte,
};

use crate::{
    dns::{DONE, FAILED, Stepped, WALKING, first_label_byte, fold_label, step_state},
    maps::{LEARNED_SCOPED_USED, SNI_NAME, SNI_PROXY_PORTS, SNI_SCRATCH, SNI_SOCKS, SNI_WALK},
    owner, pending,
    report::{Flow, bump, conclude, current_owner, emit},
    verdict::{
        ERROR, Match, NO_MATCH, audit_mode, banned, banned_or_error, check_v4, check_v6_forms,
        inspected_v4, inspected_v6, sni_flags,
    },
};

const MASK: usize = SNI_SCRATCH_BYTES - 1;
/// Extensions walked per ClientHello: real ones carry about twenty; more
/// than this is treated as malformed (an error verdict), not skipped.
const MAX_EXTENSIONS: u32 = 128;
/// The longest host name (RFC 1035 presentation form).
const MAX_NAME: usize = 255;

/// TLS record and handshake types (RFC 8446 §5.1, §4), extension types
/// (RFC 6066 §3; draft-ietf-tls-esni: encrypted_client_hello).
const TLS_HANDSHAKE: u8 = 0x16;
const TLS_CHANGE_CIPHER_SPEC: u8 = 0x14;
const TLS_ALERT: u8 = 0x15;
const TLS_APPLICATION_DATA: u8 = 0x17;
const TLS_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;

#[sock_ops]
pub fn sni_sockops(ctx: SockOpsContext) -> u32 {
    if ctx.op() == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB {
        established(&ctx);
    }
    1
}

/// An outgoing TCP connection just completed its handshake (before the
/// application's connect() returns): under inspection if its destination is.
#[inline(always)]
fn established(ctx: &SockOpsContext) {
    // SAFETY: the context is a valid argument for this helper here.
    let mut cookie = unsafe { bpf_get_socket_cookie(ctx.ops as *mut c_void) };
    // This runs in softirq, not as the socket's owner: the owner recorded
    // at socket creation (or at the connect() that got here) says which
    // cgroup's answers count.
    // SAFETY: `ctx->sk` of a sock_ops context: NULL or a full socket.
    let owner = unsafe { owner::of((*ctx.ops).__bindgen_anon_2.sk) };
    let cgroup = owner.map_or(0, |o| o.cgroup_id);
    let mut inspected = match ctx.family() {
        AF_INET => inspected_v4(ctx.remote_ip4(), cgroup),
        // SAFETY: the context pointer is valid for the program's run.
        AF_INET6 => inspected_v6(unsafe { ip6(&raw const (*ctx.ops).remote_ip6) }, cgroup),
        _ => 0,
    };
    // Fail closed: some cgroup has inspections of its own (learned from
    // its own DNS server's answers), and whose socket this is is not known
    // (no owner recorded: storage the kernel could not allocate, or the
    // recording hooks not attached). The name it sends decides; an allowed
    // name passes as anywhere else.
    if inspected == 0 && owner.is_none() && scoped_in_use() {
        bump(STAT_OWNER_UNKNOWN);
        inspected = 1;
    }
    // An explicit proxy hides the destination from the address maps: the
    // name asked of it decides. The port is in network order in the upper
    // half of the field.
    let port = u16::from_be((ctx.remote_port() >> 16) as u16);
    if inspected == 0
        && !(port == 443 && sni_flags() & SNI_F_INSPECT_443 != 0)
        // SAFETY: a map lookup of a stack key.
        && unsafe { SNI_PROXY_PORTS.get(port) }.is_none()
    {
        // A socket connected again (after `connect(AF_UNSPEC)`) keeps what
        // its earlier connection left: its place in the sockhash and its
        // progress. Neither holds for this destination.
        // SAFETY: `ctx->sk` at an established callback.
        if unsafe { pending::forget((*ctx.ops).__bindgen_anon_2.sk) } {
            // SAFETY: a map delete of a stack key; sock_ops may delete
            // from a sockhash.
            unsafe {
                bpf_map_delete_elem(
                    ptr::from_ref(&SNI_SOCKS).cast_mut().cast(),
                    ptr::from_ref(&cookie).cast(),
                )
            };
        }
        return;
    }
    // What sk_msg judges is tracked from the first data byte on, so that a
    // write already inside TCP (not on the sk_msg path) is stopped on the
    // wire (`pending`). Made before the socket joins the sockhash: if that
    // fails, every data byte is unjudged and stays on the host.
    // SAFETY: `ctx->sk` at an established callback: a full socket.
    let tracked = unsafe { pending::watch((*ctx.ops).__bindgen_anon_2.sk, (*ctx.ops).snd_nxt) };
    // SAFETY: the context pointer is valid for the program's run.
    match SNI_SOCKS.update(&mut cookie, unsafe { &mut *ctx.ops }, BPF_ANY as u64) {
        Ok(()) if tracked => bump(STAT_SNI_SOCKETS),
        _ => bump(STAT_SNI_SOCKETS_FAILED),
    }
}

/// Whether any DNS answer taught a cgroup-scoped entry (the verdicts'
/// own gate for the scoped lookups).
#[inline(always)]
fn scoped_in_use() -> bool {
    matches!(LEARNED_SCOPED_USED.get(0), Some(&n) if n != 0)
}

/// The state of a walk over the copied write (`ext_step`, `host_step`),
/// in a per-CPU map (`SNI_WALK`).
#[repr(C)]
pub struct Walk {
    pos: u64,
    end: u64,
    name_off: u64,
    name_len: u64,
    /// Bytes of `\nhost:` matched so far (`host_step`).
    matched: u64,
    /// `WALKING`, `DONE` or `FAILED`.
    state: u32,
    /// `host_step`: 0 looking for the header, 1 skipping blanks, 2 in the name.
    phase: u32,
    /// `ext_step`: an encrypted_client_hello extension was seen.
    /// `host_step`: which name it reads (`READ_HOST`, `READ_CONNECT`,
    /// `READ_TARGET`).
    ech: u32,
    /// `host_step`: bytes on the current line so far (an empty line ends
    /// the request head).
    /// `length_step`: bytes of `\ntransfer-encoding:` matched.
    line: u32,
}
// The map holding it is pinned: its size is part of the layout a running
// enforcer is checked against on upgrade (`bpf::layout`), so new walks
// reuse these fields.
const _: () = assert!(core::mem::size_of::<Walk>() == 56);

impl Stepped for Walk {
    fn fail(&mut self) {
        self.state = FAILED;
    }
}

/// What a first write said.
#[derive(Clone, Copy)]
enum Seen {
    /// A name at `name_off`, `name_len` bytes, in the scratch copy, from
    /// a ClientHello, an HTTP Host header (`http`), or a request to an
    /// explicit proxy (`proxy`).
    Name {
        http: bool,
        proxy: bool,
    },
    /// A SOCKS5 greeting: the request with the name is the next write.
    Greeting,
    /// A request to an explicit proxy for an IPv4 or IPv6 address (SOCKS4,
    /// SOCKS5 ATYP 1 or 4): judged by the address maps, as a direct
    /// connection to it would be (network order).
    Addr4(u32),
    Addr6([u32; 4]),
    /// A ClientHello without server_name (an address literal): passes.
    NoName,
    /// An Encrypted Client Hello: the name that counts is hidden; the
    /// outer name (if any) is in the walk.
    Ech,
    /// An HTTP request already judged by its absolute-form target (the
    /// verdict: not a pass, or a pass with no Host header to judge too).
    Decided(Match),
    /// Neither TLS nor HTTP.
    Other,
    /// HTTP/2 in clear text (its preface): names HPACK coded, not read.
    H2,
    /// The rest of the record is still to come: corked until it is here.
    Corked,
    /// The start of a request whose end the write does not hold (a method
    /// cut short, a name or the head of an HTTP request unfinished, a SOCKS
    /// message short of its length): held until more is written.
    Cut,
    Malformed,
    /// A CONNECT whose name was read but whose head goes on past the
    /// copy (a long `Proxy-Authorization`): judged by its name, and passed
    /// only if the rest of the write ends with its head (`connect_rest`).
    LongConnect,
}

#[sk_msg]
pub fn sni_msg(ctx: SkMsgContext) -> u32 {
    // Read once, here: the verifier refuses a context pointer the compiler
    // moved to a field and kept across calls.
    // SAFETY: the context pointer is valid for the program's run.
    let size = unsafe { read_volatile(&(*ctx.msg).size) };
    let progress = pending::of_msg(&ctx);
    // Decided before: every later write passes at once. (Not through
    // `bpf_msg_apply_bytes`, whose count runs out after 4 GiB and outlives
    // a socket connected again elsewhere.)
    if pending::is(progress, SNI_PENDING_JUDGED) {
        return SK_PASS;
    }
    bump(STAT_SNI_INSPECTED);
    // A count set by an earlier run over the same write (a body's end:
    // the kernel then runs the program again for the rest) stays on the
    // message: it would cut this run's verdict short too.
    // SAFETY: the context is a valid argument for this helper here.
    unsafe { bpf_msg_apply_bytes(ctx.msg, 0) };
    if pending::unjudged_before(&ctx, progress) {
        uncork(&ctx);
        return refuse_unjudged(&ctx);
    }
    let http_only = pending::is(progress, SNI_PENDING_HTTP);
    // The rest of a request's body, as long as its head said: not read,
    // whatever it looks like. The next request is read where it ends.
    let body = pending::body_left(progress);
    if body != 0 {
        uncork(&ctx);
        if body >= size {
            pending::let_through_body(progress, size, body - size);
        } else {
            // The body ends inside this write.
            split_at(&ctx, progress, body);
        }
        return SK_PASS;
    }
    let seen = inspect(&ctx, http_only, pending::is(progress, SNI_PENDING_TUNNEL));
    if http_only && matches!(seen, Seen::Other) {
        // A request's body, or anything else that starts no request.
        uncork(&ctx);
        pending::let_through(progress, size, SNI_PENDING_HTTP);
        return SK_PASS;
    }
    if matches!(seen, Seen::Corked | Seen::Cut) {
        // Not decided yet: the next write is inspected too. (`inspect`
        // turns `Cut` into a cork.)
        return SK_PASS;
    }
    uncork(&ctx);
    // Neither TLS nor a request (a request line cut inside an uncommon
    // method, or another protocol): each later write is read as plain
    // HTTP's are, so that a request after it (a CONNECT to a proxy) is
    // judged; one that decided nothing must not open the connection.
    let undecided = matches!(seen, Seen::Other);
    let (found, flags) = match seen {
        Seen::Corked | Seen::Cut => return SK_PASS,
        Seen::Greeting => {
            pending::let_through(progress, size, SNI_PENDING_WAIT);
            return SK_PASS;
        }
        Seen::Other => {
            bump(STAT_SNI_NOT_TLS);
            (NO_MATCH, 0)
        }
        Seen::NoName => (NO_MATCH, 0),
        // To a shared name's front end: refused as the destination's ban
        // (no AI API's front end speaks it, and its names cannot be read).
        // To a proxy port only, it is no proxy's language (a local gRPC
        // server in clear text): left alone.
        Seen::H2 => match destination_rule(&ctx) {
            0 => {
                bump(STAT_SNI_NOT_TLS);
                (NO_MATCH, 0)
            }
            rule => {
                bump(STAT_SNI_MALFORMED);
                (banned(rule), 0)
            }
        },
        Seen::Addr4(a) => {
            bump(STAT_SNI_PROXY);
            (check_v4(a, current_cgroup()), EVENT_F_PROXY)
        }
        Seen::Addr6(a) => {
            bump(STAT_SNI_PROXY);
            (check_v6_forms(a, current_cgroup()).found, EVENT_F_PROXY)
        }
        Seen::Ech => {
            bump(STAT_SNI_ECH);
            ech(&ctx)
        }
        Seen::Malformed => {
            bump(STAT_SNI_MALFORMED);
            (ERROR, 0)
        }
        Seen::LongConnect => {
            bump(STAT_SNI_PROXY);
            let found = judge_walk();
            // The name first (it is in the copy the rest replaces).
            if matches!(found.verdict, VERDICT_PASS | VERDICT_ALLOWED) && !connect_rest(&ctx) {
                bump(STAT_SNI_MALFORMED);
                (ERROR, EVENT_F_PROXY)
            } else {
                (found, EVENT_F_PROXY)
            }
        }
        Seen::Decided(m) => {
            bump(STAT_SNI_HTTP);
            (m, EVENT_F_HTTP_HOST)
        }
        Seen::Name { http, proxy } => {
            let mut flags = 0;
            if http {
                bump(STAT_SNI_HTTP);
                flags |= EVENT_F_HTTP_HOST;
            }
            if proxy {
                bump(STAT_SNI_PROXY);
                flags |= EVENT_F_PROXY;
            }
            (judge_walk(), flags)
        }
    };
    let goes_on = conclude(HOOK_SNI, found, |verdict, rule_id| {
        report(&ctx, verdict, rule_id, flags)
    });
    if goes_on {
        if found.verdict == VERDICT_PASS {
            bump(STAT_SNI_PASSED);
        } else {
            bump(STAT_SNI_DENIED);
        }
        if flags & EVENT_F_PROXY != 0 {
            // A proxy was asked for a tunnel: what the application sends
            // through it first (a ClientHello to the host behind the proxy)
            // is judged too, as a first write would be. A tunnel to an
            // allowed name must not carry a banned one's handshake. (Also
            // when asked on a connection that carried plain HTTP before.)
            pending::let_through(progress, size, SNI_PENDING_TUNNEL);
            return SK_PASS;
        }
        if let Some(end) = body_ends_before(flags, size) {
            // The request, body included, ends inside this write: the
            // rest (past the copy too, where no second request was looked
            // for) is read as the next request, in a run of its own.
            if split_at(&ctx, progress, end) {
                return SK_PASS;
            }
        }
        if (http_only || undecided || flags & EVENT_F_HTTP_HOST != 0)
            && pending::let_through_body(progress, size, body_rest(flags, size))
        {
            // Plain HTTP: the next request on this connection may be for
            // any host (through a proxy, or to a front end that serves
            // many); each is judged.
            return SK_PASS;
        }
        // Decided: the rest of the connection is not inspected again.
        if !pending::judged(progress) {
            // No progress storage (the kernel could not make it): the
            // program's run is skipped for the next 4 GiB instead.
            // SAFETY: the context is a valid argument for this helper here.
            unsafe { bpf_msg_apply_bytes(ctx.msg, u32::MAX) };
        }
        SK_PASS
    } else {
        bump(STAT_SNI_DENIED);
        SK_DROP
    }
}

/// An Encrypted Client Hello: denied (with the rule the destination is
/// inspected for), unless the policy says to judge its outer name.
#[inline(always)]
fn ech(ctx: &SkMsgContext) -> (Match, u32) {
    if sni_flags() & SNI_F_ECH_OUTER_NAME != 0 {
        // SAFETY: a per-CPU value, read afresh.
        let has_name = match SNI_WALK.get_ptr(0) {
            Some(w) => (unsafe { read_volatile(&(*w).name_len) }) != 0,
            None => false,
        };
        if !has_name {
            return (NO_MATCH, 0);
        }
        return match judge_name() {
            Ok(m) => (m, 0),
            Err(()) => (ERROR, 0),
        };
    }
    (banned(destination_rule(ctx)), EVENT_F_ECH)
}

/// The name in `SNI_WALK`, judged: an address literal by the address
/// maps (as a direct connection to it would be), a name as the DNS
/// program matches one; what cannot be read is an error verdict.
#[inline(always)]
fn judge_walk() -> Match {
    match literal() {
        Literal::V4(a) => check_v4(a, current_cgroup()),
        Literal::Unreadable => {
            bump(STAT_SNI_MALFORMED);
            ERROR
        }
        Literal::No => match judge_name() {
            Ok(m) => m,
            Err(()) => {
                bump(STAT_SNI_MALFORMED);
                ERROR
            }
        },
    }
}

/// Whether the name found is an address literal.
enum Literal {
    No,
    /// A dotted-quad IPv4 address (network order, as the maps key it).
    V4(u32),
    /// An IPv6 literal (`[...]`, which the name reader cuts at its first
    /// colon): not parsed here, so refused.
    Unreadable,
}

/// The name in `SNI_WALK` read as an address literal. A name whose last
/// label starts with a digit is no host name (top-level domains are
/// alphabetic): it is an address, and only the canonical dotted quad is
/// read; the shorthand, octal and hex forms resolvers also accept
/// (`203.0.29517`, `0xcb.0.113.77`) are refused, since the address they
/// name is not looked up here.
#[inline(always)]
fn literal() -> Literal {
    let (Some(w), Some(buf)) = (SNI_WALK.get_ptr(0), SNI_SCRATCH.get_ptr(0)) else {
        return Literal::Unreadable;
    };
    // SAFETY: per-CPU values, ours for the program's run.
    let (w, buf) = unsafe { (&*w, &*buf) };
    let (off, mut len) = (w.name_off as usize, w.name_len as usize);
    if len == 0 {
        return Literal::No;
    }
    if byte(buf, off) == b'[' {
        return Literal::Unreadable;
    }
    if len > 1 && byte(buf, off + len - 1) == b'.' {
        len -= 1;
    }
    // The last label's first byte (labels are at most 63 bytes).
    let mut first = byte(buf, off);
    for i in 1..64 {
        if i >= len {
            break;
        }
        if byte(buf, off + len - 1 - i) == b'.' {
            first = byte(buf, off + len - i);
            break;
        }
    }
    if !first.is_ascii_digit() {
        return Literal::No;
    }
    if len > 15 {
        return Literal::Unreadable;
    }
    let mut octets = [0u32; 4];
    let mut at = 0usize;
    let mut digits = 0u32;
    for i in 0..15 {
        if i >= len {
            break;
        }
        let c = byte(buf, off + i);
        if c == b'.' {
            if digits == 0 || at >= 3 {
                return Literal::Unreadable;
            }
            at += 1;
            digits = 0;
        } else if c.is_ascii_digit() {
            let o = &mut octets[at & 3];
            // A leading zero: octal to some resolvers.
            if digits == 1 && *o == 0 {
                return Literal::Unreadable;
            }
            *o = *o * 10 + (c - b'0') as u32;
            digits += 1;
            if *o > 255 {
                return Literal::Unreadable;
            }
        } else {
            return Literal::Unreadable;
        }
    }
    if at != 3 || digits == 0 {
        return Literal::Unreadable;
    }
    Literal::V4(u32::from_ne_bytes([
        octets[0] as u8,
        octets[1] as u8,
        octets[2] as u8,
        octets[3] as u8,
    ]))
}

/// Ends any hold of an earlier write: the kernel keeps a cork's size on
/// the message it reuses for the socket's later writes, which would then
/// be held back too until that many bytes had piled up.
#[inline(always)]
fn uncork(ctx: &SkMsgContext) {
    // SAFETY: the context is a valid argument for this helper here.
    unsafe { bpf_msg_cork_bytes(ctx.msg, 0) };
}

/// The rule of the shared name the connection's destination is inspected
/// for (0: inspected as a proxy port or under `inspect_all_tls`).
#[inline(always)]
fn destination_rule(ctx: &SkMsgContext) -> u32 {
    // SAFETY: the context pointer is valid for the program's run.
    let md = unsafe { &*ctx.msg };
    // SAFETY: a helper without arguments.
    let cgroup = unsafe { aya_ebpf::helpers::bpf_get_current_cgroup_id() };
    if md.family == AF_INET {
        inspected_v4(md.remote_ip4, cgroup)
    } else {
        // SAFETY: as above.
        inspected_v6(unsafe { ip6(&raw const (*ctx.msg).remote_ip6) }, cgroup)
    }
}

/// A write after bytes the program never judged (`pending`): refused as
/// a ban of the destination's rule (an error verdict without one), every
/// time, since the connection's stream already holds unjudged bytes. In
/// audit mode it passes, reported once.
#[inline(always)]
fn refuse_unjudged(ctx: &SkMsgContext) -> u32 {
    let found = banned_or_error(destination_rule(ctx));
    let goes_on = conclude(HOOK_SNI, found, |verdict, rule_id| {
        report(ctx, verdict, rule_id, EVENT_F_UNINSPECTED)
    });
    bump(STAT_SNI_DENIED);
    if goes_on {
        // SAFETY: the context is a valid argument for this helper here.
        unsafe { bpf_msg_apply_bytes(ctx.msg, u32::MAX) };
        SK_PASS
    } else {
        SK_DROP
    }
}

/// The event of a denied (or audited) write, with the connection's
/// destination and the writing task.
#[inline(always)]
fn report(ctx: &SkMsgContext, verdict: u32, rule_id: u32, flags: u32) {
    // SAFETY: the context pointer is valid for the program's run.
    let md = unsafe { &*ctx.msg };
    let (family, addr) = if md.family == AF_INET {
        (AF_INET, [md.remote_ip4, 0, 0, 0])
    } else {
        // SAFETY: as above.
        (AF_INET6, unsafe { ip6(&raw const (*ctx.msg).remote_ip6) })
    };
    // The kernel hands the remote port in network order in the upper half.
    let port = u16::from_be((md.remote_port >> 16) as u16) as u32;
    emit(
        &Flow {
            verdict,
            rule_id,
            family,
            addr,
            port,
            protocol: IPPROTO_TCP as u32,
            ..Flow::blank(HOOK_SNI, flags)
        },
        &current_owner(),
    );
}

/// An IPv6 address in a context, one word per load: the verifier refuses
/// a copy through a pointer moved into the context.
///
/// # Safety
/// `p` points into a valid program context.
#[inline(always)]
unsafe fn ip6(p: *const [u32; 4]) -> [u32; 4] {
    let p = p as *const u32;
    // SAFETY: the caller's; four words in the context.
    unsafe {
        [
            core::ptr::read_volatile(p),
            core::ptr::read_volatile(p.add(1)),
            core::ptr::read_volatile(p.add(2)),
            core::ptr::read_volatile(p.add(3)),
        ]
    }
}

#[inline(always)]
fn byte(buf: &[u8; SNI_SCRATCH_BYTES], i: usize) -> u8 {
    buf[i & MASK]
}

#[inline(always)]
fn be16(buf: &[u8; SNI_SCRATCH_BYTES], i: usize) -> usize {
    ((byte(buf, i) as usize) << 8) | byte(buf, i + 1) as usize
}

/// Copies the start of the write and finds the name in it.
#[inline(always)]
fn inspect(ctx: &SkMsgContext, http_only: bool, tunnel: bool) -> Seen {
    match parse(ctx, http_only, tunnel) {
        Seen::Cut => {
            let size = ctx.size();
            // Held (not sent) until one more byte comes: the program then
            // runs again over everything written so far. What does not
            // complete within the scratch copy cannot be read: refused.
            if (size as usize) < SNI_SCRATCH_BYTES {
                // SAFETY: the context is a valid argument for this helper here.
                unsafe { bpf_msg_cork_bytes(ctx.msg, size + 1) };
                Seen::Corked
            } else {
                Seen::Malformed
            }
        }
        seen => seen,
    }
}

/// What the write holds, `Cut` included (`inspect` turns it into a cork).
#[inline(always)]
fn parse(ctx: &SkMsgContext, http_only: bool, tunnel: bool) -> Seen {
    let size = ctx.size() as usize;
    if size == 0 {
        return Seen::Other;
    }
    let want = if size > SNI_SCRATCH_BYTES {
        SNI_SCRATCH_BYTES
    } else {
        size
    };
    // The write may sit in several pages: make its start one linear run.
    // SAFETY: the context is a valid argument for this helper here.
    if unsafe { bpf_msg_pull_data(ctx.msg, 0, want as u32, 0) } != 0 {
        return Seen::Malformed;
    }
    let data = ctx.data();
    let avail = ctx.data_end().saturating_sub(data);
    if avail == 0 {
        return Seen::Malformed;
    }
    let clamped = if avail > SNI_SCRATCH_BYTES {
        SNI_SCRATCH_BYTES
    } else {
        avail
    };
    // In 1..=SNI_SCRATCH_BYTES in a form the verifier follows.
    let copied = ((clamped - 1) & MASK) + 1;
    let Some(buf) = SNI_SCRATCH.get_ptr_mut(0) else {
        return Seen::Malformed;
    };
    // SAFETY: `buf` holds SNI_SCRATCH_BYTES bytes; `data` has `copied`.
    if unsafe { bpf_probe_read_kernel(buf as *mut c_void, copied as u32, data as *const c_void) }
        != 0
    {
        return Seen::Malformed;
    }
    // SAFETY: a per-CPU value, ours for the program's run.
    let buf = unsafe { &*buf };
    let Some(w) = SNI_WALK.get_ptr_mut(0) else {
        return Seen::Malformed;
    };
    // The walk is handed on as a raw pointer: the loop callbacks change
    // it behind the compiler's back, which a `&mut` argument would forbid.
    let first = byte(buf, 0);
    if http_only {
        return next_request(buf, w, copied);
    }
    if first == b'\r' || first == b'\n' {
        // Blank lines before a request, which servers and proxies skip
        // (RFC 9112 §2.2): no client sends them first; the request after
        // them would read as "not HTTP".
        Seen::Malformed
    } else if first == TLS_HANDSHAKE {
        client_hello(ctx, buf, w, size, copied)
    } else if matches!(
        first,
        TLS_CHANGE_CIPHER_SPEC | TLS_ALERT | TLS_APPLICATION_DATA
    ) && copied >= 2
        && byte(buf, 1) == 3
    {
        // Another TLS record before the ClientHello: no client sends one,
        // and a server that skips it would then read a hello no one judged.
        Seen::Malformed
    } else if matches!(first, SOCKS_VERSION | SOCKS4_VERSION | SOCKS_AUTH_VERSION) {
        let seen = match first {
            SOCKS_VERSION => socks5(buf, w, copied),
            SOCKS4_VERSION => socks4(buf, w, copied),
            _ => socks5_login(buf, w, copied, 0),
        };
        if tunnel && matches!(seen, Seen::Cut | Seen::Malformed) {
            // Through a tunnel, another protocol's binary start can read
            // as the start of a SOCKS message (a MySQL client's length and
            // sequence, `05 01 00 01`, through `ssh -D`): held, it would
            // wait for bytes that never come. It passes as no request; so
            // does one read as a SOCKS message with bytes after it (`04 01
            // 00 01`, `01 01 00 01`: 260 and 257 bytes), which was refused.
            // (A chained SOCKS request in pieces is no more judged.)
            Seen::Other
        } else {
            seen
        }
    } else {
        match http_request(buf, w, copied) {
            Http::Request => host_header(buf, w, copied),
            Http::Prefix => Seen::Cut,
            Http::H2 => Seen::H2,
            // A request line with a method none of `METHODS` begins,
            // cut short after its method (`PROPFIND /`, `propfind `): held
            // until its line ends, and judged whole. (One cut inside its
            // method passes as "neither", and the writes after it are
            // read as plain HTTP's.)
            Http::No
                if copied < SNI_SCRATCH_BYTES
                    && matches!(
                        request_shape(w, 0, copied),
                        Shape::Request | Shape::OpenTarget
                    )
                    && !first_line(w, 0, copied).ended =>
            {
                Seen::Cut
            }
            Http::No => Seen::Other,
        }
    }
}

const SOCKS_VERSION: u8 = 5;
const SOCKS4_VERSION: u8 = 4;
/// RFC 1929 username/password negotiation, after a SOCKS5 greeting.
const SOCKS_AUTH_VERSION: u8 = 1;

/// Four bytes as the address maps key them (network order in memory).
#[inline(always)]
fn word(buf: &[u8; SNI_SCRATCH_BYTES], i: usize) -> u32 {
    u32::from_ne_bytes([
        byte(buf, i),
        byte(buf, i + 1),
        byte(buf, i + 2),
        byte(buf, i + 3),
    ])
}

/// SOCKS4 and 4a: `VN CD PORT(2) IP(4) USERID NUL [HOST NUL]`. A CONNECT
/// by address is judged by it; 4a (IP 0.0.0.x) by the name after the user
/// id. The request must end the write: bytes after it would enter the
/// tunnel before the proxy's reply, unjudged.
#[inline(always)]
fn socks4(buf: &[u8; SNI_SCRATCH_BYTES], w: *mut Walk, copied: usize) -> Seen {
    if copied < 9 {
        return Seen::Cut;
    }
    if byte(buf, 1) != 1 {
        // BIND: a connection from the far side, no name to judge.
        return Seen::Malformed;
    }
    let socks4a = byte(buf, 4) == 0 && byte(buf, 5) == 0 && byte(buf, 6) == 0 && byte(buf, 7) != 0;
    // The user id's NUL: the request's end, or the name's start (4a).
    let Some(user_end) = nul_from(w, 8, copied) else {
        return Seen::Cut;
    };
    if !socks4a {
        if user_end + 1 != copied {
            return Seen::Malformed;
        }
        return Seen::Addr4(word(buf, 4));
    }
    let name_off = user_end + 1;
    let Some(name_end) = nul_from(w, name_off, copied) else {
        // The name's NUL is still to come.
        return Seen::Cut;
    };
    if name_end + 1 != copied || name_end == name_off {
        return Seen::Malformed;
    }
    // SAFETY: a per-CPU value, ours for the program's run.
    unsafe {
        (*w).name_off = name_off as u64;
        (*w).name_len = (name_end - name_off) as u64;
    }
    Seen::Name {
        http: false,
        proxy: true,
    }
}

/// The first NUL at or after `from` in the copied write, if any.
#[inline(always)]
fn nul_from(w: *mut Walk, from: usize, copied: usize) -> Option<usize> {
    // SAFETY: a per-CPU value, ours for the program's run.
    unsafe {
        (*w).pos = from as u64;
        (*w).end = copied as u64;
        (*w).state = WALKING;
    }
    steps(SNI_SCRATCH_BYTES as u32, nul_step);
    // SAFETY: as above; read afresh after the loop.
    unsafe {
        if read_volatile(&(*w).state) == DONE {
            Some(read_volatile(&(*w).pos) as usize)
        } else {
            None
        }
    }
}

/// One byte of `nul_from`'s walk: stops at a NUL (`DONE`, `pos` on it)
/// or at the walk's end.
#[inline(never)]
unsafe extern "C" fn nul_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some((w, buf)) = step_state(&SNI_WALK, &SNI_SCRATCH) else {
        return 1;
    };
    let Some((_, c)) = current(w, buf) else {
        return 1;
    };
    if c == 0 {
        w.state = DONE;
        return 1;
    }
    w.pos += 1;
    0
}

/// The cgroup of the writing task (sk_msg runs in the writer's context).
#[inline(always)]
fn current_cgroup() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { aya_ebpf::helpers::bpf_get_current_cgroup_id() }
}

/// SOCKS5 (RFC 1928): the greeting (version, method count, methods) is
/// let through undecided, and so is a username/password login after it
/// (RFC 1929); a CONNECT request with a domain name (ATYP 3) is judged by
/// it, one by address (ATYP 1, 4) by the address maps. A client that does
/// not wait for the proxy's replies writes them all at once: the request
/// is found after the greeting and the login.
#[inline(always)]
fn socks5(buf: &[u8; SNI_SCRATCH_BYTES], w: *mut Walk, copied: usize) -> Seen {
    if copied < 2 {
        return Seen::Cut;
    }
    let greeting = 2 + byte(buf, 1) as usize;
    // A lone request (`VER CMD RSV ATYP ...`) and a greeting (`VER NMETHODS
    // METHODS...`, then a login or a request) can begin alike: a write is
    // a lone request only if it is exactly one, else it is read as a
    // greeting and what follows it.
    let lone = socks5_request_len(buf, 0);
    if byte(buf, 2) == 0 && lone != 0 {
        if copied == lone {
            return socks5_request(buf, w, copied, 0);
        }
        // Short of a request, and no greeting could be followed by this
        // byte (neither a login nor a request): the request's rest is to come.
        let next = byte(buf, greeting);
        if copied < lone && next != SOCKS_AUTH_VERSION && next != SOCKS_VERSION {
            return Seen::Cut;
        }
    }
    if copied < greeting {
        return Seen::Cut;
    }
    if copied == greeting {
        return Seen::Greeting;
    }
    if byte(buf, greeting) == SOCKS_AUTH_VERSION {
        // A login, whatever methods the greeting offered (only the proxy
        // knows which it chose).
        return socks5_login(buf, w, copied, greeting);
    }
    if byte(buf, greeting) != SOCKS_VERSION {
        return Seen::Malformed;
    }
    socks5_request(buf, w, copied, greeting)
}

/// A username/password login (RFC 1929: `VER ULEN UNAME PLEN PASSWD`) at
/// `at`: let through undecided if it ends the write; the request after it
/// is judged.
#[inline(always)]
fn socks5_login(buf: &[u8; SNI_SCRATCH_BYTES], w: *mut Walk, copied: usize, at: usize) -> Seen {
    if copied < at + 2 {
        return Seen::Cut;
    }
    let plen_at = at + 2 + byte(buf, at + 1) as usize;
    if copied < plen_at + 1 {
        return Seen::Cut;
    }
    let end = plen_at + 1 + byte(buf, plen_at) as usize;
    if copied < end {
        return Seen::Cut;
    }
    if copied == end {
        return Seen::Greeting;
    }
    if byte(buf, end) != SOCKS_VERSION {
        return Seen::Malformed;
    }
    socks5_request(buf, w, copied, end)
}

/// The length of a whole SOCKS5 request at `r` (0: none can start there).
#[inline(always)]
fn socks5_request_len(buf: &[u8; SNI_SCRATCH_BYTES], r: usize) -> usize {
    match byte(buf, r + 3) {
        1 => r + 10,
        4 => r + 22,
        3 => r + 7 + byte(buf, r + 4) as usize,
        _ => 0,
    }
}

/// A SOCKS5 request (`VER CMD RSV ATYP ADDR PORT`) at `r`.
#[inline(always)]
fn socks5_request(buf: &[u8; SNI_SCRATCH_BYTES], w: *mut Walk, copied: usize, r: usize) -> Seen {
    if copied < r + 5 {
        return Seen::Cut;
    }
    // CONNECT only: BIND and UDP ASSOCIATE name no host to judge (a UDP
    // relay would carry QUIC past its refusal).
    if byte(buf, r + 1) != 1 || byte(buf, r + 2) != 0 {
        return Seen::Malformed;
    }
    match byte(buf, r + 3) {
        3 => {}
        // By address: judged as a direct connection to it would be (the
        // address maps), so that a proxy is no way around an address ban.
        1 if copied == r + 10 => return Seen::Addr4(word(buf, r + 4)),
        4 if copied == r + 22 => {
            return Seen::Addr6([
                word(buf, r + 4),
                word(buf, r + 8),
                word(buf, r + 12),
                word(buf, r + 16),
            ]);
        }
        1 if copied < r + 10 => return Seen::Cut,
        4 if copied < r + 22 => return Seen::Cut,
        _ => return Seen::Malformed,
    }
    let len = byte(buf, r + 4) as usize;
    if len == 0 {
        return Seen::Malformed;
    }
    if r + 5 + len + 2 > copied {
        return Seen::Cut;
    }
    if r + 5 + len + 2 != copied {
        // Bytes after the request go into the tunnel before the proxy's
        // reply: a ClientHello there would pass unjudged.
        return Seen::Malformed;
    }
    // SAFETY: a per-CPU value, ours for the program's run.
    unsafe {
        (*w).name_off = (r + 5) as u64;
        (*w).name_len = len as u64;
    }
    Seen::Name {
        http: false,
        proxy: true,
    }
}

/// A ClientHello (RFC 8446 §4.1.2): the fixed part is read here, the
/// extensions by `ext_step` under `bpf_loop`.
#[inline(always)]
fn client_hello(
    ctx: &SkMsgContext,
    buf: &[u8; SNI_SCRATCH_BYTES],
    w: *mut Walk,
    size: usize,
    copied: usize,
) -> Seen {
    if copied < 5 {
        return Seen::Cut;
    }
    let record_end = 5 + be16(buf, 3);
    if record_end > size {
        // The application wrote the record in pieces: hold them until it
        // is whole (it then fits the scratch copy), else it cannot be read.
        if record_end <= SNI_SCRATCH_BYTES {
            // SAFETY: the context is a valid argument for this helper here.
            unsafe { bpf_msg_cork_bytes(ctx.msg, record_end as u32) };
            return Seen::Corked;
        }
        return Seen::Malformed;
    }
    if record_end > copied || byte(buf, 5) != TLS_CLIENT_HELLO {
        return Seen::Malformed;
    }
    // The ClientHello must fill its record exactly. One continued in a
    // further record could carry its extensions (server_name among them)
    // there: this record alone would read as "no name" and pass. No
    // mainstream client splits a ClientHello below the 16 KB record limit,
    // so a split one is refused, not judged by half of it.
    if 9 + ((byte(buf, 6) as usize) << 16 | be16(buf, 7)) != record_end {
        return Seen::Malformed;
    }
    // Handshake header (4), client_version (2), random (32).
    let mut p = 5 + 4 + 2 + 32;
    if p + 1 > record_end {
        return Seen::Malformed;
    }
    p += 1 + byte(buf, p) as usize; // legacy_session_id
    if p + 2 > record_end {
        return Seen::Malformed;
    }
    p += 2 + be16(buf, p); // cipher_suites
    if p + 1 > record_end {
        return Seen::Malformed;
    }
    p += 1 + byte(buf, p) as usize; // legacy_compression_methods
    if p == record_end {
        // No extensions at all (TLS 1.0 style): no name.
        return Seen::NoName;
    }
    if p + 2 > record_end {
        return Seen::Malformed;
    }
    let ext_end = p + 2 + be16(buf, p);
    if ext_end > record_end {
        return Seen::Malformed;
    }
    // SAFETY: a per-CPU value, ours for the program's run.
    unsafe {
        (*w).pos = (p + 2) as u64;
        (*w).end = ext_end as u64;
        (*w).name_len = 0;
        (*w).ech = 0;
        (*w).state = WALKING;
    }
    steps(MAX_EXTENSIONS, ext_step);
    // SAFETY: as above; read afresh after the loop.
    let (state, name_len, ech) = unsafe {
        (
            read_volatile(&(*w).state),
            read_volatile(&(*w).name_len),
            read_volatile(&(*w).ech),
        )
    };
    match state {
        DONE if ech != 0 => Seen::Ech,
        DONE if name_len != 0 => Seen::Name {
            http: false,
            proxy: false,
        },
        DONE => Seen::NoName,
        _ => Seen::Malformed,
    }
}

/// One extension: its type and length checked against the list's end;
/// server_name (`host_name` entry, RFC 6066 §3) remembered. Returns 1 to stop.
#[inline(never)]
unsafe extern "C" fn ext_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some((w, buf)) = step_state(&SNI_WALK, &SNI_SCRATCH) else {
        return 1;
    };
    let pos = w.pos as usize;
    let end = w.end as usize;
    if pos == end {
        w.state = DONE;
        return 1;
    }
    if pos + 4 > end {
        w.state = FAILED;
        return 1;
    }
    let kind = be16(buf, pos) as u16;
    let len = be16(buf, pos + 2);
    let data = pos + 4;
    if data + len > end {
        w.state = FAILED;
        return 1;
    }
    if kind == EXT_ENCRYPTED_CLIENT_HELLO {
        w.ech = 1;
    }
    if kind == EXT_SERVER_NAME {
        // server_name_list length (2), name_type (1), host_name length (2).
        if len < 5 || byte(buf, data + 2) != 0 {
            w.state = FAILED;
            return 1;
        }
        let name_len = be16(buf, data + 3);
        if name_len == 0 || name_len > MAX_NAME || 5 + name_len > len {
            w.state = FAILED;
            return 1;
        }
        w.name_off = (data + 5) as u64;
        w.name_len = name_len as u64;
    }
    w.pos = (data + len) as u64;
    0
}

/// Plain HTTP after a first request: a write that starts another request
/// is judged as one; anything else is a body and passes. A write is a
/// request if its first line begins with a method and a blank and carries
/// ` HTTP/` (a body line that does is judged too: a false refusal at
/// worst); one after empty lines (which servers skip) is refused, and so
/// is one that begins with a blank and carries ` HTTP/` (the rest of a
/// request line whose start passed as a body); a write with no line end
/// that starts with a method, a blank and the start of a target, or no
/// target yet, is held until its line is whole. Bodies that merely begin
/// with a word like a method pass, and so do bodies (a JSON document) whose
/// first line mentions ` HTTP/` but begins with no method.
#[inline(always)]
fn next_request(buf: &[u8; SNI_SCRATCH_BYTES], w: *mut Walk, copied: usize) -> Seen {
    // All of them: proxies skip any number of empty lines before a request.
    let from = line_ends_from(w, 0, copied);
    if from >= copied {
        // Line ends only (a chunked body's).
        return Seen::Other;
    }
    if from != 0 {
        // A request after empty lines, which no client writes.
        return if starts_request(w, from, copied) {
            Seen::Malformed
        } else {
            Seen::Other
        };
    }
    if copied >= H2_PREFACE.len() && h2_preface(buf, copied) {
        // HTTP/2 after an `Upgrade: h2c`: its requests' names are HPACK
        // coded. (Its start alone is not held here: a body may end so.)
        return Seen::H2;
    }
    let shape = request_shape(w, 0, copied);
    let blank = matches!(byte(buf, 0), b' ' | b'\t');
    if !blank && !matches!(shape, Shape::Request | Shape::Method | Shape::OpenTarget) {
        // No request line starts here (binary data, a body): its first
        // line is not read.
        return Seen::Other;
    }
    let line = first_line(w, 0, copied);
    if blank {
        // ` HTTP/1.1`: a request line cut before its version.
        return if line.version {
            Seen::Malformed
        } else {
            Seen::Other
        };
    }
    let n = if copied < 4 { copied } else { 4 };
    match shape {
        Shape::Request if line.version => host_header(buf, w, copied),
        // A word, a blank and no target a request has (`/`, `*`, `http:`):
        // a request line only if the word is a usual method. A text body's
        // first line (`Explain HTTP/2 to me`, `# Notes on HTTP/2`) would
        // be held for good as a head without its end.
        Shape::Method if line.version && method_prefix(buf, n) => host_header(buf, w, copied),
        // No line end yet: a request line of a method clients send, cut
        // short (`GET `, `GET h`), held until its line is whole. Not any
        // word and a blank: a body's last write may end so, and would be
        // held for good.
        Shape::Request | Shape::OpenTarget
            if !line.ended && copied < SNI_SCRATCH_BYTES && method_prefix(buf, n) =>
        {
            Seen::Cut
        }
        _ => Seen::Other,
    }
}

/// How the bytes at `from` begin, read as a request line.
#[derive(Clone, Copy)]
enum Shape {
    /// A method (1..=20 token characters), blanks, and a target that starts
    /// like one: `/`, `*`, `http:`, `https:` (any for CONNECT).
    Request,
    /// A method and blanks, and something else after them.
    Method,
    /// A method and blanks, the write ending before the target (or inside
    /// its `http` scheme).
    OpenTarget,
    No,
}

/// A token character (RFC 9110 §5.6.2), of which methods are made.
#[inline(always)]
fn tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// The separators lenient proxies take after a method (SP, HTAB, VT, FF,
/// CR, and any run of them).
#[inline(always)]
fn method_sep(c: u8) -> bool {
    c == b' ' || c == b'\t' || c == 0x0b || c == 0x0c || c == b'\r'
}

/// `Walk::ech` of `shape_step` once it decided.
const SHAPE_REQUEST: u32 = 1;
const SHAPE_METHOD: u32 = 2;
const SHAPE_NO: u32 = 3;

/// How the bytes at `from` begin, read as a request line (a walk: the
/// verifier takes one callback where unrolled loops at three call sites
/// made too many states). Leaves the walk's name alone.
#[inline(always)]
fn request_shape(w: *mut Walk, from: usize, copied: usize) -> Shape {
    // SAFETY: a per-CPU value, ours for the program's run.
    unsafe {
        (*w).pos = from as u64;
        (*w).end = copied as u64;
        (*w).matched = 0;
        (*w).phase = 0;
        (*w).ech = SHAPE_NO;
        (*w).state = WALKING;
    }
    // One step per byte, and one that reads none (into the target).
    steps(SNI_SCRATCH_BYTES as u32 + 2, shape_step);
    // SAFETY: as above; read afresh after the loop.
    let (state, shape, phase) = unsafe {
        (
            read_volatile(&(*w).state),
            read_volatile(&(*w).ech),
            read_volatile(&(*w).phase),
        )
    };
    if state == DONE {
        return match shape {
            SHAPE_REQUEST => Shape::Request,
            SHAPE_METHOD => Shape::Method,
            _ => Shape::No,
        };
    }
    // The write ended first.
    match phase {
        0 => Shape::No,
        _ => Shape::OpenTarget,
    }
}

/// One byte of `request_shape`: the method (phase 0, `matched` its
/// length), the separators after it
/// (1), the target's `http:`/`https:` scheme (2, `matched` bytes of it).
#[inline(never)]
unsafe extern "C" fn shape_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some((w, buf)) = step_state(&SNI_WALK, &SNI_SCRATCH) else {
        return 1;
    };
    let Some((pos, c)) = current(w, buf) else {
        return 1;
    };
    match w.phase {
        0 => {
            if method_sep(c) {
                if w.matched == 0 {
                    return decide(w, SHAPE_NO);
                }
                // `CONNECT` takes an authority, not a path or URL.
                let l = |i: usize| lower(byte(buf, i));
                if w.matched == 7
                    && l(pos - 7) == b'c'
                    && l(pos - 6) == b'o'
                    && l(pos - 5) == b'n'
                    && l(pos - 4) == b'n'
                    && l(pos - 3) == b'e'
                    && l(pos - 2) == b'c'
                    && l(pos - 1) == b't'
                {
                    return decide(w, SHAPE_REQUEST);
                }
                w.phase = 1;
            } else if !tchar(c) || w.matched >= 20 {
                return decide(w, SHAPE_NO);
            } else {
                w.matched += 1;
            }
            w.pos += 1;
        }
        1 => {
            if method_sep(c) {
                w.pos += 1;
            } else if c == b'/' || c == b'*' {
                return decide(w, SHAPE_REQUEST);
            } else {
                w.phase = 2;
                w.matched = 0;
            }
        }
        _ => {
            let c = lower(c);
            let m = w.matched;
            if m == 4 && c == b':' {
                return decide(w, SHAPE_REQUEST);
            }
            let expected = match m {
                0 => b'h',
                1 | 2 => b't',
                3 => b'p',
                4 => b's',
                _ => b':',
            };
            if c != expected {
                return decide(w, SHAPE_METHOD);
            }
            if m == 5 {
                return decide(w, SHAPE_REQUEST);
            }
            w.matched += 1;
            w.pos += 1;
        }
    }
    0
}

/// `shape_step` decided: `shape` it is, and the walk stops.
#[inline(always)]
fn decide(w: &mut Walk, shape: u32) -> i64 {
    w.ech = shape;
    w.state = DONE;
    1
}

/// Where the body of a request whose head ends at `head_end` ends: past
/// its Content-Length, or at the head's end without one. `None` where that
/// is not known (a Transfer-Encoding, two different lengths, a length
/// that is no plain number): every line after the head is then suspect.
#[inline(always)]
fn body_end(w: *mut Walk, head_end: usize) -> Option<usize> {
    // SAFETY: a per-CPU value, ours for the program's run. The name found
    // (`name_off`, `name_len`) stays.
    unsafe {
        (*w).pos = 0;
        (*w).end = head_end as u64;
        (*w).matched = 0;
        (*w).line = 0;
        (*w).phase = 0;
        (*w).ech = 0;
        (*w).state = WALKING;
    }
    steps(SNI_SCRATCH_BYTES as u32, length_step);
    // SAFETY: as above; read afresh after the loop.
    let (state, length) = unsafe { (read_volatile(&(*w).state), read_volatile(&(*w).ech)) };
    if state == FAILED {
        None
    } else {
        Some(head_end + length as usize)
    }
}

const CONTENT_LENGTH: &[u8; 32] = b"\ncontent-length:\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
const TRANSFER_ENCODING: &[u8; 32] = b"\ntransfer-encoding:\0\0\0\0\0\0\0\0\0\0\0\0\0";

/// One byte of a case-insensitive search for the first `len` bytes of
/// `pattern` (its first byte `\n`): true once whole (and it starts anew).
#[inline(always)]
fn match_long(matched: &mut u64, c: u8, pattern: &[u8; 32], len: u64) -> bool {
    if lower(c) == pattern[(*matched as usize) & 31] {
        *matched += 1;
        if *matched >= len {
            *matched = 0;
            return true;
        }
        return false;
    }
    *matched = (c == b'\n') as u64;
    false
}

/// One byte of a request head for `body_end`: finds `Content-Length:`
/// (phase 0, or `LENGTH_SEEN` after one), its blanks (1), digits (2, the
/// value in `ech`), what follows them on the line (3); more of them
/// count as one if they say the same. Different lengths, a
/// `Transfer-Encoding:` (its match counted in `line`) or a length that is
/// no plain number stop the walk as `FAILED`: the body's end is unknown.
#[inline(never)]
unsafe extern "C" fn length_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some((w, buf)) = step_state(&SNI_WALK, &SNI_SCRATCH) else {
        return 1;
    };
    let Some((_, c)) = current(w, buf) else {
        return 1;
    };
    let mut te = w.line as u64;
    // `Transfer-Encoding` with or without blanks before its colon (which
    // a lenient proxy may take): the body's end is not the length's.
    let chunked = match_long(&mut te, c, TRANSFER_ENCODING, 18);
    w.line = te as u32;
    if chunked {
        w.state = FAILED;
        return 1;
    }
    let blank = c == b' ' || c == b'\t';
    // Above the match's count in `matched`: the first length + 1 (0: none
    // read yet), which a second `Content-Length` must equal.
    let first = w.matched >> 32;
    match w.phase {
        0 | LENGTH_SEEN => {
            let mut m = w.matched & u32::MAX as u64;
            let whole = match_long(&mut m, c, CONTENT_LENGTH, 16);
            w.matched = m | first << 32;
            if whole {
                w.ech = 0;
                w.phase = 1;
            }
        }
        1 if blank => {}
        1 | 2 if c.is_ascii_digit() => {
            // At most 10^8 before the next digit: the value fits `ech`.
            if w.ech > 100_000_000 {
                w.state = FAILED;
                return 1;
            }
            w.ech = w.ech * 10 + (c - b'0') as u32;
            w.phase = 2;
        }
        2 | 3 if blank || c == b'\r' => w.phase = 3,
        2 | 3 if c == b'\n' => {
            // Equal lengths count as one (RFC 9110 §8.6, as Squid takes
            // them); different ones leave the body's end unknown (proxies
            // refuse such a request; refusing it here too is more than
            // the verifier's budget for `sni_msg` takes).
            if first != 0 && first != w.ech as u64 + 1 {
                w.state = FAILED;
                return 1;
            }
            w.phase = LENGTH_SEEN;
            w.matched = 1 | (w.ech as u64 + 1) << 32;
        }
        _ => {
            // No number, or more than one (`4, 4`), or something after it.
            w.state = FAILED;
            return 1;
        }
    }
    w.pos += 1;
    0
}

/// `Walk::phase` of `length_step` once a Content-Length was read.
const LENGTH_SEEN: u32 = 4;

/// Whether another request starts at `at` (past the head judged, after
/// any empty lines) in the copied write, or the first line there carries
/// ` HTTP/` (a request glued to a body).
#[inline(always)]
fn request_follows(w: *mut Walk, at: usize, copied: usize) -> bool {
    let from = line_ends_from(w, at, copied);
    from < copied && starts_request(w, from, copied)
}

/// Whether the bytes at `from` begin like a request line, or their first
/// line carries ` HTTP/`.
#[inline(always)]
fn starts_request(w: *mut Walk, from: usize, copied: usize) -> bool {
    matches!(
        request_shape(w, from, copied),
        Shape::Request | Shape::OpenTarget
    ) || first_line(w, from, copied).version
}

/// Where the run of CR and LF bytes at `from` ends in the copied write
/// (`from` itself if there is none). Leaves the walk's name alone.
#[inline(always)]
fn line_ends_from(w: *mut Walk, from: usize, copied: usize) -> usize {
    // SAFETY: a per-CPU value, ours for the program's run.
    unsafe {
        (*w).pos = from as u64;
        (*w).end = copied as u64;
        (*w).state = WALKING;
    }
    steps(SNI_SCRATCH_BYTES as u32, line_end_step);
    // SAFETY: as above; read afresh after the loop.
    unsafe { read_volatile(&(*w).pos) as usize }
}

/// One byte of `line_ends_from`: on past a CR or LF, else stop.
#[inline(never)]
unsafe extern "C" fn line_end_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some((w, buf)) = step_state(&SNI_WALK, &SNI_SCRATCH) else {
        return 1;
    };
    let Some((_, c)) = current(w, buf) else {
        return 1;
    };
    if c != b'\r' && c != b'\n' {
        return 1;
    }
    w.pos += 1;
    0
}

/// Whether a write starts an HTTP/1.x request.
enum Http {
    Request,
    /// Too short to tell, and the start of a method.
    Prefix,
    /// HTTP/2 in clear text (the connection preface, RFC 9113 §3.4): its
    /// names are HPACK coded and not read here.
    H2,
    No,
}

/// The first line of the HTTP/2 connection preface.
const H2_PREFACE: &[u8; 16] = b"PRI * HTTP/2.0\r\n";

/// Whether the write's first bytes (all of them, up to the line's 16) are
/// the HTTP/2 preface's.
#[inline(always)]
fn h2_preface(buf: &[u8; SNI_SCRATCH_BYTES], copied: usize) -> bool {
    let mut same = true;
    for (i, &b) in H2_PREFACE.iter().enumerate() {
        if i < copied && byte(buf, i) != b {
            same = false;
        }
    }
    same
}

/// The methods' first four bytes, as HTTP/1.x clients write them.
const METHODS: [&[u8; 4]; 8] = [
    b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"PATC", b"OPTI", b"CONN",
];

/// A request line's method. A write shorter than 16 bytes that begins
/// like a method is a request cut short: a client may write its request
/// in pieces, and what passed undecided would never be judged. Any other
/// method (WebDAV's, an extension method a proxy forwards, a lowercase
/// one) makes a request if the first line carries ` HTTP/`.
#[inline(always)]
fn http_request(buf: &[u8; SNI_SCRATCH_BYTES], w: *mut Walk, copied: usize) -> Http {
    if h2_preface(buf, copied) {
        // Refused whole (no front end of an AI API speaks HTTP/2 in clear
        // text), held while it is only its start.
        return if copied >= H2_PREFACE.len() {
            Http::H2
        } else {
            Http::Prefix
        };
    }
    let n = if copied < 4 { copied } else { 4 };
    match (method_prefix(buf, n), copied >= 16) {
        (false, true) if byte(buf, 0).is_ascii_alphabetic() && first_line(w, 0, copied).version => {
            Http::Request
        }
        (false, _) => Http::No,
        (true, true) if n == 4 => Http::Request,
        _ => Http::Prefix,
    }
}

/// Whether the write's first `n` bytes (at most 4) begin one of
/// `METHODS`.
#[inline(always)]
fn method_prefix(buf: &[u8; SNI_SCRATCH_BYTES], n: usize) -> bool {
    let mut found = false;
    for method in METHODS {
        let mut same = true;
        for (i, &b) in method.iter().enumerate() {
            if i < n && byte(buf, i) != b {
                same = false;
            }
        }
        if same {
            found = true;
        }
    }
    found
}

/// What the line starting at `from` holds.
struct Line {
    /// ` HTTP/` (case-insensitive).
    version: bool,
    /// Its end (a `\n`) within the copied write.
    ended: bool,
}

#[inline(always)]
fn first_line(w: *mut Walk, from: usize, copied: usize) -> Line {
    // SAFETY: a per-CPU value, ours for the program's run.
    unsafe {
        (*w).pos = from as u64;
        (*w).end = copied as u64;
        (*w).matched = 0;
        (*w).phase = 0;
        (*w).state = WALKING;
    }
    steps(SNI_SCRATCH_BYTES as u32, version_step);
    // SAFETY: as above; read afresh after the loop.
    unsafe {
        Line {
            version: read_volatile(&(*w).state) == DONE,
            ended: read_volatile(&(*w).phase) == 1,
        }
    }
}

/// One byte of the first line: matches ` http/`; stops at the line's end
/// (noted in `phase`).
#[inline(never)]
unsafe extern "C" fn version_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some((w, buf)) = step_state(&SNI_WALK, &SNI_SCRATCH) else {
        return 1;
    };
    let Some((_, c)) = current(w, buf) else {
        return 1;
    };
    if c == b'\n' {
        w.phase = 1;
        return 1;
    }
    if match_step(&mut w.matched, c, b" http/") {
        w.state = DONE;
        return 1;
    }
    w.pos += 1;
    0
}

/// Finds the Host header of the request in the copied bytes.
#[inline(always)]
fn host_header(buf: &[u8; SNI_SCRATCH_BYTES], w: *mut Walk, copied: usize) -> Seen {
    // `CONNECT host:port HTTP/1.1`: the request line names the host. All
    // eight bytes: another method ending in `ECT ` (any token is one now)
    // would have its target read as a CONNECT's name.
    let connect = byte(buf, 0) == b'C'
        && byte(buf, 1) == b'O'
        && byte(buf, 2) == b'N'
        && byte(buf, 3) == b'N'
        && byte(buf, 4) == b'E'
        && byte(buf, 5) == b'C'
        && byte(buf, 6) == b'T'
        && byte(buf, 7) == b' ';
    let lower = |i: usize| lower(byte(buf, i));
    let connect_like = lower(0) == b'c'
        && lower(1) == b'o'
        && lower(2) == b'n'
        && lower(3) == b'n'
        && lower(4) == b'e'
        && lower(5) == b'c'
        && lower(6) == b't';
    if !connect && connect_like {
        // `CONNECT` but not `CONNECT ` (a tab or another separator after
        // the method, or another case), which lenient proxies accept and
        // the name reader would not find.
        return Seen::Malformed;
    }
    // `GET http://host/ HTTP/1.1`: what a proxy (and, by RFC 9112, any
    // server) goes by instead of Host. Judged first; Host too if it passes.
    let mut target = NO_MATCH;
    let mut by_target = false;
    if !connect {
        match absolute_target(buf, w, copied) {
            Target::Origin => {}
            Target::Cut => return Seen::Cut,
            Target::Bad => return Seen::Malformed,
            Target::Name => {
                target = judge_walk();
                if !matches!(target.verdict, VERDICT_PASS | VERDICT_ALLOWED) {
                    return Seen::Decided(target);
                }
                by_target = true;
            }
        }
    }
    // SAFETY: a per-CPU value, ours for the program's run.
    unsafe {
        (*w).pos = if connect { 8 } else { 0 };
        (*w).name_off = 8;
        (*w).end = copied as u64;
        (*w).matched = 0;
        (*w).phase = if connect { 2 } else { 0 };
        (*w).name_len = 0;
        (*w).line = 1;
        (*w).ech = if connect { READ_CONNECT } else { READ_HOST };
        (*w).state = WALKING;
    }
    // One step per byte, and up to two that read none (into the name,
    // past it): without them a head ending in the copy's last bytes would
    // read as cut short.
    steps(SNI_SCRATCH_BYTES as u32 + 4, host_step);
    // SAFETY: as above; read afresh after the loop.
    let (state, name_len, phase, head_end) = unsafe {
        (
            read_volatile(&(*w).state),
            read_volatile(&(*w).name_len),
            read_volatile(&(*w).phase),
            read_volatile(&(*w).pos),
        )
    };
    if connect && state == DONE && head_end as usize != copied {
        // Bytes after the CONNECT's head in the same write go into the
        // tunnel before any reply: a ClientHello there would pass unjudged.
        return Seen::Malformed;
    }
    if connect
        && state == WALKING
        && phase == CONNECT_HEAD
        && copied == SNI_SCRATCH_BYTES
        && name_len != 0
        && name_len as usize <= MAX_NAME
    {
        // Its head goes on past the copy (a Kerberos `Negotiate` token of
        // several KB): where it ends is read from the rest of the write.
        return Seen::LongConnect;
    }
    let head_ended = state == DONE || (state == WALKING && phase == HEAD_ENDED);
    let framed = if !connect && head_ended {
        body_end(w, head_end as usize)
    } else {
        None
    };
    if !connect && head_ended && request_follows(w, framed.unwrap_or(head_end as usize), copied) {
        // A second request in the same write (pipelining, which no
        // mainstream client does any more), after a head with a Host or
        // without (HTTP/1.0), after empty lines (which servers skip) or
        // cut short: only the first would be judged. A body that begins
        // like a request line is refused with it.
        return Seen::Malformed;
    }
    // Where the request, body included, ends from the copy's start (read
    // by `sni_msg` as it lets the request through; none known: MAX).
    // SAFETY: a per-CPU value, ours for the program's run.
    unsafe { (*w).end = framed.map_or(u64::MAX, |e| e as u64) };
    // A plain request whose head goes on past the write is held until it
    // ends (a second Host may come in the next write), unless it goes on
    // past what can be copied: then its Host decides.
    let named =
        state == DONE || (state == WALKING && phase == AFTER_HOST && copied == SNI_SCRATCH_BYTES);
    if named && name_len != 0 && name_len as usize <= MAX_NAME {
        Seen::Name {
            http: !connect,
            proxy: connect,
        }
    } else if named || state == FAILED {
        Seen::Malformed
    } else if phase == HEAD_ENDED {
        // A whole request head without a Host header (HTTP/1.0): its
        // absolute-form target, if any, was all there was to judge.
        Seen::Decided(target)
    } else if by_target && copied == SNI_SCRATCH_BYTES {
        // An absolute-form request whose head goes on past the copy with
        // no Host in it (Node's http puts Host after the caller's headers:
        // a long cookie or token pushes it out): the target, which a proxy
        // goes by (RFC 9112 §3.2.2 has it ignore Host), decides. It was
        // refused as cut short.
        Seen::Decided(target)
    } else {
        // The head, or the name in it, goes on past what was written.
        Seen::Cut
    }
}

/// The rest of a CONNECT's write past the first copy (`Seen::LongConnect`),
/// read as a second copy: true if the head ends there and the write with
/// it (nothing for the tunnel before the proxy's reply). The walk goes on
/// from where the first copy's ended (its `line`), from the copy's last
/// byte (an empty line's `\r` may be it). Heads of up to 8 KB.
#[inline(always)]
fn connect_rest(ctx: &SkMsgContext) -> bool {
    let size = ctx.size() as usize;
    let start = SNI_SCRATCH_BYTES - 1;
    if size <= start + 1 || size > start + SNI_SCRATCH_BYTES {
        return false;
    }
    // SAFETY: the context is a valid argument for this helper here.
    if unsafe { bpf_msg_pull_data(ctx.msg, start as u32, size as u32, 0) } != 0 {
        return false;
    }
    // `data` is now the write at `start`.
    let data = ctx.data();
    let avail = ctx.data_end().saturating_sub(data);
    if avail != size - start {
        return false;
    }
    let copied = ((avail - 1) & MASK) + 1;
    let (Some(buf), Some(w)) = (SNI_SCRATCH.get_ptr_mut(0), SNI_WALK.get_ptr_mut(0)) else {
        return false;
    };
    // SAFETY: `buf` holds SNI_SCRATCH_BYTES bytes; `data` has `copied`.
    if unsafe { bpf_probe_read_kernel(buf as *mut c_void, copied as u32, data as *const c_void) }
        != 0
    {
        return false;
    }
    // SAFETY: a per-CPU value, ours for the program's run; `line` is
    // the first copy's, as its walk left it.
    unsafe {
        (*w).pos = 1;
        (*w).end = copied as u64;
        (*w).phase = CONNECT_HEAD;
        (*w).ech = READ_CONNECT;
        (*w).state = WALKING;
    }
    steps(SNI_SCRATCH_BYTES as u32, host_step);
    // SAFETY: as above; read afresh after the loop.
    unsafe { read_volatile(&(*w).state) == DONE && read_volatile(&(*w).pos) as usize == copied }
}

/// How many bytes of the body of the plain request just let through are
/// still to come after this write of `size` bytes (0: none, or not known).
#[inline(never)]
fn body_rest(flags: u32, size: u32) -> u32 {
    match framed_end() {
        Some(end) if flags & EVENT_F_HTTP_HOST != 0 && end > size => end - size,
        _ => 0,
    }
}

/// Lets the write's first `n` bytes through as the end of a request (its
/// body, at most), the next write judged as plain HTTP's: the kernel
/// splits a write at the count given and runs the program again for the
/// rest, read from its start. False without storage (nothing is split).
#[inline(always)]
fn split_at(ctx: &SkMsgContext, progress: *mut SniPending, n: u32) -> bool {
    if !pending::let_through_body(progress, n, 0) {
        return false;
    }
    // SAFETY: the context is a valid argument for this helper here.
    unsafe { bpf_msg_apply_bytes(ctx.msg, n) };
    true
}

/// Where, inside this write of `size` bytes, the plain request just let
/// through ends, body included, if bytes follow it in the write.
#[inline(never)]
fn body_ends_before(flags: u32, size: u32) -> Option<u32> {
    match framed_end() {
        Some(end) if flags & EVENT_F_HTTP_HOST != 0 && end != 0 && end < size => Some(end),
        _ => None,
    }
}

/// Where the plain request `host_header` read last ends, body included,
/// from the start of what was read (`Walk::end`, which nothing walks
/// after it: the name judged reads only `name_off` and `name_len`). None
/// where the body's length is not known.
#[inline(always)]
fn framed_end() -> Option<u32> {
    let w = SNI_WALK.get_ptr(0)?;
    // SAFETY: a per-CPU value, ours for the program's run.
    let end = unsafe { read_volatile(&(*w).end) };
    if end > u32::MAX as u64 / 2 {
        None
    } else {
        Some(end as u32)
    }
}

/// `Walk::phase` of `host_step` once an empty line ended the request head.
const HEAD_ENDED: u32 = 3;
/// `Walk::phase` of `host_step` after a plain request's Host name.
const AFTER_HOST: u32 = 5;
/// `Walk::ech` of `host_step`: what the name read is, and what follows
/// it. A Host header's name: the rest of the head is read for another.
const READ_HOST: u32 = 0;
/// A CONNECT's name: the rest of its head is read for where it ends.
const READ_CONNECT: u32 = 1;
/// An absolute-form target's host: the walk ends with it.
const READ_TARGET: u32 = 2;

/// One byte of the request: matches `\nhost:` (case-insensitive), skips
/// blanks, then reads the name up to a port, blank or line end.
#[inline(never)]
unsafe extern "C" fn host_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some((w, buf)) = step_state(&SNI_WALK, &SNI_SCRATCH) else {
        return 1;
    };
    // The write may end first: a name read so far may go on in the next
    // one (`host_header` holds the write).
    let Some((pos, c)) = current(w, buf) else {
        return 1;
    };
    match w.phase {
        0 | AFTER_HOST => {
            if c == b'\n' {
                if empty_line(w.line, buf, pos) {
                    // `pos` past the head, for what follows it.
                    w.pos += 1;
                    if w.phase == AFTER_HOST {
                        w.state = DONE;
                    } else {
                        w.phase = HEAD_ENDED;
                    }
                    return 1;
                }
                w.line = 0;
            } else {
                w.line += 1;
            }
            if w.matched == 5 && (c == b' ' || c == b'\t') {
                // `Host :`: blanks before the colon, which lenient
                // servers accept.
                w.pos += 1;
                return 0;
            }
            if match_step(&mut w.matched, c, b"\nhost:") {
                if w.phase == AFTER_HOST {
                    // A second Host header (RFC 9112 §3.2 has servers
                    // refuse the request): a proxy that goes by the last
                    // one would go by a name not judged.
                    w.state = FAILED;
                    return 1;
                }
                w.phase = 1;
            }
            w.pos += 1;
        }
        1 => {
            if c == b' ' || c == b'\t' {
                w.pos += 1;
            } else {
                w.name_off = w.pos;
                w.phase = 2;
            }
        }
        2 => {
            if c == b'@' {
                // `user@host` in an absolute-form target: the host follows.
                w.pos += 1;
                w.name_off = w.pos;
                return 0;
            }
            if c == b':'
                || c == b'\r'
                || c == b'\n'
                || c == b' '
                || c == b'\t'
                || c == b'/'
                || c == b'?'
                || c == b'#'
            {
                w.name_len = w.pos - w.name_off;
                if w.ech == READ_TARGET {
                    w.state = DONE;
                    return 1;
                }
                if w.ech == READ_HOST {
                    // On through the rest of the head, from this byte,
                    // for a second Host header.
                    w.phase = AFTER_HOST;
                    w.matched = 0;
                    return 0;
                }
                // A CONNECT: on to the end of its head.
                w.phase = CONNECT_HEAD;
                w.line = 1;
                return 0;
            }
            w.pos += 1;
        }
        _ => {
            // The rest of a CONNECT's head: only where it ends counts.
            if c == b'\n' {
                if empty_line(w.line, buf, pos) {
                    w.pos += 1;
                    w.state = DONE;
                    return 1;
                }
                w.line = 0;
            } else {
                w.line += 1;
            }
            w.pos += 1;
        }
    }
    0
}

/// Runs `step` up to `n` times over the per-CPU walk (`bpf_loop`; the
/// callbacks find their state in the maps, not in a context).
#[inline(always)]
fn steps(n: u32, step: unsafe extern "C" fn(u64, *mut c_void) -> i64) {
    let mut unused = 0u64;
    // SAFETY: the callback and its context live for the call.
    unsafe {
        bpf_loop(
            n,
            step as *mut c_void,
            &mut unused as *mut u64 as *mut c_void,
            0,
        );
    }
}

/// The walk's position and the byte there, or `None` at its end.
#[inline(always)]
fn current(w: &Walk, buf: &[u8; SNI_SCRATCH_BYTES]) -> Option<(usize, u8)> {
    let pos = w.pos as usize;
    if pos >= w.end as usize {
        return None;
    }
    Some((pos, byte(buf, pos)))
}

/// `c` lowercased if it is an ASCII letter.
#[inline(always)]
fn lower(c: u8) -> u8 {
    if c.is_ascii_uppercase() { c | 0x20 } else { c }
}

/// One byte of a case-insensitive search for `pattern` (its first byte
/// not a letter), `matched` bytes of it matched so far: true once whole.
#[inline(always)]
fn match_step(matched: &mut u64, c: u8, pattern: &[u8; 6]) -> bool {
    // A match, not an index: the verifier bounds no `%` result.
    let expected = match *matched {
        0 => pattern[0],
        1 => pattern[1],
        2 => pattern[2],
        3 => pattern[3],
        4 => pattern[4],
        _ => pattern[5],
    };
    if lower(c) == expected {
        *matched += 1;
        return *matched >= 6;
    }
    // A mismatch may start the pattern anew.
    *matched = (c == pattern[0]) as u64;
    false
}

/// `Walk::phase` of `host_step` past a CONNECT's name.
const CONNECT_HEAD: u32 = 4;

/// One byte of an absolute-form target's authority: notes where the host
/// starts (after the last `@`); done at the authority's end.
#[inline(never)]
unsafe extern "C" fn authority_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some((w, buf)) = step_state(&SNI_WALK, &SNI_SCRATCH) else {
        return 1;
    };
    let Some((_, c)) = current(w, buf) else {
        return 1;
    };
    if c == b'/' || c == b'?' || c == b'#' || c == b' ' || c == b'\r' || c == b'\n' {
        w.state = DONE;
        return 1;
    }
    w.pos += 1;
    if c == b'@' {
        w.name_off = w.pos;
    }
    0
}

/// Whether the line a `\n` at `pos` ends is empty: nothing before it, or
/// one `\r` (`\r\r\n` is no empty line).
#[inline(always)]
fn empty_line(line: u32, buf: &[u8; SNI_SCRATCH_BYTES], pos: usize) -> bool {
    line == 0 || (line == 1 && pos > 0 && byte(buf, pos - 1) == b'\r')
}

/// An absolute-form request target's authority, read into the walk.
enum Target {
    /// Origin form (`/path`), or none found: Host decides.
    Origin,
    Name,
    /// The authority goes on past the write.
    Cut,
    /// An empty authority.
    Bad,
}

/// `METHOD http://host...` or `https://`: reads the host into the walk.
#[inline(always)]
fn absolute_target(buf: &[u8; SNI_SCRATCH_BYTES], w: *mut Walk, copied: usize) -> Target {
    // The method ends at its first separator (`method_sep`); methods run
    // to 20 bytes.
    let mut s = 0;
    for i in 1..21 {
        if method_sep(byte(buf, i)) {
            s = i;
            break;
        }
    }
    if s == 0 {
        return Target::Origin;
    }
    for _ in 0..8 {
        if method_sep(byte(buf, s)) {
            s += 1;
        }
    }
    if method_sep(byte(buf, s)) {
        // More separators than read here, which lenient proxies skip all
        // of (Squid's relaxed parser): the target behind them is unread.
        return Target::Bad;
    }
    let lower = |i: usize| lower(byte(buf, i));
    if !(lower(s) == b'h' && lower(s + 1) == b't' && lower(s + 2) == b't' && lower(s + 3) == b'p') {
        return Target::Origin;
    }
    // The scheme, then `//`. Without them (`http:\\host/`, `http:/host/`)
    // WHATWG URL parsers (a proxy in Node) still read a host, which the
    // Host header need not name: refused, as no client writes them.
    let slashes = |i: usize| byte(buf, i) == b'/' && byte(buf, i + 1) == b'/';
    let off = if byte(buf, s + 4) == b':' {
        if !slashes(s + 5) {
            return Target::Bad;
        }
        s + 7
    } else if lower(s + 4) == b's' && byte(buf, s + 5) == b':' {
        if !slashes(s + 6) {
            return Target::Bad;
        }
        s + 8
    } else {
        return Target::Origin;
    };
    // A login (`user:pass@`) before the host: the host starts after the
    // authority's last `@`.
    // SAFETY: a per-CPU value, ours for the program's run.
    unsafe {
        (*w).pos = off as u64;
        (*w).name_off = off as u64;
        (*w).end = copied as u64;
        (*w).state = WALKING;
    }
    steps(SNI_SCRATCH_BYTES as u32, authority_step);
    // SAFETY: a per-CPU value, ours for the program's run.
    unsafe {
        if read_volatile(&(*w).state) != DONE {
            return Target::Cut;
        }
        (*w).pos = (*w).name_off;
        (*w).phase = 2;
        (*w).ech = READ_TARGET;
        (*w).name_len = 0;
        (*w).state = WALKING;
    }
    steps(SNI_SCRATCH_BYTES as u32, host_step);
    // SAFETY: as above; read afresh after the loop.
    let (state, name_len) = unsafe { (read_volatile(&(*w).state), read_volatile(&(*w).name_len)) };
    if state != DONE {
        Target::Cut
    } else if name_len == 0 || name_len as usize > MAX_NAME {
        Target::Bad
    } else {
        Target::Name
    }
}

/// Hashes the name found (`SNI_WALK`) label by label into `SNI_NAME` and
/// matches it as the DNS program matches an answer's name.
#[inline(always)]
fn judge_name() -> Result<Match, ()> {
    let src = SNI_WALK.get_ptr(0).ok_or(())?;
    let n = SNI_NAME.get_ptr_mut(0).ok_or(())?;
    // SAFETY: per-CPU values, ours for the program's run.
    let (src, n) = unsafe { (&*src, &mut *n) };
    let len = src.name_len;
    if len == 0 || len as usize > MAX_NAME {
        return Err(());
    }
    n.pos = src.name_off;
    n.len = src.name_off + len;
    n.end = 0;
    n.hash = DNS_LABEL_SEED;
    n.count = 0;
    // `first_label_byte` tells the label's first byte by `left == label_len`.
    n.left = 1;
    n.label_len = 1;
    n.jumps = 0;
    n.hyphens = 0;
    n.state = WALKING;
    n.key = DNS_NAME_SEED;
    n.deny = 0;
    n.allow = 0;
    steps(len as u32, name_byte_step);
    // SAFETY: a per-CPU value; read afresh after the loop.
    if unsafe { read_volatile(&n.state) } == FAILED {
        return Err(());
    }
    // The last label (a trailing dot leaves none).
    if n.end != 0 {
        n.labels[(n.count as usize) & (DNS_MAX_LABELS - 1)] = n.hash;
        n.count += 1;
    }
    let count = n.count as usize;
    if count == 0 {
        return Err(());
    }
    steps(count.min(DNS_MAX_LABELS) as u32, sni_fold_step);
    // SAFETY: as above.
    let (deny, allow) = unsafe { (read_volatile(&n.deny), read_volatile(&n.allow)) };
    if deny == 0 || allow != 0 {
        return Ok(Match {
            verdict: VERDICT_PASS,
            rule_id: 0,
        });
    }
    Ok(Match {
        verdict: if audit_mode() {
            VERDICT_AUDITED
        } else {
            VERDICT_DENIED
        },
        rule_id: deny,
    })
}

/// One byte of a dotted name: a dot closes a label (an empty one is
/// malformed), any other byte extends it. `end` holds the length of the
/// label being read. Returns 1 to stop.
#[inline(never)]
unsafe extern "C" fn name_byte_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some((w, buf)) = step_state(&SNI_NAME, &SNI_SCRATCH) else {
        return 1;
    };
    let pos = w.pos as usize;
    if pos >= w.len as usize {
        return 1;
    }
    let c = byte(buf, pos);
    w.pos += 1;
    if c == b'.' {
        if w.end == 0 {
            w.state = FAILED;
            return 1;
        }
        w.labels[(w.count as usize) & (DNS_MAX_LABELS - 1)] = w.hash;
        w.count += 1;
        w.hash = DNS_LABEL_SEED;
        w.end = 0;
        return 0;
    }
    if c == 0 {
        w.state = FAILED;
        return 1;
    }
    if w.count == 0 {
        first_label_byte(w, c);
        w.left = 0;
    }
    w.hash = dns_label_byte(w.hash, c);
    w.end += 1;
    0
}

#[inline(never)]
unsafe extern "C" fn sni_fold_step(j: u64, _ctx: *mut c_void) -> i64 {
    let Some(w) = SNI_NAME.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: a per-CPU value, ours for the program's run.
    fold_label(unsafe { &mut *w }, j)
}
