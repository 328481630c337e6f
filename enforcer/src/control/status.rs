//! What `status` answers: built by the daemon (`daemon::status`), read by
//! the CLI (`cli::status`), printed as is by `status --json`. The field
//! names are a stable interface (scripts, tests and the README read them).
//! Fields added later default when missing, so that a newer CLI reads an
//! older daemon.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    pub version: String,
    /// `enforce` or `audit`.
    pub mode: String,
    pub cgroup: String,
    pub xdp_interfaces: Vec<String>,
    pub pins: String,
    pub policy: PolicyStatus,
    /// Entries per verdict map, by map name.
    pub maps: BTreeMap<String, u64>,
    pub names: NameCounts,
    pub events: Events,
    pub dns: Dns,
    pub uptime_s: u64,
    pub reload: Reloads,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyStatus {
    /// The main file (or `embedded default`), then the drop-ins.
    pub sources: Vec<String>,
    pub loaded_ms: u64,
    pub age_s: u64,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NameCounts {
    pub total: u64,
    pub fresh: u64,
    pub partial: u64,
    pub never_answered: u64,
    pub ignored_addresses: u64,
    pub settled: bool,
    /// The line systemd's STATUS= carries.
    pub summary: String,
    pub stale: u64,
    pub nxdomain: u64,
    pub pending: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Events {
    /// Hook → verdict (`pass`, `allowed`, `denied`, `audited`, `error`) →
    /// count. Empty when the counters could not be read.
    pub per_hook: BTreeMap<String, BTreeMap<String, u64>>,
    /// `None`: the counters could not be read.
    pub lost_ringbuf_full: Option<u64>,
    pub xdp_suppressed: Option<u64>,
    pub skb_coalesced: Option<u64>,
    pub owner_unknown: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dns {
    /// Addresses the DNS program learned, not yet expired.
    pub learned_v4: u64,
    pub learned_v6: u64,
    /// The DNS program's counters (`responses`, `learned`, `malformed`,
    /// `learn_failed`, ...); `None` when they could not be read.
    pub counters: Option<BTreeMap<String, u64>>,
    pub reports: DnsReports,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsReports {
    /// DNS answers the kernel reported to the daemon.
    pub received: u64,
    /// Of those, the ones the daemon could not parse.
    pub unparsed: u64,
}

/// The reloads since start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Reloads {
    /// The last one (asked for, or after the files changed); `None`
    /// before the first.
    pub last: Option<LastReload>,
    /// How many were rejected since start.
    pub rejected: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastReload {
    pub at_ms: u64,
    pub outcome: ReloadOutcome,
    /// What the daemon answered: the change, or why it was rejected.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadOutcome {
    /// The new policy is in force.
    Applied,
    /// The files changed but the merged policy did not.
    Unchanged,
    /// The policy did not parse, validate or apply; the one in force stays.
    Rejected,
}

impl ReloadOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadOutcome::Applied => "applied",
            ReloadOutcome::Unchanged => "unchanged",
            ReloadOutcome::Rejected => "rejected",
        }
    }
}
