use aya_ebpf::helpers::bpf_ktime_get_boot_ns;
use aya_ebpf::maps::{HashMap, LpmTrie, lpm_trie::Key};
use enforcer_common::{
    AF_INET, AF_INET6, CONFIG_MODE, CONFIG_NAT64_PREFIXES, CONFIG_PORT_RULES, CONFIG_SNI,
    EVENT_F_NAT64, EVENT_F_V4_MAPPED, Embedded, IPPROTO_TCP, IPPROTO_UDP,
    KOFF_TCP_FASTOPEN_CONNECT, KOFF_TCP_FASTOPEN_REQ, KOFF_TCP_IS_MPTCP, LEARNED_F_ALLOW,
    LEARNED_F_INSPECT, Learned, MODE_AUDIT, NOT_EMBEDDED, PORT_F_ALLOW, PORT_GATE_NAMES_TCP,
    PORT_GATE_NAMES_UDP, PORT_GATE_TCP, PORT_GATE_UDP, PORT_WORD_BITS, PortRule, SNI_F_INSPECT_443,
    SNI_F_QUIC_ALLOW, VERDICT_ALLOWED, VERDICT_AUDITED, VERDICT_DENIED, VERDICT_ERROR,
    VERDICT_PASS, embedded_v4, name_port_covers, port_word, scoped_v4, scoped_v6,
};

use crate::maps::{
    ALLOW_LPM_V4, ALLOW_LPM_V6, CONFIG, DENY_LPM_V4, DENY_LPM_V6, DENY_V4, DENY_V6, INSPECT_V4,
    INSPECT_V6, LEARNED_SCOPED_USED, LEARNED_SCOPED_V4, LEARNED_SCOPED_V6, LEARNED_V4, LEARNED_V6,
    NAT64_PREFIXES, PORT_GATE, PORT_LPM_V4, PORT_LPM_V6, SNI_PROXY_PORTS,
};

/// The rule of the shared banned name this IPv4 address was resolved or
/// learned for (0: none): TCP to it is judged by the name it sends. The
/// daemon's resolution (`INSPECT_V4`) or a DNS answer in force for
/// `cgroup` (`LEARNED_F_INSPECT`).
#[inline(always)]
pub fn inspected_v4(addr: u32, cgroup: u64) -> u32 {
    if let Some(rule) = INSPECT_V4.get_ptr(addr) {
        // SAFETY: a BPF_F_NO_PREALLOC value, never reused under us.
        return unsafe { *rule };
    }
    // SAFETY: as in `check`.
    match learned_inspect(unsafe { LEARNED_V4.get(addr) }, cgroup) {
        0 => scoped_inspect(&LEARNED_SCOPED_V4, scoped_v4(addr, cgroup), cgroup),
        rule => rule,
    }
}

/// `inspected_v4` for IPv6 (a v4-mapped address is judged as IPv4).
#[inline(always)]
pub fn inspected_v6(addr: [u32; 4], cgroup: u64) -> u32 {
    if let Some(v4) = v4_mapped(addr) {
        return inspected_v4(v4, cgroup);
    }
    if let Some(rule) = INSPECT_V6.get_ptr(addr) {
        // SAFETY: as above.
        return unsafe { *rule };
    }
    // SAFETY: as in `check`.
    match learned_inspect(unsafe { LEARNED_V6.get(addr) }, cgroup) {
        0 => scoped_inspect(&LEARNED_SCOPED_V6, scoped_v6(addr, cgroup), cgroup),
        rule => rule,
    }
}

/// The rule of a learned entry of a shared name still in force, or 0.
#[inline(always)]
fn learned_inspect(learned: Option<&Learned>, cgroup: u64) -> u32 {
    match learned {
        Some(l) if l.flags & LEARNED_F_INSPECT != 0 && learned_counts(l, cgroup) => l.rule_id,
        _ => 0,
    }
}

