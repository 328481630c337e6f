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
#![cfg_attr(not(test), no_std)]

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
    /// Socket-local storage (`BPF_MAP_TYPE_SK_STORAGE`): each socket's
    /// [`super::SockOwner`], for hooks without task context. Freed with the
    /// socket; userspace never reads it.
    pub const SK_OWNERS: &str = "SK_OWNERS";
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
    /// Operator NAT64 /96 prefixes: the first 96 bits (`[u32; 3]`, map
    /// byte order) → 1. Read only while `CONFIG_NAT64_PREFIXES` is non-zero.
    pub const NAT64_PREFIXES: &str = "NAT64_PREFIXES";
    /// Name key ([`super::dns_fold`] over the labels from the right) →
    /// [`super::NameRule`]: the banned and allowed names the DNS program
    /// matches answers against.
    pub const DNS_NAMES: &str = "DNS_NAMES";
    /// IPv4 address (map byte order) → [`super::Learned`]: addresses the
    /// DNS program saw in answers for a banned or allowed name.
    pub const LEARNED_V4: &str = "LEARNED_V4";
    /// IPv6 address → [`super::Learned`].
    pub const LEARNED_V6: &str = "LEARNED_V6";
    /// Bans learned from answers of servers that are not the host's, per
    /// receiving cgroup: [`super::scoped_v4`] key → [`super::Learned`].
    /// Kept apart from `LEARNED_V4` so that two cgroups' bans of one
    /// address never overwrite each other.
    pub const LEARNED_SCOPED_V4: &str = "LEARNED_SCOPED_V4";
    /// [`super::scoped_v6`] key → [`super::Learned`].
    pub const LEARNED_SCOPED_V6: &str = "LEARNED_SCOPED_V6";
    /// One entry, non-zero once a scoped ban was ever learned: until then
    /// the verdicts skip the scoped lookups.
    pub const LEARNED_SCOPED_USED: &str = "LEARNED_SCOPED_USED";
    /// The host's own DNS servers (IPv6 map key; IPv4 as `::ffff:a.b.c.d`)
    /// → 1: answers from them ban for everyone, and their addresses are
    /// never banned from an answer.
    pub const DNS_SERVERS: &str = "DNS_SERVERS";
    /// Per-CPU copy of the DNS message being parsed.
    pub const DNS_SCRATCH: &str = "DNS_SCRATCH";
    /// Per-CPU state of the name being read.
    pub const DNS_WALK: &str = "DNS_WALK";
    /// Per-CPU state of the walk over a message's answer records.
    pub const DNS_RECORDS: &str = "DNS_RECORDS";
    /// Ring buffer of [`super::DnsReport`]: each DNS answer that taught
    /// the kernel addresses, for the names in flows.
    pub const DNS_REPORTS: &str = "DNS_REPORTS";
    /// Per destination port (index): `PORT_GATE_*` bits saying rules with
    /// that port exist, so that traffic to other ports skips the port tries.
    pub const PORT_GATE: &str = "PORT_GATE";
    /// Rules with a port (LPM trie): `Key<[u32; 2]>` = [`super::port_word`]
    /// then the IPv4 address → [`super::PortRule`].
    pub const PORT_LPM_V4: &str = "PORT_LPM_V4";
    /// `Key<[u32; 5]>` = [`super::port_word`] then the IPv6 address →
    /// [`super::PortRule`].
    pub const PORT_LPM_V6: &str = "PORT_LPM_V6";
    /// Rule id of a name rule with a port → [`super::name_port`]: what the
    /// addresses the DNS program learns for that rule carry.
    pub const NAME_PORTS: &str = "NAME_PORTS";
    /// Rule id of a *shared* banned name → 1: the addresses the DNS program
    /// learns for it are inspected ([`super::LEARNED_F_INSPECT`]), never banned.
    pub const NAME_SHARED: &str = "NAME_SHARED";
    /// IPv4 address → rule id: addresses the daemon resolved for a shared
    /// banned name. Connections to them are inspected, never denied by address.
    pub const INSPECT_V4: &str = "INSPECT_V4";
    /// IPv6 address → rule id, as [`INSPECT_V4`].
    pub const INSPECT_V6: &str = "INSPECT_V6";
    /// Sockhash (socket cookie → socket) of the TCP connections to an
    /// inspected destination: the sk_msg program sees their first write.
    pub const SNI_SOCKS: &str = "SNI_SOCKS";
    /// Per-CPU copy of the first bytes of a write being inspected.
    pub const SNI_SCRATCH: &str = "SNI_SCRATCH";
    /// Per-CPU state of the walk over a ClientHello or an HTTP request.
    pub const SNI_WALK: &str = "SNI_WALK";
    /// Per-CPU state of the name being hashed (the DNS program's layout).
    pub const SNI_NAME: &str = "SNI_NAME";
    /// Destination port (`u16`, host order) → 1: explicit proxy ports
    /// (`shared_names.proxy_ports`). Connections to them are inspected
    /// whatever their address: the name asked of the proxy (HTTP CONNECT,
    /// Host, SOCKS5 with a domain name) decides.
    pub const SNI_PROXY_PORTS: &str = "SNI_PROXY_PORTS";
    /// Socket-local storage: each inspected connection's
    /// [`super::SniPending`], the bytes the sk_msg program judged, so that
    /// bytes it never saw (a write that entered TCP before the connection
    /// was under inspection) are stopped on the wire.
    pub const SNI_PENDING: &str = "SNI_PENDING";
    /// One entry, non-zero once a connection was ever put under inspection:
    /// until then the skb program skips the `SNI_PENDING` lookup.
    pub const SNI_WATCHED: &str = "SNI_WATCHED";
    /// Agent containment (`crate::agents`): settings, `AGENT_CFG_*`.
    pub const AGENT_CONFIG: &str = "AGENT_CONFIG";
    /// Byte → byte class of the selector automaton.
    pub const AGENT_CLASSES: &str = "AGENT_CLASSES";
    /// The selector automaton's transitions: state * stride + class → state.
    pub const AGENT_DFA: &str = "AGENT_DFA";
    /// State → selector index + 1 matched when the input ends there (0: none).
    pub const AGENT_ACCEPT: &str = "AGENT_ACCEPT";
    /// Selector slot → `AgentSelector`. A selector keeps its slot (by
    /// name) across reloads and restarts: marks never need renumbering.
    pub const AGENT_SELECTORS: &str = "AGENT_SELECTORS";
    /// Per automaton bank: the rank (policy order) a match gives → slot.
    pub const AGENT_RANKS: &str = "AGENT_RANKS";
    /// Process id (tgid) → `Contained`: the processes under a selector.
    pub const CONTAINED: &str = "CONTAINED";
    /// {selector, protocol, port, address} prefixes a contained process may reach.
    pub const AGENT_ALLOW_V4: &str = "AGENT_ALLOW_V4";
    pub const AGENT_ALLOW_V6: &str = "AGENT_ALLOW_V6";
    /// Name key (as `DNS_NAMES`) → `AgentName`: names in allow lists.
    pub const AGENT_NAMES: &str = "AGENT_NAMES";
    /// Addresses the host's DNS servers returned for names in allow lists.
    pub const AGENT_LEARNED_V4: &str = "AGENT_LEARNED_V4";
    pub const AGENT_LEARNED_V6: &str = "AGENT_LEARNED_V6";
    /// Per-CPU: the agent masks of the DNS name being read and of its chain.
    pub const AGENT_DNS: &str = "AGENT_DNS";
    /// Per-CPU state of a selector automaton run (`AgentWalk`).
    pub const AGENT_WALK: &str = "AGENT_WALK";
    /// Per-CPU counters, `AGENT_STAT_*`.
    pub const AGENT_STATS: &str = "AGENT_STATS";
    /// `KOFF_*`: struct offsets of the running kernel (from its BTF).
    pub const KERNEL_OFFSETS: &str = "KERNEL_OFFSETS";
    /// `AgentUnixKey` → 1: the Unix-domain socket paths a selector may
    /// connect or send to.
    pub const AGENT_ALLOW_UNIX: &str = "AGENT_ALLOW_UNIX";
    /// LRU, (socket cookie ^ time) → `AgentUnixKey`: the name of a
    /// Unix-domain socket a contained process was refused, under the key
    /// its event carries (in `addr`): an event has no room for a path.
    pub const AGENT_UNIX_SEEN: &str = "AGENT_UNIX_SEEN";

    /// Every map, in the order the loader pins them.
    pub const ALL: [&str; 59] = [
        DENY_V4,
        DENY_V6,
        DENY_LPM_V4,
        DENY_LPM_V6,
        ALLOW_LPM_V4,
        ALLOW_LPM_V6,
        CONFIG,
        STATS,
        EVENTS,
        SK_OWNERS,
        XDP_RATE,
        REPORTED,
        EXEC_ARGS,
        EXEC_SCRATCH,
        PROC_EVENTS,
        NAT64_PREFIXES,
        DNS_NAMES,
        LEARNED_V4,
        LEARNED_V6,
        LEARNED_SCOPED_V4,
        LEARNED_SCOPED_V6,
        LEARNED_SCOPED_USED,
        DNS_SERVERS,
        DNS_SCRATCH,
        DNS_WALK,
        DNS_RECORDS,
        DNS_REPORTS,
        PORT_GATE,
        PORT_LPM_V4,
        PORT_LPM_V6,
        NAME_PORTS,
        NAME_SHARED,
        INSPECT_V4,
        INSPECT_V6,
        SNI_SOCKS,
        SNI_SCRATCH,
        SNI_WALK,
        SNI_NAME,
        SNI_PROXY_PORTS,
        SNI_PENDING,
        SNI_WATCHED,
        AGENT_CONFIG,
        AGENT_CLASSES,
        AGENT_DFA,
        AGENT_ACCEPT,
        AGENT_SELECTORS,
        AGENT_RANKS,
        CONTAINED,
        AGENT_ALLOW_V4,
        AGENT_ALLOW_V6,
        AGENT_NAMES,
        AGENT_LEARNED_V4,
        AGENT_LEARNED_V6,
        AGENT_DNS,
        AGENT_WALK,
        AGENT_STATS,
        AGENT_ALLOW_UNIX,
        AGENT_UNIX_SEEN,
        KERNEL_OFFSETS,
    ];

    /// Maps earlier builds pinned that this one no longer has. Their pins
    /// are removed when the object is loaded: a pin alone keeps a map's
    /// memory (the owner LRU: 64k preallocated entries) after the last
    /// program using it is gone.
    pub const RETIRED: [&str; 1] = [
        // Socket cookie → owner, an LRU hash: replaced by `SK_OWNERS`.
        "SOCK_OWNERS",
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
    /// cgroup_skb ingress: DNS answers into the enforced cgroup.
    pub const DNS_INGRESS: &str = "dns_ingress";
    /// cgroup sock_ops: puts TCP connections to inspected destinations
    /// into `SNI_SOCKS` once established.
    pub const SNI_SOCKOPS: &str = "sni_sockops";
    /// sk_msg verdict on `SNI_SOCKS`: judges the first write by its name
    /// (TLS server_name, HTTP Host).
    pub const SNI_MSG: &str = "sni_msg";
    /// tracepoint syscalls/sys_enter_execveat: captures argv (fexecve too).
    pub const EXECVEAT_ARGV: &str = "execveat_args";
    /// tracepoint sched/sched_process_fork: children of contained
    /// processes are contained.
    pub const PROCESS_FORK: &str = "process_fork";
    /// tracepoint sched/sched_process_exit: forgets exited processes.
    pub const PROCESS_EXIT: &str = "process_exit";
    /// cgroup connect_unix and sendmsg_unix (kernel 6.7+): Unix-domain
    /// sockets of contained processes. Built as connect4/sendmsg4 programs
    /// (aya 0.14 knows no Unix attach types) and loaded by the daemon
    /// itself with the Unix attach type (`enforcer::bpf::unix`).
    pub const CONNECT_UNIX: &str = "connect_unix";
    pub const SENDMSG_UNIX: &str = "sendmsg_unix";
}

