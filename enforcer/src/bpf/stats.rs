//! The per-CPU counters, summed.

use aya::maps::{Array, Map, MapData, PerCpuArray};
use enforcer_common::{
    CONFIG_MODE, CONFIG_XDP_EVENTS_PER_SEC, HOOK_COUNT, STAT_OWNER_UNKNOWN, STAT_RINGBUF_FULL,
    STAT_SKB_EVENTS_COALESCED, STAT_XDP_EVENTS_SUPPRESSED, STATS_LEN, VERDICT_COUNT, maps as names,
    stat_index,
};

use super::{pins::Pins, writer::WriteError};

/// A snapshot of the `STATS` array, summed over CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    counters: Vec<u64>,
}

impl Stats {
    pub fn read(pins: &Pins) -> Result<Stats, WriteError> {
        let path = pins.map(names::STATS);
        let open_err = |source| WriteError::Open {
            path: path.clone(),
            source,
        };
        let map =
            Map::from_map_data(MapData::from_pin(&path).map_err(open_err)?).map_err(open_err)?;
        let array: PerCpuArray<MapData, u64> = PerCpuArray::try_from(map).map_err(open_err)?;
        let mut counters = Vec::with_capacity(STATS_LEN as usize);
        for index in 0..STATS_LEN {
            let per_cpu = array.get(&index, 0).map_err(|source| WriteError::Read {
                map: names::STATS,
                source,
            })?;
            counters.push(per_cpu.iter().sum());
        }
        Ok(Stats { counters })
    }

    pub fn get(&self, hook: u32, verdict: u32) -> u64 {
        debug_assert!(hook < HOOK_COUNT && verdict < VERDICT_COUNT);
        self.counters[stat_index(hook, verdict) as usize]
    }

    pub fn ringbuf_full(&self) -> u64 {
        self.counters[STAT_RINGBUF_FULL as usize]
    }

    pub fn xdp_events_suppressed(&self) -> u64 {
        self.counters[STAT_XDP_EVENTS_SUPPRESSED as usize]
    }

    pub fn skb_events_coalesced(&self) -> u64 {
        self.counters[STAT_SKB_EVENTS_COALESCED as usize]
    }

    pub fn owner_unknown(&self) -> u64 {
        self.counters[STAT_OWNER_UNKNOWN as usize]
    }

    /// One counter by its `STAT_*` index.
    pub fn counter(&self, index: u32) -> u64 {
        self.counters[index as usize]
    }

    /// The DNS program's counters, by name.
    pub fn dns(&self) -> [(&'static str, u64); 10] {
        use enforcer_common::{
            STAT_DNS_IGNORED, STAT_DNS_LEARN_FAILED, STAT_DNS_LEARNED, STAT_DNS_MALFORMED,
            STAT_DNS_REPORT_CUT, STAT_DNS_REPORT_LOST, STAT_DNS_REPORTED, STAT_DNS_RESPONSES,
            STAT_DNS_TRUNCATED, STAT_DNS_UNPARSED,
        };
        [
            ("responses", STAT_DNS_RESPONSES),
            ("learned", STAT_DNS_LEARNED),
            ("ignored", STAT_DNS_IGNORED),
            ("malformed", STAT_DNS_MALFORMED),
            ("truncated", STAT_DNS_TRUNCATED),
            ("not_parsed", STAT_DNS_UNPARSED),
            ("learn_failed", STAT_DNS_LEARN_FAILED),
            // Answers handed to the daemon for the names in flows.
            ("reported", STAT_DNS_REPORTED),
            ("report_lost", STAT_DNS_REPORT_LOST),
            ("report_cut", STAT_DNS_REPORT_CUT),
        ]
        .map(|(k, i)| (k, self.counters[i as usize]))
    }
}

impl Stats {
    /// Connections to inspected destinations not put fully under inspection.
    pub fn sni_sockets_failed(&self) -> u64 {
        self.counters[enforcer_common::STAT_SNI_SOCKETS_FAILED as usize]
    }

    /// The name inspection's counters (`bpf::sni`), by name.
    pub fn sni(&self) -> [(&'static str, u64); 10] {
        use enforcer_common::{
            STAT_SNI_DENIED, STAT_SNI_ECH, STAT_SNI_HTTP, STAT_SNI_INSPECTED, STAT_SNI_MALFORMED,
            STAT_SNI_NOT_TLS, STAT_SNI_PASSED, STAT_SNI_PROXY, STAT_SNI_SOCKETS,
            STAT_SNI_SOCKETS_FAILED,
        };
        [
            // TCP connections to a shared name's address put under inspection.
            ("sockets", STAT_SNI_SOCKETS),
            ("sockets_failed", STAT_SNI_SOCKETS_FAILED),
            // First writes judged, and how.
            ("inspected", STAT_SNI_INSPECTED),
            ("denied", STAT_SNI_DENIED),
            ("passed", STAT_SNI_PASSED),
            ("malformed", STAT_SNI_MALFORMED),
            ("not_tls", STAT_SNI_NOT_TLS),
            ("http", STAT_SNI_HTTP),
            ("ech", STAT_SNI_ECH),
            ("proxy", STAT_SNI_PROXY),
        ]
        .map(|(k, i)| (k, self.counters[i as usize]))
    }
}

/// Sets the enforcement mode the programs read from `CONFIG`
/// (`enforcer_common::MODE_ENFORCE` or `MODE_AUDIT`: the policy's
/// `Mode::as_config`, so this layer needs no policy type).
pub fn set_mode(pins: &Pins, mode: u32) -> Result<(), WriteError> {
    set_config(pins, CONFIG_MODE, mode)
}

/// Sets the XDP event budget per second and CPU (0: the built-in default).
pub fn set_xdp_events_per_sec(pins: &Pins, per_sec: u32) -> Result<(), WriteError> {
    set_config(pins, CONFIG_XDP_EVENTS_PER_SEC, per_sec)
}

pub(super) fn set_config(pins: &Pins, index: u32, value: u32) -> Result<(), WriteError> {
    let path = pins.map(names::CONFIG);
    let open_err = |source| WriteError::Open {
        path: path.clone(),
        source,
    };
    let map = Map::from_map_data(MapData::from_pin(&path).map_err(open_err)?).map_err(open_err)?;
    let mut config: Array<MapData, u32> = Array::try_from(map).map_err(open_err)?;
    config
        .set(index, value, 0)
        .map_err(|source| WriteError::Write {
            map: names::CONFIG,
            source,
        })
}