/// `learned_inspect` for what an answer from a server that is not the
/// host's taught this very cgroup (`scoped_ban`'s map and gate).
#[inline(always)]
fn scoped_inspect<S>(map: &HashMap<S, Learned>, key: S, cgroup: u64) -> u32 {
    if cgroup == 0 || !matches!(LEARNED_SCOPED_USED.get(0), Some(&n) if n != 0) {
        return 0;
    }
    // SAFETY: as in `check`.
    learned_inspect(unsafe { map.get(key) }, cgroup)
}

/// `CONFIG_SNI`: how shared names are enforced (`SNI_F_*`).
#[inline(always)]
pub fn sni_flags() -> u32 {
    match CONFIG.get(CONFIG_SNI) {
        Some(&f) => f,
        None => 0,
    }
}

/// A ban of `rule` as the mode makes it (audited or denied).
#[inline(always)]
pub fn banned(rule: u32) -> Match {
    finish(rule, None)
}

/// Bytes of a connection under name inspection that no name could judge:
/// a ban of the rule the destination is inspected for, or an error
/// verdict where there is none (a proxy port, `inspect_all_tls`).
#[inline(always)]
pub fn banned_or_error(rule: u32) -> Match {
    match rule {
        0 => ERROR,
        rule => banned(rule),
    }
}

/// QUIC (UDP to port 443) to a shared name's address: refused, since its
/// name travels encrypted in the Initial packets. Browsers and clients
/// then fall back to TCP, where the name decides. Reads nothing but the
/// port and protocol for other traffic.
#[inline(always)]
pub fn quic(port: u16, proto: u8, inspected: impl FnOnce() -> u32) -> Match {
    if port != 443 || proto != IPPROTO_UDP || sni_flags() & SNI_F_QUIC_ALLOW != 0 {
        return NO_MATCH;
    }
    match inspected() {
        0 => NO_MATCH,
        rule => finish(rule, None),
    }
}

/// TCP Fast Open or MPTCP to an inspected destination (its address, a proxy
/// port, or 443 under `inspect_all_tls`): refused, since its first bytes
/// leave with the SYN (or queued before the connection is established), or
/// its socket cannot join the sockhash, and never pass the sk_msg program
/// that judges a connection by its name. Plain
/// connects pass: this reads the socket only for TCP, and decides nothing
/// else.
#[inline(always)]
pub fn fast_open(ctx: u64, port: u16, proto: u8, inspected: impl FnOnce() -> u32) -> Match {
    if proto != IPPROTO_TCP {
        return NO_MATCH;
    }
    // The destination first: lookups cost less than the kernel reads that
    // tell Fast Open and MPTCP, and almost no connect goes to an inspected one.
    let rule = inspected();
    let watched = rule != 0
        || (port == 443 && sni_flags() & SNI_F_INSPECT_443 != 0)
        // SAFETY: a map lookup of a stack key.
        || unsafe { SNI_PROXY_PORTS.get(port) }.is_some();
    if !watched || !fast_opening(ctx) {
        return NO_MATCH;
    }
    finish(rule, None)
}

/// Whether the connecting socket cannot be inspected by its first write:
/// it uses TCP Fast Open (`sendto(MSG_FASTOPEN)`: the connect runs with
/// `tp->fastopen_req` set; or TCP_FASTOPEN_CONNECT), or it is an MPTCP
/// subflow (a socket with a ULP, which the kernel keeps out of a
/// sockhash). `ctx` is a sock_addr program's context, the kernel's
/// `bpf_sock_addr_kern`, whose first member is the socket.
#[inline(always)]
fn fast_opening(ctx: u64) -> bool {
    use crate::kernel::{bit_set, offset, pointer};
    let Some(sk) = pointer(ctx, 0) else {
        return false;
    };
    let req_at = offset(KOFF_TCP_FASTOPEN_REQ);
    if req_at != 0 && matches!(pointer(sk, req_at), Some(r) if r != 0) {
        return true;
    }
    bit_set(sk, offset(KOFF_TCP_FASTOPEN_CONNECT)) || bit_set(sk, offset(KOFF_TCP_IS_MPTCP))
}

