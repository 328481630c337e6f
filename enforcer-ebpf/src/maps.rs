use aya_ebpf::{
    bindings::{BPF_F_NO_COMMON_LRU, BPF_F_NO_PREALLOC},
    btf_maps::SkStorage,
    macros::{btf_map, map},
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf, SockHash},
};
use enforcer_common::{
    CONFIG_LEN, DNS_REPORTS_BYTES, DNS_SCRATCH_BYTES, EVENTS_BYTES, ExecArgs, Learned,
    MAX_ALLOW_V4, MAX_ALLOW_V6, MAX_DNS_NAMES, MAX_DNS_SERVERS, MAX_EXACT_V4, MAX_EXACT_V6,
    MAX_EXEC_ARGS, MAX_INSPECT, MAX_LEARNED, MAX_NAT64_PREFIXES, MAX_PORT_RULES, MAX_PROXY_PORTS,
    MAX_RANGES_V4, MAX_RANGES_V6, MAX_REPORTED, MAX_SNI_SOCKS, NameRule, PROC_EVENTS_BYTES,
    PortRule, RateState, SNI_SCRATCH_BYTES, STATS_LEN, SniPending, SockOwner, agents,
};

// Exact addresses live in hash maps: at 1M entries a trie lookup costs about
// three times a hash lookup here, so only real ranges go into the tries.
#[map]
pub static DENY_V4: HashMap<u32, u32> = HashMap::with_max_entries(MAX_EXACT_V4, BPF_F_NO_PREALLOC);
#[map]
pub static DENY_V6: HashMap<[u32; 4], u32> =
    HashMap::with_max_entries(MAX_EXACT_V6, BPF_F_NO_PREALLOC);
#[map]
pub static DENY_LPM_V4: LpmTrie<u32, u32> = LpmTrie::with_max_entries(MAX_RANGES_V4, 0);
#[map]
pub static DENY_LPM_V6: LpmTrie<[u32; 4], u32> = LpmTrie::with_max_entries(MAX_RANGES_V6, 0);
#[map]
pub static ALLOW_LPM_V4: LpmTrie<u32, u32> = LpmTrie::with_max_entries(MAX_ALLOW_V4, 0);
#[map]
pub static ALLOW_LPM_V6: LpmTrie<[u32; 4], u32> = LpmTrie::with_max_entries(MAX_ALLOW_V6, 0);

#[map]
pub static CONFIG: Array<u32> = Array::with_max_entries(CONFIG_LEN, 0);
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_LEN, 0);
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);
// Socket-local storage: each socket's owner lives on the socket, freed with
// it. No capacity to evict from, no hash insert per socket (the LRU hash it
// replaces cost 700 ns per socket creation). A BTF map: the kernel requires
// BTF key and value types for sk storage (`owner` reads and writes it).
#[btf_map]
pub static SK_OWNERS: SkStorage<SockOwner> = SkStorage::new();
#[map]
pub static XDP_RATE: PerCpuArray<RateState> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static REPORTED: LruHashMap<u64, u64> =
    LruHashMap::with_max_entries(MAX_REPORTED, BPF_F_NO_COMMON_LRU);
#[map]
pub static EXEC_ARGS: LruHashMap<u32, ExecArgs> = LruHashMap::with_max_entries(MAX_EXEC_ARGS, 0);
#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecArgs> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static PROC_EVENTS: RingBuf = RingBuf::with_byte_size(PROC_EVENTS_BYTES, 0);
// Keyed by the first 96 bits: one lookup answers "under which operator
// prefix", whatever their number.
#[map]
pub static NAT64_PREFIXES: HashMap<[u32; 3], u32> =
    HashMap::with_max_entries(MAX_NAT64_PREFIXES, 0);

// Names the DNS program matches: a name key (`enforcer_common::dns_fold`)
// → the rules of that exact name and of a wildcard over it.
#[map]
pub static DNS_NAMES: HashMap<u64, NameRule> =
    HashMap::with_max_entries(MAX_DNS_NAMES, BPF_F_NO_PREALLOC);