/// Capacities of the maps. Hash maps are created with `BPF_F_NO_PREALLOC`,
/// so an unused capacity costs no kernel memory.
pub const MAX_EXACT_V4: u32 = 1 << 20;
pub const MAX_EXACT_V6: u32 = 1 << 20;
pub const MAX_RANGES_V4: u32 = 1 << 18;
pub const MAX_RANGES_V6: u32 = 1 << 18;
pub const MAX_ALLOW_V4: u32 = 1 << 16;
pub const MAX_ALLOW_V6: u32 = 1 << 16;
pub const MAX_REPORTED: u32 = 1 << 14;
/// Names the DNS program matches (exact and wildcard entries together).
pub const MAX_DNS_NAMES: u32 = 1 << 16;
/// Addresses learned from DNS answers, per family.
pub const MAX_LEARNED: u32 = 1 << 16;
pub const MAX_DNS_SERVERS: u32 = 64;
/// Rules with a port (address or range with its port and protocol), per family.
pub const MAX_PORT_RULES: u32 = 1 << 16;
/// Addresses of shared names the daemon resolved, per family.
pub const MAX_INSPECT: u32 = 1 << 16;
/// Connections under inspection at once (an entry leaves with its socket).
pub const MAX_SNI_SOCKS: u32 = 1 << 16;
/// Bytes of a first write the sk_msg program reads: a post-quantum
/// ClientHello (1.2–1.9 KB) fits whole.
pub const SNI_SCRATCH_BYTES: usize = 4096;
/// Explicit proxy ports the policy may name.
pub const MAX_PROXY_PORTS: u32 = 64;
/// Operator NAT64 prefixes the policy may name.
pub const MAX_NAT64_PREFIXES: u32 = 8;
/// The skb hook reports a socket at most once per this interval (the
/// syscall hooks report every attempt: each is a decision of the process).
pub const SKB_REPORT_INTERVAL_NS: u64 = 10_000_000_000;
/// Ring buffer size in bytes (a power of two, a multiple of the page size).
pub const EVENTS_BYTES: u32 = 1 << 22;
pub const PROC_EVENTS_BYTES: u32 = 1 << 21;
/// About 2000 reports of [`DnsReport`].
pub const DNS_REPORTS_BYTES: u32 = 1 << 20;
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
/// Index into the `CONFIG` array: how many operator NAT64 prefixes
/// `NAT64_PREFIXES` holds. 0 (the default) spares every IPv6 packet that
/// lookup.
pub const CONFIG_NAT64_PREFIXES: u32 = 2;
/// Index into the `CONFIG` array: the shortest time (s) an address learned
/// from a DNS answer stays, whatever the TTL says (`resolver.min_ttl_s`).
pub const CONFIG_DNS_MIN_TTL_S: u32 = 3;
/// Index into the `CONFIG` array: the longest (`resolver.max_ttl_s`).
pub const CONFIG_DNS_MAX_TTL_S: u32 = 4;
/// Index into the `CONFIG` array: added to every learned TTL (`grace_s`).
pub const CONFIG_DNS_GRACE_S: u32 = 5;
/// Index into the `CONFIG` array: non-zero when the policy has rules with
/// a port. 0 (the default) spares traffic that matched no address rule
/// the port read and the `PORT_GATE` lookup.
pub const CONFIG_PORT_RULES: u32 = 6;
/// Index into the `CONFIG` array: `SNI_F_*` bits, how shared names are
/// enforced (policy `shared_names`). 0, the default: an Encrypted Client
/// Hello to an inspected address is denied, QUIC to one is refused.
pub const CONFIG_SNI: u32 = 7;
pub const CONFIG_LEN: u32 = 8;

