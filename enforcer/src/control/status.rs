//! What `status` answers: built by the daemon (`daemon::status`), read by
//! the CLI (`cli::status`), printed as is by `status --json`. The field
//! names are a stable interface (scripts, tests and the README read them).
//! Fields added later default when missing, so that a newer CLI reads an
//! older daemon. Fields are in alphabetical order, as `status --json`
//! printed them when it was built from untyped JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    /// Agent containment: selectors and the processes they contain now.
    pub agents: AgentsStatus,
    pub cgroup: String,
    pub dns: Dns,
    pub events: Events,
    /// Entries per verdict map, by map name.
    pub maps: BTreeMap<String, u64>,
    /// `enforce` or `audit`.
    pub mode: String,
    pub names: NameCounts,
    pub pins: String,
    pub policy: PolicyStatus,
    pub reload: Reloads,
    /// The name inspection's counters (shared names: `sockets`,
    /// `inspected`, `denied`, `passed`, `malformed`, ...); `None` when
    /// they could not be read.
    pub sni: Option<BTreeMap<String, u64>>,
    pub uptime_s: u64,
    pub version: String,
    pub xdp_interfaces: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyStatus {
    pub age_s: u64,
    pub loaded_ms: u64,
    /// The main file (or `embedded default`), then the drop-ins.
    pub sources: Vec<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NameCounts {
    pub fresh: u64,
    pub ignored_addresses: u64,
    pub never_answered: u64,
    pub nxdomain: u64,
    pub partial: u64,
    pub pending: u64,
    pub settled: bool,
    pub stale: u64,
    /// The line systemd's STATUS= carries.
    pub summary: String,
    pub total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Events {
    /// `None`: the counters could not be read.
    pub lost_ringbuf_full: Option<u64>,
    pub owner_unknown: Option<u64>,
    /// Hook → verdict (`pass`, `allowed`, `denied`, `audited`, `error`) →
    /// count. Empty when the counters could not be read.
    pub per_hook: BTreeMap<String, BTreeMap<String, u64>>,
    pub skb_coalesced: Option<u64>,
    pub xdp_suppressed: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dns {
    /// The DNS program's counters (`responses`, `learned`, `malformed`,
    /// `learn_failed`, ...); `None` when they could not be read.
    pub counters: Option<BTreeMap<String, u64>>,
    /// Bans learned from other servers' answers, bound to the cgroup that
    /// received them (both families).
    pub learned_scoped: u64,
    /// Addresses the DNS program learned, not yet expired.
    pub learned_v4: u64,
    pub learned_v6: u64,
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
    /// What the daemon answered: the change, or why it was rejected.
    pub message: String,
    pub outcome: ReloadOutcome,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The names scripts read: renaming a field breaks them, so it fails
    /// here first.
    #[test]
    fn the_json_field_names_stay() {
        let v = serde_json::to_value(Status::default()).unwrap();
        let keys = |v: &serde_json::Value| {
            v.as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            keys(&v),
            "agents cgroup dns events maps mode names pins policy reload sni uptime_s version xdp_interfaces"
        );
        assert_eq!(keys(&v["policy"]), "age_s loaded_ms sources warnings");
        assert_eq!(
            keys(&v["names"]),
            "fresh ignored_addresses never_answered nxdomain partial pending settled stale summary total"
        );
        assert_eq!(
            keys(&v["events"]),
            "lost_ringbuf_full owner_unknown per_hook skb_coalesced xdp_suppressed"
        );
        assert_eq!(
            keys(&v["dns"]),
            "counters learned_scoped learned_v4 learned_v6 reports"
        );
        assert_eq!(keys(&v["dns"]["reports"]), "received unparsed");
        assert_eq!(keys(&v["reload"]), "last rejected");
        let last = LastReload {
            at_ms: 1,
            outcome: ReloadOutcome::Rejected,
            message: "x".into(),
        };
        assert_eq!(
            serde_json::to_string(&last).unwrap(),
            r#"{"at_ms":1,"message":"x","outcome":"rejected"}"#
        );
        // An older daemon's answer (no `reload`) still reads.
        let old: Status = serde_json::from_str(r#"{"mode":"audit","uptime_s":5}"#).unwrap();
        assert_eq!((old.mode.as_str(), old.reload.rejected), ("audit", 0));
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentsStatus {
    /// The selectors in force, by name.
    pub selectors: Vec<String>,
    pub contained: Vec<crate::agents::report::ContainedProc>,
}
