//! Allow lists as the kernel keys them: `AGENT_ALLOW_V4/V6` prefixes of
//! {selector, protocol, port, address}, and `AGENT_NAMES` (the selectors
//! whose lists hold a name, under the name's DNS key).

use std::collections::BTreeMap;

use enforcer_common::{
    agents::{AgentName, AgentUnixKey, allow_word},
    dns_name_key, v6_key,
};
use ipnet::IpNet;

use crate::policy::{
    DomainPattern,
    agents::{Agent, AllowEntry},
};

/// An LPM key: prefix length in bits, and the data.
pub type Prefix<const N: usize> = (u32, [u32; N]);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowMaps {
    pub v4: BTreeMap<Prefix<2>, u32>,
    pub v6: BTreeMap<Prefix<5>, u32>,
    pub names: BTreeMap<u64, AgentName>,
    /// `AGENT_ALLOW_UNIX`.
    pub unix: BTreeMap<AgentUnixKey, u32>,
}

impl AllowMaps {
    /// The allow lists of `agents` (by rank), keyed by their slots.
    pub fn compile(agents: &[Agent], slots: &[u32]) -> AllowMaps {
        let mut out = AllowMaps::default();
        for (i, a) in agents.iter().enumerate() {
            let sel = slots[i];
            for entry in &a.allow {
                match entry {
                    AllowEntry::Net { net, port } => {
                        let (port, proto) = match port {
                            Some(spec) => (spec.port, spec.proto.map_or(0, |p| p.number())),
                            None => (0, 0),
                        };
                        let word = allow_word(sel, proto, port);
                        match net.trunc() {
                            IpNet::V4(n) => {
                                let addr = u32::from_ne_bytes(n.network().octets());
                                out.v4
                                    .insert((32 + u32::from(n.prefix_len()), [word, addr]), 1);
                            }
                            IpNet::V6(n) => {
                                let a = v6_key(n.network().octets());
                                out.v6.insert(
                                    (
                                        32 + u32::from(n.prefix_len()),
                                        [word, a[0], a[1], a[2], a[3]],
                                    ),
                                    1,
                                );
                            }
                        }
                    }
                    AllowEntry::Unix(name) => {
                        // Lengths are checked when the policy is parsed.
                        if let Some(key) = AgentUnixKey::new(sel, name) {
                            out.unix.insert(key, 1);
                        }
                    }
                    AllowEntry::Name(d) => {
                        let bit = 1u64 << (sel & 63);
                        match d {
                            DomainPattern::Exact(n) => {
                                out.names.entry(dns_name_key(n)).or_default().exact |= bit
                            }
                            DomainPattern::Wildcard(s) => {
                                out.names.entry(dns_name_key(s)).or_default().wild |= bit
                            }
                            // Refused when the policy is parsed.
                            DomainPattern::LabelTail(_) => {}
                        }
                    }
                }
            }
        }
        out
    }
}