/// `CONFIG_SNI` bit: judge an Encrypted Client Hello by its outer name
/// instead of denying it (`shared_names.ech: "outer_name"`).
pub const SNI_F_ECH_OUTER_NAME: u32 = 1;
/// `CONFIG_SNI` bit: let QUIC to an inspected address through
/// (`shared_names.quic: "allow"`).
pub const SNI_F_QUIC_ALLOW: u32 = 2;
/// `CONFIG_SNI` bit: inspect every TCP connection to port 443, whatever its
/// address (`shared_names.inspect_all_tls: true`): a shared front end
/// reached by an address never resolved for the name is judged too.
pub const SNI_F_INSPECT_443: u32 = 4;

/// `KERNEL_OFFSETS` slots: struct offsets of the running kernel, from its
/// BTF, written by the daemon at load. 0: unknown.
/// `offsetof(struct tcp_sock, fastopen_req)`.
pub const KOFF_TCP_FASTOPEN_REQ: u32 = 0;
/// The bit offset of `tcp_sock.fastopen_connect` (TCP_FASTOPEN_CONNECT), + 1.
pub const KOFF_TCP_FASTOPEN_CONNECT: u32 = 1;
/// `task_struct.real_cred` (not `cred`, which io_uring personalities and
/// other `override_creds()` swap for a call), `cred.user_ns`, and
/// `user_namespace.ns + ns_common.inum`.
pub const KOFF_TASK_REAL_CRED: u32 = 2;
pub const KOFF_CRED_USER_NS: u32 = 3;
pub const KOFF_USER_NS_INUM: u32 = 4;
/// `task_struct.nsproxy`, `nsproxy.mnt_ns`, `mnt_namespace.ns + ns_common.inum`.
pub const KOFF_TASK_NSPROXY: u32 = 5;
pub const KOFF_NSPROXY_MNT_NS: u32 = 6;
pub const KOFF_MNT_NS_INUM: u32 = 7;
/// The inode number of the host's mount namespace (PID 1's).
pub const KOFF_HOST_MNT_INUM: u32 = 8;
/// The bit offset of `tcp_sock.is_mptcp`, + 1.
pub const KOFF_TCP_IS_MPTCP: u32 = 9;
/// `sk_msg.sk` (the sk_msg program's context is the kernel's `struct
/// sk_msg`) and `tcp_sock.write_seq`: where the next byte written to the
/// socket will stand.
pub const KOFF_SK_MSG_SK: u32 = 10;
pub const KOFF_TCP_WRITE_SEQ: u32 = 11;
pub const KOFF_LEN: u32 = 16;

/// `PORT_GATE` bits: the port trie holds rules for this port over TCP,
/// over UDP; and name rules with this port exist (addresses learned from
/// DNS answers may carry it) over TCP, over UDP. Each lookup runs only
/// where its bit says it can find something.
pub const PORT_GATE_TCP: u8 = 1;
pub const PORT_GATE_UDP: u8 = 2;
pub const PORT_GATE_NAMES_TCP: u8 = 4;
pub const PORT_GATE_NAMES_UDP: u8 = 8;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// The `PORT_GATE` bits of IP protocol `proto`: (rules in the port trie,
/// name rules); none for a protocol other than TCP and UDP.
pub const fn gate_bits(proto: u8) -> (u8, u8) {
    match proto {
        IPPROTO_TCP => (PORT_GATE_TCP, PORT_GATE_NAMES_TCP),
        IPPROTO_UDP => (PORT_GATE_UDP, PORT_GATE_NAMES_UDP),
        _ => (0, 0),
    }
}

