//! The collateral report of `policy show --resolved`: every address banned
//! because a *dedicated* name resolved to it, that also serves something
//! outside the ban. Banning such an address by address blocks that too,
//! for every application on the machine. Three reasons, each checkable
//! offline from the policy and the daemon's last answers:
//! - another resolved name outside the ban (an allowed name, a name banned
//!   on one port only) answered with the same address;
//! - the address lies in a well-known shared front end (a CDN's anycast,
//!   Google's front ends): `policy/frontends.json`, with sources;
//! - the banning name is one the catalog calls shared, but the policy bans
//!   it as dedicated (a plain string instead of `"shared": true`).
//!
//! Pure: no kernel, no clock. Wildcard bans are left out: their addresses
//! are learned in the kernel from the answers applications get, and the
//! snapshot does not hold them.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    desired::{Action, RuleTable, Target},
    policy::{DomainPattern, Policy, catalog},
    resolve::ResolvedAddrs,
};

const FRONTENDS: &str = include_str!("../policy/frontends.json");

/// A published range of a shared front end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontEnd {
    pub cidr: IpNet,
    pub operator: String,
    /// Where the operator publishes it.
    pub source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontEndFile {
    #[allow(dead_code)]
    about: String,
    frontends: Vec<FrontEnd>,
}

/// The embedded list of shared front-end ranges.
pub fn frontends() -> Vec<FrontEnd> {
    let file: FrontEndFile = serde_json::from_str(FRONTENDS)
        .expect("the embedded front-end list is valid (unit-tested)");
    file.frontends
}

/// The dedicated ban that put an address in the deny maps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BannedBy {
    pub name: String,
    /// The rule id, as `policy show` lists it (0 if unknown).
    pub rule: u32,
    /// Where the ban was written (`<file>: deny.domains[2]`).
    pub origin: String,
}

/// Why banning an address is collateral.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Why {
    /// Resolved names outside the ban that answered with this address.
    OtherNames {
        names: Vec<String>,
        /// Whether one of them is an allowed name: its allow exception
        /// wins, so the ban does not hold for this address at all.
        excepted: bool,
    },
    /// Inside a known shared front end's range.
    FrontEnd {
        range: IpNet,
        operator: String,
        source: String,
    },
    /// The catalog calls the banning name shared.
    CatalogShared {
        name: String,
        catalog_entry: String,
        provider: String,
    },
}

/// One banned address and why banning it hits more than the ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Collateral {
    pub address: IpAddr,
    pub banned_by: Vec<BannedBy>,
    pub why: Vec<Why>,
}

/// The report, with the counts of its summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub collateral: Vec<Collateral>,
    /// Addresses banned because of dedicated names (collateral or not).
    pub banned_addresses: usize,
    /// Dedicated exact names with at least one resolved address.
    pub dedicated_names: usize,
}

/// Whether `name` is outside the ban: no portless ban covers it, or an
/// allow entry excepts it. Returns `None` when it is inside the ban, else
/// whether it is allowed by name.
fn outside_ban(policy: &Policy, name: &str) -> Option<bool> {
    let allowed = policy.allow.domain_values().any(|d| d.matches(name));
    let banned = policy.deny.domain_values().any(|d| d.matches(name));
    (allowed || !banned).then_some(allowed)
}

/// The catalog's shared entry covering `name`, if any.
fn catalog_shared(name: &str, shared: &[catalog::CatalogEntry]) -> Option<Why> {
    shared.iter().find_map(|c| {
        let pattern: DomainPattern = c.entry.parse().ok()?;
        pattern.matches(name).then(|| Why::CatalogShared {
            name: name.to_owned(),
            catalog_entry: c.entry.clone(),
            provider: c.provider.clone(),
        })
    })
}

