//! Domain names and `*.suffix` wildcards as the policy names them.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, de};

/// An exact name (`api.anthropic.com`) or a wildcard (`*.openai.com`), which
/// matches any name at any depth below the suffix but not the suffix itself.
/// Stored lower-case, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DomainPattern {
    Exact(String),
    Wildcard(String),
}

impl FromStr for DomainPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
        let (wildcard, rest) = match name.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, name.clone()),
        };
        if rest.contains('*') {
            return Err(format!(
                "invalid domain {s:?}: a wildcard is only allowed as the whole first label (\"*.example.com\")"
            ));
        }
        check_name(&rest).map_err(|why| format!("invalid domain {s:?}: {why}"))?;
        if wildcard && !rest.contains('.') {
            return Err(format!(
                "invalid domain {s:?}: a wildcard over a top-level domain would ban a whole TLD"
            ));
        }
        Ok(if wildcard {
            DomainPattern::Wildcard(rest)
        } else {
            DomainPattern::Exact(rest)
        })
    }
}

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label");
        }
        if label.len() > 63 {
            return Err("a label is longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(
                "only letters, digits, '-' and '_' are allowed in labels (use punycode for IDNs)",
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label starts or ends with '-'");
        }
    }
    Ok(())
}

impl<'de> Deserialize<'de> for DomainPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainPattern::Exact(name) => f.write_str(name),
            DomainPattern::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_and_wildcard() {
        assert_eq!(
            "API.Anthropic.com.".parse::<DomainPattern>().unwrap(),
            DomainPattern::Exact("api.anthropic.com".into())
        );
        assert_eq!(
            "*.openai.com".parse::<DomainPattern>().unwrap(),
            DomainPattern::Wildcard("openai.com".into())
        );
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "a..b",
            "api.*.com",
            "*",
            "*.com",
            "-a.com",
            "a b.com",
            "*.*.x.com",
        ] {
            assert!(bad.parse::<DomainPattern>().is_err(), "{bad:?} accepted");
        }
    }
}