/// The first word of a port trie key: the port (network order) and the IP
/// protocol, in memory order. A rule for both protocols is two entries.
#[inline(always)]
pub const fn port_word(port: u16, proto: u8) -> u32 {
    let p = port.to_be_bytes();
    u32::from_ne_bytes([p[0], p[1], proto, 0])
}
/// The bits of [`port_word`] in a trie key's prefix length: a rule for
/// every address on a port (`*:853`) has exactly this prefix length.
pub const PORT_WORD_BITS: u32 = 32;

/// `PortRule::flags`: an exception (`allow.cidrs: ["10.1.2.3:853"]`).
pub const PORT_F_ALLOW: u32 = 1;

/// A rule with a port, as the port tries hold it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortRule {
    pub rule_id: u32,
    /// `PORT_F_*`.
    pub flags: u32,
}

/// The port and protocol a name rule (and the addresses learned for it)
/// is limited to, packed: port << 8 | protocol (0: both). 0 in all: every port.
#[inline(always)]
pub const fn name_port(port: u16, proto: u8) -> u32 {
    (port as u32) << 8 | proto as u32
}

/// Whether traffic to `port`/`proto` falls under a [`name_port`] value.
#[inline(always)]
pub const fn name_port_covers(packed: u32, port: u16, proto: u8) -> bool {
    packed == 0
        || ((packed >> 8) == port as u32
            && ((packed & 0xff) == 0 || (packed & 0xff) == proto as u32))
}

/// What one name key stands for: rule ids (0: none) of an exact name and
/// of a `*.name` wildcard over it, banned and allowed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameRule {
    pub deny_exact: u32,
    pub deny_wild: u32,
    pub allow_exact: u32,
    pub allow_wild: u32,
}

/// `Learned::flags`: an allowed name's address (an exception).
pub const LEARNED_F_ALLOW: u32 = 1;
/// `Learned::flags`: a shared banned name's address: never banned by
/// address; TCP connections to it are judged by the name they send.
pub const LEARNED_F_INSPECT: u32 = 2;

/// The `LEARNED_SCOPED_V4` key of an IPv4 address (map byte order) learned
/// for the cgroup `cgroup`.
#[inline(always)]
pub const fn scoped_v4(addr: u32, cgroup: u64) -> [u32; 4] {
    [addr, 0, cgroup as u32, (cgroup >> 32) as u32]
}

/// The `LEARNED_SCOPED_V6` key of an IPv6 address learned for `cgroup`.
#[inline(always)]
pub const fn scoped_v6(addr: [u32; 4], cgroup: u64) -> [u32; 6] {
    [
        addr[0],
        addr[1],
        addr[2],
        addr[3],
        cgroup as u32,
        (cgroup >> 32) as u32,
    ]
}

/// An address learned from a DNS answer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Learned {
    /// The rule of the name that matched.
    pub rule_id: u32,
    /// `LEARNED_F_*`.
    pub flags: u32,
    /// `bpf_ktime_get_boot_ns()` after which the entry no longer counts
    /// (the answer's TTL, clamped, plus grace; suspend time included).
    pub expires_ns: u64,
    /// 0: applies to everyone (answered by one of `DNS_SERVERS`); else
    /// the cgroup v2 id of the socket that received the answer, the only
    /// one it applies to.
    pub cgroup_id: u64,
    /// The port and protocol of the name's rule ([`name_port`]); 0: every port.
    pub port: u32,
    pub _reserved: u32,
}

/// Bytes of a DNS message the program reads (the rest is not parsed and
/// the message is counted as truncated).
pub const DNS_SCRATCH_BYTES: usize = 2048;
/// Labels of a name the program keeps (the rightmost ones): names in a
/// policy have at most this many.
pub const DNS_MAX_LABELS: usize = 16;

