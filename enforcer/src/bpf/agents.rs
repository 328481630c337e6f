//! Agent containment in the pinned maps: the compiled selectors
//! (`crate::agents::Compiled`), the tracepoint record offsets, and the
//! `CONTAINED` processes (read for reports, filled from /proc at start,
//! remapped on reload, cleared of processes that are gone).

use std::collections::BTreeMap;

use aya::maps::{Array, HashMap, LpmTrie, MapData, MapError, PerCpuArray, lpm_trie::Key};
use enforcer_common::{
    agents::{
        AgentLearned, AgentName, AgentSelector, CFG_BANK, CFG_EXIT_GROUP_DEAD, CFG_FORK_CHILD,
        CFG_KINDS, CFG_NAMES, CFG_ON, CFG_STRIDE, Contained, MAX_ALLOW, MAX_SELECTORS, MAX_STATES,
        MAX_TRANSITIONS, STATS_LEN,
    },
    maps as names,
};

use super::{
    judge::wrap as open_map,
    pinned::{make_exactly, open_hash},
    pins::Pins,
    writer::WriteError,
};
use crate::agents::{Compiled, Tables};

/// Where the fork and exit hooks find their fields (from tracefs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TraceOffsets {
    pub fork_child: u32,
    /// 0: the kernel's exit record has no `group_dead`.
    pub exit_group_dead: u32,
}

impl TraceOffsets {
    /// From this kernel's tracefs; `None` if sched_process_fork's
    /// `child_pid` cannot be found (containment cannot follow forks then).
    pub fn probe() -> Option<TraceOffsets> {
        use crate::sys::tracefs::field_offset;
        Some(TraceOffsets {
            fork_child: field_offset("sched", "sched_process_fork", "child_pid")?,
            exit_group_dead: field_offset("sched", "sched_process_exit", "group_dead").unwrap_or(0),
        })
    }
}

fn write_err(map: &'static str) -> impl Fn(MapError) -> WriteError {
    move |source| WriteError::Write { map, source }
}

fn read_err(map: &'static str) -> impl Fn(MapError) -> WriteError {
    move |source| WriteError::Read { map, source }
}

fn set_cfg(config: &mut Array<MapData, u32>, index: u32, value: u32) -> Result<(), WriteError> {
    config
        .set(index, value, 0)
        .map_err(write_err(names::AGENT_CONFIG))
}

/// Makes an allow trie hold exactly `want`.
fn write_trie<const N: usize>(
    pins: &Pins,
    name: &'static str,
    want: &BTreeMap<(u32, [u32; N]), u32>,
) -> Result<(), WriteError>
where
    [u32; N]: aya::Pod,
{
    if want.len() > MAX_ALLOW as usize {
        return Err(WriteError::Capacity {
            map: name,
            needed: want.len(),
            capacity: MAX_ALLOW,
        });
    }
    let mut trie: LpmTrie<MapData, [u32; N], u32> = open_map(pins, name, LpmTrie::try_from)?;
    let have: BTreeMap<(u32, [u32; N]), u32> = trie
        .iter()
        .map(|kv| kv.map(|(k, v)| ((k.prefix_len(), k.data()), v)))
        .collect::<Result<_, _>>()
        .map_err(read_err(name))?;
    for ((len, data), v) in want {
        if have.get(&(*len, *data)) != Some(v) {
            trie.insert(&Key::new(*len, *data), v, 0)
                .map_err(write_err(name))?;
        }
    }
    for (len, data) in have.keys().filter(|k| !want.contains_key(k)) {
        match trie.remove(&Key::new(*len, *data)) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(source) => return Err(WriteError::Write { map: name, source }),
        }
    }
    Ok(())
}

