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
}
