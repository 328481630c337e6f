//! The policy file as written: serde types that reject anything unknown.
//! Each value type checks itself while it is parsed, so every error still
//! has the line and column serde_json knows. The JSON Schema of the format
//! (docs/policy.schema.json) is generated from these types.

use std::{borrow::Cow, fmt, marker::PhantomData, net::SocketAddr, path::PathBuf, str::FromStr};

use ipnet::IpNet;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, de};

use super::{
    Mode,
    nat64::Nat64Prefix,
    ports::CidrRule,
    shared::{DomainEntry, RawSharedNames},
};

/// `Deserialize` and `JsonSchema` for a policy value written as one JSON
/// string and parsed by its `FromStr`: the parse error becomes serde's
/// message (serde_json adds the line and column), and the schema is a
/// string with the given members (`"description": ...`).
macro_rules! string_value {
    ($ty:ident, $($schema:tt)+) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl schemars::JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", $($schema)+ })
            }
        }
    };
}
pub(super) use string_value;

/// A value that must be a JSON object. serde's derived structs also accept
/// an array of their fields in order, so `"deny": []` was an empty rule set
/// that silently lifted every ban, and a top-level `[1]` a valid policy.
/// Asking for a map refuses everything but an object; the map is then
/// handed to the derived impl, so serde_path_to_error's field paths and
/// serde_json's line and column survive.
pub fn object<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ObjectOnly<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> de::Visitor<'de> for ObjectOnly<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object ({...})")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(ObjectOnly(PhantomData))
}

/// [`object`] for an optional section: present means an object (`null`
/// is refused too; leave the field out instead).
fn some_object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    object(d).map(Some)
}

/// A whole policy file, which must be a JSON object.
pub struct File(pub RawPolicy);

impl<'de> Deserialize<'de> for File {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        object(d).map(File)
    }
}

/// An enforcer policy file: the main file or a drop-in.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "enforcer policy")]
pub struct RawPolicy {
    /// Format version: 1.
    #[expect(dead_code, reason = "its check happens while parsing")]
    pub version: Version,
    /// `enforce` (default) denies banned destinations; `audit` only reports them.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// What to ban.
    #[serde(default, deserialize_with = "object")]
    pub deny: RawRules,
    /// Exceptions: they win over any ban they overlap.
    #[serde(default, deserialize_with = "object")]
    pub allow: RawRules,
    /// How banned names are resolved into addresses.
    #[serde(default, deserialize_with = "some_object")]
    pub resolver: Option<RawResolver>,
    /// How names marked `"shared": true` are enforced: `ech` (`deny` or
    /// `outer_name`), `quic` (`refuse` or `allow`).
    #[serde(default, deserialize_with = "some_object")]
    pub shared_names: Option<RawSharedNames>,
    /// The flow store and the metrics endpoint.
    #[serde(default, deserialize_with = "some_object")]
    pub report: Option<RawReport>,
    /// The /96 prefixes of this network's NAT64 translators
    /// (`2001:db8:64::/96`): an IPv6 destination under one is judged by the
    /// IPv4 address in its last 32 bits too. 64:ff9b::/96 (RFC 6052) and
    /// 6to4 (2002::/16) are always judged so; at most 8, across drop-ins.
    #[serde(default)]
    pub nat64_prefixes: Vec<Nat64Prefix>,
    /// AI agents contained as processes: each selector names programs (by
    /// executable path, interpreted script or command line) that, with
    /// everything they start, may reach only their `allow` list.
    #[serde(default)]
    pub agents: Vec<super::agents::RawAgent>,
    /// Main file only: where drop-ins are read from (default: `policy.d`
    /// beside the main file, or /etc/enforcer/policy.d for the embedded policy).
    #[serde(default)]
    pub drop_in_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRules {
    /// Exact names (`api.example.com`) or `*.suffix` wildcards, which match
    /// any name below the suffix at any depth, but not the suffix itself;
    /// `name:port[/tcp|/udp]` limits the rule to that port. A banned name
    /// may be written `{"name": "api.example.com", "shared": true}`: it is
    /// then enforced by name only, never by its addresses.
    #[serde(default)]
    pub domains: Vec<DomainEntry>,
    /// Networks (`10.0.0.0/8`, `2607:6bc0::/48`) or single addresses;
    /// `203.0.113.7:853`, `198.51.100.0/24:443/tcp`, `[2001:db8::/32]:443`
    /// limit the rule to that port, `*:853` is every destination on it.
    #[serde(default)]
    pub cidrs: Vec<CidrRule>,
}

/// Resolver settings; every field is optional and falls back to a default.
#[derive(Debug, Default, Clone, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawResolver {
    /// DNS servers as `ip:port` (or `ip`, port 53). Default: the
    /// nameservers of /etc/resolv.conf.
    pub upstreams: Option<Vec<Upstream>>,
    /// Shortest refresh interval in seconds, whatever the TTL says (default 30).
    #[schemars(range(min = 1, max = 86400))]
    pub min_ttl_s: Option<u32>,
    /// Longest refresh interval in seconds (default 3600).
    #[schemars(range(min = 1, max = 604800))]
    pub max_ttl_s: Option<u32>,
    /// How long an address that stopped appearing stays banned, in seconds
    /// (clients cache answers; default 300).
    #[schemars(range(max = 604800))]
    pub grace_s: Option<u32>,
    /// Resolutions in flight at once (default 16).
    #[schemars(range(min = 1, max = 1024))]
    pub concurrency: Option<u32>,
}