// Addresses learned from DNS answers, with their expiry and scope.
#[map]
pub static LEARNED_V4: HashMap<u32, Learned> =
    HashMap::with_max_entries(MAX_LEARNED, BPF_F_NO_PREALLOC);
#[map]
pub static LEARNED_V6: HashMap<[u32; 4], Learned> =
    HashMap::with_max_entries(MAX_LEARNED, BPF_F_NO_PREALLOC);
// Bans learned from other servers' answers, per receiving cgroup.
#[map]
pub static LEARNED_SCOPED_V4: HashMap<[u32; 4], Learned> =
    HashMap::with_max_entries(MAX_LEARNED, BPF_F_NO_PREALLOC);
#[map]
pub static LEARNED_SCOPED_V6: HashMap<[u32; 6], Learned> =
    HashMap::with_max_entries(MAX_LEARNED, BPF_F_NO_PREALLOC);
#[map]
pub static LEARNED_SCOPED_USED: Array<u32> = Array::with_max_entries(1, 0);
#[map]
pub static DNS_SERVERS: HashMap<[u32; 4], u32> = HashMap::with_max_entries(MAX_DNS_SERVERS, 0);
#[map]
pub static DNS_SCRATCH: PerCpuArray<[u8; DNS_SCRATCH_BYTES]> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static DNS_WALK: PerCpuArray<crate::dns::NameWalk> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static DNS_RECORDS: PerCpuArray<crate::dns::RecordWalk> = PerCpuArray::with_max_entries(1, 0);
// DNS answers that taught addresses, for the names in flows.
#[map]
pub static DNS_REPORTS: RingBuf = RingBuf::with_byte_size(DNS_REPORTS_BYTES, 0);

// Rules with a port. The gate, indexed by port, is read only for traffic
// no address rule matched, and only while `CONFIG_PORT_RULES` is set; the
// tries only where the gate says rules exist for the port and protocol.
#[map]
pub static PORT_GATE: Array<u8> = Array::with_max_entries(1 << 16, 0);
#[map]
pub static PORT_LPM_V4: LpmTrie<[u32; 2], PortRule> = LpmTrie::with_max_entries(MAX_PORT_RULES, 0);
#[map]
pub static PORT_LPM_V6: LpmTrie<[u32; 5], PortRule> = LpmTrie::with_max_entries(MAX_PORT_RULES, 0);
// Rule id → `enforcer_common::name_port`, for name rules with a port only.
#[map]
pub static NAME_PORTS: HashMap<u32, u32> =
    HashMap::with_max_entries(MAX_DNS_NAMES, BPF_F_NO_PREALLOC);

// Shared names: enforced by the name a connection sends, never by address.
// Rule id → 1 for the shared banned names (the DNS program marks what it
// learns for them `LEARNED_F_INSPECT`).
#[map]
pub static NAME_SHARED: HashMap<u32, u32> =
    HashMap::with_max_entries(MAX_DNS_NAMES, BPF_F_NO_PREALLOC);
// The daemon's own resolution of shared names: address → rule id.
#[map]
pub static INSPECT_V4: HashMap<u32, u32> =
    HashMap::with_max_entries(MAX_INSPECT, BPF_F_NO_PREALLOC);
#[map]
pub static INSPECT_V6: HashMap<[u32; 4], u32> =
    HashMap::with_max_entries(MAX_INSPECT, BPF_F_NO_PREALLOC);
