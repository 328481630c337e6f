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

/// Why an entry is in the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// A cloud AI model API, agent backend or assistant.
    #[default]
    Ai,
    /// An encrypted-DNS endpoint (DoT, DoQ, a public DoH resolver): names
    /// asked through it never reach the kernel's DNS program, so the
    /// default closes it (DoH on 443 only: port 53 of the same resolvers
    /// stays usable as plain DNS).
    EncryptedDns,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// A domain pattern or a CIDR exactly as written in the default policy.
    pub entry: String,
    pub provider: String,
    pub kind: Kind,
    #[serde(default)]
    pub category: Category,
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
         `enforcer policy show --resolved` warns about them. An entry with a port \
         (`1.1.1.1:443`, `dns.google:443`, `*:853`) bans that port only, TCP and UDP.\n\n",
    );
    let sections = [
        (Category::Ai, "## Cloud AI model APIs and agents\n\n"),
        (
            Category::EncryptedDns,
            "## Encrypted DNS\n\n\
             Names asked over DNS over TLS, QUIC or HTTPS never reach the kernel's DNS \
             program, and Electron editors (Cursor, Windsurf, VS Code) switch to DNS over HTTPS \
             by themselves when the system resolver is a known DoH provider. The default \
             closes DoT and DoQ (port 853, TCP and UDP) to every destination, and the public \
             DoH resolvers by name and by their published anycast addresses on 443 only, so \
             that a company using 1.1.1.1 or 8.8.8.8 as a plain resolver keeps port 53. An \
             internal DoT resolver is opened with an allow entry such as `10.0.0.53:853`.\n\n",
        ),
    ];
    let all = catalog();
    for (category, heading) in sections {
        out.push_str(heading);
        out.push_str("| entry | provider | kind | source |\n|---|---|---|---|\n");
        for c in all.iter().filter(|c| c.category == category) {
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
        out.push('\n');
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
            .chain(p.deny.ports.iter().map(|e| e.value.to_string()))
            .collect();
        let mut in_catalog: Vec<String> = catalog().into_iter().map(|c| c.entry).collect();
        in_policy.sort();
        in_catalog.sort();
        assert_eq!(in_policy, in_catalog);
        assert_eq!(lookup("160.79.104.0/23").unwrap().kind, Kind::Dedicated);
        assert_eq!(lookup("*.openai.com").unwrap().kind, Kind::Shared);
        assert_eq!(lookup("*.openai.com").unwrap().category, Category::Ai);
    }

    #[test]
    fn the_default_closes_encrypted_dns_but_keeps_public_resolvers_on_53() {
        let p = Policy::embedded();
        let plain: Vec<String> = p.deny.cidr_values().map(ToString::to_string).collect();
        let ports: Vec<String> = p.deny.ports.iter().map(|e| e.value.to_string()).collect();
        // DoT and DoQ everywhere; DoH resolvers' addresses on 443 only.
        for rule in [
            "*:853",
            "1.1.1.1:443",
            "8.8.8.8:443",
            "[2606:4700:4700::1111]:443",
        ] {
            assert!(ports.iter().any(|c| c == rule), "{rule} missing: {ports:?}");
        }
        // No rule without a port covers a public resolver: 53 stays usable.
        for resolver in ["1.1.1.1", "8.8.8.8", "9.9.9.9", "2606:4700:4700::1111"] {
            let addr: std::net::IpAddr = resolver.parse().unwrap();
            let covering: Vec<&String> = plain
                .iter()
                .filter(|c| c.parse::<ipnet::IpNet>().unwrap().contains(&addr))
                .collect();
            assert!(
                covering.is_empty(),
                "{resolver} banned on every port by {covering:?}"
            );
        }
        for name in [
            "dns.google:443",
            "cloudflare-dns.com:443",
            "*.dns.nextdns.io:443",
        ] {
            assert!(ports.iter().any(|d| d == name), "{name} missing: {ports:?}");
        }
        let encrypted = catalog()
            .into_iter()
            .filter(|c| c.category == Category::EncryptedDns)
            .count();
        assert!(encrypted >= 50, "{encrypted}");
        assert!(catalog().iter().all(|c| !c.source.is_empty()));
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
