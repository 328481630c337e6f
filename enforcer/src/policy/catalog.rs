//! Where each entry of the embedded default policy comes from, and whether
//! it is the provider's own (`dedicated`) or a shared CDN/front end whose
//! addresses also serve unrelated sites (`shared`). The embedded default
//! marks each shared name `"shared": true`: enforced by the name each
//! connection sends, its addresses are never banned.

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
         *dedicated*: the provider's own addresses, banned by address. *shared*: served from \
         a shared CDN or front end, whose addresses also serve unrelated sites; the default \
         writes these `{\"name\": ..., \"shared\": true}`: their addresses are never \
         banned, and a TCP connection to them is refused by the name it sends (TLS \
         server_name, HTTP Host). An entry with a port \
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
    out.push_str(
        "## Agents contained as processes\n\n\
         Selectors of the `agents` section: each program, and everything it starts, may reach \
         only its allow list, empty here (nothing but the host's DNS servers) until a drop-in \
         opens the company's gateway. See the README's \"Contain an agent\".\n\n\
         | agent | exe | script | source |\n|---|---|---|---|\n",
    );
    let code = |list: &[super::agents::Glob]| {
        list.iter()
            .map(|g| format!("`{g}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for a in &super::Policy::embedded().agents {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            a.name,
            code(&a.exe),
            code(&a.script),
            a.source.as_deref().unwrap_or("").replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{DEFAULT_POLICY, Policy, Source, parse_layer};

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
    fn the_default_marks_shared_exactly_the_catalogs_shared_names() {
        let p = Policy::embedded();
        for c in catalog() {
            let Some(d) = p.deny.domain_values().find(|d| d.to_string() == c.entry) else {
                continue;
            };
            assert_eq!(
                p.deny.is_shared(d),
                c.kind == Kind::Shared,
                "{}: the catalog says {:?}",
                c.entry,
                c.kind
            );
        }
        // The default bans no shared front end's addresses.
        assert!(p.deny.is_shared(&"api.openai.com".parse().unwrap()));
        assert!(!p.deny.is_shared(&"api.anthropic.com".parse().unwrap()));
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

    /// The rule that decides for `name` in `p`, as the README states it
    /// (and `check` and the DNS program apply it): the most specific
    /// matching pattern wins, an exception on a tie. `None`: no rule.
    fn decides(p: &Policy, name: &str) -> Option<(bool, String)> {
        let bans = p.deny.domain_values().map(|d| (d, false));
        let allows = p.allow.domain_values().map(|d| (d, true));
        bans.chain(allows)
            .filter(|(d, _)| d.matches(name))
            .max_by_key(|(d, allow)| (d.specificity(), *allow))
            .map(|(d, allow)| (allow, d.to_string()))
    }

    #[test]
    fn the_default_bans_what_the_agents_in_the_research_contact() {
        let p = Policy::embedded();
        for name in [
            // Claude Code (code.claude.com network-config).
            "api.anthropic.com",
            "platform.claude.com",
            "mcp-proxy.anthropic.com",
            "downloads.claude.ai",
            "claude.ai",
            "claude.com",
            // Codex CLI, Gemini CLI, Antigravity.
            "auth.openai.com",
            "chatgpt.com",
            "cloudcode-pa.googleapis.com",
            "daily-cloudcode-pa.googleapis.com",
            "us-central1-aiplatform.googleapis.com",
            // Copilot's plans, Cursor.
            "api.githubcopilot.com",
            "api.individual.githubcopilot.com",
            "api.business.githubcopilot.com",
            "api2.cursor.sh",
            "marketplace.cursorapi.com",
            // Amazon Q Developer / Kiro.
            "codewhisperer.us-east-1.amazonaws.com",
            "q.us-east-1.amazonaws.com",
            "q-developer-integration.us-east-1.api.aws",
            "kiro.dev",
            // JetBrains AI, Sourcegraph Cody / Amp.
            "grazie.ai",
            "api.jetbrains.ai",
            "grazie.aws.intellij.net",
            "cody.dev",
            "ampcode.com",
            // Qwen (DashScope), Moonshot / Kimi, Zhipu.
            "dashscope.aliyuncs.com",
            "dashscope-intl.aliyuncs.com",
            "chat.qwen.ai",
            "api.moonshot.ai",
            "api.moonshot.cn",
            "api.kimi.com",
            "kimi.com",
            "open.bigmodel.cn",
            "api.z.ai",
            "chatglm.cn",
        ] {
            let rule = decides(&p, name);
            assert!(
                matches!(rule, Some((false, _))),
                "{name} is not banned by the default: {rule:?}"
            );
        }
        // Names the default must not ban by name: shared hosts of other
        // services (Sourcegraph's code search, AWS sign-in, GitHub).
        for name in [
            "sourcegraph.com",
            "github.com",
            "api.github.com",
            "oidc.us-east-1.amazonaws.com",
            "storage.googleapis.com",
        ] {
            assert_eq!(decides(&p, name), None, "{name}");
        }
    }

    #[test]
    fn only_anthropic_is_dedicated_among_the_ai_entries() {
        // The research: no other vendor publishes the addresses its API is
        // served from; banning a CDN's addresses bans unrelated sites.
        for c in catalog().iter().filter(|c| c.category == Category::Ai) {
            assert!(
                c.kind == Kind::Shared || c.provider == "Anthropic",
                "{}: {} is dedicated",
                c.entry,
                c.provider
            );
        }
        assert!(
            catalog()
                .iter()
                .any(|c| c.source.contains("unverified") && c.provider == "JetBrains AI")
        );
    }

    #[test]
    fn the_readme_copilot_drop_in_opens_company_plans_only() {
        let readme = include_str!("../../../README.md");
        let drop_in = r#"{"version": 1, "allow": {"domains": ["*.business.githubcopilot.com", "*.enterprise.githubcopilot.com"]}}"#;
        assert!(readme.contains(drop_in), "the README example changed");
        let merge = |extra: &str| {
            let layers = vec![
                parse_layer(DEFAULT_POLICY, Source::Embedded).unwrap(),
                parse_layer(extra, Source::File("copilot.json".into())).unwrap(),
            ];
            Policy::merge(layers).unwrap()
        };
        let p = merge(drop_in);
        for (name, allowed) in [
            ("api.business.githubcopilot.com", true),
            ("proxy.enterprise.githubcopilot.com", true),
            ("api.individual.githubcopilot.com", false),
            ("proxy.individual.githubcopilot.com", false),
            ("api.githubcopilot.com", false),
        ] {
            let rule = decides(&p, name);
            assert_eq!(
                rule.as_ref().map(|r| r.0),
                Some(allowed),
                "{name}: {rule:?}"
            );
        }
        // A wider exception still leaves personal plans banned.
        let p = merge(r#"{"version": 1, "allow": {"domains": ["*.githubcopilot.com"]}}"#);
        assert_eq!(
            decides(&p, "api.githubcopilot.com").map(|r| r.0),
            Some(true)
        );
        assert_eq!(
            decides(&p, "api.individual.githubcopilot.com"),
            Some((false, "*.individual.githubcopilot.com".to_owned()))
        );
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