/// FNV-1a over one label's bytes, ASCII lower-cased (DNS names compare
/// case-insensitively): the start value, and one byte.
pub const DNS_LABEL_SEED: u64 = 0xcbf2_9ce4_8422_2325;
#[inline(always)]
pub const fn dns_label_byte(h: u64, b: u8) -> u64 {
    let b = if b >= b'A' && b <= b'Z' { b | 0x20 } else { b };
    (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
}

/// The hash of one label (or of the tail of one), as the DNS program
/// computes it byte by byte.
pub fn dns_label_hash(label: &str) -> u64 {
    let mut h = DNS_LABEL_SEED;
    for &b in label.as_bytes() {
        h = dns_label_byte(h, b);
    }
    h
}

/// The key of `name` (lower or upper case, no trailing dot) as the DNS
/// program computes it; for a `*.suffix` wildcard, the key of `suffix`.
pub fn dns_name_key(name: &str) -> u64 {
    let mut key = DNS_NAME_SEED;
    for label in name.rsplit('.') {
        key = dns_fold(key, dns_label_hash(label));
    }
    key
}

/// Hyphens of a name's first label whose tails the DNS program keeps (the
/// last ones): a `*-tail.rest` rule may have at most this many hyphens in
/// its tail label, the leading one included.
pub const DNS_SUFFIX_SLOTS: usize = 4;
/// Mixed into a tail's hash before it is folded, so that `*-tail` keys
/// live apart from the keys of whole names.
pub const DNS_SUFFIX_TWEAK: u64 = 0x2d2d_2d2d_5aff_1c5e;

/// The key of a `*-tail.rest` rule, given `-tail.rest`: the tail of the
/// first label (from its hyphen on) folded over the key of `rest`. The DNS
/// program computes the same for every tail of a name's first label that
/// starts at one of its last [`DNS_SUFFIX_SLOTS`] hyphens (not the label's
/// first byte).
pub fn dns_suffix_key(tail_rest: &str) -> u64 {
    let (tail, rest) = tail_rest.split_once('.').unwrap_or((tail_rest, ""));
    let parent = if rest.is_empty() {
        DNS_NAME_SEED
    } else {
        dns_name_key(rest)
    };
    dns_fold(parent, dns_label_hash(tail) ^ DNS_SUFFIX_TWEAK)
}

/// A name key: label hashes folded from the rightmost label leftwards,
/// starting at [`DNS_NAME_SEED`], so that every suffix of a name (what a
/// `*.suffix` wildcard names) is an intermediate value.
pub const DNS_NAME_SEED: u64 = 0x9e37_79b9_7f4a_7c15;
#[inline(always)]
pub const fn dns_fold(key: u64, label: u64) -> u64 {
    let x = (key ^ label).wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^ (x >> 33)
}

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
/// The first write of a connection to an inspected destination, judged by
/// the name it carries (TLS server_name, HTTP Host).
pub const HOOK_SNI: u32 = 6;
pub const HOOK_COUNT: u32 = 7;
/// Events only (not counted in `STATS`, whose layout stays; `AGENT_STATS`
/// counts them): a contained process's Unix-domain connect or send.
pub const HOOK_CONNECT_UNIX: u32 = 7;
pub const HOOK_SENDMSG_UNIX: u32 = 8;

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
/// A hook that needed a socket's owner found none recorded: the skb
/// layer's event names the cgroup and uid only; sock_ops inspects the
/// connection (fail closed) while any cgroup-scoped inspection exists.
pub const STAT_OWNER_UNKNOWN: u32 = STAT_RINGBUF_FULL + 2;
/// An skb event was not emitted: the socket was reported within
/// [`SKB_REPORT_INTERVAL_NS`] (the verdict itself is counted as usual).
pub const STAT_SKB_EVENTS_COALESCED: u32 = STAT_RINGBUF_FULL + 3;
/// An exec record was not emitted because PROC_EVENTS was full.
pub const STAT_PROC_RINGBUF_FULL: u32 = STAT_RINGBUF_FULL + 4;
/// DNS responses (port 53, UDP) parsed by the DNS program.
pub const STAT_DNS_RESPONSES: u32 = STAT_RINGBUF_FULL + 5;
/// Addresses learned from answers (bans and exceptions).
pub const STAT_DNS_LEARNED: u32 = STAT_RINGBUF_FULL + 6;
/// Responses that could not be parsed (bad lengths, labels, pointers).
pub const STAT_DNS_MALFORMED: u32 = STAT_RINGBUF_FULL + 7;
/// Responses longer than the program reads, or with more records than it
/// walks: the rest was not seen.
pub const STAT_DNS_TRUNCATED: u32 = STAT_RINGBUF_FULL + 8;
/// Addresses in matching answers never banned: unspecified, loopback,
/// link-local, or one of the host's DNS servers.
pub const STAT_DNS_IGNORED: u32 = STAT_RINGBUF_FULL + 9;
/// A learned address could not be stored (the map is full).
pub const STAT_DNS_LEARN_FAILED: u32 = STAT_RINGBUF_FULL + 10;
/// DNS over TCP or fragments: not parsed.
pub const STAT_DNS_UNPARSED: u32 = STAT_RINGBUF_FULL + 11;
/// Answers that taught addresses, reported in `DNS_REPORTS`.
pub const STAT_DNS_REPORTED: u32 = STAT_RINGBUF_FULL + 12;
/// Such answers not reported: `DNS_REPORTS` was full.
pub const STAT_DNS_REPORT_LOST: u32 = STAT_RINGBUF_FULL + 13;
/// Reported answers longer than [`DNS_REPORT_BYTES`]: cut there.
pub const STAT_DNS_REPORT_CUT: u32 = STAT_RINGBUF_FULL + 14;
/// TCP connections to an inspected destination put under inspection.
pub const STAT_SNI_SOCKETS: u32 = STAT_RINGBUF_FULL + 15;
/// Such connections that could not be put fully under inspection: the
/// sockhash refused them (map full, a socket with a ULP), or the kernel
/// could not make their `SNI_PENDING` storage. The first kind sends no
/// data (every byte is unjudged); the second is inspected, without the
/// check for bytes written before the connection was under inspection.
pub const STAT_SNI_SOCKETS_FAILED: u32 = STAT_RINGBUF_FULL + 16;
/// First writes inspected.
pub const STAT_SNI_INSPECTED: u32 = STAT_RINGBUF_FULL + 17;
/// Denied (or audited) by the name they carried.
pub const STAT_SNI_DENIED: u32 = STAT_RINGBUF_FULL + 18;
/// Passed: the name they carried is not banned (or is excepted), or none.
pub const STAT_SNI_PASSED: u32 = STAT_RINGBUF_FULL + 19;
/// A TLS handshake record that could not be parsed (lengths past the end,
/// too many extensions, an empty name): an error verdict.
pub const STAT_SNI_MALFORMED: u32 = STAT_RINGBUF_FULL + 20;
/// Neither TLS nor HTTP: passed, not inspected again.
pub const STAT_SNI_NOT_TLS: u32 = STAT_RINGBUF_FULL + 21;
/// Plain HTTP requests whose Host header was judged.
pub const STAT_SNI_HTTP: u32 = STAT_RINGBUF_FULL + 22;
/// ClientHellos with an encrypted_client_hello extension (the name that
/// counts is hidden): denied unless `shared_names.ech` says otherwise.
pub const STAT_SNI_ECH: u32 = STAT_RINGBUF_FULL + 23;
/// Requests to an explicit proxy (HTTP CONNECT, SOCKS5 with a domain name)
/// whose name was judged.
pub const STAT_SNI_PROXY: u32 = STAT_RINGBUF_FULL + 24;
pub const STATS_LEN: u32 = STAT_RINGBUF_FULL + 25;

/// `Event::flags`: the banned address was the packet's source (XDP).
pub const EVENT_F_SOURCE: u32 = 1;
/// `Event::flags`: the destination was an IPv4-mapped IPv6 address.
pub const EVENT_F_V4_MAPPED: u32 = 1 << 1;
/// `Event::flags`: pid/uid/comm come from the socket owner record, not
/// from the current task (skb hook).
pub const EVENT_F_OWNER_FROM_COOKIE: u32 = 1 << 2;
/// `Event::flags`: no owner is known; pid, uid and comm are zero.
pub const EVENT_F_OWNER_UNKNOWN: u32 = 1 << 3;
/// `Event::flags`: the destination was a NAT64 address (`64:ff9b::/96` or
/// an operator /96 prefix); the event carries the embedded IPv4 address.
pub const EVENT_F_NAT64: u32 = 1 << 4;
/// `Event::flags`: the destination was a 6to4 address (`2002::/16`); the
/// event carries the embedded IPv4 address.
pub const EVENT_F_6TO4: u32 = 1 << 5;
/// `Event::flags` (hook `HOOK_SNI`): the name came from a plain HTTP
/// request's Host header, not from a TLS server_name.
pub const EVENT_F_HTTP_HOST: u32 = 1 << 6;
/// `Event::flags` (hook `HOOK_SNI`): an Encrypted Client Hello, denied
/// because the name that counts is hidden.
pub const EVENT_F_ECH: u32 = 1 << 7;
/// `Event::flags` (hook `HOOK_SNI`): the name was asked of an explicit
/// proxy (HTTP CONNECT or SOCKS5).
pub const EVENT_F_PROXY: u32 = 1 << 8;
/// `Event::flags` (connect4/6): TCP Fast Open to an inspected destination,
/// refused: its first bytes would leave with the SYN or before the
/// connection is under inspection, so no name could decide.
pub const EVENT_F_TFO: u32 = 1 << 9;
/// `Event::flags` (hook `HOOK_SNI` or `HOOK_SKB_EGRESS`): bytes of an
/// inspected connection that the sk_msg program never judged (written
/// while the connection was being made, before it was under inspection),
/// stopped; the connection carries nothing more.
pub const EVENT_F_UNINSPECTED: u32 = 1 << 10;

/// `SniPending::state`: the first write is still to be judged; bytes up
/// to `judged_end` were let through by the sk_msg program (a SOCKS
/// greeting).
pub const SNI_PENDING_WAIT: u32 = 1;
/// The first write was judged and passed: nothing more to check.
pub const SNI_PENDING_JUDGED: u32 = 0;
/// Bytes nobody judged were written: every later byte is stopped.
pub const SNI_PENDING_TAINTED: u32 = 2;
/// Plain HTTP (through an explicit proxy, or to a front end that serves
/// many names): every write that starts a request is judged (a kept-alive
/// connection carries requests for any host); bytes up to `judged_end`
/// were let through. The bits above `SNI_PENDING_STATE_MASK` hold how many
/// bytes of the last request's body (by its Content-Length) are still to
/// come: those pass unread, and the next request is read where they end.
pub const SNI_PENDING_HTTP: u32 = 3;
/// The bits of `SniPending::state` that hold the state itself.
pub const SNI_PENDING_STATE_MASK: u32 = 0xff;
/// Where the body bytes still to come sit in `SniPending::state`.
pub const SNI_PENDING_BODY_SHIFT: u32 = 8;
/// As `SNI_PENDING_WAIT`, for the first write through a tunnel a proxy
/// was asked for: judged as a first write, except that what only looks
/// like a SOCKS message (another protocol's binary start, as a database
/// client's) is no request and passes instead of being held.
pub const SNI_PENDING_TUNNEL: u32 = 4;

/// An inspected connection's progress (`SNI_PENDING`), in TCP sequence
/// numbers: what the sk_msg program has seen of the byte stream.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SniPending {
    /// The sequence number after the last byte the sk_msg program let
    /// through (at first: the first data byte's, the SYN's + 1).
    pub judged_end: u32,
    /// `SNI_PENDING_*`.
    pub state: u32,
}