/// Whether an address learned from a DNS answer counts for a socket in
/// `cgroup` (0: not known, as at XDP: only entries for everyone count):
/// still within its TTL and grace, and either learned for everyone or by
/// this very cgroup.
#[inline(always)]
fn learned_counts(l: &Learned, cgroup: u64) -> bool {
    (l.cgroup_id == 0 || l.cgroup_id == cgroup)
        // SAFETY: a helper without arguments.
        && l.expires_ns > unsafe { bpf_ktime_get_boot_ns() }
}

/// A learned exception (an allowed name's address) for `learned`, if any,
/// that covers `port`/`proto` (port 0: only one for every port counts).
#[inline(always)]
fn learned_allow(learned: Option<&Learned>, cgroup: u64, port: u16, proto: u8) -> Option<u32> {
    match learned {
        Some(l)
            if l.flags & LEARNED_F_ALLOW != 0
                && name_port_covers(l.port, port, proto)
                && learned_counts(l, cgroup) =>
        {
            Some(l.rule_id)
        }
        _ => None,
    }
}

/// A learned ban for `learned`, if any, that covers `port`/`proto` (port
/// 0: only a ban for every port counts). A shared name's address
/// (`LEARNED_F_INSPECT`) is no ban: its connections are judged by name.
#[inline(always)]
fn learned_ban(learned: Option<&Learned>, cgroup: u64, port: u16, proto: u8) -> Option<u32> {
    match learned {
        Some(l)
            if l.flags & (LEARNED_F_ALLOW | LEARNED_F_INSPECT) == 0
                && name_port_covers(l.port, port, proto)
                && learned_counts(l, cgroup) =>
        {
            Some(l.rule_id)
        }
        _ => None,
    }
}

/// The verdict for an address and the rule behind it. A plain struct, not an
/// `Option`: the verifier rejects the uninitialised payload LLVM leaves in
/// the `None` case.
#[derive(Clone, Copy)]
pub struct Match {
    pub verdict: u32,
    pub rule_id: u32,
}

#[inline(always)]
pub fn audit_mode() -> bool {
    matches!(CONFIG.get(CONFIG_MODE), Some(&MODE_AUDIT))
}

/// Turns "a ban matched" into the final verdict for the current mode.
#[inline(always)]
fn finish(rule_id: u32, allow: Option<u32>) -> Match {
    match allow {
        Some(allow_rule) => Match {
            verdict: VERDICT_ALLOWED,
            rule_id: allow_rule,
        },
        None if audit_mode() => Match {
            verdict: VERDICT_AUDITED,
            rule_id,
        },
        None => Match {
            verdict: VERDICT_DENIED,
            rule_id,
        },
    }
}

/// The verdict for an internal error, per the documented policy
/// (`enforcer_common::VERDICT_ERROR`): deny unless auditing.
#[inline(always)]
pub fn error_denies() -> bool {
    !audit_mode()
}

pub const NO_MATCH: Match = Match {
    verdict: VERDICT_PASS,
    rule_id: 0,
};

pub const ERROR: Match = Match {
    verdict: VERDICT_ERROR,
    rule_id: 0,
};

/// `NO_MATCH` when no ban covers the address: the common, cheap path does
/// one hash and one trie lookup, plus one hash lookup of the addresses
/// learned from DNS answers, and never touches the allow trie. A static
/// allow range wins over any ban; an address learned for an allowed name
/// wins over a static ban; a learned ban applies only where no static rule
/// spoke. `cgroup`: the socket's cgroup v2 id (0 where none is known).
#[inline(always)]
pub fn check_v4(addr: u32, cgroup: u64) -> Match {
    check(
        Family {
            prefix_len: 32,
            deny: &DENY_V4,
            deny_lpm: &DENY_LPM_V4,
            allow_lpm: &ALLOW_LPM_V4,
            learned: &LEARNED_V4,
            scoped: &LEARNED_SCOPED_V4,
        },
        addr,
        scoped_v4(addr, cgroup),
        cgroup,
    )
}

