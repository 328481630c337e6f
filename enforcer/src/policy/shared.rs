//! `domains` entries written as objects: `{"name": "api.openai.com",
//! "shared": true}` bans a name served from a shared front end (a CDN, a
//! cloud's API front ends) by the name a connection sends, never by its
//! addresses. A plain string stays what it always was: a *dedicated* name,
//! whose resolved addresses are banned.

use std::{borrow::Cow, fmt};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, de};

use super::ports::DomainRule;

/// What an Encrypted Client Hello to a shared name's address gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EchMode {
    /// Denied: the name that counts is encrypted (the default).
    #[default]
    Deny,
    /// Judged by its outer name, like any ClientHello. Browsers send an
    /// encrypted_client_hello extension even without an ECH configuration
    /// (GREASE), with the real name outside: this lets them through to the
    /// shared front end for other names.
    OuterName,
}

/// What QUIC (UDP to port 443) to a shared name's address gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuicMode {
    /// Refused (EPERM): clients fall back to TCP, where the name decides.
    #[default]
    Refuse,
    /// Let through: QUIC to the front end is not judged by name.
    Allow,
}

/// `shared_names` as written; every field optional.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSharedNames {
    /// An Encrypted Client Hello to a shared name's address: `deny`
    /// (default) or `outer_name` (judged by its outer name).
    pub ech: Option<EchMode>,
    /// QUIC (UDP/443) to a shared name's address: `refuse` (default) or `allow`.
    pub quic: Option<QuicMode>,
    /// Ports of explicit proxies (HTTPS_PROXY, SOCKS): a TCP connection to
    /// one of them, at any address, is judged by the name asked of the
    /// proxy (HTTP CONNECT, Host, SOCKS5 with a domain name). Default
    /// `[3128, 8080, 8888, 1080]`; `[]` for none. At most 64.
    #[schemars(length(max = 64))]
    pub proxy_ports: Option<Vec<ProxyPort>>,
    /// Inspect every TCP connection to port 443, whatever its address
    /// (default false): a shared front end reached by an address never
    /// resolved for a banned name (a hard-coded CDN address) is judged by
    /// name too, at the cost of one sk_msg run per TLS connection.
    pub inspect_all_tls: Option<bool>,
}

/// A TCP port, 1-65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
pub struct ProxyPort(#[schemars(range(min = 1, max = 65535))] pub u16);

impl<'de> Deserialize<'de> for ProxyPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        match u16::try_from(n) {
            Ok(p) if p != 0 => Ok(ProxyPort(p)),
            _ => Err(de::Error::custom(format!("port {n} is outside 1-65535"))),
        }
    }
}

/// The proxy ports inspected when the policy names none: Squid (3128),
/// the common HTTP proxy ports (8080, 8888) and SOCKS (1080).
pub const DEFAULT_PROXY_PORTS: [u16; 4] = [3128, 8080, 8888, 1080];

/// How shared names are enforced, with the defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedNameSettings {
    pub ech: EchMode,
    pub quic: QuicMode,
    pub proxy_ports: Vec<u16>,
    pub inspect_all_tls: bool,
}

impl Default for SharedNameSettings {
    fn default() -> Self {
        SharedNameSettings {
            ech: EchMode::default(),
            quic: QuicMode::default(),
            proxy_ports: DEFAULT_PROXY_PORTS.to_vec(),
            inspect_all_tls: false,
        }
    }
}

impl SharedNameSettings {
    /// Later files win, field by field (a list as a whole).
    pub fn merge(&mut self, raw: RawSharedNames) {
        self.ech = raw.ech.unwrap_or(self.ech);
        self.quic = raw.quic.unwrap_or(self.quic);
        self.inspect_all_tls = raw.inspect_all_tls.unwrap_or(self.inspect_all_tls);
        if let Some(ports) = raw.proxy_ports {
            self.proxy_ports = ports.into_iter().map(|p| p.0).collect();
            self.proxy_ports.sort_unstable();
            self.proxy_ports.dedup();
        }
    }

    /// The `CONFIG_SNI` bits the programs read.
    pub fn config(&self) -> u32 {
        let mut bits = 0;
        if self.ech == EchMode::OuterName {
            bits |= enforcer_common::SNI_F_ECH_OUTER_NAME;
        }
        if self.quic == QuicMode::Allow {
            bits |= enforcer_common::SNI_F_QUIC_ALLOW;
        }
        if self.inspect_all_tls {
            bits |= enforcer_common::SNI_F_INSPECT_443;
        }
        bits
    }
}

/// One `domains` entry: the rule, and whether it was marked shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainEntry {
    pub rule: DomainRule,
    pub shared: bool,
}

/// The object form, checked field by field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Object {
    name: DomainRule,
    #[serde(default)]
    shared: bool,
}

