//! Domain names, `*.suffix` and `*-tail.suffix` wildcards as the policy
//! names them.

use std::{fmt, str::FromStr};

use super::raw::string_value;

/// An exact name (`api.anthropic.com`), a wildcard (`*.openai.com`), which
/// matches any name at any depth below the suffix but not the suffix
/// itself, or a first-label wildcard (`*-aiplatform.googleapis.com`), which
/// matches a name whose first label ends with the tail (`us-central1-
/// aiplatform`: something before the hyphen) and whose rest is the suffix.
/// Stored lower-case, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DomainPattern {
    Exact(String),
    Wildcard(String),
    /// What follows the `*`: `-tail.suffix`.
    LabelTail(String),
}

impl DomainPattern {
    /// How specific a match by this pattern is, to pick the rule that
    /// decides among several matching a name (as the DNS program does):
    /// an exact name, then a `*-tail`, then a `*.suffix` by its depth.
    pub fn specificity(&self) -> (u8, usize) {
        match self {
            DomainPattern::Exact(n) => (3, n.split('.').count()),
            DomainPattern::LabelTail(t) => (2, t.split('.').count()),
            DomainPattern::Wildcard(n) => (1, n.split('.').count()),
        }
    }
}

impl FromStr for DomainPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
        if let Some(tail) = name.strip_prefix('*').filter(|t| t.starts_with('-')) {
            return label_tail(s, tail);
        }
        let (wildcard, rest) = match name.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, name.clone()),
        };
        if rest.contains('*') {
            return Err(format!(
                "invalid domain {s:?}: a wildcard is only allowed as the whole first label (\"*.example.com\") or as the start of a first label before a hyphen (\"*-api.example.com\")"
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

/// `*-tail.suffix` (`s` as written, `tail` what follows the `*`): the
/// kernel keeps the tails from the last `DNS_SUFFIX_SLOTS` hyphens of a
/// first label, so a tail may hold at most that many.
fn label_tail(s: &str, tail: &str) -> Result<DomainPattern, String> {
    let (first, _) = tail.split_once('.').ok_or_else(|| {
        format!("invalid domain {s:?}: a \"*-tail\" wildcard needs a suffix after its first label (\"*-api.example.com\")")
    })?;
    if tail.contains('*') {
        return Err(format!(
            "invalid domain {s:?}: only one '*', at the start of the first label"
        ));
    }
    check_name(&tail[1..]).map_err(|why| format!("invalid domain {s:?}: {why}"))?;
    let hyphens = first.bytes().filter(|&b| b == b'-').count();
    let max = enforcer_common::DNS_SUFFIX_SLOTS;
    if hyphens > max {
        return Err(format!(
            "invalid domain {s:?}: the part after '*' in the first label has {hyphens} hyphens; the kernel matches at most {max}"
        ));
    }
    Ok(DomainPattern::LabelTail(tail.to_owned()))
}

impl DomainPattern {
    /// Whether `name` (lower-case, no trailing dot) matches this pattern.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            DomainPattern::Exact(exact) => exact == name,
            DomainPattern::Wildcard(suffix) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            DomainPattern::LabelTail(tail) => name
                .strip_suffix(tail.as_str())
                .is_some_and(|head| !head.is_empty() && !head.contains('.')),
        }
    }

    /// Whether every name `other` matches is also matched by this pattern.
    pub fn covers(&self, other: &DomainPattern) -> bool {
        match (self, other) {
            (_, DomainPattern::Exact(name)) => self.matches(name),
            (DomainPattern::Wildcard(mine), DomainPattern::Wildcard(suffix)) => {
                suffix == mine || self.matches(suffix)
            }
            // Every name of `*-tail.rest` lies below `rest`.
            (DomainPattern::Wildcard(mine), DomainPattern::LabelTail(tail)) => {
                let rest = tail.split_once('.').map_or("", |(_, r)| r);
                rest == mine || self.matches(rest)
            }
            // `*-b.x` covers `*-a-b.x`: a longer tail of the same label.
            (DomainPattern::LabelTail(mine), DomainPattern::LabelTail(tail)) => tail
                .strip_suffix(mine.as_str())
                .is_some_and(|head| !head.contains('.')),
            _ => false,
        }
    }

    /// The name this rule names: the name itself, or a wildcard's suffix
    /// (for `*-tail.suffix`, the suffix after the first label).
    pub fn resolvable(&self) -> &str {
        match self {
            DomainPattern::Exact(name) | DomainPattern::Wildcard(name) => name,
            DomainPattern::LabelTail(tail) => tail.split_once('.').map_or("", |(_, r)| r),
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
            DomainPattern::LabelTail(tail) => write!(f, "*{tail}"),
        }
    }
}

string_value!(
    DomainPattern,
    "description": "An exact DNS name; *.suffix: any name below the suffix at any depth, not the suffix itself; or *-tail.suffix: a name whose first label ends with -tail after at least one character (at most 4 hyphens in the tail), followed by exactly the suffix.",
    "pattern": "^(\\*[.-])?[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*\\.?$"
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
    fn a_label_tail_wildcard_matches_only_the_first_label() {
        let t: DomainPattern = "*-AIPlatform.googleapis.com".parse().unwrap();
        assert_eq!(
            t,
            DomainPattern::LabelTail("-aiplatform.googleapis.com".into())
        );
        assert_eq!(t.to_string(), "*-aiplatform.googleapis.com");
        assert!(t.matches("us-central1-aiplatform.googleapis.com"));
        assert!(t.matches("x-y-aiplatform.googleapis.com"));
        assert!(!t.matches("aiplatform.googleapis.com"));
        assert!(!t.matches("-aiplatform.googleapis.com"));
        assert!(!t.matches("a.b-aiplatform.googleapis.com"));
        assert!(!t.matches("x-aiplatformx.googleapis.com"));
        assert!(t.covers(&"eu-aiplatform.googleapis.com".parse().unwrap()));
        assert!(t.covers(&"*-x-aiplatform.googleapis.com".parse().unwrap()));
        assert!(!t.covers(&"*.googleapis.com".parse().unwrap()));
        let w: DomainPattern = "*.googleapis.com".parse().unwrap();
        assert!(w.covers(&t));
        assert!(
            !"*.aiplatform.googleapis.com"
                .parse::<DomainPattern>()
                .unwrap()
                .covers(&t)
        );
        assert_eq!(t.resolvable(), "googleapis.com");
        for bad in [
            "*-a-b-c-d-e.test",
            "*-x",
            "*-.test",
            "*-x-.test",
            "*-x*.test",
            "*-x.*.test",
            "a*-x.test",
            "*-x.10",
        ] {
            let err = bad.parse::<DomainPattern>().unwrap_err();
            assert!(err.contains(bad), "{bad:?}: {err}");
        }
        assert!("*-a-b-c-d.test".parse::<DomainPattern>().is_ok());
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
