//! The policy file as written: serde types that reject anything unknown.
//! Each value type checks itself while it is parsed, so every error still
//! has the line and column serde_json knows.

use std::{fmt, str::FromStr};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, de};

use super::{DomainPattern, Mode};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[expect(dead_code, reason = "its check happens while parsing")]
    pub version: Version,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub deny: RawRules,
    #[serde(default)]
    pub allow: RawRules,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRules {
    #[serde(default)]
    pub domains: Vec<DomainPattern>,
    #[serde(default)]
    pub cidrs: Vec<Cidr>,
}

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

/// A network in CIDR notation, or a bare address (a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
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
        if net.trunc() != net {
            return Err(format!(
                "CIDR {s:?} has host bits set: did you mean {}?",
                net.trunc()
            ));
        }
        Ok(Cidr(net))
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
