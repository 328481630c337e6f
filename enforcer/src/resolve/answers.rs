//! What is known about each name, and the rules that keep enforcement
//! from opening by accident:
//! - an address that stops appearing stays for `grace` (clients cache);
//! - a failed resolution (timeout, SERVFAIL, server down) removes nothing:
//!   the grace of that name's addresses cannot end before it resolves again;
//! - NXDOMAIN is an answer: the name has no addresses now (grace applies);
//! - a half answer (A answered, AAAA failed) adds what it has and releases
//!   nothing: the name is `partial` until both types answer;
//! - a restarted daemon starts from what the previous one knew (`seed`), so
//!   a machine that boots offline keeps every name it banned before.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use serde::{Deserialize, Serialize};

use super::dns::Ignored;

/// The addresses each resolved name currently stands for (including those
/// kept for their grace period): the resolver's part of the desired state.
pub type ResolvedAddrs = BTreeMap<String, BTreeSet<IpAddr>>;

/// `ResolvedAddrs` from `(name, ["addr", ...])` pairs, for unit tests.
#[cfg(test)]
pub fn resolved_addrs(list: &[(&str, &[&str])]) -> ResolvedAddrs {
    list.iter()
        .map(|(name, addrs)| {
            (
                (*name).to_owned(),
                addrs.iter().map(|a| a.parse().unwrap()).collect(),
            )
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NameStatus {
    /// Not resolved yet.
    Pending,
    /// The last resolution succeeded.
    Fresh,
    /// The last resolution failed; the addresses last known stay enforced.
    Stale,
    /// The last answer was NXDOMAIN.
    Nxdomain,
    /// The last resolution answered one record type and failed the other:
    /// its addresses were added, nothing was released.
    Partial,
}

impl NameStatus {
    /// Whether the last resolution failed in whole or in part; such a name
    /// never releases an address.
    pub fn failing(self) -> bool {
        matches!(self, NameStatus::Stale | NameStatus::Partial)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddrState {
    /// When an answer last contained it (ms since the epoch).
    pub last_seen_ms: u64,
    /// Set once an answer no longer contains it: it is removed then.
    pub expires_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameState {
    pub status: NameStatus,
    pub addrs: BTreeMap<IpAddr, AddrState>,
    /// The CNAME chain of the last answer, in order.
    pub cnames: Vec<String>,
    /// TTL of the last answer (before clamping), seconds.
    pub ttl_s: Option<u32>,
    pub last_success_ms: Option<u64>,
    pub last_attempt_ms: Option<u64>,
    pub last_error: Option<String>,
    /// Failures in a row.
    pub failures: u32,
    /// Addresses the last answer carried that are never banned (sinkholes,
    /// the daemon's own resolvers, records for other names).
    #[serde(default)]
    pub ignored: Vec<Ignored>,
    /// Whether this run of the daemon has asked for the name yet (a seeded
    /// name has not).
    #[serde(skip)]
    pub attempted: bool,
}

impl NameState {
    fn new() -> NameState {
        NameState {
            status: NameStatus::Pending,
            addrs: BTreeMap::new(),
            cnames: Vec::new(),
            ttl_s: None,
            last_success_ms: None,
            last_attempt_ms: None,
            last_error: None,
            failures: 0,
            ignored: Vec::new(),
            attempted: false,
        }
    }
}

/// Every name the policy needs, with its state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answers {
    pub names: BTreeMap<String, NameState>,
}

/// What one resolution of a name gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The addresses (possibly none: NODATA), the CNAME chain and the TTL.
    Addresses {
        addrs: BTreeSet<IpAddr>,
        cnames: Vec<String>,
        ttl_s: u32,
        /// Addresses the answer carried that are never banned.
        ignored: Vec<Ignored>,
        /// Set when one record type failed (its error): the addresses are
        /// added, none is released.
        partial: Option<String>,
    },
    NxDomain,
    /// No usable answer: keep what is known.
    Failed(String),
}

impl Answers {
    /// Makes the set of names exactly `names`: new ones start pending;
    /// names no rule needs any more are dropped with their addresses.
    pub fn set_names(&mut self, names: &[String]) {
        let wanted: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
        self.names.retain(|n, _| wanted.contains(n.as_str()));
        for n in names {
            self.names.entry(n.clone()).or_insert_with(NameState::new);
        }
    }

    /// Starts from what a previous instance knew: for every name the
    /// policy still needs, its addresses (and their grace) and status.
    /// Until this run resolves a name again, it counts as failing, so none
    /// of its addresses can be released by a clock.
    pub fn seed(&mut self, previous: &Answers) {
        for (name, state) in &mut self.names {
            let Some(old) = previous.names.get(name) else {
                continue;
            };
            if state.attempted {
                continue;
            }
            *state = old.clone();
            state.attempted = false;
            if state.status == NameStatus::Pending || !state.addrs.is_empty() {
                state.status = NameStatus::Stale;
            }
            state.last_error = Some("not resolved again since the daemon started".into());
        }
    }

    /// Records a resolution. Returns whether the enforced addresses changed.
    pub fn record(&mut self, name: &str, now_ms: u64, grace_s: u32, result: Resolution) -> bool {
        let Some(state) = self.names.get_mut(name) else {
            return false;
        };
        state.last_attempt_ms = Some(now_ms);
        state.attempted = true;
        let (seen, status, partial) = match result {
            Resolution::Failed(error) => {
                state.status = NameStatus::Stale;
                state.last_error = Some(error);
                state.failures = state.failures.saturating_add(1);
                return false;
            }
            Resolution::NxDomain => {
                state.cnames.clear();
                state.ttl_s = None;
                state.ignored.clear();
                (BTreeSet::new(), NameStatus::Nxdomain, None)
            }
            Resolution::Addresses {
                addrs,
                cnames,
                ttl_s,
                ignored,
                partial,
            } => {
                state.cnames = cnames;
                state.ttl_s = Some(ttl_s);
                state.ignored = ignored;
                match partial {
                    Some(e) => (addrs, NameStatus::Partial, Some(e)),
                    None => (addrs, NameStatus::Fresh, None),
                }
            }
        };
        state.status = status;
        if let Some(error) = partial {
            // Union, never shrink: add what answered, keep the rest as is.
            state.last_error = Some(error);
            state.failures = state.failures.saturating_add(1);
            let mut changed = false;
            for addr in seen {
                let fresh = AddrState {
                    last_seen_ms: now_ms,
                    expires_ms: None,
                };
                changed |= state.addrs.insert(addr, fresh).is_none();
            }
            return changed;
        }
        state.last_error = None;
        state.failures = 0;
        state.last_success_ms = Some(now_ms);
        let mut changed = false;
        for addr in &seen {
            match state.addrs.get_mut(addr) {
                Some(a) => {
                    a.last_seen_ms = now_ms;
                    a.expires_ms = None;
                }
                None => {
                    state.addrs.insert(
                        *addr,
                        AddrState {
                            last_seen_ms: now_ms,
                            expires_ms: None,
                        },
                    );
                    changed = true;
                }
            }
        }
        let grace_ms = u64::from(grace_s) * 1000;
        for (addr, a) in state.addrs.iter_mut() {
            if !seen.contains(addr) && a.expires_ms.is_none() {
                a.expires_ms = Some(now_ms + grace_ms);
            }
        }
        // A zero grace removes at once.
        changed | Self::expire_name(state, now_ms)
    }

    fn expire_name(state: &mut NameState, now_ms: u64) -> bool {
        if state.status.failing() {
            return false;
        }
        let before = state.addrs.len();
        state
            .addrs
            .retain(|_, a| a.expires_ms.is_none_or(|t| t > now_ms));
        state.addrs.len() != before
    }

    /// Removes addresses whose grace is over. Returns whether any went.
    pub fn expire(&mut self, now_ms: u64) -> bool {
        !self.expire_names(now_ms).is_empty()
    }

    /// Removes addresses whose grace is over. Returns the names that lost one.
    pub fn expire_names(&mut self, now_ms: u64) -> Vec<String> {
        self.names
            .iter_mut()
            .filter_map(|(name, state)| Self::expire_name(state, now_ms).then(|| name.clone()))
            .collect()
    }

    /// When the next grace period ends, if any is running.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.names
            .values()
            .filter(|s| !s.status.failing())
            .flat_map(|s| s.addrs.values().filter_map(|a| a.expires_ms))
            .min()
    }

    /// Whether this run has asked for every name at least once.
    pub fn all_attempted(&self) -> bool {
        self.names.values().all(|s| s.attempted)
    }

    /// Whether removing what the maps hold beyond these answers is safe:
    /// every name was asked for in this run, and every name has had a
    /// successful answer, in this run or (seeded) in an earlier one. A
    /// name that never answered may have enforced addresses only the
    /// pinned maps remember.
    pub fn settled(&self) -> bool {
        self.names
            .values()
            .all(|s| s.attempted && s.last_success_ms.is_some())
    }

    /// Names that have no address to enforce because nothing ever answered
    /// for them (not NXDOMAIN, not NODATA: failure).
    pub fn never_answered(&self) -> usize {
        self.names
            .values()
            .filter(|s| s.last_success_ms.is_none() && s.status.failing())
            .count()
    }

    /// The addresses to enforce, per name.
    pub fn addrs(&self) -> ResolvedAddrs {
        self.names
            .iter()
            .map(|(n, s)| (n.clone(), s.addrs.keys().copied().collect()))
            .collect()
    }

    pub fn count(&self, status: NameStatus) -> usize {
        self.names.values().filter(|s| s.status == status).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> BTreeSet<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn answer(list: &[&str]) -> Resolution {
        Resolution::Addresses {
            addrs: addrs(list),
            cnames: vec![],
            ttl_s: 60,
            ignored: vec![],
            partial: None,
        }
    }

    fn half(list: &[&str]) -> Resolution {
        Resolution::Addresses {
            addrs: addrs(list),
            cnames: vec![],
            ttl_s: 60,
            ignored: vec![],
            partial: Some("AAAA: REFUSED".into()),
        }
    }

    #[test]
    fn a_half_answer_adds_and_releases_nothing() {
        let mut a = with(&["x.test"]);
        a.record("x.test", 0, 0, answer(&["1.1.1.1", "2001:db8::1"]));
        // A answers with a new address, AAAA is refused: union.
        assert!(a.record("x.test", 1_000, 0, half(&["2.2.2.2"])));
        assert_eq!(a.names["x.test"].status, NameStatus::Partial);
        assert!(!a.expire(100_000));
        assert_eq!(
            enforced(&a, "x.test"),
            addrs(&["1.1.1.1", "2.2.2.2", "2001:db8::1"])
        );
        // A new name that only ever gets half answers is enforced on them.
        let mut b = with(&["new.test"]);
        a.record("x.test", 2_000, 0, answer(&["2.2.2.2"]));
        b.record("new.test", 0, 0, half(&["3.3.3.3"]));
        assert_eq!(enforced(&b, "new.test"), addrs(&["3.3.3.3"]));
        assert!(!b.settled(), "a half answer is not a success");
        assert_eq!(enforced(&a, "x.test"), addrs(&["2.2.2.2"]));
    }

    #[test]
    fn a_seeded_name_keeps_its_addresses_until_it_answers_again() {
        let mut before = with(&["x.test", "gone.test"]);
        before.record("x.test", 0, 5, answer(&["1.1.1.1"]));
        before.record("x.test", 1_000, 5, answer(&["2.2.2.2"]));
        before.record("gone.test", 0, 5, answer(&["9.9.9.9"]));
        let mut a = with(&["x.test", "new.test"]);
        a.seed(&before);
        assert!(!a.names.contains_key("gone.test"));
        assert_eq!(enforced(&a, "x.test"), addrs(&["1.1.1.1", "2.2.2.2"]));
        assert_eq!(a.names["x.test"].status, NameStatus::Stale);
        assert!(!a.expire(1_000_000), "grace is frozen until it answers");
        // DNS is down: failures keep everything; not settled while
        // new.test never answered.
        a.record("x.test", 2_000, 5, Resolution::Failed("timeout".into()));
        a.record("new.test", 2_000, 5, Resolution::Failed("timeout".into()));
        assert!(a.all_attempted());
        assert!(!a.settled());
        assert_eq!(a.never_answered(), 1);
        assert_eq!(enforced(&a, "x.test"), addrs(&["1.1.1.1", "2.2.2.2"]));
        a.record("new.test", 3_000, 5, Resolution::NxDomain);
        assert!(a.settled(), "x.test answered in an earlier run");
        // It answers: the address it no longer has goes after grace.
        a.record("x.test", 4_000, 5, answer(&["2.2.2.2"]));
        assert!(a.expire(9_000));
        assert_eq!(enforced(&a, "x.test"), addrs(&["2.2.2.2"]));
    }

    fn enforced(a: &Answers, name: &str) -> BTreeSet<IpAddr> {
        a.addrs().remove(name).unwrap_or_default()
    }

    fn with(names: &[&str]) -> Answers {
        let mut a = Answers::default();
        a.set_names(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>());
        a
    }

    #[test]
    fn a_vanished_address_stays_for_the_grace_period() {
        let mut a = with(&["x.test"]);
        assert!(a.record("x.test", 0, 10, answer(&["1.1.1.1", "2.2.2.2"])));
        assert!(
            a.record("x.test", 1_000, 10, answer(&["2.2.2.2", "3.3.3.3"])),
            "3.3.3.3 is new"
        );
        assert_eq!(
            enforced(&a, "x.test"),
            addrs(&["1.1.1.1", "2.2.2.2", "3.3.3.3"])
        );
        assert_eq!(a.next_expiry_ms(), Some(11_000));
        assert!(!a.expire(10_999));
        assert!(a.expire(11_000));
        assert_eq!(enforced(&a, "x.test"), addrs(&["2.2.2.2", "3.3.3.3"]));
        // Seen again within grace: the clock stops.
        a.record("x.test", 12_000, 10, answer(&["3.3.3.3"]));
        a.record("x.test", 13_000, 10, answer(&["2.2.2.2", "3.3.3.3"]));
        assert!(!a.expire(30_000));
        assert_eq!(enforced(&a, "x.test"), addrs(&["2.2.2.2", "3.3.3.3"]));
    }

    #[test]
    fn a_failure_removes_nothing_and_freezes_grace() {
        let mut a = with(&["x.test"]);
        a.record("x.test", 0, 5, answer(&["1.1.1.1"]));
        a.record("x.test", 1_000, 5, answer(&[]));
        assert!(!a.record("x.test", 2_000, 5, Resolution::Failed("timed out".into())));
        assert_eq!(a.names["x.test"].status, NameStatus::Stale);
        assert_eq!(a.names["x.test"].failures, 1);
        assert!(!a.expire(60_000), "no removal while the name is stale");
        assert_eq!(enforced(&a, "x.test"), addrs(&["1.1.1.1"]));
        assert_eq!(a.next_expiry_ms(), None);
        // Resolves again, still without it: its grace ran out during the
        // outage, so it goes now, not before.
        assert!(a.record("x.test", 61_000, 5, answer(&[])));
        assert!(enforced(&a, "x.test").is_empty());
    }

    #[test]
    fn nxdomain_is_an_answer_and_names_are_dropped_with_their_rules() {
        let mut a = with(&["x.test", "y.test"]);
        a.record("x.test", 0, 0, answer(&["1.1.1.1"]));
        assert!(!a.all_attempted());
        assert!(
            !a.record("y.test", 0, 0, Resolution::NxDomain),
            "nothing was enforced for it"
        );
        assert!(a.all_attempted());
        assert_eq!(a.names["y.test"].status, NameStatus::Nxdomain);
        assert!(
            a.record("x.test", 1, 0, Resolution::NxDomain),
            "zero grace removes at once"
        );
        assert!(enforced(&a, "x.test").is_empty());
        a.set_names(&["y.test".into()]);
        assert!(!a.names.contains_key("x.test"));
        assert_eq!(a.count(NameStatus::Nxdomain), 1);
    }
}