/// Writes the selectors into their slots (`slots[rank]`). Order: the
/// switch (`CFG_ON`) off first when they all go; the allow lists before
/// the selectors that use them; the automaton and the rank → slot table
/// into the bank the exec hook does not read, which then becomes the one
/// it reads; the switch on last. A selector keeps its slot, so a process
/// contained under it is judged by its new lists from the moment they are
/// written, with no renumbering.
pub fn write(
    pins: &Pins,
    c: &Compiled,
    slots: &[u32],
    offsets: TraceOffsets,
) -> Result<(), WriteError> {
    let mut config: Array<MapData, u32> = open_map(pins, names::AGENT_CONFIG, Array::try_from)?;
    if c.is_empty() {
        set_cfg(&mut config, CFG_ON, 0)?;
    }
    let allow = c.allow(slots);
    write_trie(pins, names::AGENT_ALLOW_V4, &allow.v4)?;
    write_trie(pins, names::AGENT_ALLOW_V6, &allow.v6)?;
    make_exactly::<u64, AgentName>(pins, names::AGENT_NAMES, &allow.names, || Ok(()))?;
    make_exactly(pins, names::AGENT_ALLOW_UNIX, &allow.unix, || Ok(()))?;
    let bank = 1
        - (config
            .get(&CFG_BANK, 0)
            .map_err(read_err(names::AGENT_CONFIG))?
            & 1);
    write_tables(pins, &c.tables, bank)?;
    let mut ranks: Array<MapData, u32> = open_map(pins, names::AGENT_RANKS, Array::try_from)?;
    for (rank, slot) in slots.iter().enumerate() {
        ranks
            .set(bank * MAX_SELECTORS + rank as u32, slot, 0)
            .map_err(write_err(names::AGENT_RANKS))?;
    }
    let mut selectors: Array<MapData, AgentSelector> =
        open_map(pins, names::AGENT_SELECTORS, Array::try_from)?;
    for (i, s) in c.selectors(slots).into_iter().enumerate() {
        selectors
            .set(i as u32, s, 0)
            .map_err(write_err(names::AGENT_SELECTORS))?;
    }
    set_cfg(&mut config, CFG_STRIDE + bank, c.tables.stride)?;
    set_cfg(&mut config, CFG_KINDS + bank, c.tables.kinds)?;
    set_cfg(&mut config, CFG_FORK_CHILD, offsets.fork_child)?;
    set_cfg(&mut config, CFG_EXIT_GROUP_DEAD, offsets.exit_group_dead)?;
    set_cfg(&mut config, CFG_NAMES, u32::from(!allow.names.is_empty()))?;
    set_cfg(&mut config, CFG_BANK, bank)?;
    if !c.is_empty() {
        set_cfg(&mut config, CFG_ON, 1)?;
    }
    Ok(())
}

/// The automaton into `bank` (not the one in force).
fn write_tables(pins: &Pins, t: &Tables, bank: u32) -> Result<(), WriteError> {
    let mut classes: Array<MapData, u8> = open_map(pins, names::AGENT_CLASSES, Array::try_from)?;
    for (b, class) in t.classes.iter().enumerate() {
        classes
            .set(bank * 256 + b as u32, class, 0)
            .map_err(write_err(names::AGENT_CLASSES))?;
    }
    let mut dfa: Array<MapData, u16> = open_map(pins, names::AGENT_DFA, Array::try_from)?;
    for (i, s) in t.trans.iter().enumerate() {
        // States fit u16: `Tables::compile` refuses more than MAX_STATES.
        dfa.set(bank * MAX_TRANSITIONS + i as u32, *s as u16, 0)
            .map_err(write_err(names::AGENT_DFA))?;
    }
    let mut accept: Array<MapData, u16> = open_map(pins, names::AGENT_ACCEPT, Array::try_from)?;
    for (i, a) in t.accept.iter().enumerate() {
        accept
            .set(bank * MAX_STATES + i as u32, *a as u16, 0)
            .map_err(write_err(names::AGENT_ACCEPT))?;
    }
    Ok(())
}

fn contained_map(pins: &Pins) -> Result<HashMap<MapData, u32, Contained>, WriteError> {
    open_hash(pins, names::CONTAINED)
}