impl<'de> Deserialize<'de> for RawResolver {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            #[serde(default)]
            upstreams: Option<Vec<Upstream>>,
            #[serde(default)]
            min_ttl_s: Option<u32>,
            #[serde(default)]
            max_ttl_s: Option<u32>,
            #[serde(default)]
            grace_s: Option<u32>,
            #[serde(default)]
            concurrency: Option<u32>,
        }
        let f: Fields = object(d)?;
        let check = |name: &str, v: Option<u32>, min: u32, max: u32| match v {
            Some(v) if v < min || v > max => Err(de::Error::custom(format_args!(
                "{name} is {v}, outside {min}..={max}"
            ))),
            _ => Ok(()),
        };
        check("min_ttl_s", f.min_ttl_s, 1, 86_400)?;
        check("max_ttl_s", f.max_ttl_s, 1, 604_800)?;
        check("grace_s", f.grace_s, 0, 604_800)?;
        check("concurrency", f.concurrency, 1, 1024)?;
        if let (Some(min), Some(max)) = (f.min_ttl_s, f.max_ttl_s)
            && min > max
        {
            return Err(de::Error::custom(format_args!(
                "min_ttl_s ({min}) is greater than max_ttl_s ({max})"
            )));
        }
        if f.upstreams.as_ref().is_some_and(Vec::is_empty) {
            return Err(de::Error::custom(
                "upstreams is empty: leave it out to use /etc/resolv.conf",
            ));
        }
        Ok(RawResolver {
            upstreams: f.upstreams,
            min_ttl_s: f.min_ttl_s,
            max_ttl_s: f.max_ttl_s,
            grace_s: f.grace_s,
            concurrency: f.concurrency,
        })
    }
}

/// Reporting settings; every field is optional.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    /// Flows not seen for this many days are deleted (default 30).
    #[serde(default)]
    #[schemars(range(min = 1, max = 3650))]
    pub retention_days: Option<u32>,
    /// At most this many flows are kept, the most recent (default 1000000).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_flows: Option<u64>,
    /// Serve Prometheus metrics on this loopback address (`127.0.0.1:9464`);
    /// off unless set.
    #[serde(default)]
    pub metrics_listen: Option<MetricsListen>,
}

/// A loopback `ip:port`: metrics are never served beyond the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsListen(pub SocketAddr);

impl FromStr for MetricsListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        check_octets(s)?;
        let addr: SocketAddr = s.parse().map_err(|_| {
            format!("invalid metrics address {s:?}: expected ip:port, like 127.0.0.1:9464")
        })?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "metrics address {s:?} is not a loopback address; metrics are served on the host only"
            ));
        }
        Ok(MetricsListen(addr))
    }
}

string_value!(
    MetricsListen,
    "description": "A loopback address and port, like 127.0.0.1:9464 or [::1]:9464."
);

/// The only policy format version this build reads.
pub const VERSION: u32 = 1;

#[derive(Debug)]
pub struct Version;

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        if v == VERSION {
            Ok(Version)
        } else {
            Err(de::Error::custom(format_args!(
                "unsupported policy version {v}: this enforcer reads version {VERSION}"
            )))
        }
    }
}