pub const AF_UNIX: u32 = 1;
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
    /// Agent containment: the selector index + 1 that contains the process
    /// (0: not contained). Set on the events of contained processes.
    pub agent: u32,
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

/// Bytes of a DNS message a [`DnsReport`] carries.
pub const DNS_REPORT_BYTES: usize = 512;

/// A DNS answer that taught the kernel addresses (of a banned or allowed
/// name), so that userspace can name those addresses in flows.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DnsReport {
    /// `bpf_ktime_get_boot_ns()` when the answer was parsed.
    pub ts_ns: u64,
    /// cgroup v2 id of the socket that received it.
    pub cgroup_id: u64,
    /// The message's length as the transport said.
    pub len: u32,
    /// Bytes of it in `msg` (at most [`DNS_REPORT_BYTES`]).
    pub copied: u32,
    pub msg: [u8; DNS_REPORT_BYTES],
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
const _: () = assert!(core::mem::size_of::<Learned>() == 32);
const _: () = assert!(core::mem::size_of::<PortRule>() == 8);
const _: () = assert!(core::mem::size_of::<DnsReport>() == 24 + DNS_REPORT_BYTES);
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

/// An IPv4 address carried inside an IPv6 one, and in which form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Embedded {
    /// The IPv4 address as the maps key it (see [`v4_key`]).
    pub v4: u32,
    /// `EVENT_F_V4_MAPPED`, `EVENT_F_NAT64` or `EVENT_F_6TO4`; 0: the
    /// address embeds none (then `v4` is 0). A plain struct, not an
    /// `Option`: the verifier rejects the uninitialised payload of `None`.
    pub via: u32,
}

pub const NOT_EMBEDDED: Embedded = Embedded { v4: 0, via: 0 };

