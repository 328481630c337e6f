//! Where each entry of the embedded default policy comes from, and whether
//! it is the provider's own (`dedicated`) or a shared CDN/front end whose
//! addresses also serve unrelated sites (`shared`): IP-blocking a shared
//! entry may block more than the provider, which `policy show --resolved`
//! warns about until name-level enforcement exists.

use serde::Deserialize;

const CATALOG: &str = include_str!("../../policy/catalog.json");

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Dedicated,
    Shared,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// A domain pattern or a CIDR exactly as written in the default policy.
    pub entry: String,
    pub provider: String,
    pub kind: Kind,
    pub source: String,
}

pub fn catalog() -> Vec<CatalogEntry> {
    serde_json::from_str(CATALOG).expect("the embedded catalog is valid (unit-tested)")
}

/// The catalog entry for a policy entry, if it comes from the default.
pub fn lookup(entry: &str) -> Option<CatalogEntry> {
    catalog().into_iter().find(|c| c.entry == entry)
}

/// docs/DEFAULT_POLICY.md, generated from the catalog.
pub fn markdown() -> String {
    let mut out = String::from(
        "# The embedded default policy\n\n\
         Generated from `enforcer/policy/catalog.json` (a unit test keeps this file in step; \
         regenerate with `ENFORCER_WRITE_DOCS=1 cargo test -p enforcer`). \
         `enforcer policy default` prints the policy itself.\n\n\
         *dedicated*: the provider's own addresses. *shared*: served from a shared CDN or \
         front end, so blocking its addresses may also block unrelated sites; until \
         name-level enforcement exists these are still IP-blocked, and \
         `enforcer policy show --resolved` warns about them.\n\n\
         | entry | provider | kind | source |\n|---|---|---|---|\n",
    );
    for c in catalog() {
        let kind = match c.kind {
            Kind::Dedicated => "dedicated",
            Kind::Shared => "shared",
        };
        out.push_str(&format!(
            "| `{}` | {} | {kind} | {} |\n",
            c.entry,
            c.provider,
            c.source.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    #[test]
    fn every_default_entry_is_catalogued_and_nothing_else() {
        let p = Policy::embedded();
        let mut in_policy: Vec<String> = p
            .deny
            .domain_values()
            .map(ToString::to_string)
            .chain(p.deny.cidr_values().map(ToString::to_string))
            .collect();
        let mut in_catalog: Vec<String> = catalog().into_iter().map(|c| c.entry).collect();
        in_policy.sort();
        in_catalog.sort();
        assert_eq!(in_policy, in_catalog);
        assert_eq!(lookup("160.79.104.0/23").unwrap().kind, Kind::Dedicated);
        assert_eq!(lookup("*.openai.com").unwrap().kind, Kind::Shared);
    }

    #[test]
    fn checked_in_doc_matches_the_catalog() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/DEFAULT_POLICY.md");
        if std::env::var_os("ENFORCER_WRITE_DOCS").is_some() {
            std::fs::write(path, markdown()).unwrap();
        }
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == markdown(),
            "docs/DEFAULT_POLICY.md is out of date: regenerate it with \
             ENFORCER_WRITE_DOCS=1 cargo test -p enforcer"
        );
    }
}
