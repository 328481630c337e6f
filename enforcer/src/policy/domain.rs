//! Domain names and `*.suffix` wildcards as the policy names them.

use std::{fmt, str::FromStr};

use super::raw::string_value;

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

impl DomainPattern {
    /// Whether `name` (lower-case, no trailing dot) matches this pattern.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            DomainPattern::Exact(exact) => exact == name,
            DomainPattern::Wildcard(suffix) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }

    /// Whether every name `other` matches is also matched by this pattern.
    pub fn covers(&self, other: &DomainPattern) -> bool {
        match other {
            DomainPattern::Exact(name) => self.matches(name),
            DomainPattern::Wildcard(suffix) => match self {
                DomainPattern::Exact(_) => false,
                DomainPattern::Wildcard(mine) => {
                    suffix == mine || DomainPattern::Wildcard(mine.clone()).matches(suffix)
                }
            },
        }
    }

    /// The name this rule names: the name itself, or a wildcard's suffix.
    pub fn resolvable(&self) -> &str {
        match self {
            DomainPattern::Exact(name) | DomainPattern::Wildcard(name) => name,
        }
    }
}

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    if name.split('.').count() > enforcer_common::DNS_MAX_LABELS {
        return Err("more than 16 labels (the kernel matches names of up to 16)");
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
    // No top-level domain is all digits: `10.0.0.1` here is an address
    // that was meant for `cidrs`, and would never be matched as a name.
    if name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("it is an IP address, not a name: put addresses in cidrs");
    }
    Ok(())
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainPattern::Exact(name) => f.write_str(name),
            DomainPattern::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

string_value!(
    DomainPattern,
    "description": "An exact DNS name, or *.suffix: any name below the suffix at any depth, not the suffix itself.",
    "pattern": "^(\\*\\.)?[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*\\.?$"
);

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
    fn wildcards_match_below_the_suffix_not_the_apex() {
        let w: DomainPattern = "*.openai.com".parse().unwrap();
        assert!(w.matches("api.openai.com"));
        assert!(w.matches("a.b.openai.com"));
        assert!(!w.matches("openai.com"));
        assert!(!w.matches("notopenai.com"));
        assert!(w.covers(&"x.openai.com".parse().unwrap()));
        assert!(w.covers(&"*.eu.openai.com".parse().unwrap()));
        assert!(!w.covers(&"openai.com".parse().unwrap()));
        assert_eq!(w.resolvable(), "openai.com");
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
            "10.0.0.1",
            "127.077.0.1",
            "*.0.10",
        ] {
            assert!(bad.parse::<DomainPattern>().is_err(), "{bad:?} accepted");
        }
    }
}