/// The contained processes the kernel knows: pid → containment.
pub fn contained(pins: &Pins) -> Result<BTreeMap<u32, Contained>, WriteError> {
    contained_map(pins)?
        .iter()
        .collect::<Result<_, _>>()
        .map_err(read_err(names::CONTAINED))
}

/// Marks `found` (from /proc) where the kernel has no mark, or a laxer
/// one (`strict[slot]`: a stricter selector takes over, as in the exec
/// hook; -1 for a slot of no selector, which anything replaces). Inserted only if absent (BPF_NOEXIST) or replaced only if still
/// the mark read (BPF_EXIST after a re-read), so that a mark the kernel
/// makes meanwhile is not overwritten. Returns how many were written.
pub fn mark(
    pins: &Pins,
    found: &BTreeMap<u32, Contained>,
    strict: &[i16],
) -> Result<usize, WriteError> {
    const BPF_NOEXIST: u64 = 1;
    const BPF_EXIST: u64 = 2;
    let strictness = |slot: u32| strict.get(slot as usize).copied().unwrap_or(-1);
    let mut map = contained_map(pins)?;
    let mut n = 0;
    for (pid, c) in found {
        let written = match map.get(pid, 0) {
            Ok(old) if strictness(c.selector) > strictness(old.selector) => match map.get(pid, 0) {
                Ok(again) if again == old => map.insert(pid, c, BPF_EXIST),
                _ => continue,
            },
            Ok(_) => continue,
            Err(MapError::KeyNotFound) => map.insert(pid, c, BPF_NOEXIST),
            Err(source) => return Err(read_err(names::CONTAINED)(source)),
        };
        match written {
            Ok(()) => n += 1,
            // The kernel marked or unmarked it in between: its view stands.
            Err(MapError::SyscallError(e))
                if matches!(e.io_error.raw_os_error(), Some(libc::EEXIST | libc::ENOENT)) => {}
            Err(source) => return Err(write_err(names::CONTAINED)(source)),
        }
    }
    Ok(n)
}

/// The name key of each slot (0: empty) as the pinned map holds them:
/// this run's, or after a restart the previous instance's.
pub fn selector_keys(pins: &Pins) -> Result<Vec<u64>, WriteError> {
    let selectors: Array<MapData, AgentSelector> =
        open_map(pins, names::AGENT_SELECTORS, Array::try_from)?;
    let mut keys = Vec::new();
    for i in 0..MAX_SELECTORS {
        let s = selectors
            .get(&i, 0)
            .map_err(read_err(names::AGENT_SELECTORS))?;
        keys.push(if s.present != 0 { s.name_key } else { 0 });
    }
    Ok(keys)
}

/// Removes the marks whose slot `matches`. Returns how many.
pub fn sweep(pins: &Pins, matches: impl Fn(u32) -> bool) -> Result<usize, WriteError> {
    let mut map = contained_map(pins)?;
    let mut n = 0;
    for (pid, c) in contained(pins)? {
        if matches(c.selector) {
            match map.remove(&pid) {
                Ok(()) | Err(MapError::KeyNotFound) => n += 1,
                Err(source) => return Err(write_err(names::CONTAINED)(source)),
            }
        }
    }
    Ok(n)
}

/// Marks `slots` absent in `AGENT_SELECTORS` (before they change hands).
pub fn set_absent(pins: &Pins, slots: &[u32]) -> Result<(), WriteError> {
    if slots.is_empty() {
        return Ok(());
    }
    let mut selectors: Array<MapData, AgentSelector> =
        open_map(pins, names::AGENT_SELECTORS, Array::try_from)?;
    for slot in slots {
        selectors
            .set(*slot, AgentSelector::default(), 0)
            .map_err(write_err(names::AGENT_SELECTORS))?;
    }
    Ok(())
}