/// The collateral of `policy` under the resolved answers `resolved`;
/// `rules` is the rule table `desired::compile` made of them (for ids).
pub fn report(policy: &Policy, resolved: &ResolvedAddrs, rules: &RuleTable) -> Report {
    let ids: HashMap<&DomainPattern, u32> = rules
        .iter()
        .filter(|r| r.action == Action::Deny)
        .filter_map(|r| match r.target {
            Target::Domain(d) => Some((d, r.id)),
            _ => None,
        })
        .collect();
    let shared_catalog: Vec<catalog::CatalogEntry> = catalog::catalog()
        .into_iter()
        .filter(|c| c.kind == catalog::Kind::Shared)
        .collect();
    // Address → the dedicated bans behind it, and the catalog's word on them.
    let mut banned: BTreeMap<IpAddr, (Vec<BannedBy>, Vec<Why>)> = BTreeMap::new();
    let mut dedicated_names = 0;
    for entry in &policy.deny.domains {
        let DomainPattern::Exact(name) = &entry.value else {
            continue;
        };
        if policy.deny.is_shared(&entry.value) {
            continue;
        }
        let Some(addrs) = resolved.get(name).filter(|a| !a.is_empty()) else {
            continue;
        };
        dedicated_names += 1;
        let catalog_says = catalog_shared(name, &shared_catalog);
        for addr in addrs {
            let (by, why) = banned.entry(addr.to_canonical()).or_default();
            by.push(BannedBy {
                name: name.clone(),
                rule: ids.get(&entry.value).copied().unwrap_or(0),
                origin: entry.origin.to_string(),
            });
            why.extend(catalog_says.clone());
        }
    }
    // Address → resolved names outside the ban that answered with it.
    let mut others: HashMap<IpAddr, (BTreeSet<&str>, bool)> = HashMap::new();
    for (name, addrs) in resolved {
        let Some(allowed) = outside_ban(policy, name) else {
            continue;
        };
        for addr in addrs {
            let (names, excepted) = others.entry(addr.to_canonical()).or_default();
            names.insert(name);
            *excepted |= allowed;
        }
    }
    let fronts = frontends();
    let banned_addresses = banned.len();
    let collateral = banned
        .into_iter()
        .filter_map(|(address, (banned_by, catalog_why))| {
            let mut why = Vec::new();
            if let Some((names, excepted)) = others.get(&address) {
                why.push(Why::OtherNames {
                    names: names.iter().map(|n| (*n).to_owned()).collect(),
                    excepted: *excepted,
                });
            }
            why.extend(
                fronts
                    .iter()
                    .filter(|f| f.cidr.contains(&address))
                    .map(|f| Why::FrontEnd {
                        range: f.cidr,
                        operator: f.operator.clone(),
                        source: f.source.clone(),
                    }),
            );
            why.extend(catalog_why);
            (!why.is_empty()).then_some(Collateral {
                address,
                banned_by,
                why,
            })
        })
        .collect();
    Report {
        collateral,
        banned_addresses,
        dedicated_names,
    }
}

impl Report {
    /// The summary line.
    pub fn summary(&self) -> String {
        let count = |f: fn(&Why) -> bool| {
            self.collateral
                .iter()
                .filter(|c| c.why.iter().any(f))
                .count()
        };
        format!(
            "collateral: {} of {} addresses banned by {} dedicated names ({} serving other names, {} in shared front ends, {} of catalog-shared names)",
            self.collateral.len(),
            self.banned_addresses,
            self.dedicated_names,
            count(|w| matches!(w, Why::OtherNames { .. })),
            count(|w| matches!(w, Why::FrontEnd { .. })),
            count(|w| matches!(w, Why::CatalogShared { .. })),
        )
    }

