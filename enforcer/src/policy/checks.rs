//! Valid but dangerous policies: each shape here parses, and each gets a
//! warning that says what it does (logged at WARN by the daemon, listed in
//! `status`, and an exit code of `policy validate --strict`).
//!
//! - an allow over a whole family (IPv4 /0 or /1; IPv6 /0 to /3, since
//!   2000::/3 is every global unicast address): exceptions win over bans,
//!   so it lifts every ban in that range;
//! - a deny over a whole family (/0): every destination is banned that no
//!   allow excepts; a deliberate allow-list policy, but one to be sure of;
//! - a ban over loopback (127.0.0.0/8, ::1);
//! - a ban over one of the resolver's upstreams (the daemon and every
//!   enforced process lose DNS);
//! - `mode` set by a drop-in.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
};

use ipnet::IpNet;

use super::{Entry, Mode, Policy};

/// Allows with a prefix this short or shorter are warned about.
const WIDE_ALLOW_V4: u8 = 1;
const WIDE_ALLOW_V6: u8 = 3;

fn family(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "IPv4",
        IpNet::V6(_) => "IPv6",
    }
}

/// "all of IPv4", "half of IPv6", "1/8 of IPv6".
fn share(net: &IpNet) -> String {
    match net.prefix_len() {
        0 => format!("all of {}", family(net)),
        1 => format!("half of {}", family(net)),
        n => format!("1/{} of {}", 1u32 << n, family(net)),
    }
}

/// The ban on `net` (every address of it), unless an allow excepts all of it.
fn ban_over<'a>(policy: &'a Policy, net: &IpNet) -> Option<&'a Entry<IpNet>> {
    if policy.allow.cidrs.iter().any(|a| a.value.contains(net)) {
        return None;
    }
    policy
        .deny
        .cidrs
        .iter()
        .find(|d| d.value.contains(net) || net.contains(&d.value))
}

/// Warnings about the rules alone (pure): whole-family allows and denies,
/// bans over loopback.
pub(super) fn rule_warnings(policy: &Policy) -> Vec<String> {
    let mut warnings = Vec::new();
    for allow in &policy.allow.cidrs {
        let wide = match allow.value {
            IpNet::V4(_) => WIDE_ALLOW_V4,
            IpNet::V6(_) => WIDE_ALLOW_V6,
        };
        if allow.value.prefix_len() <= wide {
            warnings.push(format!(
                "{}: allow {} covers {}: exceptions win over bans, so no ban in it is enforced",
                allow.origin,
                allow.value,
                share(&allow.value)
            ));
        }
    }
    for deny in &policy.deny.cidrs {
        if deny.value.prefix_len() == 0 {
            warnings.push(format!(
                "{}: deny {} bans every {} destination that no allow excepts, \
                 including loopback and the DNS resolvers unless allowed",
                deny.origin,
                deny.value,
                family(&deny.value)
            ));
        }
    }
    let loopback: [IpNet; 2] = [
        IpNet::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8).expect("valid prefix"),
        IpNet::from(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    for lo in loopback {
        // Only the part of loopback the ban covers needs an exception.
        let banned = policy.deny.cidrs.iter().find_map(|d| {
            let part = if d.value.contains(&lo) {
                lo
            } else if lo.contains(&d.value) {
                d.value
            } else {
                return None;
            };
            let excepted = policy.allow.cidrs.iter().any(|a| a.value.contains(&part));
            (!excepted).then_some((d, part))
        });
        if let Some((deny, part)) = banned {
            warnings.push(format!(
                "{}: deny {} covers loopback ({part}): local services, such as a DNS stub \
                 on 127.0.0.53, become unreachable for every enforced process",
                deny.origin, deny.value
            ));
        }
    }
    warnings
}

/// A drop-in that sets `mode` decides whether anything is enforced; only
/// the main file should.
pub(super) fn drop_in_mode_warning(source: &super::Source, mode: Mode, was: Mode) -> String {
    format!(
        "{source}: mode: the drop-in sets mode \"{mode}\" (it was \"{was}\"): a drop-in decides \
         whether bans are enforced; set mode in the main policy file only"
    )
}

impl Policy {
    /// Adds a warning for each of `upstreams` (the servers the daemon
    /// resolves with: `resolver.upstreams`, else the nameservers of
    /// `resolv_conf`, which the caller reads) that a ban covers: the
    /// daemon and every enforced process would lose DNS, and every banned
    /// name would go stale. Keeps `parse` pure: the list is passed in.
    pub fn check_upstreams(&mut self, upstreams: &[SocketAddr], resolv_conf: &Path) {
        let from = if self.resolver.upstreams.is_some() {
            "resolver.upstreams".to_owned()
        } else {
            format!("a nameserver of {}", resolv_conf.display())
        };
        let mut found = Vec::new();
        for up in upstreams {
            if let Some(deny) = ban_over(self, &IpNet::from(up.ip())) {
                found.push(format!(
                    "{}: deny {} covers the resolver {} ({from}): the daemon's DNS queries and \
                     those of every enforced process are refused, so banned names are no \
                     longer resolved and go stale",
                    deny.origin,
                    deny.value,
                    up.ip()
                ));
            }
        }
        for w in found {
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
    }
}