/// The IPv4 address that an IPv6 address (map byte order) stands for by a
/// fixed rule: `::ffff:a.b.c.d` (v4-mapped), `64:ff9b::a.b.c.d` (the NAT64
/// well-known prefix, RFC 6052) or `2002:aabb:ccdd::/48` (6to4, RFC 3056:
/// the IPv4 address in bits 16..48). Operator NAT64 prefixes are not known
/// here; the programs look them up in `NAT64_PREFIXES`.
#[inline(always)]
pub const fn embedded_v4(a: [u32; 4]) -> Embedded {
    const MAPPED_WORD: u32 = v4_key([0, 0, 0xff, 0xff]);
    const NAT64_WKP: u32 = v4_key([0x00, 0x64, 0xff, 0x9b]);
    if a[0] == 0 && a[1] == 0 && a[2] == MAPPED_WORD {
        return Embedded {
            v4: a[3],
            via: EVENT_F_V4_MAPPED,
        };
    }
    if a[0] == NAT64_WKP && a[1] == 0 && a[2] == 0 {
        return Embedded {
            v4: a[3],
            via: EVENT_F_NAT64,
        };
    }
    let w0 = a[0].to_ne_bytes();
    if w0[0] == 0x20 && w0[1] == 0x02 {
        let w1 = a[1].to_ne_bytes();
        return Embedded {
            v4: v4_key([w0[2], w0[3], w1[0], w1[1]]),
            via: EVENT_F_6TO4,
        };
    }
    NOT_EMBEDDED
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all three are repr(C), padding-free, and valid for any bytes.
    unsafe impl aya::Pod for super::NameRule {}
    unsafe impl aya::Pod for super::Learned {}
    unsafe impl aya::Pod for super::PortRule {}
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::SockOwner {}
    unsafe impl aya::Pod for super::RateState {}
    unsafe impl aya::Pod for super::ExecArgs {}
    unsafe impl aya::Pod for super::ExecEvent {}
    unsafe impl aya::Pod for super::agents::AgentSelector {}
    unsafe impl aya::Pod for super::agents::Contained {}
    unsafe impl aya::Pod for super::agents::AgentUnixKey {}
    unsafe impl aya::Pod for super::agents::AgentName {}
    unsafe impl aya::Pod for super::agents::AgentLearned {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn embedded(addr: &str) -> (Option<std::net::Ipv4Addr>, u32) {
        let a: Ipv6Addr = addr.parse().unwrap();
        let e = embedded_v4(v6_key(a.octets()));
        let v4 = (e.via != 0).then(|| v4_octets(e.v4).into());
        (v4, e.via)
    }

    /// What the DNS program does for a name: the first label's tails from
    /// its last hyphens (rotating slots), each folded over the parent key.
    fn kernel_suffix_keys(name: &str) -> Vec<u64> {
        let (first, rest) = name.split_once('.').unwrap();
        let mut tails = [0u64; DNS_SUFFIX_SLOTS];
        let mut hyphens = 0usize;
        for (at, &c) in first.as_bytes().iter().enumerate() {
            for t in tails.iter_mut() {
                *t = dns_label_byte(*t, c);
            }
            if c == b'-' && at > 0 {
                tails[hyphens % DNS_SUFFIX_SLOTS] = dns_label_byte(DNS_LABEL_SEED, c);
                hyphens += 1;
            }
        }
        let parent = dns_name_key(rest);
        (0..hyphens.min(DNS_SUFFIX_SLOTS))
            .map(|i| dns_fold(parent, tails[i] ^ DNS_SUFFIX_TWEAK))
            .collect()
    }

    #[test]
    fn a_tail_key_is_what_the_kernel_computes_for_a_matching_name() {
        let key = dns_suffix_key("-aiplatform.googleapis.com");
        for name in [
            "us-central1-aiplatform.googleapis.com",
            "x-y-aiplatform.googleapis.com",
            "a-b-c-d-e-f-aiplatform.googleapis.com",
            "EU-AIPlatform.googleapis.com",
        ] {
            assert!(kernel_suffix_keys(name).contains(&key), "{name}");
        }
        // Four hyphens in the tail: still among the kept slots.
        let long = dns_suffix_key("-a-b-c-d.test");
        assert!(kernel_suffix_keys("x-y-z-a-b-c-d.test").contains(&long));
        for name in [
            "x-aiplatform.googleapis.comx",
            "x-aiplatformx.googleapis.com",
            "-aiplatform.googleapis.com",
            "x-aiplatform.googleapis.net",
        ] {
            if name.split_once('.').is_some() {
                assert!(!kernel_suffix_keys(name).contains(&key), "{name}");
            }
        }
        // A separate key space: a name that is the tail itself is not it.
        assert_ne!(key, dns_name_key("-aiplatform.googleapis.com"));
    }

    #[test]
    fn the_v4_address_of_each_form_is_extracted() {
        let banned = Some("160.79.104.10".parse().unwrap());
        assert_eq!(
            embedded("::ffff:160.79.104.10"),
            (banned, EVENT_F_V4_MAPPED)
        );
        assert_eq!(embedded("64:ff9b::a04f:680a"), (banned, EVENT_F_NAT64));
        assert_eq!(embedded("64:ff9b::160.79.104.10"), (banned, EVENT_F_NAT64));
        assert_eq!(embedded("2002:a04f:680a::"), (banned, EVENT_F_6TO4));
        // 6to4 keeps the v4 address whatever the subnet and host bits say.
        assert_eq!(embedded("2002:a04f:680a:7:1::9"), (banned, EVENT_F_6TO4));
    }

    #[test]
    fn addresses_outside_the_fixed_prefixes_embed_nothing() {
        for other in [
            "2001:db8::a04f:680a",
            // Only 64:ff9b::/96 is the well-known prefix; 64:ff9b:1::/48
            // (RFC 8215) is local-use and must be configured.
            "64:ff9b:1::a04f:680a",
            "64:ff9b:0:0:1::a04f:680a",
            "::a04f:680a",
            "::fffe:a04f:680a",
            "2003:a04f:680a::",
            "::1",
            "::",
        ] {
            assert_eq!(embedded(other), (None, 0), "{other}");
        }
    }
}

/// Agent containment (issue 13): the selectors of the policy's `agents`
/// section, compiled by the daemon into one automaton (`AGENT_DFA`) that
/// the exec tracepoint runs over the executable path and argv.
pub mod agents {
    /// Selector slots (a slot fits the top byte of an allow-list key word).
    pub const MAX_SELECTORS: u32 = 256;
    /// Selectors whose allow lists may hold names (a bit of `AgentName`).
    pub const MAX_NAME_SELECTORS: u32 = 64;
    /// Automaton states; state 0 is dead (no selector can match any more),
    /// state 1 the start. Per bank: the tables are written into the bank
    /// the exec hook does not read, then the banks are switched, so that no
    /// exec is ever matched against half-written tables.
    pub const MAX_STATES: u32 = 1 << 14;
    /// Transition table entries (states × byte classes), per bank.
    pub const MAX_TRANSITIONS: u32 = 1 << 18;
    pub const BANKS: u32 = 2;
    /// Above the kernel's own default threads-max on most hosts.
    pub const MAX_CONTAINED: u32 = 1 << 20;
    pub const MAX_ALLOW: u32 = 1 << 14;
    pub const MAX_NAMES: u32 = 1 << 14;
    pub const MAX_LEARNED: u32 = 1 << 14;
    pub const STATE_DEAD: u32 = 0;
    pub const STATE_START: u32 = 1;
    /// The first byte fed to the automaton says which string follows, so
    /// that one automaton holds the three kinds of pattern.
    pub const TAG_EXE: u8 = 1;
    pub const TAG_SCRIPT: u8 = 2;
    pub const TAG_CMDLINE: u8 = 3;
    /// Bytes of the walk buffer: the executable path, then argv.
    pub const WALK_BYTES: usize = 2048;
    /// Where argv starts in the walk buffer.
    pub const WALK_ARGS: usize = 256;

    /// `AGENT_CONFIG` slots.
    /// Non-zero while selectors are loaded: the hooks do nothing else.
    pub const CFG_ON: u32 = 0;
    /// The bank (0 or 1) of the automaton tables in force.
    pub const CFG_BANK: u32 = 1;
    /// Offset of `child_pid` in the sched_process_fork record (tracefs format).
    pub const CFG_FORK_CHILD: u32 = 3;
    /// Offset of `group_dead` in the sched_process_exit record; 0: absent.
    pub const CFG_EXIT_GROUP_DEAD: u32 = 4;
    /// Non-zero when some allow list holds a name (`AGENT_NAMES` is read).
    pub const CFG_NAMES: u32 = 5;
    /// Byte classes per automaton state (the row stride) of bank b:
    /// `CFG_STRIDE + b`.
    pub const CFG_STRIDE: u32 = 6;
    /// `KIND_*` bits (which kinds of pattern exist; the others are not
    /// run) of bank b: `CFG_KINDS + b`.
    pub const CFG_KINDS: u32 = 8;
    pub const CONFIG_LEN: u32 = 12;
    /// The inode number of the initial user namespace (`PROC_USER_INIT_INO`).
    pub const INIT_USER_NS_INUM: u32 = 0xEFFF_FFFD;

    pub const KIND_EXE: u32 = 1;
    pub const KIND_SCRIPT: u32 = 2;
    pub const KIND_CMDLINE: u32 = 4;

    /// `AgentSelector::action`.
    pub const ACTION_DENY: u32 = 0;
    pub const ACTION_AUDIT: u32 = 1;
    pub const ACTION_DENY_ALL: u32 = 2;

    /// `AGENT_STATS` slots.
    /// Execs that matched a selector (a process newly contained).
    pub const STAT_MATCHED: u32 = 0;
    /// Children contained by inheritance (fork).
    pub const STAT_INHERITED: u32 = 1;
    /// A process that should have been contained but `CONTAINED` was full.
    pub const STAT_FULL: u32 = 2;
    /// Execs judged without their argv (the argv capture was lost).
    pub const STAT_NO_ARGS: u32 = 3;
    /// Connections of contained processes denied (or audited).
    pub const STAT_DENIED: u32 = 4;
    pub const STAT_AUDITED: u32 = 5;
    /// Connections of contained processes inside their allow list.
    pub const STAT_ALLOWED: u32 = 6;
    /// Raw and ICMP sockets a contained process was refused.
    pub const STAT_RAW_REFUSED: u32 = 7;
    pub const STATS_LEN: u32 = 8;

    /// One selector as the kernel needs it.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct AgentSelector {
        /// `ACTION_*`.
        pub action: u32,
        /// 1 when the selector exists (a slot past the policy's is 0).
        pub present: u32,
        /// A hash of the selector's name: a restarted daemon moves the
        /// marks the previous one left to the same names.
        pub name_key: u64,
    }

    /// A contained process.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Contained {
        /// The selector's slot (`AGENT_SELECTORS`); a slot no longer
        /// present releases the process.
        pub selector: u32,
        /// The process whose exec matched (the ancestor that contains).
        pub root: u32,
    }

    /// The selectors whose allow lists hold a name: bit i = selector i.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct AgentName {
        /// The name itself.
        pub exact: u64,
        /// A `*.name` wildcard over it.
        pub wild: u64,
    }

    /// An address a host DNS server returned for a name in allow lists.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct AgentLearned {
        /// Selectors that may reach it (bit i = selector i).
        pub mask: u64,
        /// `bpf_ktime_get_boot_ns()` after which it no longer counts.
        pub expires_ns: u64,
    }

    /// `offsetof(struct bpf_sock_addr_kern, uaddr)` and `uaddrlen`, as the
    /// Unix-domain programs read them (6.7 to this day; the daemon checks
    /// them against the kernel's BTF before it loads those programs).
    pub const UNIX_UADDR_OFFSET: u32 = 8;
    pub const UNIX_UADDRLEN_OFFSET: u32 = 32;
    /// `sun_path` bytes of a Unix-domain socket address.
    pub const UNIX_PATH_MAX: usize = 108;
    /// Unix-domain paths in allow lists, all selectors together.
    pub const MAX_UNIX: u32 = 1024;
    pub const MAX_UNIX_SEEN: u32 = 1024;

    /// A Unix-domain socket address as the kernel keys allow lists: the
    /// selector's slot, and the name's bytes (`len` of them; the rest
    /// zero). A path name ends at its first NUL; an abstract name starts
    /// with one and is `addrlen - 2` bytes long.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub struct AgentUnixKey {
        pub slot: u32,
        pub len: u32,
        pub path: [u8; UNIX_PATH_MAX],
    }

    impl AgentUnixKey {
        /// The key of `name` (a path, or `\0` and an abstract name) for
        /// `slot`; `None` if it does not fit `sun_path`.
        pub fn new(slot: u32, name: &[u8]) -> Option<AgentUnixKey> {
            if name.len() > UNIX_PATH_MAX {
                return None;
            }
            let mut path = [0; UNIX_PATH_MAX];
            path[..name.len()].copy_from_slice(name);
            Some(AgentUnixKey {
                slot,
                len: name.len() as u32,
                path,
            })
        }

        /// The name's bytes.
        pub fn name(&self) -> &[u8] {
            &self.path[..(self.len as usize).min(UNIX_PATH_MAX)]
        }
    }

    /// The `AGENT_ALLOW_*` key word: selector, protocol (0: both), port
    /// (0: every port).
    #[inline(always)]
    pub const fn allow_word(selector: u32, proto: u8, port: u16) -> u32 {
        (selector & 0xff) << 24 | (proto as u32) << 16 | port as u32
    }
}