// Connections to inspected destinations, by socket cookie; the sk_msg
// program attached to this map sees their writes. A socket leaves the map
// when it closes.
#[map]
pub static SNI_SOCKS: SockHash<u64> = SockHash::with_max_entries(MAX_SNI_SOCKS, 0);
#[map]
pub static SNI_SCRATCH: PerCpuArray<[u8; SNI_SCRATCH_BYTES]> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static SNI_WALK: PerCpuArray<crate::sni::Walk> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static SNI_NAME: PerCpuArray<crate::dns::NameWalk> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static SNI_PROXY_PORTS: HashMap<u16, u32> = HashMap::with_max_entries(MAX_PROXY_PORTS, 0);
// What the sk_msg program judged of each inspected connection (`sni`);
// made by sock_ops for inspected connections only, freed with the socket.
#[btf_map]
pub static SNI_PENDING: SkStorage<SniPending> = SkStorage::new();
#[map]
pub static SNI_WATCHED: Array<u32> = Array::with_max_entries(1, 0);

// Agent containment (`contain`): the selector automaton, the contained
// processes and what each selector may reach.
#[map]
pub static AGENT_CONFIG: Array<u32> = Array::with_max_entries(agents::CONFIG_LEN, 0);
#[map]
pub static AGENT_CLASSES: Array<u8> = Array::with_max_entries(256 * agents::BANKS, 0);
#[map]
pub static AGENT_DFA: Array<u16> =
    Array::with_max_entries(agents::MAX_TRANSITIONS * agents::BANKS, 0);
#[map]
pub static AGENT_ACCEPT: Array<u16> =
    Array::with_max_entries(agents::MAX_STATES * agents::BANKS, 0);
#[map]
pub static AGENT_SELECTORS: Array<agents::AgentSelector> =
    Array::with_max_entries(agents::MAX_SELECTORS, 0);
// Room for every task a host can run (threads get entries too: the fork
// hook cannot tell them from processes), allocated as used: preallocated,
// it would hold ~80 MiB of kernel memory on every host.
#[map]
pub static CONTAINED: HashMap<u32, agents::Contained> =
    HashMap::with_max_entries(agents::MAX_CONTAINED, BPF_F_NO_PREALLOC);
// Per bank: the automaton's match (the selector's rank in the policy) →
// the selector's slot, which stays the same across reloads.
#[map]
pub static AGENT_RANKS: Array<u32> =
    Array::with_max_entries(agents::MAX_SELECTORS * agents::BANKS, 0);
#[map]
pub static AGENT_ALLOW_V4: LpmTrie<[u32; 2], u32> = LpmTrie::with_max_entries(agents::MAX_ALLOW, 0);
#[map]
pub static AGENT_ALLOW_V6: LpmTrie<[u32; 5], u32> = LpmTrie::with_max_entries(agents::MAX_ALLOW, 0);
#[map]
pub static AGENT_NAMES: HashMap<u64, agents::AgentName> =
    HashMap::with_max_entries(agents::MAX_NAMES, BPF_F_NO_PREALLOC);
#[map]
pub static AGENT_LEARNED_V4: HashMap<u32, agents::AgentLearned> =
    HashMap::with_max_entries(agents::MAX_LEARNED, BPF_F_NO_PREALLOC);
#[map]
pub static AGENT_LEARNED_V6: HashMap<[u32; 4], agents::AgentLearned> =
    HashMap::with_max_entries(agents::MAX_LEARNED, BPF_F_NO_PREALLOC);
// [0]: the name being read, [1]: the answer's chain so far, [2]: 1 if
// a host DNS server answered.
#[map]
pub static AGENT_DNS: PerCpuArray<u64> = PerCpuArray::with_max_entries(4, 0);
#[map]
pub static AGENT_WALK: PerCpuArray<crate::contain::AgentWalk> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static AGENT_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(agents::STATS_LEN, 0);
#[map]
pub static AGENT_ALLOW_UNIX: HashMap<agents::AgentUnixKey, u32> =
    HashMap::with_max_entries(agents::MAX_UNIX, BPF_F_NO_PREALLOC);
#[map]
pub static AGENT_UNIX_SEEN: LruHashMap<u64, agents::AgentUnixKey> =
    LruHashMap::with_max_entries(agents::MAX_UNIX_SEEN, 0);
#[map]
pub static KERNEL_OFFSETS: Array<u32> = Array::with_max_entries(enforcer_common::KOFF_LEN, 0);
