//! `nat64_prefixes`: the operator's NAT64 /96 prefixes, each checked
//! while parsed and unioned across drop-ins up to what the kernel map holds.

use std::str::FromStr;

use ipnet::{IpNet, Ipv6Net};

use super::{
    Entry, PolicyError, Source,
    raw::{check_host_bits, string_value},
};

/// A NAT64 prefix: an IPv6 /96 with zero host bits, the IPv4 address in
/// the last 32 bits (RFC 6052). Shorter prefixes put the address elsewhere
/// and are not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nat64Prefix(pub Ipv6Net);

impl FromStr for Nat64Prefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        super::check_octets(s)?;
        let net = match s.parse::<IpNet>() {
            Ok(IpNet::V6(net)) => net,
            Ok(IpNet::V4(_)) => {
                return Err(format!(
                    "NAT64 prefix {s:?} is IPv4: expected an IPv6 /96, like 2001:db8:64::/96"
                ));
            }
            Err(_) => {
                return Err(format!(
                    "invalid NAT64 prefix {s:?}: expected an IPv6 /96, like 2001:db8:64::/96"
                ));
            }
        };
        if net.prefix_len() != 96 {
            return Err(format!(
                "NAT64 prefix {s:?} is a /{}: only /96 prefixes are supported \
                 (the IPv4 address in the last 32 bits)",
                net.prefix_len()
            ));
        }
        check_host_bits("NAT64 prefix", s, IpNet::V6(net))?;
        Ok(Nat64Prefix(net))
    }
}

string_value!(
    Nat64Prefix,
    "description": "An IPv6 /96 with zero host bits, like 2001:db8:64::/96."
);

/// Unions `raw` into `into`; more than the kernel map holds is an error
/// naming the file that went over.
pub(super) fn merge(
    into: &mut Vec<Entry<Ipv6Net>>,
    source: &Source,
    raw: Vec<Nat64Prefix>,
) -> Result<(), PolicyError> {
    let shown = std::sync::Arc::new(source.to_string());
    for (i, p) in raw.into_iter().enumerate() {
        if !into.iter().any(|e| e.value == p.0) {
            into.push(Entry {
                value: p.0,
                origin: super::Origin::new(shown.clone(), super::Field::Nat64Prefixes, i),
            });
        }
    }
    let max = enforcer_common::MAX_NAT64_PREFIXES as usize;
    if into.len() > max {
        return Err(PolicyError::Merged {
            origin: source.clone(),
            field: "nat64_prefixes".into(),
            message: format!(
                "{} distinct NAT64 prefixes after merging; at most {max} are supported",
                into.len()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::policy::{Policy, PolicyError, Source};

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(text, Source::File("p.json".into()))
    }

    #[test]
    fn prefixes_parse_and_default_to_none() {
        let p = parse(r#"{"version":1,"nat64_prefixes":["2001:db8:64::/96","2001:db8:64::/96","2001:db8:65::/96"]}"#)
            .unwrap();
        let values: Vec<String> = p
            .nat64_prefixes
            .iter()
            .map(|e| e.value.to_string())
            .collect();
        assert_eq!(
            values,
            ["2001:db8:64::/96", "2001:db8:65::/96"],
            "deduplicated"
        );
        assert_eq!(p.nat64_prefixes[1].origin, "p.json: nat64_prefixes[2]");
        assert!(parse(r#"{"version":1}"#).unwrap().nat64_prefixes.is_empty());
    }

    #[test]
    fn anything_but_an_ipv6_96_is_rejected_with_its_index() {
        for (value, expected) in [
            (
                "2001:db8:64::/64",
                "is a /64: only /96 prefixes are supported",
            ),
            (
                "2001:db8:64::1/96",
                "has host bits set: did you mean 2001:db8:64::/96?",
            ),
            ("192.0.2.0/24", "is IPv4"),
            ("2001:db8:64::", "invalid NAT64 prefix"),
            ("nat64", "invalid NAT64 prefix"),
        ] {
            let text =
                format!("{{\"version\":1,\n\"nat64_prefixes\":[\"2001:db8:1::/96\",\"{value}\"]}}");
            match parse(&text) {
                Err(PolicyError::Invalid {
                    line,
                    field,
                    message,
                    ..
                }) => {
                    assert_eq!((line, field.as_str()), (2, "nat64_prefixes[1]"), "{value}");
                    assert!(message.contains(expected), "{value}: {message}");
                }
                other => panic!("{value}: expected a rejection, got {other:?}"),
            }
        }
    }

    #[test]
    fn drop_ins_union_up_to_the_map_size_and_the_file_that_goes_over_is_named() {
        let dir = std::env::temp_dir().join(format!("enforcer-unit-nat64-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("policy.d")).unwrap();
        let main = dir.join("policy.json");
        std::fs::write(
            &main,
            r#"{"version":1,"nat64_prefixes":["2001:db8:64::/96"]}"#,
        )
        .unwrap();
        let list = |from: u32, n: u32| {
            (from..from + n)
                .map(|i| format!("\"2001:db8:{i:x}::/96\""))
                .collect::<Vec<_>>()
                .join(",")
        };
        let drop_in = dir.join("policy.d/10-more.json");
        // 0x64 again plus six new ones: seven in all.
        std::fs::write(
            &drop_in,
            format!(r#"{{"version":1,"nat64_prefixes":[{}]}}"#, list(0x64, 7)),
        )
        .unwrap();
        let p = Policy::resolve(Some(&main)).unwrap();
        assert_eq!(p.nat64_prefixes.len(), 7);
        assert_eq!(
            p.nat64_prefixes[0].origin.to_string(),
            format!("{}: nat64_prefixes[0]", main.display())
        );
        std::fs::write(
            &drop_in,
            format!(r#"{{"version":1,"nat64_prefixes":[{}]}}"#, list(0x64, 9)),
        )
        .unwrap();
        let err = Policy::resolve(Some(&main)).unwrap_err().to_string();
        assert!(
            err.contains("10-more.json: nat64_prefixes: 9 distinct"),
            "{err}"
        );
        assert!(err.contains("at most 8"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