impl JsonSchema for Version {
    fn schema_name() -> Cow<'static, str> {
        "Version".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "const": VERSION })
    }
}

/// A DNS server address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upstream(pub SocketAddr);

impl FromStr for Upstream {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        check_octets(s)?;
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Upstream(addr));
        }
        match s.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(Upstream(SocketAddr::new(ip, 53))),
            Err(_) => Err(format!(
                "invalid upstream {s:?}: expected ip:port, like 127.0.0.1:53 or [::1]:53"
            )),
        }
    }
}

string_value!(
    Upstream,
    "description": "A DNS server: ip:port, [ipv6]:port, or a bare address (port 53)."
);

/// A network in CIDR notation, or a bare address (a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        check_octets(s)?;
        let net = match s.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => match s.parse::<std::net::IpAddr>() {
                Ok(addr) => IpNet::from(addr),
                Err(_) => {
                    return Err(format!(
                        "invalid CIDR {s:?}: expected an address with a prefix length, \
                         like 160.79.104.0/23 or 2607:6bc0::/48"
                    ));
                }
            },
        };
        check_host_bits("CIDR", s, net)?;
        if let IpNet::V6(v6) = net
            && !s.contains('/')
            && s.contains("::")
            && let Some((_, last)) = s.rsplit_once(':')
            && LOOKS_LIKE_A_PORT.contains(&last)
        {
            // The address without the would-be port: `2001:db8::8888:853`
            // → `2001:db8::8888`, `2001:db8::853` → `2001:db8::`.
            let head = &s[..s.len() - last.len() - 1];
            let head = if head.ends_with(':') {
                format!("{head}:")
            } else {
                head.to_owned()
            };
            let addr = v6.addr();
            return Err(format!(
                "ambiguous CIDR {s:?}: if {last} is a port, write the address in brackets \
                 ([{head}]:{last}); if it is the address {addr}, write it as {addr}/128"
            ));
        }
        Ok(Cidr(unmap(net)))
    }
}

/// Ports that an unbracketed IPv6 address may have been meant to carry
/// (`2001:4860:4860::8888:853` is a valid address, and not 8888 on 853).
const LOOKS_LIKE_A_PORT: [&str; 6] = ["53", "80", "443", "853", "8080", "8443"];

/// `::ffff:a.b.c.d/n` (n ≥ 96) as the IPv4 network it stands for: the
/// programs judge IPv4-mapped destinations by the IPv4 rules, so an IPv6
/// rule of that form would never match.
pub fn unmap(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

string_value!(
    Cidr,
    "description": "An IPv4 or IPv6 network with zero host bits (10.0.0.0/8), or a single address."
);

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Refuses a network written with host bits set (`10.0.0.1/8`): the
/// kernel would match the network, not what the admin wrote, so the error
/// names the network meant. `what` names the kind of value.
pub(super) fn check_host_bits(what: &str, s: &str, net: IpNet) -> Result<(), String> {
    if net.trunc() != net {
        return Err(format!(
            "{what} {s:?} has host bits set: did you mean {}?",
            net.trunc()
        ));
    }
    Ok(())
}

/// Refuses an IPv4 octet written with a leading zero (`127.077.0.0`):
/// inet_aton and everything built on it read `077` as octal (63), while
/// ipnet reads it as decimal (77), so the rule would not name the network
/// the admin's tools show. Only the dotted parts of `s` are looked at, so
/// IPv6 groups (`2001:0db8::`) and ports are not affected.
pub fn check_octets(s: &str) -> Result<(), String> {
    let dotted = s
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|token| token.contains('.'));
    for token in dotted {
        for octet in token.split('.') {
            if octet.len() > 1 && octet.starts_with('0') {
                let octal = u32::from_str_radix(octet, 8).map_or_else(
                    |_| "is not even valid octal".to_owned(),
                    |v| format!("reads as {v}"),
                );
                let decimal = octet.trim_start_matches('0');
                let decimal = if decimal.is_empty() { "0" } else { decimal };
                return Err(format!(
                    "{s:?}: the IPv4 octet {octet:?} has a leading zero, which is ambiguous: \
                     the system's parser (inet_aton) reads it as octal ({octet} {octal}), \
                     others as decimal ({decimal}); write it without leading zeros"
                ));
            }
        }
    }
    Ok(())
}