#[inline(always)]
pub fn check_v6(addr: [u32; 4], cgroup: u64) -> Match {
    check(
        Family {
            prefix_len: 128,
            deny: &DENY_V6,
            deny_lpm: &DENY_LPM_V6,
            allow_lpm: &ALLOW_LPM_V6,
            learned: &LEARNED_V6,
            scoped: &LEARNED_SCOPED_V6,
        },
        addr,
        scoped_v6(addr, cgroup),
        cgroup,
    )
}

/// The maps of one address family, keyed by its address type `K`.
struct Family<'a, K, S> {
    /// The address length in bits: the trie key of one whole address.
    prefix_len: u32,
    deny: &'a HashMap<K, u32>,
    deny_lpm: &'a LpmTrie<K, u32>,
    allow_lpm: &'a LpmTrie<K, u32>,
    learned: &'a HashMap<K, Learned>,
    /// Bans learned for one cgroup, keyed by `S` (the address and the
    /// cgroup).
    scoped: &'a HashMap<S, Learned>,
}

/// A ban learned for this very cgroup from an answer of a server that is
/// not the host's (`key`: its scoped key), if any; never looked up before
/// the DNS program learned the first such ban.
#[inline(always)]
fn scoped_ban<S>(
    map: &HashMap<S, Learned>,
    key: S,
    cgroup: u64,
    port: u16,
    proto: u8,
) -> Option<u32> {
    if cgroup == 0 || !matches!(LEARNED_SCOPED_USED.get(0), Some(&n) if n != 0) {
        return None;
    }
    // SAFETY: as in `check`.
    learned_ban(unsafe { map.get(key) }, cgroup, port, proto)
}

/// `check_v4` and `check_v6`, over either family's maps (inlined into
/// each, so every map reference stays a constant the verifier knows).
#[inline(always)]
fn check<K: Copy, S>(maps: Family<'_, K, S>, addr: K, scoped: S, cgroup: u64) -> Match {
    let key = Key::new(maps.prefix_len, addr);
    // SAFETY: the maps are BPF_F_NO_PREALLOC, so a value is never reused
    // under us; the reads cannot tear in a way that matters (a rule id).
    let learned = unsafe { maps.learned.get(addr) };
    let rule_id = match maps.deny.get_ptr(addr) {
        Some(rule) => unsafe { *rule },
        None => match maps.deny_lpm.get(&key) {
            Some(rule) => *rule,
            None => match learned_ban(learned, cgroup, 0, 0) {
                Some(rule) => rule,
                None => match scoped_ban(maps.scoped, scoped, cgroup, 0, 0) {
                    Some(rule) => rule,
                    None => return NO_MATCH,
                },
            },
        },
    };
    let allow = match maps.allow_lpm.get(&key) {
        Some(rule) => Some(*rule),
        None => learned_allow(learned, cgroup, 0, 0),
    };
    finish(rule_id, allow)
}

/// Whether the policy has rules with a port: one array read; while it
/// has none, nothing else of the port path runs.
#[inline(always)]
pub fn port_rules() -> bool {
    matches!(CONFIG.get(CONFIG_PORT_RULES), Some(&n) if n != 0)
}

/// What `PORT_GATE` says of `port` over `proto`: whether the port trie
/// has rules for it (`trie`), whether name rules with it exist (`names`).
#[derive(Clone, Copy)]
struct Gate {
    trie: bool,
    names: bool,
}