/// Moves the marks of each (from, to) slot pair to the new slot.
pub fn move_marks(pins: &Pins, moved: &[(u32, u32)]) -> Result<(), WriteError> {
    if moved.is_empty() {
        return Ok(());
    }
    let mut map = contained_map(pins)?;
    for (pid, mut c) in contained(pins)? {
        if let Some((_, to)) = moved.iter().find(|(from, _)| *from == c.selector) {
            c.selector = *to;
            map.insert(pid, c, 0).map_err(write_err(names::CONTAINED))?;
        }
    }
    Ok(())
}

/// The mark of process `pid`, if any.
pub fn contained_one(pins: &Pins, pid: u32) -> Option<Contained> {
    contained_map(pins).ok()?.get(&pid, 0).ok()
}

/// `AGENT_UNIX_SEEN`: event key → the refused Unix-domain socket name.
pub type UnixSeen = HashMap<MapData, u64, enforcer_common::agents::AgentUnixKey>;

pub fn open_unix_seen(pins: &Pins) -> Option<UnixSeen> {
    open_map(pins, names::AGENT_UNIX_SEEN, HashMap::try_from).ok()
}

/// The name under `key`, as the policy writes it (`unix:/path`, `unix:@name`).
pub fn unix_seen(map: &UnixSeen, key: u64) -> Option<String> {
    let name = map.get(&key, 0).ok()?;
    Some(crate::policy::agents::AllowEntry::Unix(name.name().to_vec()).to_string())
}

/// Clears the addresses learned for allow-list names (their selector bits
/// follow the numbering of the policy that learned them).
pub fn clear_learned(pins: &Pins) -> Result<(), WriteError> {
    make_exactly::<u32, AgentLearned>(pins, names::AGENT_LEARNED_V4, &BTreeMap::new(), || Ok(()))?;
    make_exactly::<[u32; 4], AgentLearned>(pins, names::AGENT_LEARNED_V6, &BTreeMap::new(), || {
        Ok(())
    })
}

/// Removes learned allow-list addresses whose time is over.
pub fn purge_learned(pins: &Pins, now_ns: u64) -> Result<(), WriteError> {
    purge::<u32>(pins, names::AGENT_LEARNED_V4, now_ns)?;
    purge::<[u32; 4]>(pins, names::AGENT_LEARNED_V6, now_ns)
}

fn purge<K: aya::Pod + Ord>(pins: &Pins, name: &'static str, now: u64) -> Result<(), WriteError> {
    let mut map: HashMap<MapData, K, AgentLearned> = open_hash(pins, name)?;
    let stale: Vec<K> = map
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, v)| v.expires_ns <= now)
        .map(|(k, _)| k)
        .collect();
    for k in stale {
        // A newer answer may have refreshed it since the read.
        match map.get(&k, 0) {
            Ok(v) if v.expires_ns > now => {}
            _ => match map.remove(&k) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(source) => return Err(write_err(name)(source)),
            },
        }
    }
    Ok(())
}

/// Removes the marks of processes `alive` says are gone (kernels without
/// `group_dead`, and marks of threads the exit hook missed). Returns how many.
pub fn forget_gone(pins: &Pins, alive: impl Fn(u32) -> bool) -> Result<usize, WriteError> {
    let mut map = contained_map(pins)?;
    let mut n = 0;
    for pid in contained(pins)?.into_keys() {
        if !alive(pid) {
            match map.remove(&pid) {
                Ok(()) | Err(MapError::KeyNotFound) => n += 1,
                Err(source) => return Err(write_err(names::CONTAINED)(source)),
            }
        }
    }
    Ok(n)
}

/// `AGENT_STATS`, summed over CPUs.
pub fn stats(pins: &Pins) -> Result<[u64; STATS_LEN as usize], WriteError> {
    let array: PerCpuArray<MapData, u64> =
        open_map(pins, names::AGENT_STATS, PerCpuArray::try_from)?;
    let mut out = [0; STATS_LEN as usize];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = array
            .get(&(i as u32), 0)
            .map_err(read_err(names::AGENT_STATS))?
            .iter()
            .sum();
    }
    Ok(out)
}
