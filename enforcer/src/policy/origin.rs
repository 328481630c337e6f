//! Where a policy entry was written (`<file>: deny.cidrs[3]`), without a
//! string per entry: a policy may hold a million entries. The file name is
//! shared, the field is a byte, the text is made when it is shown: 16
//! bytes an entry (it was 40 with a `&'static str` field and a fat
//! `Arc<str>`: 24 MB more at a million entries).

use std::{fmt, sync::Arc};

/// The list an entry was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    DenyDomains,
    DenyCidrs,
    AllowDomains,
    AllowCidrs,
    Nat64Prefixes,
}

impl Field {
    pub const fn as_str(self) -> &'static str {
        match self {
            Field::DenyDomains => "deny.domains",
            Field::DenyCidrs => "deny.cidrs",
            Field::AllowDomains => "allow.domains",
            Field::AllowCidrs => "allow.cidrs",
            Field::Nat64Prefixes => "nat64_prefixes",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The file as shown; one allocation per file, a thin pointer here.
    source: Arc<String>,
    index: u32,
    field: Field,
}

impl Origin {
    pub fn new(source: Arc<String>, field: Field, index: usize) -> Origin {
        Origin {
            source,
            field,
            index: u32::try_from(index).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}[{}]",
            self.source,
            self.field.as_str(),
            self.index
        )
    }
}

impl PartialEq<&str> for Origin {
    fn eq(&self, other: &&str) -> bool {
        // `<source>: <field>[<index>]`, compared piece by piece.
        other
            .strip_prefix(self.source.as_str())
            .and_then(|r| r.strip_prefix(": "))
            .and_then(|r| r.strip_prefix(self.field.as_str()))
            .and_then(|r| r.strip_prefix('['))
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|i| i == self.index.to_string())
    }
}

impl serde::Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_small_and_reads_as_written() {
        // Every policy entry carries one (issue 9: memory at 1M entries).
        assert_eq!(std::mem::size_of::<Origin>(), 16);
        assert_eq!(
            std::mem::size_of::<crate::policy::Entry<ipnet::IpNet>>(),
            40
        );
        let o = Origin::new(Arc::new("/etc/p.json".into()), Field::AllowCidrs, 3);
        assert_eq!(o.to_string(), "/etc/p.json: allow.cidrs[3]");
        assert_eq!(o, "/etc/p.json: allow.cidrs[3]");
    }
}