#[inline(always)]
fn gate(port: u16, proto: u8) -> Gate {
    let (trie, names) = match proto {
        IPPROTO_TCP => (PORT_GATE_TCP, PORT_GATE_NAMES_TCP),
        IPPROTO_UDP => (PORT_GATE_UDP, PORT_GATE_NAMES_UDP),
        _ => (0, 0),
    };
    let bits = match PORT_GATE.get(port as u32) {
        Some(&g) if port != 0 => g,
        _ => 0,
    };
    Gate {
        trie: bits & trie != 0,
        names: bits & names != 0,
    }
}

/// The maps of one family's port rules: the port trie keyed by `P` (the
/// port word, then the address `K`), and the address-only exceptions.
struct PortFamily<'a, K, P, S> {
    prefix_len: u32,
    lpm: &'a LpmTrie<P, PortRule>,
    allow_lpm: &'a LpmTrie<K, u32>,
    learned: &'a HashMap<K, Learned>,
    scoped: &'a HashMap<S, Learned>,
}

/// The verdict of the rules with a port for traffic to `addr` on
/// `port`/`proto`, for traffic that no address rule matched (`check_v4`
/// said `NO_MATCH`). The longest port rule wins (the compiler turns a ban
/// inside a port exception into that exception); an address learned for a
/// name rule with this port bans where no port rule spoke. An address-only
/// exception, a port exception or a learned exception for the port wins
/// over either ban.
#[inline(always)]
pub fn port_v4(addr: u32, cgroup: u64, port: u16, proto: u8) -> Match {
    let g = gate(port, proto);
    if !g.trie && !g.names {
        return NO_MATCH;
    }
    port_check(
        g,
        PortFamily {
            prefix_len: 32,
            lpm: &PORT_LPM_V4,
            allow_lpm: &ALLOW_LPM_V4,
            learned: &LEARNED_V4,
            scoped: &LEARNED_SCOPED_V4,
        },
        [port_word(port, proto), addr],
        addr,
        scoped_v4(addr, cgroup),
        cgroup,
        port,
        proto,
    )
}