impl<'de> Deserialize<'de> for DomainEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = DomainEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    r#"a name ("api.example.com") or {"name": "api.example.com", "shared": true}"#,
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<DomainEntry, E> {
                let rule = s.parse().map_err(E::custom)?;
                Ok(DomainEntry {
                    rule,
                    shared: false,
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<DomainEntry, A::Error> {
                let o = Object::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if o.shared && matches!(o.name, DomainRule::Port(_)) {
                    return Err(de::Error::custom(
                        "a shared name is judged by the name each connection sends, on \
                         every port: write it without a port",
                    ));
                }
                Ok(DomainEntry {
                    rule: o.name,
                    shared: o.shared,
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for DomainEntry {
    fn schema_name() -> Cow<'static, str> {
        "DomainEntry".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let rule = generator.subschema_for::<DomainRule>();
        json_schema!({
            "oneOf": [
                rule,
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["name"],
                    "properties": {
                        "name": rule,
                        "shared": {
                            "type": "boolean",
                            "default": false,
                            "description": "deny.domains only. false (the default, and what a plain string means): a dedicated name, whose resolved addresses are banned. true: a name on a shared front end (a CDN), banned by the name each TCP connection to its addresses sends (TLS server_name, HTTP Host); its addresses are never banned."
                        }
                    }
                }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::{DomainPattern, Policy, PolicyError, Source};

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(text, Source::File("p.json".into()))
    }

    fn pattern(s: &str) -> DomainPattern {
        s.parse().unwrap()
    }

    #[test]
    fn a_plain_string_is_dedicated_and_an_object_may_say_shared() {
        let p = parse(
            r#"{"version": 1, "deny": {"domains": ["api.anthropic.com",
                {"name": "api.openai.com", "shared": true},
                {"name": "*.openai.com"}, {"name": "chatgpt.com", "shared": false}]}}"#,
        )
        .unwrap();
        let names: Vec<String> = p.deny.domain_values().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "api.anthropic.com",
                "api.openai.com",
                "*.openai.com",
                "chatgpt.com"
            ]
        );
        assert!(p.deny.is_shared(&pattern("api.openai.com")));
        for dedicated in ["api.anthropic.com", "*.openai.com", "chatgpt.com"] {
            assert!(!p.deny.is_shared(&pattern(dedicated)), "{dedicated}");
        }
        assert_eq!(p.deny.domains[1].origin, "p.json: deny.domains[1]");
    }

    #[test]
    fn bad_objects_are_named_with_their_field() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        let e = err(
            r#"{"version": 1, "deny": {"domains": ["a.test", {"name": "b.test", "sharde": true}]}}"#,
        );
        assert!(e.contains("deny.domains[1]") && e.contains("sharde"), "{e}");
        let e = err(r#"{"version": 1, "deny": {"domains": [{"shared": true}]}}"#);
        assert!(e.contains("deny.domains[0]") && e.contains("name"), "{e}");
        let e =
            err(r#"{"version": 1, "deny": {"domains": [{"name": "b.test", "shared": "yes"}]}}"#);
        assert!(e.contains("deny.domains[0].shared"), "{e}");
        let e =
            err(r#"{"version": 1, "deny": {"domains": [{"name": "b.test:443", "shared": true}]}}"#);
        assert!(e.contains("without a port"), "{e}");
        let e = err(r#"{"version": 1, "deny": {"domains": [{"name": "api.*.test"}]}}"#);
        assert!(e.contains("deny.domains[0]"), "{e}");
        let e =
            err(r#"{"version": 1, "allow": {"domains": [{"name": "b.test", "shared": true}]}}"#);
        assert!(
            e.contains("allow.domains[0]") && e.contains("deny.domains"),
            "{e}"
        );
        let e = err(r#"{"version": 1, "deny": {"domains": [7]}}"#);
        assert!(e.contains("deny.domains[0]") && e.contains("shared"), "{e}");
    }

    #[test]
    fn shared_names_settings_default_to_the_strict_choice() {
        use super::{EchMode, QuicMode};
        let p = parse(r#"{"version": 1}"#).unwrap();
        assert_eq!(p.shared_names.config(), 0);
        let p = parse(
            r#"{"version": 1, "shared_names": {"ech": "outer_name", "quic": "allow", "inspect_all_tls": true}}"#,
        )
        .unwrap();
        assert_eq!(p.shared_names.ech, EchMode::OuterName);
        assert_eq!(p.shared_names.quic, QuicMode::Allow);
        assert_eq!(p.shared_names.config(), 7);
        assert_eq!(p.shared_names.proxy_ports, [3128, 8080, 8888, 1080]);
        let p = parse(r#"{"version": 1, "shared_names": {"proxy_ports": [9000, 3128, 9000]}}"#)
            .unwrap();
        assert_eq!(p.shared_names.proxy_ports, [3128, 9000]);
        let e = parse(r#"{"version": 1, "shared_names": {"proxy_ports": [0]}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("shared_names.proxy_ports[0]") && e.contains("1-65535"),
            "{e}"
        );
        let e = parse(r#"{"version": 1, "shared_names": {"ech": "pass"}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("shared_names.ech") && e.contains("outer_name"),
            "{e}"
        );
    }

    #[test]
    fn the_last_entry_of_a_name_across_files_decides() {
        let dir = std::env::temp_dir().join(format!("enforcer-shared-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("policy.d")).unwrap();
        std::fs::write(
            dir.join("policy.json"),
            r#"{"version": 1, "deny": {"domains": [{"name": "a.test", "shared": true}, "b.test"]}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("policy.d/10-x.json"),
            r#"{"version": 1, "deny": {"domains": ["a.test", {"name": "b.test", "shared": true}]}}"#,
        )
        .unwrap();
        let p = Policy::resolve(Some(&dir.join("policy.json"))).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!p.deny.is_shared(&pattern("a.test")));
        assert!(p.deny.is_shared(&pattern("b.test")));
        assert_eq!(p.deny.domains.len(), 2);
    }
}