    /// The report as text, one address and its reasons per block, then
    /// the summary line.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.collateral.is_empty() {
            out.push("collateral (banned addresses that serve more than the ban):".to_owned());
        }
        for c in &self.collateral {
            let by: Vec<String> = c
                .banned_by
                .iter()
                .map(|b| format!("{} (#{} {})", b.name, b.rule, b.origin))
                .collect();
            out.push(format!("  {} banned by {}", c.address, by.join(", ")));
            for w in &c.why {
                out.push(match w {
                    Why::OtherNames { names, excepted } => format!(
                        "    also serves {}{}",
                        names.join(", "),
                        if *excepted {
                            " (allowed: the exception wins, this address is not banned)"
                        } else {
                            ""
                        }
                    ),
                    Why::FrontEnd {
                        range,
                        operator,
                        source,
                    } => format!("    in the shared front end {range} ({operator}; {source})"),
                    Why::CatalogShared {
                        name,
                        catalog_entry,
                        provider,
                    } => format!(
                        "    {name} is shared in the catalog ({catalog_entry}, {provider}): write {{\"name\": \"{name}\", \"shared\": true}} to ban it by name only"
                    ),
                });
            }
        }
        out.push(self.summary());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{desired::compile, policy::Source};

    fn policy(json: &str) -> std::sync::Arc<Policy> {
        std::sync::Arc::new(Policy::parse(json, Source::File("p.json".into())).unwrap())
    }

    use crate::resolve::answers::resolved_addrs as answers;

    fn rules_of(p: &std::sync::Arc<Policy>) -> RuleTable {
        RuleTable::new(p.clone())
    }

    fn run(p: &std::sync::Arc<Policy>, r: &ResolvedAddrs) -> Report {
        let (_, rules) = compile(p, r);
        report(p, r, &rules)
    }

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_embedded_front_end_list_is_valid_and_sourced() {
        let list = frontends();
        assert!(list.len() >= 7);
        assert!(list.iter().all(|f| f.source.starts_with("https://")));
        for (cidr, operator) in [
            ("104.16.0.0/13", "Cloudflare"),
            ("2606:4700::/32", "Cloudflare"),
            ("142.250.0.0/15", "Google front ends"),
            ("2a00:1450::/32", "Google front ends"),
        ] {
            assert!(
                list.iter()
                    .any(|f| f.cidr.to_string() == cidr && f.operator == operator),
                "{cidr}"
            );
        }
    }

    #[test]
    fn an_address_shared_with_an_allowed_or_unlisted_name_is_reported() {
        let p = policy(
            r#"{"version":1,"deny":{"domains":["api.ai.test","other.ai.test","dns.test:443"]},
                "allow":{"domains":["docs.ai.test"]}}"#,
        );
        let r = answers(&[
            ("api.ai.test", &["192.0.2.10", "192.0.2.11", "2001:db8::10"]),
            ("other.ai.test", &["192.0.2.11"]),
            ("docs.ai.test", &["192.0.2.10"]),
            // Banned on 443 only: a dedicated ban of its address closes 53 too.
            ("dns.test", &["::ffff:192.0.2.11"]),
        ]);
        let rep = run(&p, &r);
        assert_eq!(rep.banned_addresses, 3);
        assert_eq!(rep.dedicated_names, 2);
        let got: Vec<(IpAddr, Vec<Why>)> = rep
            .collateral
            .iter()
            .map(|c| (c.address, c.why.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    addr("192.0.2.10"),
                    vec![Why::OtherNames {
                        names: vec!["docs.ai.test".into()],
                        excepted: true
                    }]
                ),
                (
                    addr("192.0.2.11"),
                    vec![Why::OtherNames {
                        names: vec!["dns.test".into()],
                        excepted: false
                    }]
                ),
            ]
        );
        // Both bans behind 192.0.2.11, with their rule ids and origins.
        let by = &rep.collateral[1].banned_by;
        assert_eq!(by.len(), 2);
        assert_eq!(by[0].name, "api.ai.test");
        assert_eq!(by[0].rule, rules_of(&p).id_of("api.ai.test").unwrap());
        assert_eq!(by[0].origin, "p.json: deny.domains[0]");
        assert_eq!(by[1].name, "other.ai.test");
        assert!(rep.summary().starts_with("collateral: 2 of 3 addresses"));
    }

    #[test]
    fn names_inside_the_ban_and_shared_bans_are_not_collateral() {
        let p = policy(
            r#"{"version":1,"deny":{"domains":["a.ai.test","*.ai.test",
                {"name":"cdn.ai.test","shared":true}]}}"#,
        );
        // b.ai.test is covered by the wildcard ban: inside the ban. The
        // shared name's address is never banned, so it is not reported,
        // even inside a front end.
        let r = answers(&[
            ("a.ai.test", &["192.0.2.1"]),
            ("b.ai.test", &["192.0.2.1"]),
            ("cdn.ai.test", &["104.16.1.1"]),
        ]);
        let rep = run(&p, &r);
        assert_eq!(rep.collateral, []);
        assert_eq!(rep.banned_addresses, 1);
        assert!(rep.summary().starts_with("collateral: 0 of 1"));
    }

    #[test]
    fn front_end_ranges_and_catalog_shared_names_are_reported() {
        // chatgpt.com is shared in the catalog (under Cloudflare) but this
        // policy bans it as a plain (dedicated) string.
        let p = policy(r#"{"version":1,"deny":{"domains":["chatgpt.com","gemini.ai.test"]}}"#);
        let r = answers(&[
            ("chatgpt.com", &["198.51.100.7"]),
            (
                "gemini.ai.test",
                &["142.250.1.1", "2a00:1450::1", "203.0.113.9"],
            ),
        ]);
        let rep = run(&p, &r);
        let whys: BTreeMap<IpAddr, &[Why]> = rep
            .collateral
            .iter()
            .map(|c| (c.address, c.why.as_slice()))
            .collect();
        assert_eq!(whys.len(), 3, "{whys:?}");
        assert!(matches!(
            whys[&addr("198.51.100.7")],
            [Why::CatalogShared { name, .. }] if name == "chatgpt.com"
        ));
        assert!(matches!(
            whys[&addr("142.250.1.1")],
            [Why::FrontEnd { range, .. }] if range.to_string() == "142.250.0.0/15"
        ));
        assert!(matches!(
            whys[&addr("2a00:1450::1")],
            [Why::FrontEnd { operator, .. }] if operator == "Google front ends"
        ));
        let text = rep.lines().join("\n");
        assert!(
            text.contains(&format!(
                "142.250.1.1 banned by gemini.ai.test (#{}",
                rules_of(&p).id_of("gemini.ai.test").unwrap()
            )),
            "{text}"
        );
        assert!(text.contains("goog.json"), "{text}");
        assert!(
            text.contains(r#"{"name": "chatgpt.com", "shared": true}"#),
            "{text}"
        );
        assert!(
            text.ends_with(
                "collateral: 3 of 4 addresses banned by 2 dedicated names (0 serving other names, 2 in shared front ends, 1 of catalog-shared names)"
            ),
            "{text}"
        );
    }

    #[test]
    fn json_names_each_field() {
        let p = policy(r#"{"version":1,"deny":{"domains":["x.ai.test"]}}"#);
        let r = answers(&[("x.ai.test", &["104.16.0.1"])]);
        let v = serde_json::to_value(run(&p, &r)).unwrap();
        let c = &v["collateral"][0];
        assert_eq!(c["address"], "104.16.0.1");
        assert_eq!(c["banned_by"][0]["name"], "x.ai.test");
        assert_eq!(
            c["banned_by"][0]["rule"],
            rules_of(&p).id_of("x.ai.test").unwrap()
        );
        assert_eq!(c["why"][0]["kind"], "front_end");
        assert_eq!(c["why"][0]["range"], "104.16.0.0/13");
        assert_eq!(c["why"][0]["operator"], "Cloudflare");
    }
}