#[inline(always)]
pub fn port_v6(addr: [u32; 4], cgroup: u64, port: u16, proto: u8) -> Match {
    let g = gate(port, proto);
    if !g.trie && !g.names {
        return NO_MATCH;
    }
    port_check(
        g,
        PortFamily {
            prefix_len: 128,
            lpm: &PORT_LPM_V6,
            allow_lpm: &ALLOW_LPM_V6,
            learned: &LEARNED_V6,
            scoped: &LEARNED_SCOPED_V6,
        },
        [port_word(port, proto), addr[0], addr[1], addr[2], addr[3]],
        addr,
        scoped_v6(addr, cgroup),
        cgroup,
        port,
        proto,
    )
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn port_check<K: Copy, P, S>(
    g: Gate,
    maps: PortFamily<'_, K, P, S>,
    port_key: P,
    addr: K,
    scoped: S,
    cgroup: u64,
    port: u16,
    proto: u8,
) -> Match {
    let hit = if g.trie {
        maps.lpm
            .get(Key::new(PORT_WORD_BITS + maps.prefix_len, port_key))
    } else {
        None
    };
    let rule_id = match hit {
        Some(r) if r.flags & PORT_F_ALLOW != 0 => {
            return Match {
                verdict: VERDICT_ALLOWED,
                rule_id: r.rule_id,
            };
        }
        Some(r) => r.rule_id,
        None if g.names => {
            // SAFETY: as in `check`.
            match learned_ban(unsafe { maps.learned.get(addr) }, cgroup, port, proto) {
                Some(rule) => rule,
                None => match scoped_ban(maps.scoped, scoped, cgroup, port, proto) {
                    Some(rule) => rule,
                    None => return NO_MATCH,
                },
            }
        }
        None => return NO_MATCH,
    };
    // A ban: the rare path, where every kind of exception is looked up.
    let allow = match maps.allow_lpm.get(Key::new(maps.prefix_len, addr)) {
        Some(rule) => Some(*rule),
        // SAFETY: as in `check`.
        None => learned_allow(unsafe { maps.learned.get(addr) }, cgroup, port, proto),
    };
    finish(rule_id, allow)
}

/// `port_v6` for an IPv6 destination and, as `check_v6_forms` does, the
/// IPv4 address it carries.
#[inline(always)]
pub fn port_v6_forms(addr: [u32; 4], cgroup: u64, port: u16, proto: u8) -> Judged {
    v6_forms(addr, port_v6(addr, cgroup, port, proto), |v4| {
        port_v4(v4, cgroup, port, proto)
    })
}

/// `::ffff:a.b.c.d` → `a.b.c.d` (as the v4 key).
#[inline(always)]
pub fn v4_mapped(addr: [u32; 4]) -> Option<u32> {
    let e = embedded_v4(addr);
    if e.via == EVENT_F_V4_MAPPED {
        Some(e.v4)
    } else {
        None
    }
}

/// The verdict for an IPv6 address and what the event should carry.
#[derive(Clone, Copy)]
pub struct Judged {
    pub found: Match,
    /// `AF_INET` when the embedded IPv4 address decided, else `AF_INET6`.
    pub family: u32,
    pub addr: [u32; 4],
    /// The `EVENT_F_*` form flag when the embedded IPv4 address decided.
    pub via: u32,
}

/// An IPv6 address under one of the policy's NAT64 /96 prefixes. Costs one
/// array read while the policy names none.
#[inline(always)]
fn operator_nat64(addr: [u32; 4]) -> Embedded {
    match CONFIG.get(CONFIG_NAT64_PREFIXES) {
        Some(&n) if n != 0 => {}
        _ => return NOT_EMBEDDED,
    }
    match NAT64_PREFIXES.get_ptr([addr[0], addr[1], addr[2]]) {
        Some(_) => Embedded {
            v4: addr[3],
            via: EVENT_F_NAT64,
        },
        None => NOT_EMBEDDED,
    }
}

/// An IPv6 address: its own rules first. When none bans it and it carries
/// an IPv4 address (a NAT64 prefix, 6to4, v4-mapped), that address is
/// judged against the v4 rules, so a banned IPv4 host stays banned when
/// reached through a translator or a relay. Only an address under such a
/// prefix pays for the v4 lookups. The operator's prefixes come first: on
/// that network they are what the translator uses, whatever the address
/// would mean elsewhere.
#[inline(always)]
pub fn check_v6_forms(addr: [u32; 4], cgroup: u64) -> Judged {
    v6_forms(addr, check_v6(addr, cgroup), |v4| check_v4(v4, cgroup))
}

/// `found`, the verdict of `addr`'s own rules, or where they did not
/// speak and `addr` carries an IPv4 address (the operator's NAT64
/// prefixes first, then the well-known forms), `v4`'s verdict for it.
#[inline(always)]
fn v6_forms(addr: [u32; 4], found: Match, v4: impl FnOnce(u32) -> Match) -> Judged {
    if found.verdict == VERDICT_PASS {
        let mut embedded = operator_nat64(addr);
        if embedded.via == 0 {
            embedded = embedded_v4(addr);
        }
        if embedded.via != 0 {
            let by_v4 = v4(embedded.v4);
            if by_v4.verdict != VERDICT_PASS {
                return Judged {
                    found: by_v4,
                    family: AF_INET,
                    addr: [embedded.v4, 0, 0, 0],
                    via: embedded.via,
                };
            }
        }
    }
    Judged {
        found,
        family: AF_INET6,
        addr,
        via: 0,
    }
}

/// Whether the verdict lets the traffic through.
#[inline(always)]
pub fn passes(verdict: u32) -> bool {
    match verdict {
        VERDICT_DENIED => false,
        VERDICT_ERROR => !error_denies(),
        _ => true,
    }
}
